"""`.keras` files written by an earlier keras-vae load and give the outputs they gave then.

tests/data/ holds two models saved by keras-vae as it landed at commit 3ce6918 (an MLP with the
Bernoulli likelihood, a conv net with a learned Gaussian sigma), and what they answered then.
"""

import os

import keras
import numpy as np
import pytest

import keras_vae  # noqa: F401 - registers the classes for loading

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.mark.parametrize("name", ["mlp_bernoulli", "conv_gaussian_learned"])
def test_files_from_an_earlier_version_load_with_the_same_outputs(name):
    expected = np.load(os.path.join(DATA, "outputs.npz"))
    vae = keras.models.load_model(os.path.join(DATA, f"{name}.keras"))
    x, z = expected["x"], expected["z"]
    mean, scale = vae.encode(x)
    np.testing.assert_allclose(mean.numpy(), expected[f"{name}/mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scale.numpy(), expected[f"{name}/scale"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.decode(z).numpy(), expected[f"{name}/decode"], atol=1e-6)
    np.testing.assert_allclose(
        vae.reconstruct(x).numpy(), expected[f"{name}/reconstruct"], atol=1e-6
    )
    if vae.likelihood_name == "gaussian":
        # The trained sigma is kept, not reset to the start value of a newer version.
        np.testing.assert_allclose(vae.likelihood.scale().numpy(), expected[f"{name}/sigma"])
        assert not np.allclose(expected[f"{name}/sigma"], 0.1)
