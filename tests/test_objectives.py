import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import objectives

tfd = tfp.distributions


def test_kl_matches_closed_form():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(5, 3)).astype("float32")
    s = rng.uniform(0.05, 3.0, size=(5, 3)).astype("float32")
    kl = objectives.kl_to_standard_normal(tfd.MultivariateNormalDiag(mu, s)).numpy()
    expected = 0.5 * np.sum(mu**2 + s**2 - 1 - np.log(s**2), axis=1)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-5)


def test_kl_is_zero_only_at_the_prior():
    prior_like = tfd.MultivariateNormalDiag(tf.zeros([2, 4]), tf.ones([2, 4]))
    np.testing.assert_allclose(objectives.kl_to_standard_normal(prior_like), 0.0, atol=1e-6)
    shifted = tfd.MultivariateNormalDiag(tf.fill([1, 4], 0.1), tf.ones([1, 4]))
    assert objectives.kl_to_standard_normal(shifted).numpy()[0] > 0


def test_estimates_are_stable_for_huge_magnitudes():
    values = tf.constant([[-1000.0], [-1001.0], [-1002.0]])
    zeros = tf.zeros_like(values)
    got = objectives.importance_weighted_log_likelihood(values, zeros, zeros).numpy()[0]
    expected = -1000.0 + np.log(np.mean(np.exp([0.0, -1.0, -2.0])))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isfinite(objectives.naive_log_likelihood(tf.constant([[1e4], [1e4]]))).all()


def test_importance_weighted_estimate_of_a_known_model():
    # x | z ~ N(z, 1), z ~ N(0, 1): P(x) = N(x; 0, 2). With the exact posterior N(x/2, 1/2) as
    # proposal every importance weight equals P(x), so the estimate is exact at any K.
    x = np.array([0.3, -1.7], "float32")
    posterior = tfd.Normal(x / 2, np.sqrt(0.5).astype("float32"))
    z = posterior.sample(7, seed=(1, 2))
    log_px_given_z = tfd.Normal(z, 1.0).log_prob(x)
    log_pz = tfd.Normal(0.0, 1.0).log_prob(z)
    estimate = objectives.importance_weighted_log_likelihood(
        log_px_given_z, log_pz, posterior.log_prob(z)
    )
    exact = tfd.Normal(0.0, np.sqrt(2.0)).log_prob(x)
    np.testing.assert_allclose(estimate, exact, rtol=1e-5)


def test_negative_elbo_weights_the_kl_by_beta():
    got = objectives.negative_elbo(tf.constant([10.0]), tf.constant([2.0]), beta=0.5)
    np.testing.assert_allclose(got, [11.0])


def test_bits_per_dim():
    np.testing.assert_allclose(objectives.nats_to_bits_per_dim(64 * np.log(2.0), 64), 1.0)


def test_kl_per_dimension_sums_to_the_kl():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(4, 3)).astype("float32")
    s = rng.uniform(0.1, 2.0, size=(4, 3)).astype("float32")
    posterior = tfd.MultivariateNormalDiag(mu, s)
    per_dim = objectives.kl_per_dimension(posterior).numpy()
    np.testing.assert_allclose(per_dim, 0.5 * (mu**2 + s**2 - 1 - np.log(s**2)), rtol=1e-5)
    np.testing.assert_allclose(
        per_dim.sum(axis=1), objectives.kl_to_standard_normal(posterior), rtol=1e-6
    )


def test_free_bits_floor_each_dimensions_batch_mean():
    kl = tf.constant([[0.1, 2.0, 0.0], [0.3, 1.0, 0.0]])  # batch means 0.2, 1.5, 0
    assert objectives.free_bits_kl(kl, 0.5).numpy() == np.float32(0.5 + 1.5 + 0.5)
    # lambda = 0 is the plain batch mean of the KL.
    assert objectives.free_bits_kl(kl, 0.0).numpy() == np.float32(1.7)


def test_iwae_term_is_the_reconstruction_at_k1_and_tightens_with_k():
    rng = np.random.default_rng(3)
    log_px, log_pz, log_qz = (tf.constant(rng.normal(size=(1, 5)), tf.float32) for _ in "abc")
    # K = 1: T = -log P(X|z), so T + KL is exactly the negative ELBO for the same noise.
    np.testing.assert_allclose(
        objectives.iwae_reconstruction_term(log_px, log_pz, log_qz), -log_px[0], rtol=1e-6
    )
    # T + mean(log q - log p) is -log mean_k w_k; by Jensen it is <= the mean of -log w_k.
    many = [tf.constant(rng.normal(size=(8, 5)), tf.float32) for _ in "abc"]
    t = objectives.iwae_reconstruction_term(*many)
    bound = t - tf.reduce_mean(many[1] - many[2], axis=0)
    elbo_like = -tf.reduce_mean(objectives.importance_log_weights(*many), axis=0)
    assert np.all(bound.numpy() <= elbo_like.numpy() + 1e-6)


def test_active_units_count_dimensions_whose_mean_varies():
    means = np.stack([np.linspace(-1, 1, 50), np.full(50, 0.3), np.linspace(0, 0.1, 50)], axis=1)
    count, variances = objectives.active_units(means, threshold=0.01)
    assert count == 1
    np.testing.assert_allclose(variances, means.var(axis=0), rtol=1e-5, atol=1e-9)
