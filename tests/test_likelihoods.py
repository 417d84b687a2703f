import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from keras_vae import likelihoods


def test_bernoulli_log_prob_matches_binary_cross_entropy_and_tfp():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(4, 5, 2)).astype("float32")
    x = (rng.random((4, 5, 2)) < 0.5).astype("float32")
    lik = likelihoods.Bernoulli(event_ndims=2)
    p = 1 / (1 + np.exp(-logits))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2))
    np.testing.assert_allclose(lik.log_prob(x, logits), expected, rtol=1e-5)
    np.testing.assert_allclose(lik.distribution(logits).log_prob(x), expected, rtol=1e-5)


def test_bernoulli_log_prob_is_finite_for_saturated_logits():
    lik = likelihoods.Bernoulli(event_ndims=1)
    logits = tf.constant([[1e4, -1e4]])
    assert np.isfinite(lik.log_prob(tf.constant([[0.0, 1.0]]), logits)).all()
    np.testing.assert_allclose(lik.log_prob(tf.constant([[1.0, 0.0]]), logits), [0.0])


def test_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(3, 4)).astype("float32")
    x = rng.normal(size=(3, 4)).astype("float32")
    lik = likelihoods.Gaussian((4,), sigma=0.3)
    expected = stats.norm(mu, 0.3).logpdf(x).sum(axis=1)
    np.testing.assert_allclose(lik.log_prob(x, mu), expected, rtol=1e-5)
    np.testing.assert_allclose(lik.mean(mu), mu)


def test_learned_sigma_is_a_trainable_weight_with_a_floor():
    lik = likelihoods.Gaussian((2,), sigma=None)
    assert [w.name for w in lik.trainable_weights] == ["log_sigma"]
    lik.log_sigma.assign([-50.0, 0.0])
    np.testing.assert_allclose(lik.scale(), [likelihoods.MIN_SIGMA, 1.0], rtol=1e-6)


@pytest.mark.parametrize("sigma", [0, -1.0, "big"])
def test_bad_sigma_is_rejected(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        likelihoods.Gaussian((2,), sigma=sigma)


def test_unknown_likelihood_is_named():
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'.*bernoulli"):
        likelihoods.make_likelihood("poisson", (3,))


def test_config_round_trip():
    lik = likelihoods.Gaussian((2, 3), sigma=0.5, name="likelihood")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lik))
    assert (clone.event_shape, clone.sigma) == ((2, 3), 0.5)
