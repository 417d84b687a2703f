import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

import keras_vae
from keras_vae import likelihoods
from tests.contracts import assert_config_round_trip


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
    assert_config_round_trip(lik, event_shape=(2, 3), sigma=0.5)
    assert_config_round_trip(likelihoods.Bernoulli(event_ndims=3), event_ndims=3)


def test_learned_sigma_starts_below_the_spread_of_unit_scale_data():
    # Started at 1, above the ring's per-axis std (0.8) and any [0, 1] pixel's, the posterior
    # collapsed before sigma could shrink (tests/test_ring.py).
    lik = likelihoods.make_likelihood("gaussian", (3, 2), sigma=None)
    np.testing.assert_allclose(lik.scale(), np.full((3, 2), likelihoods.INITIAL_SIGMA), rtol=1e-6)
    assert likelihoods.INITIAL_SIGMA <= 0.1


def test_learned_sigma_config_round_trip_and_old_configs():
    lik = likelihoods.Gaussian((2, 3), sigma=None, name="likelihood")
    clone = assert_config_round_trip(lik, event_shape=(2, 3), sigma=None)
    assert [w.shape for w in clone.trainable_weights] == [(2, 3)]
    # A config written before INITIAL_SIGMA existed has the same keys: sigma None is learned.
    old = {"name": "likelihood", "trainable": True, "dtype": "float32", "event_shape": [2]}
    assert likelihoods.Gaussian.from_config({**old, "sigma": None}).trainable_weights


def test_saved_learned_sigma_is_kept_not_reset_to_the_initial_value(tmp_path):
    vae = keras_vae.build_vae((2,), latent_dim=2, likelihood="gaussian", sigma=None)
    vae.likelihood.log_sigma.assign([0.0, -1.0])  # e.g. a model trained before the change
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    np.testing.assert_allclose(loaded.likelihood.scale(), [1.0, np.exp(-1.0)], rtol=1e-6)


@pytest.mark.parametrize("learned", ["learned", None])
def test_learned_is_the_same_as_none_and_saved_as_none(learned):
    # The CLI's default is `--sigma learned`; the library takes the same word.
    lik = likelihoods.make_likelihood("gaussian", (2,), sigma=learned)
    assert lik.sigma is None and [w.name for w in lik.trainable_weights] == ["log_sigma"]
    assert lik.get_config()["sigma"] is None
    vae = keras_vae.build_vae((2,), latent_dim=1, likelihood="gaussian", sigma=learned)
    assert vae.sigma is None and vae.likelihood.sigma is None
    clone = keras_vae.VAE.from_config(vae.get_config())
    assert clone.likelihood.trainable_weights[0].name == "log_sigma"


def test_unknown_sigma_word_says_what_is_accepted():
    with pytest.raises(ValueError, match=r"or 'learned' .*received sigma='learn'"):
        likelihoods.Gaussian((2,), sigma="learn")


def _continuous_bernoulli_log_density(x, logits):
    """log C(lambda) + x log lambda + (1 - x) log(1 - lambda), in float64 from the formula."""
    lam = 1 / (1 + np.exp(-logits.astype("float64")))
    log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    return x * np.log(lam) + (1 - x) * np.log(1 - lam) + log_c


def test_continuous_bernoulli_log_density_matches_the_formula_and_tfp():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3, size=(6, 4, 2)).astype("float32")
    x = rng.uniform(size=(6, 4, 2)).astype("float32")
    lik = likelihoods.ContinuousBernoulli(event_ndims=2)
    expected = _continuous_bernoulli_log_density(x, logits).sum(axis=(1, 2))
    np.testing.assert_allclose(lik.log_prob(x, logits), expected, rtol=1e-4, atol=1e-4)
    tfp_value = tfp.distributions.ContinuousBernoulli(logits=logits).log_prob(x)
    np.testing.assert_allclose(lik.log_prob(x, logits), tf.reduce_sum(tfp_value, [1, 2]), rtol=1e-6)
    # A density, unlike the Bernoulli's cross-entropy: it integrates to 1 over [0, 1].
    grid = (np.arange(20000, dtype="float32") + 0.5) / 20000
    for logit in (-4.0, 0.3, 6.0):
        density = np.exp(likelihoods.ContinuousBernoulli(0).log_prob(grid, np.float32(logit)))
        assert np.mean(density) == pytest.approx(1.0, abs=1e-3)


def test_continuous_bernoulli_normalizer_is_stable_at_one_half():
    # lambda = 1/2 (logit 0) is 0/0 in the formula: C = 2, so the density is 2 * 0.5 = 1, the
    # uniform one, for any x.
    lik = likelihoods.ContinuousBernoulli(event_ndims=1)
    logits = np.array([[-1e-2, -1e-4, -1e-7, 0.0, 1e-7, 1e-4, 1e-2]], "float32").T
    values = lik.log_prob(np.full_like(logits, 0.3), logits).numpy()
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values, 0.0, atol=3e-3)
    assert np.all(np.abs(np.diff(values)) < 2e-3)  # no jump across 1/2
    means = lik.mean(logits).numpy()
    np.testing.assert_allclose(means, 0.5, atol=2e-3)
    assert np.all(np.diff(means[:, 0]) >= 0)  # the mean rises with the logit


def test_continuous_bernoulli_is_built_by_name_and_serializes():
    lik = likelihoods.make_likelihood("continuous_bernoulli", (8, 8, 1))
    assert isinstance(lik, likelihoods.ContinuousBernoulli) and lik.requires_unit_interval
    assert_config_round_trip(lik, event_ndims=3)


def test_calibrated_sigma_is_the_batch_optimum_in_training_and_its_average_elsewhere():
    lik = likelihoods.Gaussian((3,), sigma="calibrated")
    x = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], "float32")
    params = np.zeros_like(x)
    sigma = np.sqrt(np.mean(x**2))  # the maximum-likelihood sigma of this batch
    expected = stats.norm(0.0, sigma).logpdf(x).sum(axis=1)
    np.testing.assert_allclose(lik.training_log_prob(x, params), expected, rtol=1e-5)
    # Evaluation keeps the running average of the optima: one step moved it 1% of the way.
    start = likelihoods.INITIAL_SIGMA**2
    average = np.sqrt(0.99 * start + 0.01 * sigma**2)
    np.testing.assert_allclose(lik.scale(), average, rtol=1e-5)
    np.testing.assert_allclose(lik.log_prob(x, params), stats.norm(0, average).logpdf(x).sum(1),
                               rtol=1e-5)  # fmt: skip
    assert lik.trainable_weights == []  # set, not learned by the optimizer


def test_calibrated_sigma_follows_the_residual_and_is_saved(tmp_path):
    # 4-D noise of std 0.5 through a 1-D latent: three directions stay unexplained, so the
    # shared optimal sigma is near 0.5 * sqrt(3/4) ~ 0.43 after training.
    x = np.random.default_rng(0).normal(scale=0.5, size=(1024, 4)).astype("float32")
    vae = keras_vae.build_vae(
        (4,), latent_dim=1, likelihood="gaussian", sigma="calibrated", seed=0, hidden_units=(32,)
    )
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    vae.fit(x, epochs=10, batch_size=64, verbose=0)
    sigma = float(vae.likelihood.scale())
    assert 0.35 < sigma < 0.55, sigma
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert loaded.likelihood.sigma == "calibrated"
    np.testing.assert_allclose(float(loaded.likelihood.scale()), sigma, rtol=1e-6)
    assert_config_round_trip(vae.likelihood, sigma="calibrated")
