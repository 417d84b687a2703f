"""Contract checks every serializable keras_vae object passes, in the style of keras' own
`run_layer_test` and keras-hub's `run_backbone_test`: config round trip and `.keras` round trip.

Each test states what it builds; these say what any such object must keep.
"""

import keras
import numpy as np


def assert_config_round_trip(obj, **expected):
    """`obj` rebuilt from its serialized config has the same config, and the `expected` attributes.

    Returns the rebuilt object.
    """
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(clone) is type(obj)
    assert _plain(clone.get_config()) == _plain(obj.get_config())
    for name, value in expected.items():
        assert getattr(clone, name) == value, (name, getattr(clone, name), value)
    return clone


def assert_keras_file_round_trip(model, path, x, atol=1e-6):
    """`model` saved to `path` (a `.keras` file) loads in safe mode with the same config and the
    same outputs: reconstructions, seeded samples and a seeded log-likelihood of `x`.

    Returns the loaded model, which a test can keep training.
    """
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert _plain(loaded.get_config()) == _plain(model.get_config())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=atol)
    np.testing.assert_allclose(loaded.sample(4, seed=9), model.sample(4, seed=9), atol=atol)
    np.testing.assert_allclose(
        loaded.log_likelihood(x[:4], 16, seed=1), model.log_likelihood(x[:4], 16, seed=1), rtol=1e-5
    )
    return loaded


def _plain(config):
    """A config with tuples as lists: JSON (the `.keras` file) keeps no tuples."""
    if isinstance(config, dict):
        return {key: _plain(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(value) for value in config]
    return config
