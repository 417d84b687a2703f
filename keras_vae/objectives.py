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


def kl_per_dimension(posterior):
    """Closed-form KL(Q(z|X) || P(z)) of each latent dimension, for a diagonal Gaussian posterior
    and a N(0, I) prior.

    KL_j = 0.5 * (mu_j^2 + s_j^2 - 1 - log s_j^2), written from the posterior's own `loc` and
    diagonal scale: `tfd.kl_divergence` against a prior built per call gives the same numbers
    (tests/test_objectives.py) through a hundred more graph ops, which cost the MLP's training
    step about 5% (benchmarks/).

    Args:
        posterior: `tfd.MultivariateNormalDiag` with batch shape `[B]`.

    Returns:
        Tensor of shape `[B, latent_dim]`, in nats.
    """
    loc, scale = posterior.loc, posterior.scale.diag
    return 0.5 * (tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale))


def kl_to_standard_normal(posterior):
    """KL(Q(z|X) || P(z)) = sum_j KL_j (`kl_per_dimension`): a Tensor `[B]`, in nats."""
    return tf.reduce_sum(kl_per_dimension(posterior), axis=-1)


def free_bits_kl(kl_per_dim, free_bits, weights=None):
    """The KL term with free bits (Kingma et al. 2016): sum_j max(lambda, mean_b KL_bj).

    Each latent dimension's KL, averaged over the batch, counts at least `free_bits` (lambda,
    nats): below it the dimension's KL has no gradient, so the encoder can use it without paying
    for it and it is not pushed onto the prior early in training. lambda = 0 gives the plain
    batch mean of the KL. The true KL is still what a model reports.

    Args:
        kl_per_dim: Tensor `[B, latent_dim]` (`kl_per_dimension`).
        free_bits: float >= 0. lambda, nats per dimension.
        weights: optional Tensor `[B]` of example weights (`weighted_mean`).

    Returns:
        A scalar Tensor: the batch's KL term.
    """
    per_dimension = weighted_mean(kl_per_dim, weights)
    return tf.reduce_sum(tf.maximum(per_dimension, tf.cast(free_bits, per_dimension.dtype)))


def weighted_mean(values, weights=None):
    """The batch mean of `values` (`[B, ...]`, over axis 0) with each example counted
    `weights[b]` times: `mean_b(weights[b] * values[b])`, Keras' "sum over batch size".

    Weights that average to 1 over the batch give a weighted average; the trainer's padded last
    batch gives its padding weight 0 and its real examples B / (real examples), so the mean is
    that of the real examples alone, on one device or split across replicas.
    """
    if weights is None:
        return tf.reduce_mean(values, axis=0)
    weights = tf.cast(weights, values.dtype)
    weights = tf.reshape(weights, [-1] + [1] * (values.shape.rank - 1))
    return tf.reduce_mean(weights * values, axis=0)


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


def iwae_reconstruction_term(log_px_given_z, log_pz, log_qz):
    """The part of the negative IWAE bound that is not the closed-form KL: T with -L_K ~= T + KL.

    T = -log (1/K) sum_k w_k + (1/K) sum_k [log P(z_k) - log Q(z_k|X)],  w_k = P(X|z_k) P(z_k) /
    Q(z_k|X), z_k ~ Q(z|X) reparameterized. The second sum estimates -KL(Q(z|X) || P(z)), so T +
    KL has the expectation and the expected gradient of -L_K (Burda et al. 2015), with the KL in
    closed form as the ELBO has it: at K = 1, T = -log P(X|z_1), and T + KL is exactly the
    negative ELBO for the same noise. The model adds the KL with `add_loss` and T in its step.

    Args:
        log_px_given_z, log_pz, log_qz: Tensors `[K, B]`, as for
            `importance_weighted_log_likelihood`.

    Returns:
        Tensor `[B]`, in nats.
    """
    log_w = importance_log_weights(log_px_given_z, log_pz, log_qz)
    return -tfp.math.reduce_logmeanexp(log_w, axis=0) + tf.reduce_mean(log_pz - log_qz, axis=0)


def active_units(posterior_means, threshold=0.01):
    """Active latent units (Burda et al. 2015): dimensions u with Cov_X(E_Q[z_u|X]) > threshold.

    A unit whose posterior mean does not vary across the data carries no information about X
    (its posterior is the same for every example, usually the prior).

    Args:
        posterior_means: array `[N, latent_dim]`, E_Q[z|X] for N examples.
        threshold: float. The variance below which a unit counts as inactive.

    Returns:
        `(count, variances)`: the number of active units and each unit's variance `[latent_dim]`.
    """
    variances = tf.math.reduce_variance(tf.cast(posterior_means, tf.float32), axis=0)
    return int(tf.reduce_sum(tf.cast(variances > threshold, tf.int32))), variances


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
