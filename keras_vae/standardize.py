"""Latent coordinates in which the codes match the prior: an exact step the optimizer cannot take.

The ELBO is unchanged in what the networks compute when the latent space is shifted and scaled
per dimension, z_net = z * c + m, except for its KL term: with codes mu(X), s(X) in the
networks' coordinates,

    mean over X of KL(Q(z|X) || N(0, I)) in the new coordinates
        = 0.5 * sum_j [(Var mu_j + E s_j^2 + (E mu_j - m_j)^2) / c_j^2 - 1 - E log s_j^2
                       + 2 log c_j],

which is smallest at m = E mu and c^2 = Var mu + E s^2 (moment matching of the aggregate
posterior; here c is floored at 1, see `standardize_latents`). The gradient along this direction is the KL's alone, which Adam's per-parameter
normalization drowns in the reconstruction's: on 64x64 colour patches the codes sat at
|mu| ~ 8 after 30 epochs (KL 71 nats in a 2-D latent) and prior samples decoded to one colour,
while the same decoder fed codes from the fitted Gaussian gave patches that look like the
photographs. `standardize_latents` takes the step exactly: reconstructions, the networks'
weights and Adam's state are untouched; the KL drops and P(z) = N(0, I) covers the codes.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_vae import estimators


@keras.saving.register_keras_serializable(package="keras_vae")
class LatentFrame(keras.layers.Layer):
    """An exact change of latent coordinates: the networks see z * scale + shift.

    Two non-trainable vectors, set by `standardize_latents` (never by gradients).

    Args:
        latent_dim: int. Size of z.
    """

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.shift = self.add_weight(
            shape=(self.latent_dim,), initializer="zeros", trainable=False, name="shift"
        )
        self.scale = self.add_weight(
            shape=(self.latent_dim,), initializer="ones", trainable=False, name="scale"
        )
        self.built = True

    def to_network(self, z):
        """z in the prior's coordinates -> the decoder's input."""
        return z * tf.cast(self.scale, z.dtype) + tf.cast(self.shift, z.dtype)

    def from_network(self, loc, scale):
        """The encoder's posterior (loc, scale) -> the prior's coordinates."""
        c = tf.cast(self.scale, loc.dtype)
        return (loc - tf.cast(self.shift, loc.dtype)) / c, scale / c

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


def standardize_latents(model, x):
    """Moves `model`'s latent frame so that its codes on `x` have mean 0 and variance 1.

    m = mean of the posterior means, c^2 = their variance + the mean posterior variance (per
    dimension, floored at 1), measured in the current frame; the frame then absorbs them, so
    every reconstruction stays as it was, the codes are centred on the prior and spread no
    wider than it, and the mean KL to N(0, I) on `x` drops.

    Args:
        model: keras_vae.VAE built with `standardize_latents=True`.
        x: array `[N, *data_shape]`. Examples whose codes to match (e.g. the training set),
            encoded in batches within the default memory budget.

    Returns:
        `(m, c)`, the step taken in the current frame, numpy arrays `[latent_dim]`.

    Example:
    >>> m, c = standardize_latents(vae, x_train[:2048])
    """
    frame = getattr(model, "latent_frame", None)
    if frame is None:
        raise ValueError(
            "This model has no latent frame to standardize; build it with "
            "standardize_latents=True (the default)."
        )
    # Eagerly, in chunks within the memory budget: a traced encoder took 0.9 s to trace in a
    # training run against 10-15 ms a call either way (2,048 MNIST codes, the MLP).
    batch_size = min(2048, estimators.pairs_per_chunk(model, 1))
    locs, variances = [], []
    for start in range(0, len(x), batch_size):
        posterior = model.posterior(x[start : start + batch_size])
        locs.append(posterior.loc.numpy().astype("float64"))
        variances.append(np.square(posterior.scale.diag.numpy().astype("float64")))
    locs, variances = np.concatenate(locs), np.concatenate(variances)
    m = locs.mean(axis=0)
    # The frame only widens. Where the codes already lie inside the prior (c < 1) its samples
    # cover them, and narrowing the prior onto them steepens the KL around every code in the
    # optimizer's units: measured on the default digits run, 25.96 nats of held-out -ELBO
    # against 25.04 without the frame and 25.16 with this floor.
    c = np.maximum(np.sqrt(locs.var(axis=0) + variances.mean(axis=0)), 1.0)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(c)) and np.all(c > 0)):
        return np.zeros_like(m), np.ones_like(c)  # nothing sound to absorb (e.g. NaN weights)
    old_scale = frame.scale.numpy().astype("float64")
    frame.shift.assign((frame.shift.numpy() + old_scale * m).astype("float32"))
    frame.scale.assign((old_scale * c).astype("float32"))
    return m, c


class StandardizeLatents(keras.callbacks.Callback):
    """After every epoch, `standardize_latents` on (the first `max_examples` of) `x`.

    Args:
        x: array. Training examples.
        max_examples: int. At most this many are encoded per epoch (the statistics of a few
            thousand codes suffice; the cost stays a fraction of an epoch).

    Example:
    >>> vae.fit(x_train, epochs=30, callbacks=[keras_vae.StandardizeLatents(x_train)])
    """

    def __init__(self, x, max_examples=2048):
        super().__init__()
        self.x = x[:max_examples]

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.model, "latent_frame", None) is not None:
            standardize_latents(self.model, self.x)
