"""Shared fixtures: real data that needs no download and small models.

Tiny: scikit-learn's 8x8 digits and the seed's ring. Real-size: `digits28` (the same digits at
MNIST's 28x28) and `photos64` (64x64 RGB patches of scikit-learn's two sample photographs),
built by `training.data`'s own loaders, so the fixtures and `--data digits28|photos64` agree.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_vae  # noqa: E402
from keras_vae.training.data import LOADERS  # noqa: E402


def named_data(name, read_only=False):
    """`(x, y)` of a named data set before the split, as `training.data.LOADERS` makes them.

    `read_only` locks the arrays, so that a session-wide fixture cannot be changed in place by
    one test under the next.
    """
    raw = LOADERS[name]()
    x, y = raw["x"], raw.get("y")
    if read_only:
        for array in (x, y):
            if array is not None:
                array.flags.writeable = False
    return x, y


@pytest.fixture(scope="session")
def digits():
    """Digits as (1797, 8, 8, 1) float32 in [0, 1] with labels 0..9."""
    return named_data("digits")


@pytest.fixture(scope="session")
def digits28():
    """The same digits at MNIST's size: x (1797, 28, 28, 1) float32 in [0, 1], y labels 0..9.

    Bicubic 20x20 centred in a black 28x28 frame, as MNIST lays out its digits; 5.6 MB.
    Read-only (shared by the whole session): copy before changing it.
    """
    return named_data("digits28", read_only=True)


@pytest.fixture(scope="session")
def photos64():
    """Colour patches for a Gaussian likelihood: x (2000, 64, 64, 3) float32 in [0, 1], 98 MB.

    Cut from china.jpg (the first 1000) and flower.jpg (the last 1000) at full size, 1/2 and
    1/4; `named_data("photos64")[1]` has the photo index if a test needs it. Read-only.
    """
    return named_data("photos64", read_only=True)[0]


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
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=8, hidden_units=(128,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    initial = vae.evaluate(x_test, verbose=0, return_dict=True)
    history = vae.fit(x_train, epochs=15, batch_size=64, validation_data=x_test, verbose=0)
    return vae, initial, history
