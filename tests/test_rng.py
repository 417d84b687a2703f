"""keras_vae.rng: the seeded noise of `sample`, identical in TF and NumPy, and standard normal."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_vae import rng


@pytest.mark.parametrize("seed", [0, 1, 42, -1, -(2**31), 2**31 - 1])
def test_tensorflow_and_numpy_give_the_same_draw(seed):
    got = rng.standard_normal([50, 3], tf.constant(seed, tf.int32)).numpy()
    want = rng.standard_normal_numpy((50, 3), seed)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_draws_depend_on_seed_and_index_only():
    long = rng.standard_normal_numpy((1000,), seed=3)
    np.testing.assert_array_equal(rng.standard_normal_numpy((10, 10), seed=3).ravel(), long[:100])
    assert np.corrcoef(long, rng.standard_normal_numpy((1000,), seed=4))[0, 1] < 0.15


def _normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def test_draws_are_standard_normal():
    n = 200_000
    z = rng.standard_normal_numpy((n,), seed=7).astype(np.float64)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 5 / math.sqrt(2 * n)
    # Kolmogorov-Smirnov distance to N(0, 1), on a subsample; 1.95 / sqrt(m) is the 0.1% level.
    m = 20_000
    sub = np.sort(z[:m])
    cdf = _normal_cdf(sub)
    ks = max(np.max(np.arange(1, m + 1) / m - cdf), np.max(cdf - np.arange(m) / m))
    assert ks < 1.95 / math.sqrt(m), ks
    # Neighbours (a latent's coordinates, consecutive samples) are uncorrelated.
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)
    # Tails: P(|z| > 3) = 0.0027.
    assert abs(np.mean(np.abs(z) > 3) - 0.0027) < 5 * math.sqrt(0.0027 / n)


def test_content_ids_follow_the_example_not_its_place():
    x = np.random.default_rng(0).random((6, 4, 4, 1)).astype("float32")
    ids = rng.content_ids(tf.constant(x)).numpy()
    assert ids.dtype == np.uint32 and ids.shape == (6,)
    assert len(set(ids.tolist())) == 6  # distinct examples, distinct streams
    np.testing.assert_array_equal(rng.content_ids(tf.constant(x[::-1])).numpy(), ids[::-1])
    np.testing.assert_array_equal(rng.content_ids(tf.constant(x[2:3])).numpy(), ids[2:3])
    # One pixel changed by one ulp, or two pixels swapped, is another example.
    nudged = x[:1].copy()
    nudged[0, 1, 2, 0] = np.nextafter(nudged[0, 1, 2, 0], np.float32(2))
    swapped = x[:1].copy()
    swapped[0, 0, 0, 0], swapped[0, 0, 1, 0] = x[0, 0, 1, 0], x[0, 0, 0, 0]
    for other in (nudged, swapped):
        assert rng.content_ids(tf.constant(other)).numpy()[0] != ids[0]
