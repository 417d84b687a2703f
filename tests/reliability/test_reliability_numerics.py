"""Numerics at the edges: blank images, huge latents, tiny posterior scales, extreme log weights.

Every loss and output must stay finite; the posterior scale never drops below
`keras_vae.vae.MIN_POSTERIOR_SCALE`; log-likelihood estimates go through log-sum-exp.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.vae import MIN_POSTERIOR_SCALE

SHAPE = (8, 8, 1)


def _model(arch, likelihood="bernoulli"):
    keras.utils.set_random_seed(1)
    kwargs = {"hidden_units": (16,)} if arch == "mlp" else {"filters": (4, 8), "dense_units": 8}
    sigma = None if likelihood == "gaussian" else 1.0
    vae = keras_vae.build_vae(
        SHAPE, latent_dim=2, arch=arch, likelihood=likelihood, sigma=sigma, seed=1, **kwargs
    )
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    return vae


def _all_finite(*tensors):
    return all(np.isfinite(np.asarray(t)).all() for t in tensors)


@pytest.mark.slow
def test_blank_images_give_finite_losses_outputs_and_gradients():
    vae = _model("mlp")
    for fill in (0.0, 1.0):  # all black, then all white
        x = np.full((32, *SHAPE), fill, "float32")
        # Training on nothing but blank images pushes the decoder's logits towards +-inf; the
        # Bernoulli log-probability must stay finite all the way (log-sigmoid, not log(sigmoid)).
        history = vae.fit(x, epochs=3, batch_size=32, verbose=0)
        for name in ("loss", "reconstruction_loss", "kl_loss"):
            assert _all_finite(history.history[name]), (fill, name, history.history[name])
        assert _all_finite(*[w.numpy() for w in vae.weights])
        mean, scale = vae.encode(x)
        assert _all_finite(
            vae(x),
            vae.reconstruct(x),
            mean,
            scale,
            vae.elbo(x, seed=0),
            vae.log_likelihood(x, num_samples=16, seed=0),
            vae.naive_log_likelihood(x, num_samples=16, seed=0),
        )
        assert float(tf.reduce_min(scale)) >= MIN_POSTERIOR_SCALE * (1 - 1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("value", [1e6, -1e6, 3e7])
def test_huge_latents_decode_to_finite_outputs(likelihood, value):
    vae = _model("mlp", likelihood)
    z = np.full((4, 2), value, "float32")
    z[1, 0] = -value
    out = vae.decode(z).numpy()
    assert out.shape == (4, *SHAPE)
    assert _all_finite(out)
    if likelihood == "bernoulli":
        assert out.min() >= 0.0 and out.max() <= 1.0
    # The log-probability of data under such a decoding is finite too (extreme logits).
    x = np.round(vae.sample(4, seed=0).numpy())
    params = vae.decoder(tf.constant(z))
    assert _all_finite(vae.likelihood.log_prob(tf.constant(x), params))


def _collapse_posterior_scale(vae, raw=-1e4):
    """Sets the encoder's last layer so every posterior scale is softplus(raw) ~ 0."""
    last = vae.encoder.layers[-1]
    kernel, bias = last.get_weights()
    latent = vae.latent_dim
    kernel[:, latent:] = 0.0
    bias[latent:] = raw
    last.set_weights([kernel, bias])


def test_tiny_posterior_scales_hit_the_floor_and_stay_finite():
    vae = _model("mlp")
    _collapse_posterior_scale(vae)
    x = (np.random.default_rng(0).random((16, *SHAPE)) < 0.5).astype("float32")
    _, scale = vae.encode(x)
    # softplus(-1e4) is exactly 0 in float32: without the floor log(scale) would be -inf.
    assert float(tf.nn.softplus(tf.constant(-1e4))) == 0.0
    np.testing.assert_allclose(scale.numpy(), MIN_POSTERIOR_SCALE, rtol=1e-6)
    kl = objectives.kl_to_standard_normal(vae.posterior(x))
    assert _all_finite(kl, vae.elbo(x, seed=0))
    # A point-mass-like posterior makes the importance weights extreme: log Q(z|X) is ~ +18
    # nats per dimension. IWAE must still be finite.
    log_w = vae.iw_log_weights(x, 32, seed=0)
    assert _all_finite(log_w, vae.log_likelihood(x, num_samples=32, seed=0))
    # And a training step from this state has finite gradients and weights.
    history = vae.fit(x, epochs=1, batch_size=16, verbose=0)
    assert _all_finite(history.history["loss"], *[w.numpy() for w in vae.weights])


def test_log_likelihood_estimates_use_log_sum_exp():
    # Log weights far beyond float32's exp range (exp(89) overflows): a naive log(mean(exp(w)))
    # gives inf or -inf; log-sum-exp gives the exact answer.
    log_w = tf.constant([[1e4, -1e4], [0.0, -1e4 - 1.0], [-1e4, -1e4 - 2.0]], tf.float32)
    with np.errstate(over="ignore", divide="ignore"):
        naive = np.log(np.mean(np.exp(log_w.numpy()), axis=0))
    assert not np.isfinite(naive).all()
    want = [1e4 - np.log(3.0), -1e4 + np.log((1 + np.exp(-1) + np.exp(-2)) / 3)]
    iwae = objectives.importance_weighted_log_likelihood(
        log_w, tf.zeros_like(log_w), tf.zeros_like(log_w)
    )
    np.testing.assert_allclose(iwae.numpy(), want, rtol=1e-6)
    naive_ll = objectives.naive_log_likelihood(log_w)
    np.testing.assert_allclose(naive_ll.numpy(), want, rtol=1e-6)


def test_learned_gaussian_sigma_has_a_floor():
    from keras_vae.likelihoods import MIN_SIGMA

    # A learned sigma that shrinks without bound (constant data can be fitted exactly) would
    # send -log(sigma) to +inf; the floor keeps the loss finite.
    vae = _model("mlp", "gaussian")
    vae.likelihood.log_sigma.assign(np.full(SHAPE, -200.0, "float32"))  # exp underflows to 0
    np.testing.assert_allclose(vae.likelihood.scale().numpy(), MIN_SIGMA)
    x = np.full((32, *SHAPE), 0.5, "float32")
    assert _all_finite(vae.elbo(x, seed=0), vae.log_likelihood(x, num_samples=8, seed=0))
    history = vae.fit(x, epochs=2, batch_size=32, verbose=0)
    assert _all_finite(history.history["loss"], *[w.numpy() for w in vae.weights])
    assert vae.likelihood.scale().numpy().min() >= MIN_SIGMA
