"""The maths of the VAE objective, as pure functions of tensors.

Everything here is backend-free arithmetic on TensorFlow tensors: the model calls these, and so do
the benchmarks and the exports, so each formula is written once.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def standard_normal_prior(latent_dim, dtype="float32"):
    """The prior P(z) = N(0, I) over a `latent_dim`-dimensional latent space."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], dtype=dtype))


def kl_to_standard_normal(posterior):
    """Closed-form KL(Q(z|X) || P(z)) for a diagonal Gaussian posterior and a N(0, I) prior.

    KL = 0.5 * sum_j (mu_j^2 + s_j^2 - 1 - log s_j^2), summed over the latent dimensions,
    written from the posterior's own `loc` and diagonal scale: `tfd.kl_divergence` against a
    prior built per call gives the same numbers (tests/test_objectives.py) through a hundred more
    graph ops, which cost the MLP's training step about 5% (benchmarks/).

    Args:
        posterior: `tfd.MultivariateNormalDiag` with batch shape `[B]`.

    Returns:
        Tensor of shape `[B]`, in nats.
    """
    loc, scale = posterior.loc, posterior.scale.diag
    return 0.5 * tf.reduce_sum(
        tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale), axis=-1
    )


def reparameterize(posterior, eps):
    """z = mu + sigma * eps: a sample of Q(z|X) for standard normal `eps` (any leading dims).

    What `posterior.sample()` computes, written out so the gradient flows to mu and sigma and a
    training step carries no bijector bookkeeping (measured ~2% of the MLP step, benchmarks/).
    """
    return posterior.loc + posterior.scale.diag * eps


def negative_elbo(reconstruction_nll, kl, beta=1.0):
    """Negative ELBO per example: -E_Q[log P(X|z)] + beta * KL(Q(z|X) || P(z)).

    With `beta=1` this is an upper bound on -log P(X); other values give the beta-VAE objective.
    """
    return reconstruction_nll + beta * kl


def importance_weighted_log_likelihood(log_px_given_z, log_pz, log_qz):
    """The importance-weighted (IWAE) estimate of log P(X), with Q(z|X) as the proposal.

    log P(X) ~= log (1/K) sum_k P(X|z_k) P(z_k) / Q(z_k|X),   z_k ~ Q(z|X).

    It is a lower bound on log P(X) that equals the ELBO in expectation at K = 1 and tightens
    monotonically (in expectation) as K grows.

    Args:
        log_px_given_z: Tensor `[K, B]`, log P(X|z_k) summed over the data dimensions.
        log_pz: Tensor `[K, B]`, log P(z_k) under the prior.
        log_qz: Tensor `[K, B]`, log Q(z_k|X) under the posterior.

    Returns:
        Tensor `[B]`, in nats.
    """
    log_w = importance_log_weights(log_px_given_z, log_pz, log_qz)
    return tfp.math.reduce_logmeanexp(log_w, axis=0)


def importance_log_weights(log_px_given_z, log_pz, log_qz):
    """log w = log P(X|z) + log P(z) - log Q(z|X): the log importance weight of each sample z."""
    return log_px_given_z + log_pz - log_qz


def naive_log_likelihood(log_px_given_z):
    """The naive Monte Carlo estimate log mean_k P(X|z_k), with z_k drawn from the prior.

    Unbiased for P(X) but with a variance so large for any realistic decoder that it needs an
    enormous K: almost every z from the prior explains X badly. Kept to show why importance
    sampling is needed.

    Args:
        log_px_given_z: Tensor `[K, B]`, log P(X|z_k) with z_k ~ P(z).

    Returns:
        Tensor `[B]`, in nats.
    """
    return tfp.math.reduce_logmeanexp(log_px_given_z, axis=0)


def nats_to_bits_per_dim(nats, num_dims):
    """Converts a negative log-likelihood in nats per example to bits per data dimension."""
    return nats / (num_dims * math.log(2.0))
