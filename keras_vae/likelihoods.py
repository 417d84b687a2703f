"""The decoder's likelihood P(X|z): Bernoulli for binary pixels, Gaussian for real values.

A likelihood turns the decoder's raw output (its "parameters") into a TFP distribution over one
example, with the data dimensions as the event, so `log_prob` sums over them.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# A learned sigma below this makes log P(X|z) unbounded on data with constant pixels: the model
# would shrink sigma forever instead of learning. 1e-3 is far below any useful pixel noise.
MIN_SIGMA = 1e-3

# Where a learned sigma starts. A latent direction is worth its KL only where the data vary along
# it by more than sigma^2 (the linear VAE's condition for using it), and sigma moves at the
# optimizer's pace (Adam: log(sigma) by ~1e-3 a step) while the encoder answers at once. From 1,
# above the spread of data of unit scale, the posterior fell to the prior in ~100 steps; sigma
# then came down to the data's own std, where no latent gains anything, and stayed (the ring:
# KL 0.005 nats, sigma 0.79 = its std per axis; min-max scaled tables: KL 0). From 0.1, near or
# below the noise a decoder leaves on such data (0.08 to 0.2 measured on tables, digits and photo
# patches in [0, 1]), the latents are used from the first steps and sigma moves to the residual.
# Standardize data far from unit scale.
INITIAL_SIGMA = 0.1

# The spelling of a learned sigma that the CLI (`--sigma learned`) and configs use; None is the same.
LEARNED = "learned"
# A shared sigma set to its analytic optimum on each training batch (Rybkin et al. 2021).
CALIBRATED = "calibrated"
# How fast the calibrated sigma that evaluation and serving use follows the batches' optima: an
# exponential average of their mean squared errors, over about 100 steps.
CALIBRATION_MOMENTUM = 0.99


def check_sigma(sigma):
    """Returns `sigma` as a float, None for a learned one ("learned" or None), or "calibrated".

    Raises:
        ValueError: for anything else than a positive number, "learned", "calibrated" or None.
    """
    if sigma is None or (isinstance(sigma, str) and sigma == LEARNED):
        return None
    if isinstance(sigma, str) and sigma == CALIBRATED:
        return CALIBRATED
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(
            f"sigma must be a positive number, 'calibrated', or 'learned' (or None) to learn "
            f"one per data dimension; received sigma={sigma!r}. Pass e.g. sigma=0.1 or "
            "sigma='learned'."
        )
    return float(sigma)


@keras.saving.register_keras_serializable(package="keras_vae")
class Bernoulli(keras.layers.Layer):
    """P(X|z) = Bernoulli(sigmoid(f(z))) per data dimension, for pixels in [0, 1].

    The decoder outputs logits. Fractional targets in [0, 1] are accepted and give the usual
    binary cross-entropy; they should be binarized for an exact log-likelihood.

    Args:
        event_ndims: int. Number of trailing data dimensions summed by `log_prob`.
    """

    requires_unit_interval = True

    def __init__(self, event_ndims=1, **kwargs):
        super().__init__(**kwargs)
        self.event_ndims = event_ndims

    def distribution(self, params):
        return tfd.Independent(
            tfd.Bernoulli(logits=params, dtype=params.dtype),
            reinterpreted_batch_ndims=self.event_ndims,
        )

    def log_prob(self, x, params):
        # Written out rather than through tfd.Bernoulli.log_prob, which rounds fractional x.
        # max(l, 0) - l * x + log(1 + exp(-|l|)): binary cross-entropy, stable and broadcasting.
        log_p = -(tf.nn.relu(params) - params * x + tf.math.log1p(tf.exp(-tf.abs(params))))
        return tf.reduce_sum(log_p, axis=list(range(-self.event_ndims, 0)))

    @classmethod
    def for_event(cls, event_shape, sigma=None, **kwargs):
        """The likelihood of examples of `event_shape` (`sigma` is the Gaussian's; ignored)."""
        return cls(event_ndims=len(event_shape), **kwargs)

    def training_log_prob(self, x, params):
        """log P(X|z) as a training step uses it: `log_prob`."""
        return self.log_prob(x, params)

    def mean(self, params):
        return tf.sigmoid(params)

    def get_config(self):
        return {**super().get_config(), "event_ndims": self.event_ndims}


@keras.saving.register_keras_serializable(package="keras_vae")
class ContinuousBernoulli(Bernoulli):
    """P(X|z) = ContinuousBernoulli(sigmoid(f(z))) per data dimension, for grey pixels in [0, 1].

    The Bernoulli's log-likelihood of a fractional pixel is not a density: it is the same
    cross-entropy for every target and misses the normalizer C(lambda) = 2 atanh(1 - 2 lambda) /
    (1 - 2 lambda), so the "VAE" it trains is no probabilistic model of grey images
    (Loaiza-Ganem and Cunningham 2019). The continuous Bernoulli adds log C; TFP's
    `tfd.ContinuousBernoulli` computes it in logit space, stable at lambda = 1/2 (logit 0) where
    the formula is 0/0. Its mean, which `decode` returns, is not lambda: lambda / (2 lambda - 1) +
    1 / (2 atanh(1 - 2 lambda)).

    Args:
        event_ndims: int. Number of trailing data dimensions summed by `log_prob`.

    Example:
    >>> vae = keras_vae.build_vae((28, 28, 1), likelihood="continuous_bernoulli")
    """

    def distribution(self, params):
        return tfd.Independent(
            tfd.ContinuousBernoulli(logits=params), reinterpreted_batch_ndims=self.event_ndims
        )

    def log_prob(self, x, params):
        return self.distribution(params).log_prob(x)

    def mean(self, params):
        return tfd.ContinuousBernoulli(logits=params).mean()


@keras.saving.register_keras_serializable(package="keras_vae")
class Gaussian(keras.layers.Layer):
    """P(X|z) = N(X | f(z), sigma^2 I), with sigma fixed or learned.

    sigma is the model's regularization knob: a large sigma lets reconstructions be blurry and
    weighs the KL more; a small one asks for sharp reconstructions.

    Args:
        event_shape: tuple of ints. Shape of one example.
        sigma: float, "learned", None or "calibrated". Fixed standard deviation; "learned" (or
            None, the same) learns one per data dimension, starting at `INITIAL_SIGMA` (0.1, for
            data of unit scale) and floored at `MIN_SIGMA` (the config stores it as None);
            "calibrated" is one shared sigma set in each training step to the batch's optimum,
            sqrt(mean squared error) (the sigma-VAE, Rybkin et al. 2021), which cannot lag
            behind the decoder nor collapse the posterior; evaluation and serving use the
            average of those optima (`CALIBRATION_MOMENTUM`), never the held-out data's own.

    Example:
    >>> likelihood = Gaussian((28, 28, 1), sigma="learned")
    """

    requires_unit_interval = False

    def __init__(self, event_shape, sigma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(event_shape)
        self.sigma = check_sigma(sigma)
        if self.sigma is None:
            self.log_sigma = self.add_weight(
                shape=self.event_shape,
                initializer=keras.initializers.Constant(math.log(INITIAL_SIGMA)),
                name="log_sigma",
            )
        elif self.sigma == CALIBRATED:
            self.log_sigma = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(math.log(INITIAL_SIGMA)),
                trainable=False,
                aggregation="mean",
                name="calibrated_log_sigma",
            )
        self.built = True

    @classmethod
    def for_event(cls, event_shape, sigma=1.0, **kwargs):
        """The likelihood of examples of `event_shape` with standard deviation `sigma`."""
        return cls(event_shape, sigma=sigma, **kwargs)

    def scale(self, dtype="float32"):
        if self.sigma is None or self.sigma == CALIBRATED:
            return tf.maximum(tf.exp(tf.cast(self.log_sigma, dtype)), MIN_SIGMA)
        return tf.constant(self.sigma, dtype)

    def distribution(self, params, scale=None):
        scale = self.scale(params.dtype) if scale is None else scale
        return tfd.Independent(
            tfd.Normal(loc=params, scale=scale), reinterpreted_batch_ndims=len(self.event_shape)
        )

    def log_prob(self, x, params):
        return self.distribution(params).log_prob(x)

    def training_log_prob(self, x, params):
        """log P(X|z) as a training step uses it: with sigma "calibrated", at the batch's own
        optimal sigma (and the evaluation's sigma moves towards it); otherwise `log_prob`."""
        if self.sigma != CALIBRATED:
            return self.log_prob(x, params)
        # The maximum-likelihood sigma of the batch. No gradient through it: at the optimum the
        # objective's derivative in sigma is 0, so the decoder's gradient is the same either way.
        mse = tf.stop_gradient(tf.reduce_mean(tf.square(x - params)))
        sigma = tf.maximum(tf.sqrt(mse), MIN_SIGMA)
        average = CALIBRATION_MOMENTUM * tf.exp(2.0 * self.log_sigma) + (
            1.0 - CALIBRATION_MOMENTUM
        ) * tf.cast(mse, self.log_sigma.dtype)
        self.log_sigma.assign(0.5 * tf.math.log(tf.maximum(average, MIN_SIGMA**2)))
        return self.distribution(params, scale=sigma).log_prob(x)

    def mean(self, params):
        return params

    def get_config(self):
        return {**super().get_config(), "event_shape": self.event_shape, "sigma": self.sigma}


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous_bernoulli": ContinuousBernoulli,
    "gaussian": Gaussian,
}


def make_likelihood(name, event_shape, sigma=1.0):
    """Builds the likelihood named `name` (a key of `LIKELIHOODS`) for examples of `event_shape`.

    `sigma` (float, "learned" or None, the same as "learned") is the Gaussian's standard
    deviation; the others ignore it.
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}.")
    return LIKELIHOODS[name].for_event(tuple(event_shape), sigma=sigma, name="likelihood")
