"""Trust: `.keras` files load in Keras safe mode; one that carries Python code is refused.

A `.keras` file is a zip of JSON config and weights; in safe mode (the default of
`keras.models.load_model`) Keras refuses to deserialize a `Lambda` layer's Python bytecode, which
would otherwise run arbitrary code on load. keras-vae's own models need no such code, and its
command-line tools load models in safe mode. A SavedModel is a TensorFlow program: only
trusted ones should be served (the README says so).
"""

import pathlib

import keras
import numpy as np
import pytest
import reliability_helpers as helpers

import keras_vae


def test_trained_vae_round_trips_in_safe_mode(tmp_path):
    vae = helpers.tiny_vae()
    path = tmp_path / "model.keras"
    vae.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, keras_vae.VAE)
    x = helpers.digits()[:8]
    np.testing.assert_allclose(loaded.reconstruct(x), vae.reconstruct(x), atol=1e-6)


def _lambda_vae():
    inputs = keras.Input((4,), name="x")
    h = keras.layers.Lambda(lambda t: t * 2.0, name="untrusted_code")(inputs)
    encoder = keras.Model(inputs, keras.layers.Dense(2)(h), name="encoder")
    z = keras.Input((1,), name="z")
    decoder = keras.Model(z, keras.layers.Dense(4)(z), name="decoder")
    return keras_vae.VAE(encoder, decoder, likelihood="gaussian")


@pytest.fixture(scope="module")
def lambda_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trust") / "model.keras"
    _lambda_vae().save(path)
    return path


def test_keras_file_with_lambda_layer_is_refused_in_safe_mode(lambda_model_path):
    with pytest.raises(ValueError, match="safe_mode"):
        keras.models.load_model(lambda_model_path)
    with pytest.raises(ValueError, match="safe_mode"):
        keras.models.load_model(lambda_model_path, safe_mode=True)
    # The same file does load when the user opts out explicitly: the refusal above is safe mode
    # at work, not a broken file.
    loaded = keras.models.load_model(lambda_model_path, safe_mode=False)
    assert isinstance(loaded, keras_vae.VAE)


def test_export_cli_refuses_a_keras_file_with_code(lambda_model_path, tmp_path, capsys):
    from keras_vae.export import cli

    code = cli.main([str(lambda_model_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert "safe_mode" in err
    assert not (tmp_path / "out" / "vae").exists()


def test_evaluate_cli_refuses_a_keras_file_with_code(lambda_model_path, capsys):
    from keras_vae.training import evaluate

    code = evaluate.main([str(lambda_model_path), "--data", "ring"])
    assert code != 0
    assert "safe_mode" in capsys.readouterr().err


def test_docs_say_to_serve_only_trusted_saved_models():
    text = (pathlib.Path(helpers.REPO) / "README.md").read_text(encoding="utf-8")
    assert "only trusted SavedModels" in text
    assert "safe mode" in text
