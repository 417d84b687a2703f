"""What users call on a trained VAE: encode, decode, sample, reconstruct, the ELBO and the
memory-bounded log-likelihood estimates. A mixin of `keras_vae.VAE`, which owns the networks, the
posterior (`posterior`, `decoder_params`), the input checks and the seed generator these use.

Each method takes `condition=`: required by a conditional model (class labels or vectors, one
per example or one for all), refused by an unconditional one.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_vae import estimators, objectives

# One traced decode per model for eager calls: calling a functional Keras model eagerly costs
# ~7 ms of Python per call, the traced function ~0.9 ms (benchmarks/latency.py), which is what
# interactive sampling pays. Kept outside the model so that no tf.function is tracked into its
# SavedModel exports; graph-mode callers (fit, exports) use the plain path.
_EAGER_DECODERS = weakref.WeakKeyDictionary()


def _eager_decoder(model):
    fn = _EAGER_DECODERS.get(model)
    if fn is None:
        # Through a weak reference: a bound method would keep the model (the key) alive forever.
        ref = weakref.ref(model)
        fn = tf.function(lambda z, c=None: ref()._decode_mean(z, c), reduce_retracing=True)
        _EAGER_DECODERS[model] = fn
    return fn


_EAGER_ESTIMATORS = weakref.WeakKeyDictionary()


def _eager_estimator(model, name):
    """One traced `estimators.<name>` per model: the chunk loop runs as a graph, not in Python."""
    fns = _EAGER_ESTIMATORS.setdefault(model, {})
    if name not in fns:
        ref = weakref.ref(model)
        fns[name] = tf.function(
            lambda x, k, seed, budget, c=None: getattr(estimators, name)(
                ref(), x, k, seed, budget, condition=c
            ),
            reduce_retracing=True,
        )
    return fns[name]


class Inference:
    """`VAE`'s methods for a trained model (see `keras_vae.VAE`)."""

    def encode(self, x, condition=None):
        """Returns `(mean, scale)` of Q(z|X) (Q(z|X, c)), each `[B, latent_dim]`."""
        posterior = self.posterior(x, condition)
        return posterior.mean(), posterior.stddev()

    def decode(self, z, condition=None):
        """Returns the mean of P(X|z) (P(X|z, c)) for latents `z` of shape `[B, latent_dim]`."""
        z = self._check_latents(z)
        c = self._condition_vector(condition, tf.shape(z)[0])
        if tf.executing_eagerly():
            return _eager_decoder(self)(z) if c is None else _eager_decoder(self)(z, c)
        return self._decode_mean(z, c)

    def _decode_mean(self, z, c=None):
        mean = self.likelihood.mean(self.decoder_params(z, condition=c))
        # A NaN or inf latent gives a NaN row on every CPU: oneDNN's ReLU on AVX-512 maps NaN to
        # 0, which would turn a broken request into a plausible image. sum(z - z) is exactly 0
        # for a finite row and NaN otherwise; adding it (rather than a select with a NaN
        # constant) keeps int8 TFLite's calibrated ranges intact.
        poison = tf.reduce_sum(z - z, axis=-1)
        poison = tf.reshape(
            poison, tf.concat([tf.shape(poison), tf.ones([len(self.data_shape)], tf.int32)], 0)
        )
        return mean + tf.cast(poison, mean.dtype)

    def reconstruct(self, x, condition=None):
        """Decodes the posterior mean: the deterministic reconstruction of `x` (given c)."""
        x = self._check_inputs(x)
        c = self._condition_vector(condition, tf.shape(x)[0])
        return self.likelihood.mean(self.decoder_params(self._posterior(x, c).mean(), condition=c))

    def sample_prior(self, num_samples, seed=None):
        """Draws `[num_samples, latent_dim]` latents from P(z) = N(0, I).

        `seed` (int) makes the draw repeatable; None draws fresh values from the model's seed
        generator.
        """
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1; received {num_samples!r}.")
        return keras.random.normal(
            (int(num_samples), self.latent_dim),
            seed=self.seed_generator if seed is None else int(seed),
            dtype=self.compute_dtype,
        )

    def sample(self, num_samples, seed=None, condition=None):
        """Draws z ~ P(z) and returns the mean of P(X|z): `[num_samples, *data_shape]`.

        A conditional model needs `condition`: one label or vector for every sample, or one per
        sample. The latents depend on the seed only, so one seed and two classes give the same
        styles of two classes.

        Example:
        >>> vae.sample(16, seed=0, condition=7)  # sixteen 7s
        """
        if not self.conditional and condition is not None:
            self._condition_vector(condition, num_samples)  # refused before any draw
        z = self.sample_prior(num_samples, seed)
        return self.decode(z, condition)

    def elbo_terms(self, x, eps, condition=None):
        """The terms of the negative ELBO (beta ignored) per example, for z = mu + sigma * eps.

        `eps` is standard normal noise `[B, latent_dim]` (the held-out evaluation draws it from
        a stateless seed per batch). Returns a dict of `reconstruction` (-log P(X|z), `[B]`),
        `kl` (KL(Q(z|X) || P(z)), `[B]`), `kl_per_dimension` (`[B, latent_dim]`) and `mean`
        (the posterior mean, `[B, latent_dim]`).
        """
        checked = self._check_inputs(x)
        c = self._condition_vector(condition, tf.shape(checked)[0])
        posterior = self._posterior(checked, c)
        z = objectives.reparameterize(posterior, tf.cast(eps, posterior.loc.dtype))
        params = tf.cast(self.decoder_params(z, condition=c), "float32")
        kl_per_dim = objectives.kl_per_dimension(posterior)
        return {
            "reconstruction": -self.likelihood.log_prob(tf.cast(x, "float32"), params),
            "kl": tf.reduce_sum(kl_per_dim, axis=-1),
            "kl_per_dimension": kl_per_dim,
            "mean": posterior.loc,
        }

    def elbo(self, x, seed=None, condition=None):
        """A one-sample estimate of the ELBO per example, E_Q[log P(X|z)] - KL (beta ignored)."""
        eps = keras.random.normal(
            (tf.shape(x)[0], self.latent_dim),
            seed=self.seed_generator if seed is None else seed,
        )
        terms = self.elbo_terms(x, eps, condition)
        return -objectives.negative_elbo(terms["reconstruction"], terms["kl"])

    def _estimate(self, name, x, num_samples, seed, memory_budget, condition=None):
        """Runs `estimators.<name>` on checked `x`; traced once per model when called eagerly."""
        estimators.check_num_samples(num_samples)
        estimators.pairs_per_chunk(self, num_samples, memory_budget)  # checks the budget early
        x = self._check_inputs(x)
        c = self._condition_vector(condition, tf.shape(x)[0])
        if seed is None:
            seed = keras.random.randint((), 0, 2**31 - 1, seed=self.seed_generator)
        seed = tf.cast(seed, tf.int32)
        if not tf.executing_eagerly():
            return getattr(estimators, name)(self, x, num_samples, seed, memory_budget, condition=c)
        fn = _eager_estimator(self, name)
        if c is None:
            return fn(x, int(num_samples), seed, int(memory_budget))
        return fn(x, int(num_samples), seed, int(memory_budget), c)

    def iw_log_weights(self, x, num_samples, seed=None, memory_budget=None, condition=None):
        """log P(X|z_k) + log P(z_k) - log Q(z_k|X) for z_k ~ Q(z|X): a `[K, B]` tensor.

        `memory_budget` (bytes, default `estimators.DEFAULT_MEMORY_BUDGET`) bounds the
        activations decoded at once; the weights do not depend on it.
        """
        budget = memory_budget or estimators.DEFAULT_MEMORY_BUDGET
        return self._estimate("importance_log_weights", x, num_samples, seed, budget, condition)

    def log_likelihood(self, x, num_samples=1000, seed=None, memory_budget=None, condition=None):
        """Importance-weighted (IWAE) estimate of log P(X) per example, in nats: `[B]`.

        A conditional model estimates log P(X|c) given `condition`, with Q(z|X, c) as the
        proposal; the noise is keyed by the example alone, so two conditions of one example are
        compared on the same draws.

        A lower bound on log P(X) that is >= the ELBO and tightens as `num_samples` grows. The
        K * B decodes run in chunks that hold at most `memory_budget` bytes of activations
        (default `estimators.DEFAULT_MEMORY_BUDGET`, 256 MiB), so any K, batch and image size
        fit; the result does not depend on the budget. `seed` (int) repeats an estimate; each
        example's noise is its own, so `log_likelihood(x[:4])` equals the first four of
        `log_likelihood(x)`.

        Example:
        >>> vae.log_likelihood(x_test[:16], num_samples=5000, seed=0)
        """
        budget = memory_budget or estimators.DEFAULT_MEMORY_BUDGET
        return self._estimate("importance_weighted", x, num_samples, seed, budget, condition)

    def naive_log_likelihood(
        self, x, num_samples=1000, seed=None, memory_budget=None, condition=None
    ):
        """The naive estimate log mean_k P(X|z_k) with z_k ~ P(z): `[B]`, in nats.

        Needs a huge `num_samples` to be useful; compare with `log_likelihood`. Memory is
        bounded as there.
        """
        budget = memory_budget or estimators.DEFAULT_MEMORY_BUDGET
        return self._estimate("naive", x, num_samples, seed, budget, condition)
