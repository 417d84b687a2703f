"""The reference: the official Keras VAE example's recipe, with keras-vae's layers.

This is what a user would otherwise copy from https://keras.io/examples/generative/vae/: a
`Sampling` layer inside a functional encoder that outputs `(z_mean, z_log_var, z)`, a functional
decoder ending in a sigmoid, and a `keras.Model` subclass whose `train_step` writes the binary
cross-entropy and the KL by hand. The layers are the ones `keras_vae.build_vae` builds (same
widths, kernels and strides; the encoder's two heads hold as many weights as keras-vae's single
`2 * latent_dim` head), so throughput and quality compare the recipes, not the networks.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_vae import objectives


class Sampling(keras.layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, seed=1337, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


class ReferenceVAE(keras.Model):
    """The official example's VAE: KL and reconstruction written by hand in `train_step`."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(
                    keras.losses.binary_crossentropy(data, reconstruction),
                    axis=tuple(range(1, len(data.shape) - 1)),
                )
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def _encoder_heads(x, latent_dim):
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    return z_mean, z_log_var


def build_reference_mlp(input_shape, latent_dim, hidden_units=(256, 128), seed=1337):
    """The recipe with keras-vae's MLP layers, for `(H, W, C)` images (flattened inside)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    z_mean, z_log_var = _encoder_heads(x, latent_dim)
    z = Sampling(seed)([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    latent_inputs = keras.Input((latent_dim,))
    h = latent_inputs
    for units in reversed(hidden_units):
        h = keras.layers.Dense(units, activation="relu")(h)
    h = keras.layers.Dense(math.prod(input_shape), activation="sigmoid")(h)
    decoder_outputs = keras.layers.Reshape(input_shape)(h)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")
    return ReferenceVAE(encoder, decoder)


def build_reference_conv(input_shape, latent_dim, filters=(32, 64), dense_units=16, seed=1337):
    """The official example's conv stack (for 28x28x1 exactly the example's layers)."""
    height, width, channels = input_shape
    inputs = keras.Input(input_shape)
    x = inputs
    for f in filters:
        x = keras.layers.Conv2D(f, 3, activation="relu", strides=2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(dense_units, activation="relu")(x)
    z_mean, z_log_var = _encoder_heads(x, latent_dim)
    z = Sampling(seed)([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    factor = 2 ** len(filters)
    low_h, low_w = math.ceil(height / factor), math.ceil(width / factor)
    latent_inputs = keras.Input((latent_dim,))
    h = keras.layers.Dense(low_h * low_w * filters[-1], activation="relu")(latent_inputs)
    h = keras.layers.Reshape((low_h, low_w, filters[-1]))(h)
    for f in reversed(filters):
        h = keras.layers.Conv2DTranspose(f, 3, activation="relu", strides=2, padding="same")(h)
    h = keras.layers.Conv2DTranspose(channels, 3, activation="sigmoid", padding="same")(h)
    extra_h, extra_w = low_h * factor - height, low_w * factor - width
    if extra_h or extra_w:
        h = keras.layers.Cropping2D(((0, extra_h), (0, extra_w)))(h)
    decoder = keras.Model(latent_inputs, h, name="decoder")
    return ReferenceVAE(encoder, decoder)


REFERENCES = {"mlp": build_reference_mlp, "conv": build_reference_conv}


def build_reference(input_shape, latent_dim, arch="mlp", seed=1337, **network_kwargs):
    """Builds the reference recipe with the layers of `keras_vae.build_vae(..., arch=arch)`."""
    if arch not in REFERENCES:
        raise ValueError(f"Unknown arch {arch!r}; expected one of {sorted(REFERENCES)}.")
    return REFERENCES[arch](tuple(input_shape), latent_dim, seed=seed, **network_kwargs)


# ------------------------------------------------------------------------------------------
# Held-out numbers for the reference, through keras-vae's objective functions.

_EPSILON = 1e-7  # keras.losses.binary_crossentropy clips probabilities to [eps, 1 - eps].


def _bernoulli_log_prob(x, probs, event_ndims):
    """log P(X|z) summed over the data dims from the decoder's clipped probabilities."""
    p = tf.clip_by_value(probs, _EPSILON, 1.0 - _EPSILON)
    log_p = x * tf.math.log(p) + (1.0 - x) * tf.math.log(1.0 - p)
    return tf.reduce_sum(log_p, axis=list(range(-event_ndims, 0)))


def _posterior(model, x):
    z_mean, z_log_var, _ = model.encoder(x)
    return z_mean, tf.exp(0.5 * z_log_var)


def reference_elbo(model, x, seed=0):
    """One-sample ELBO per example of the reference model, in nats: `[B]`."""
    x = tf.convert_to_tensor(x, tf.float32)
    mean, scale = _posterior(model, x)
    eps = tf.random.stateless_normal(tf.shape(mean), seed=[seed, 0])
    z = mean + scale * eps
    log_px = _bernoulli_log_prob(x, model.decoder(z), len(x.shape) - 1)
    kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale), 1)
    return log_px - kl


def reference_log_likelihood(model, x, num_samples=1000, seed=0, max_decodes=65536):
    """Importance-weighted log P(X) per example of the reference model, in nats: `[B]`."""
    x = tf.convert_to_tensor(x, tf.float32)
    mean, scale = _posterior(model, x)
    batch, latent_dim = int(mean.shape[0]), int(mean.shape[1])
    prior = objectives.standard_normal_prior(latent_dim)
    chunk = max(1, max_decodes // batch)
    pieces = []
    for i, start in enumerate(range(0, num_samples, chunk)):
        k = min(chunk, num_samples - start)
        eps = tf.random.stateless_normal((k, batch, latent_dim), seed=[seed, i + 1])
        z = mean[None] + scale[None] * eps
        probs = model.decoder(tf.reshape(z, [-1, latent_dim]))
        probs = tf.reshape(probs, [k, batch, *x.shape[1:]])
        log_px = _bernoulli_log_prob(x[None], probs, len(x.shape) - 1)
        log_q = -0.5 * tf.reduce_sum(
            tf.square(eps) + 2.0 * tf.math.log(scale[None]) + np.log(2 * np.pi), -1
        )
        pieces.append((log_px, prior.log_prob(z), log_q))
    log_px, log_pz, log_qz = (tf.concat(p, 0) for p in zip(*pieces, strict=True))
    return objectives.importance_weighted_log_likelihood(log_px, log_pz, log_qz)
