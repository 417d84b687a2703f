"""Shared fixtures: tiny real data (scikit-learn's bundled digits, the seed's ring) and models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_vae  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """Digits as (N, 8, 8, 1) float32 in [0, 1] with labels."""
    data = load_digits()
    return (data.images / 16.0).astype("float32")[..., None], data.target


@pytest.fixture(scope="session")
def binary_digits(digits):
    """Digits binarized once with a fixed seed: exact Bernoulli data, 1500 train / 297 test."""
    images, _ = digits
    rng = np.random.default_rng(0)
    binary = (rng.random(images.shape) < images).astype("float32")
    return binary[:1500], binary[1500:]


def ring_points(n, seed=0):
    """The seed's toy: z ~ N(0, I) in 2-D mapped by g(z) = z/10 + z/||z||."""
    z = np.random.default_rng(seed).standard_normal((n, 2))
    return (z / 10 + z / np.linalg.norm(z, axis=1, keepdims=True)).astype("float32")


@pytest.fixture(scope="session")
def trained_digits_vae(binary_digits):
    """An MLP VAE fitted on binarized digits, with its held-out loss before training."""
    x_train, x_test = binary_digits
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=8, hidden_units=(128,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    initial = vae.evaluate(x_test, verbose=0, return_dict=True)
    history = vae.fit(x_train, epochs=15, batch_size=64, validation_data=x_test, verbose=0)
    return vae, initial, history
