"""The variational autoencoder: a subclassed `keras.Model`.

The encoder gives the posterior Q(z|X) = N(mu(X), diag sigma(X)^2) as a TFP
`MultivariateNormalDiag`; `call` adds beta * KL(Q(z|X) || P(z)) with `add_loss` and decodes a
reparameterized z; `train_step` adds the reconstruction term -log P(X|z) and minimizes the sum,
the negative ELBO.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import checks, networks, objectives, standardize
from keras_vae import likelihoods as likelihoods_lib
from keras_vae.inference import Inference

tfd = tfp.distributions

# What `VAE(objective=...)` minimizes: the negative ELBO, or the negative importance-weighted bound
# with `k` samples per example.
OBJECTIVES = ("elbo", "iwae")

# softplus(raw) can underflow to 0 for very negative encoder outputs; log(0) in the KL and in
# log Q(z|X) would then be -inf. The floor keeps every posterior a proper, finite Gaussian.
MIN_POSTERIOR_SCALE = 1e-4


def _on_examples(network, x):
    """`network(x)`, for an empty batch too: oneDNN's Conv2D returns a wrongly shaped result on
    zero examples ("Incompatible shapes: [0,28,28,4] vs. [1,1,1,8]"), so an empty batch runs
    one zero example and keeps none of its output."""
    n = tf.shape(x)[0]
    one = tf.zeros(tf.concat([[1], tf.shape(x)[1:]], 0), x.dtype)
    return network(tf.cond(n > 0, lambda: x, lambda: one))[:n]


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
        **kwargs,
    ):
        super().__init__(**kwargs)
        checks.check_objective(beta, free_bits, objective, k, OBJECTIVES)
        self.encoder = encoder
        self.decoder = decoder
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

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x, "x", pairs=False)
        if kwargs.get("validation_data") is not None:
            self._check_data(kwargs["validation_data"], "validation_data", pairs=True)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x, "x")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x, "x")
        return super().predict(x, *args, **kwargs)

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

    def decoder_params(self, z, training=None):
        """The decoder's output (the parameters of P(X|z)) for latents `z` in the prior's frame.

        Every decode goes through here: with `standardize_latents` the decoder sees z mapped by
        the model's `LatentFrame`.
        """
        if self.standardize_latents:
            z = self.latent_frame.to_network(z)
        return self.decoder(z, training=training)

    def posterior(self, x):
        """Q(z|X) for a batch `x`, as a `tfd.MultivariateNormalDiag` with batch shape `[B]`."""
        return self.posterior_from_encoding(_on_examples(self.encoder, self._check_inputs(x)))

    def _posterior_noise(self, batch_size, num_samples=None):
        """Standard normal noise `[batch_size, latent_dim]` for the reparameterization trick, or
        `[num_samples, batch_size, latent_dim]` with `num_samples`.

        Under tf.distribute every replica draws the noise of the whole global batch from the same
        seed state and keeps its own slice, so N replicas see exactly the noise one device would:
        distributed training matches single-device training step for step.
        """
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        lead = () if num_samples is None else (num_samples,)
        if replicas == 1:
            return keras.random.normal(
                (*lead, batch_size, self.latent_dim), seed=self.seed_generator, dtype="float32"
            )
        noise = keras.random.normal(
            (*lead, batch_size * replicas, self.latent_dim),
            seed=self.seed_generator,
            dtype="float32",
        )
        start = ctx.replica_id_in_sync_group * batch_size
        return noise[..., start : start + batch_size, :]

    def call(
        self, inputs, training=None, sample_posterior=None, return_all=False, num_samples=None
    ):
        """Adds kl_weight * KL(Q(z|X) || P(z)) with `add_loss` (with free bits, their floor of
        each dimension's batch mean) and decodes z.

        z is a reparameterized sample from Q(z|X) when `sample_posterior` (default: `training`),
        otherwise the posterior mean; with `num_samples`, that many samples per example
        (`[num_samples, B, latent_dim]`, decoded to `[num_samples, B, ...]`). Returns the mean of
        P(X|z), or with `return_all` a dict with `params` (the decoder's output), `z`, `kl` (per
        example) and the `posterior`'s `loc` and `scale`.
        """
        if sample_posterior is None:
            sample_posterior = bool(training)
        posterior = self.posterior(inputs)
        kl_per_dim = objectives.kl_per_dimension(posterior)
        kl = tf.reduce_sum(kl_per_dim, axis=-1)
        if self.free_bits > 0:
            kl_term = objectives.free_bits_kl(kl_per_dim, self.free_bits)
        else:
            kl_term = tf.reduce_mean(kl)
        self.add_loss(self.kl_weight * kl_term)
        if sample_posterior:
            eps = self._posterior_noise(tf.shape(kl)[0], num_samples)
            z = objectives.reparameterize(posterior, eps)
        else:
            z = posterior.mean()
        if num_samples is not None and sample_posterior:
            flat = self.decoder_params(tf.reshape(z, [-1, self.latent_dim]), training=training)
            shape = tf.concat([tf.shape(z)[:2], tf.shape(flat)[1:]], axis=0)
            params = tf.reshape(flat, shape)
        else:
            params = self.decoder_params(z, training=training)
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
        """The step's objective (a scalar) and, per example, the term added to the KL in it
        (-log P(X|z), or `objectives.iwae_reconstruction_term`), -log P(X|z) and the true KL."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if tf.is_tensor(x) and (x.shape.rank is None or None in checks.static_shape(x.shape)[1:]):
            # log P(X|z) below needs x's static shape as much as the networks do.
            x = checks.check_dynamic_shape(x, self.data_shape)
        iwae = self.objective == "iwae"
        out = self(
            x, training=training, sample_posterior=True, return_all=True,
            num_samples=self.k if iwae else None,
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
        objective = tf.reduce_mean(term) + tf.add_n(self.losses)
        return objective, term, reconstruction, out["kl"]

    def _update_metrics(self, objective, term, reconstruction, kl):
        # Per-example (rank-1) values: the epoch mean is weighted by examples, and
        # MultiWorkerMirroredStrategy's fit can reduce them (keras-team/keras#20585). `loss` is
        # what the step minimizes; with free bits that is a batch quantity, given to each example.
        self.loss_tracker.update_state(tf.fill(tf.shape(kl), objective))
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        if self.bound_tracker is not None:
            self.bound_tracker.update_state(term + kl)
        results = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces fit's logs with reduce(MEAN, axis=0) across workers, which fails on
            # scalars ("Invalid reduction dimension 0", keras-team/keras#20585): give it [1].
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        with tf.GradientTape() as tape:
            objective, term, reconstruction, kl = self._objective(data, training=True)
            # Gradients are summed across replicas: dividing by their number makes N replicas
            # on N slices of the global batch take the same step as one device on all of it.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = objective / replicas if replicas > 1 else objective
            # As Keras' own step: a LossScaleOptimizer (mixed_float16) scales the loss here and
            # unscales the gradients in apply; other optimizers return it unchanged.
            scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return self._update_metrics(objective, term, reconstruction, kl)

    def test_step(self, data):
        return self._update_metrics(*self._objective(data, training=False))

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
    **network_kwargs,
):
    """Builds a `VAE` with one of the ready-made networks (`arch` = "mlp" or "conv").

    `network_kwargs` go to the network builder (`hidden_units`, `activation` for mlp;
    `filters`, `dense_units`, `activation` for conv); the rest are `VAE`'s. `sigma` is a float,
    or "learned" (None is the same) for a Gaussian likelihood whose standard deviation is
    learned per data dimension.

    Example:
    >>> vae = build_vae((8, 8, 1), latent_dim=2, arch="conv")
    >>> vae = build_vae((2,), likelihood="gaussian", sigma="learned")
    >>> vae = build_vae((28, 28, 1), latent_dim=20, hidden_units=(400,), objective="iwae", k=5)
    """
    if arch not in networks.ARCHITECTURES:
        raise ValueError(
            f"Unknown arch {arch!r}; expected one of {sorted(networks.ARCHITECTURES)}."
        )
    encoder, decoder = networks.ARCHITECTURES[arch](input_shape, latent_dim, **network_kwargs)
    return VAE(
        encoder, decoder, likelihood=likelihood, sigma=sigma, beta=beta, seed=seed,
        free_bits=free_bits, objective=objective, k=k,
    )  # fmt: skip
