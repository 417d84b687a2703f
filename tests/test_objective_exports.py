"""Models trained with each objective and likelihood export like the default one: the SavedModel
(loaded by TensorFlow) and the TFLite file (run by LiteRT) decode and score as Keras does."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_vae
from keras_vae import export


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {"likelihood": "continuous_bernoulli"},
        # Free bits and warm-up change only the training objective, not what is exported.
        {"objective": "iwae", "k": 3},
    ],
    ids=["continuous_bernoulli", "iwae"],
)
def test_models_of_every_objective_export_and_serve(tmp_path, digits, kwargs):
    x = digits[0][:256]
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, seed=0, hidden_units=(16,), **kwargs)
    vae.compile(optimizer="adam")
    vae.fit(x, epochs=1, batch_size=64, verbose=0)
    saved = export.export_saved_model(vae, tmp_path / "serving", name="vae", version=1)
    tflite = export.export_tflite(saved, str(tmp_path / "vae.tflite"))
    z = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    expected = vae.decode(z).numpy()
    signatures = tf.saved_model.load(saved).signatures
    np.testing.assert_allclose(signatures["decode"](z=z)["x"], expected, atol=1e-5)
    served = signatures["log_likelihood"](x=x[:4])["log_likelihood"].numpy()
    assert np.all(np.isfinite(served))
    # The served score is the library's estimate with the export's K (metadata) for this model.
    assert served.mean() == pytest.approx(float(np.mean(vae.log_likelihood(x[:4], 64))), abs=1.5)
    runner = Interpreter(model_path=tflite).get_signature_runner("decode")
    np.testing.assert_allclose(runner(z=z)["x"], expected, atol=1e-5)
