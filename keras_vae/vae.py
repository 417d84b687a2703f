"""The variational autoencoder: a subclassed `keras.Model`.

The encoder gives the posterior Q(z|X) = N(mu(X), diag sigma(X)^2) as a TFP
`MultivariateNormalDiag`; `call` adds beta * KL(Q(z|X) || P(z)) with `add_loss` and decodes a
reparameterized z; `train_step` adds the reconstruction term -log P(X|z) and minimizes the sum,
the negative ELBO.

Built with `num_classes` (class labels) or `condition_dim` (float vectors) it is a conditional
VAE (Sohn et al. 2015): encoder Q(z|X, c), decoder P(X|z, c), the same prior N(0, I); `fit`
takes `(x, c)` pairs and every method that encodes or decodes takes `condition=`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import checks, conditions, networks, objectives, standardize
from keras_vae import likelihoods as likelihoods_lib
from keras_vae.inference import Inference

tfd = tfp.distributions

# What `VAE(objective=...)` minimizes: the negative ELBO, or the negative importance-weighted bound
# with `k` samples per example.
OBJECTIVES = ("elbo", "iwae")

# softplus(raw) can underflow to 0 for very negative encoder outputs; log(0) in the KL and in
# log Q(z|X) would then be -inf. The floor keeps every posterior a proper, finite Gaussian.
MIN_POSTERIOR_SCALE = 1e-4


def _first_replica(value):
    """The first replica's part of a distributed value, or of each in a tuple, list or dict."""
    if isinstance(value, (tuple, list)):
        return type(value)(_first_replica(v) for v in value)
    if isinstance(value, dict):
        return {k: _first_replica(v) for k, v in value.items()}
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _normalized_weights(weights, local_batch):
    """Sample weights `[B]` rescaled so that they average to 1 over the global batch (summed
    across replicas): then `objectives.weighted_mean` on each replica, divided by the number of
    replicas as `train_step` does, adds up to the weighted average of the whole global batch.
    None stays None; all-zero weights stay zero."""
    if weights is None:
        return None
    weights = tf.cast(tf.reshape(weights, [-1]), "float32")
    total = tf.reduce_sum(weights)
    size = tf.cast(local_batch, "float32")
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, total)
        size = size * ctx.num_replicas_in_sync
    return weights * tf.math.divide_no_nan(size, total)


def _on_examples(network, x, c=None):
    """`network(x)` (`network([x, c])` with a condition), for an empty batch too: oneDNN's Conv2D
    returns a wrongly shaped result on zero examples ("Incompatible shapes: [0,28,28,4] vs.
    [1,1,1,8]"), so an empty batch runs one zero example and keeps none of its output."""
    n = tf.shape(x)[0]

    def nonempty(t):
        one = tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype)
        return tf.cond(n > 0, lambda: t, lambda: one)

    if c is None:
        return network(nonempty(x))[:n]
    return network([nonempty(x), nonempty(c)])[:n]


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(Inference, keras.Model):
    """A variational autoencoder trained by maximizing the ELBO.

    Args:
        encoder: keras.Model. Maps `[B, *data_shape]` to `[B, 2 * latent_dim]` (posterior mean,
            then an unconstrained scale).
        decoder: keras.Model. Maps `[B, latent_dim]` to `[B, *data_shape]`, the parameters of
            P(X|z): logits for "bernoulli", the mean for "gaussian".
        likelihood: str. "bernoulli" (binary pixels), "continuous_bernoulli" (grey pixels in
            [0, 1]) or "gaussian" (real values).
        sigma: float, "learned", None or "calibrated". The Gaussian likelihood's standard
            deviation; "learned" (or None, the same; the config stores None) learns one per data
            dimension, "calibrated" sets a shared one to each batch's optimum (sigma-VAE).
            Ignored for "bernoulli".
        beta: float. Weight of the KL term (1 gives the ELBO; other values a beta-VAE). The
            weight in use is `kl_weight`, a variable that `keras_vae.KLWarmup` ramps up to beta.
        seed: int or None. Seeds the model's own random draws (posterior samples in training).
        standardize_latents: bool. Keep a `LatentFrame` that `keras_vae.StandardizeLatents`
            (a callback) moves after each epoch so the codes match P(z) = N(0, I): an exact
            change of coordinates that lowers the KL and keeps prior samples on the data.
        free_bits: float. Free bits (Kingma et al. 2016), nats per latent dimension: each
            dimension's batch-mean KL counts at least this much in the objective
            (`objectives.free_bits_kl`); 0 turns it off. `kl_loss` stays the true KL.
        objective: str. "elbo" (the negative ELBO) or "iwae" (the negative importance-weighted
            bound with `k` samples per example, Burda et al. 2015; beta 1, no free bits).
        k: int. Importance samples per example for objective "iwae"; k = 1 is the ELBO.
        num_classes: int or None. Makes the VAE conditional on a class label c in
            0..num_classes-1: the networks take its one-hot as their second input (encoder
            `[x, c]`, decoder `[z, c]`), `fit` takes `(x, labels)` and the methods
            `condition=labels`.
        condition_dim: int or None. Makes it conditional on a float vector c of this length
            instead (the networks take c itself). At most one of the two; None and None (the
            default) is the unconditional VAE, unchanged.

    Example:
    >>> encoder, decoder = keras_vae.build_mlp((64,), latent_dim=2)
    >>> vae = keras_vae.VAE(encoder, decoder, likelihood="bernoulli")
    >>> vae.compile(optimizer="adam")
    >>> vae.fit(x_train, epochs=10, validation_data=x_val)
    >>> images = vae.sample(16, seed=0)
    """

    def __init__(
        self,
        encoder,
        decoder,
        likelihood="bernoulli",
        sigma=1.0,
        beta=1.0,
        seed=None,
        standardize_latents=True,
        free_bits=0.0,
        objective="elbo",
        k=1,
        num_classes=None,
        condition_dim=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        checks.check_objective(beta, free_bits, objective, k, OBJECTIVES)
        self.condition_size = conditions.check_condition_args(num_classes, condition_dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.encoder = encoder
        self.decoder = decoder
        if self.conditional:
            self.latent_dim = conditions.check_networks(encoder, decoder, self.condition_size)
        else:
            self.latent_dim = checks.check_networks(encoder, decoder)
        self.data_shape = checks.static_shape(decoder.output.shape[1:])
        self.likelihood_name = likelihood
        # "learned" is stored as None, the spelling saved configs have always used.
        self.sigma = None if isinstance(sigma, str) and sigma == likelihoods_lib.LEARNED else sigma
        self.beta = float(beta)
        self.free_bits = float(free_bits)
        self.objective = objective
        self.k = int(k)
        self.seed = seed
        # Read by the compiled step, so a schedule (KLWarmup) can move it during `fit`. A plain
        # tf.Variable, outside Keras' weights: the .keras file keeps its format (files saved
        # before it existed load), and a loaded model starts at beta.
        self.kl_weight = tf.Variable(self.beta, trainable=False, dtype="float32", name="kl_weight")
        self.likelihood = likelihoods_lib.make_likelihood(likelihood, self.data_shape, sigma)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.standardize_latents = bool(standardize_latents)
        if self.standardize_latents:
            self.latent_frame = standardize.LatentFrame(self.latent_dim, name="latent_frame")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        # The bound a model trained on the IWAE objective reports, beside its loss: named with K.
        self.bound_tracker = None
        if self.objective == "iwae":
            self.bound_tracker = keras.metrics.Mean(name=f"negative_iwae_k{self.k}")
        self.built = True

    # ----------------------------------------------------------------------------------------
    # Input checks (keras_vae/checks.py).

    def _check_inputs(self, x):
        unit = self.likelihood.requires_unit_interval
        return checks.check_inputs(x, self.data_shape, unit, self.compute_dtype)

    def _check_latents(self, z):
        return checks.check_latents(z, self.latent_dim, self.compute_dtype)

    def _check_data(self, data, name, pairs=False):
        unit = self.likelihood.requires_unit_interval
        checks.check_data(data, name, self.data_shape, unit, pairs=pairs)

    @property
    def conditional(self):
        """Whether the model is conditional (built with `num_classes` or `condition_dim`)."""
        return self.condition_size is not None

    def _condition_vector(self, condition, batch_size):
        """The networks' condition input `[batch_size, condition_size]` for a user's
        `condition=`, checked; None for an unconditional model (which refuses a condition)."""
        if not self.conditional:
            if condition is not None:
                conditions.refuse_condition(condition)
            return None
        return conditions.condition_vector(
            condition, self.num_classes, self.condition_dim, batch_size, self.compute_dtype
        )

    def _check_pairs(self, x, y, name):
        """A conditional model's data: `x` with conditions `y`, or a dataset of `(x, c)`."""
        classes, dim = self.num_classes, self.condition_dim
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            c = spec[1] if isinstance(spec, tuple) and len(spec) > 1 else None
            conditions.check_condition_data(c, name, classes, dim)
            return
        if y is None and isinstance(x, tuple) and len(x) >= 2:
            x, y = x[0], x[1]
        if not isinstance(x, np.ndarray) and not (tf.is_tensor(x) and tf.executing_eagerly()):
            return  # a generator or PyDataset: checked per batch in the graph
        conditions.check_condition_data(y, name, classes, dim, num_examples=len(x))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) builds a distributed model from the first batch reduced as one value,
        # which MultiWorkerMirroredStrategy cannot do for a tuple such as (x, y) or the
        # trainer's (x, y, sample_weight) ("unsupported type PerReplica"). Only the shapes
        # matter there: build from the first replica's part instead.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                data_batch = _first_replica(next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x, "x", pairs=self.conditional)
        validation = kwargs.get("validation_data")
        if validation is not None:
            self._check_data(validation, "validation_data", pairs=True)
        if self.conditional:
            self._check_pairs(x, args[0] if args else kwargs.get("y"), "x")
            if validation is not None:
                pair = validation if isinstance(validation, tuple) else (validation,)
                self._check_pairs(pair[0], pair[1] if len(pair) > 1 else None, "validation_data")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x, "x", pairs=self.conditional)
        if self.conditional:
            self._check_pairs(x, args[0] if args else kwargs.get("y"), "x")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """The mean of P(X|z) at the posterior mean; a conditional model takes `(x, c)`."""
        self._check_data(x, "x", pairs=self.conditional)
        if self.conditional:
            self._check_pairs(x, None, "x")
        return super().predict(x, *args, **kwargs)

    def predict_step(self, data):
        if not self.conditional:
            return super().predict_step(data)
        x, c, _ = keras.utils.unpack_x_y_sample_weight(data)
        if c is None and isinstance(x, (tuple, list)):
            x, c = x  # predict((x, c)) arrives as one input structure
        return self(x, training=False, condition=c)

    # ----------------------------------------------------------------------------------------
    # The model.

    def posterior_from_encoding(self, encoding):
        # The posterior, the KL and log P(X|z) are float32 under a mixed-precision policy too
        # (sums over thousands of pixels overflow float16); the networks run in its dtype.
        loc, raw_scale = tf.split(tf.cast(encoding, "float32"), 2, axis=-1)
        scale = tf.nn.softplus(raw_scale) + MIN_POSTERIOR_SCALE
        if self.standardize_latents:
            loc, scale = self.latent_frame.from_network(loc, scale)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def decoder_params(self, z, training=None, condition=None):
        """The decoder's output (the parameters of P(X|z)) for latents `z` in the prior's frame.

        Every decode goes through here: with `standardize_latents` the decoder sees z mapped by
        the model's `LatentFrame`. A conditional model's `condition` is the networks' condition
        input `[B, condition_size]` (the one-hot or the vector: `_condition_vector`).
        """
        if self.standardize_latents:
            z = self.latent_frame.to_network(z)
        if condition is None:
            return self.decoder(z, training=training)
        return self.decoder([z, tf.cast(condition, z.dtype)], training=training)

    def posterior(self, x, condition=None):
        """Q(z|X) (Q(z|X, c) given `condition`) for a batch `x`, as a
        `tfd.MultivariateNormalDiag` with batch shape `[B]`."""
        x = self._check_inputs(x)
        return self._posterior(x, self._condition_vector(condition, tf.shape(x)[0]))

    def _posterior(self, x, c):
        """Q(z|X, c) for checked `x` and a condition vector `c` (None: unconditional)."""
        if c is not None:
            c = tf.cast(c, x.dtype)
        return self.posterior_from_encoding(_on_examples(self.encoder, x, c))

    def _posterior_noise(self, batch_size, num_samples=None):
        """Standard normal noise `[batch_size, latent_dim]` for the reparameterization trick, or
        `[num_samples, batch_size, latent_dim]` with `num_samples`.

        Under tf.distribute every replica draws the noise of the whole global batch from the same
        seed state and keeps its own slice, so N replicas see exactly the noise one device would:
        distributed training matches single-device training step for step.
        """
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        # Drawn example-major, so that the first b examples of a batch get the same noise
        # whatever the batch's size: a padded last batch (training.pipeline) draws the noise
        # its real examples would draw alone.
        lead = () if num_samples is None else (num_samples,)
        noise = keras.random.normal(
            (batch_size * replicas, *lead, self.latent_dim),
            seed=self.seed_generator,
            dtype="float32",
        )
        if num_samples is not None:
            noise = tf.transpose(noise, [1, 0, 2])
        if replicas == 1:
            return noise
        start = ctx.replica_id_in_sync_group * batch_size
        return noise[..., start : start + batch_size, :]

    def call(
        self,
        inputs,
        training=None,
        sample_posterior=None,
        return_all=False,
        num_samples=None,
        condition=None,
        example_weights=None,
    ):
        """Adds kl_weight * KL(Q(z|X) || P(z)) with `add_loss` (with free bits, their floor of
        each dimension's batch mean) and decodes z.

        z is a reparameterized sample from Q(z|X) when `sample_posterior` (default: `training`),
        otherwise the posterior mean; with `num_samples`, that many samples per example
        (`[num_samples, B, latent_dim]`, decoded to `[num_samples, B, ...]`). Returns the mean of
        P(X|z), or with `return_all` a dict with `params` (the decoder's output), `z`, `kl` (per
        example) and the `posterior`'s `loc` and `scale`. A conditional model takes `(x, c)` as
        `inputs` (or `x` and `condition=c`). `example_weights` (`[B]`, e.g. 0 for padding) weight
        each example's KL in the added loss (`objectives.weighted_mean`).
        """
        if sample_posterior is None:
            sample_posterior = bool(training)
        if self.conditional and condition is None and isinstance(inputs, (tuple, list)):
            inputs, condition = inputs
        x = self._check_inputs(inputs)
        c = self._condition_vector(condition, tf.shape(x)[0])
        posterior = self._posterior(x, c)
        kl_per_dim = objectives.kl_per_dimension(posterior)
        kl = tf.reduce_sum(kl_per_dim, axis=-1)
        if self.free_bits > 0:
            kl_term = objectives.free_bits_kl(kl_per_dim, self.free_bits, example_weights)
        else:
            kl_term = objectives.weighted_mean(kl, example_weights)
        self.add_loss(self.kl_weight * kl_term)
        if sample_posterior:
            eps = self._posterior_noise(tf.shape(kl)[0], num_samples)
            z = objectives.reparameterize(posterior, eps)
        else:
            z = posterior.mean()
        if num_samples is not None and sample_posterior:
            flat_c = None
            if c is not None:
                flat_c = tf.reshape(tf.tile(c[tf.newaxis], [num_samples, 1, 1]), [-1, c.shape[-1]])
            flat = self.decoder_params(
                tf.reshape(z, [-1, self.latent_dim]), training=training, condition=flat_c
            )
            shape = tf.concat([tf.shape(z)[:2], tf.shape(flat)[1:]], axis=0)
            params = tf.reshape(flat, shape)
        else:
            params = self.decoder_params(z, training=training, condition=c)
        if return_all:
            return {
                "params": params,
                "z": z,
                "kl": kl,
                "loc": posterior.mean(),
                "scale": posterior.stddev(),
            }
        return self.likelihood.mean(params)

    # ----------------------------------------------------------------------------------------
    # Training.

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]
        return trackers + ([self.bound_tracker] if self.bound_tracker is not None else [])

    def _objective(self, data, training):
        """`_step_values` without the weights."""
        return self._step_values(data, training)[:4]

    def _step_values(self, data, training):
        """The step's objective (a scalar) and, per example, the term added to the KL in it
        (-log P(X|z), or `objectives.iwae_reconstruction_term`), -log P(X|z) and the true KL.

        With sample weights in `data` (the trainer's: 1 per example, 0 for the padding of an
        epoch's last batch) the objective is the weighted average over the global batch, so one
        device and N replicas take the same step on any batch."""
        x, y, given = keras.utils.unpack_x_y_sample_weight(data)
        weights = _normalized_weights(given, tf.shape(x)[0])
        if tf.is_tensor(x) and (x.shape.rank is None or None in checks.static_shape(x.shape)[1:]):
            # log P(X|z) below needs x's static shape as much as the networks do.
            x = checks.check_dynamic_shape(x, self.data_shape)
        iwae = self.objective == "iwae"
        if self.conditional and y is None:
            conditions.check_condition_data(None, "x", self.num_classes, self.condition_dim)
        # An unconditional model ignores y, as it always has; a conditional one is given it.
        out = self(
            x, training=training, sample_posterior=True, return_all=True,
            num_samples=self.k if iwae else None, condition=y if self.conditional else None,
            example_weights=weights,
        )  # fmt: skip
        x = tf.cast(x, "float32")
        log_prob = self.likelihood.training_log_prob if training else self.likelihood.log_prob
        log_px = log_prob(x, tf.cast(out["params"], "float32"))
        if iwae:
            prior = objectives.standard_normal_prior(self.latent_dim)
            posterior = tfd.MultivariateNormalDiag(loc=out["loc"], scale_diag=out["scale"])
            term = objectives.iwae_reconstruction_term(
                log_px, prior.log_prob(out["z"]), posterior.log_prob(out["z"])
            )
            reconstruction = -tf.reduce_mean(log_px, axis=0)
        else:
            term = reconstruction = -log_px
        # self.losses holds the KL term from call (kl_weight times the mean KL, or its free-bits
        # floor), plus any regularizers of the networks.
        objective = objectives.weighted_mean(term, weights) + tf.add_n(self.losses)
        given = None if given is None else tf.cast(tf.reshape(given, [-1]), "float32")
        return objective, term, reconstruction, out["kl"], (given, weights)

    def _update_metrics(self, objective, term, reconstruction, kl, weights):
        """Updates the trackers with the step's values; `weights` is `(given, normalized)`, the
        data's sample weights as given and as the step used them (`_normalized_weights`)."""
        # Per-example (rank-1) values: the epoch mean is weighted by examples, and
        # MultiWorkerMirroredStrategy's fit can reduce them (keras-team/keras#20585). `loss` is
        # what the step minimizes; with free bits that is a batch quantity, given to each example.
        # Weighted by the data's sample weights (0 for the trainer's padding), if any: the epoch
        # means are over the real examples. Each replica's `loss` is the global objective (the
        # mean of the replicas' objectives) times its share of the step's weight, divided by its
        # own share, so the replicas' weighted means add up to the global objective.
        weights, normalized = weights
        if normalized is not None:
            objective = tf.math.divide_no_nan(objective, tf.reduce_mean(normalized))
        self.loss_tracker.update_state(tf.fill(tf.shape(kl), objective), weights)
        self.reconstruction_tracker.update_state(reconstruction, weights)
        self.kl_tracker.update_state(kl, weights)
        if self.bound_tracker is not None:
            self.bound_tracker.update_state(term + kl, weights)
        results = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces fit's logs with reduce(MEAN, axis=0) across workers, which fails on
            # scalars ("Invalid reduction dimension 0", keras-team/keras#20585): give it [1].
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        with tf.GradientTape() as tape:
            objective, term, reconstruction, kl, weights = self._step_values(data, training=True)
            # Gradients are summed across replicas: dividing by their number makes N replicas
            # on N slices of the global batch take the same step as one device on all of it.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = objective / replicas if replicas > 1 else objective
            # As Keras' own step: a LossScaleOptimizer (mixed_float16) scales the loss here and
            # unscales the gradients in apply; other optimizers return it unchanged.
            scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return self._update_metrics(objective, term, reconstruction, kl, weights)

    def test_step(self, data):
        return self._update_metrics(*self._step_values(data, training=False))

    # ----------------------------------------------------------------------------------------
    # Serialization.

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "likelihood": self.likelihood_name,
                "sigma": self.sigma,
                "beta": self.beta,
                "seed": self.seed,
                "standardize_latents": self.standardize_latents,
                "free_bits": self.free_bits,
                "objective": self.objective,
                "k": self.k,
            }
        )
        # Only conditional models carry these keys: unconditional configs stay as they were.
        if self.num_classes is not None:
            config["num_classes"] = self.num_classes
        if self.condition_dim is not None:
            config["condition_dim"] = self.condition_dim
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Files saved before the latent frame existed hold no weights for it.
        config.setdefault("standardize_latents", False)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def build_vae(
    input_shape,
    latent_dim=2,
    arch="mlp",
    likelihood="bernoulli",
    sigma=1.0,
    beta=1.0,
    seed=None,
    free_bits=0.0,
    objective="elbo",
    k=1,
    num_classes=None,
    condition_dim=None,
    **network_kwargs,
):
    """Builds a `VAE` with one of the ready-made networks (`arch` = "mlp" or "conv").

    `network_kwargs` go to the network builder (`hidden_units`, `activation` for mlp;
    `filters`, `dense_units`, `activation` for conv); the rest are `VAE`'s. `sigma` is a float,
    or "learned" (None is the same) for a Gaussian likelihood whose standard deviation is
    learned per data dimension. `num_classes` (integer labels) or `condition_dim` (float
    vectors) build a conditional VAE, whose networks take the one-hot or the vector as a second
    input (`build_mlp`, `build_conv`).

    Example:
    >>> vae = build_vae((8, 8, 1), latent_dim=2, arch="conv")
    >>> vae = build_vae((2,), likelihood="gaussian", sigma="learned")
    >>> vae = build_vae((28, 28, 1), latent_dim=20, hidden_units=(400,), objective="iwae", k=5)
    >>> vae = build_vae((8, 8, 1), latent_dim=4, num_classes=10)  # vae.sample(16, condition=7)
    """
    if arch not in networks.ARCHITECTURES:
        raise ValueError(
            f"Unknown arch {arch!r}; expected one of {sorted(networks.ARCHITECTURES)}."
        )
    size = conditions.check_condition_args(num_classes, condition_dim)
    if size is not None:
        network_kwargs["condition_dim"] = size
    encoder, decoder = networks.ARCHITECTURES[arch](input_shape, latent_dim, **network_kwargs)
    return VAE(
        encoder, decoder, likelihood=likelihood, sigma=sigma, beta=beta, seed=seed,
        free_bits=free_bits, objective=objective, k=k, num_classes=num_classes,
        condition_dim=condition_dim,
    )  # fmt: skip
