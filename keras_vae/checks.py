"""Checks of what a VAE is given: networks, inputs, latents. Each error says what was received
and what was expected.

Static checks (dtype, known dimensions) run at trace time; value checks ([0, 1] pixels for the
Bernoulli likelihood, finite values) in the graph, one cheap test per batch; arrays and eager
tensors given to `fit`, `evaluate` and `predict` are checked whole in Python before Keras
starts, so a user sees one clear error rather than a graph traceback.
"""

import keras
import numpy as np
import tensorflow as tf


class InputError(ValueError, tf.errors.InvalidArgumentError):
    """Bad input values found before Keras starts: a ValueError, and the InvalidArgumentError that
    the same values raise from inside a graph (so code catching either keeps working)."""

    def __init__(self, message):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)
        self.args = (message,)


def static_shape(tensor_or_model_shape):
    return tuple(None if d is None else int(d) for d in tensor_or_model_shape)


def check_networks(encoder, decoder):
    """The latent size the encoder and decoder agree on; TypeError/ValueError otherwise."""
    for name, net in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(net, keras.Model) or not net.built:
            raise TypeError(
                f"{name} must be a built keras.Model (e.g. functional, with keras.Input); "
                f"received {type(net).__name__}."
            )
    z_shape = static_shape(decoder.input.shape)
    if len(z_shape) != 2 or z_shape[1] is None or z_shape[1] < 1:
        raise ValueError(
            f"The decoder must take z of shape (batch, latent_dim) with latent_dim >= 1; "
            f"its input shape is {z_shape}."
        )
    latent_dim = z_shape[1]
    enc_out = static_shape(encoder.output.shape)
    if enc_out[1:] != (2 * latent_dim,):
        raise ValueError(
            f"The encoder must output (batch, 2 * latent_dim) = (batch, {2 * latent_dim}): the "
            f"posterior mean and scale for the decoder's latent_dim={latent_dim}; it outputs "
            f"{enc_out}."
        )
    data_shape = static_shape(decoder.output.shape[1:])
    enc_in = static_shape(encoder.input.shape[1:])
    if enc_in != data_shape:
        raise ValueError(
            f"The encoder takes examples of shape {enc_in} but the decoder produces {data_shape}; "
            "they must agree."
        )
    return latent_dim


def check_objective(beta, free_bits, objective, k, objectives):
    """Checks the VAE's objective arguments; raises ValueError naming the bad one."""
    for name, value in (("beta", beta), ("free_bits", free_bits)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0; received {name}={value!r}.")
    if objective not in objectives:
        raise ValueError(f"Unknown objective {objective!r}; expected one of {list(objectives)}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1; received k={k!r}.")
    if objective == "elbo" and k != 1:
        raise ValueError(
            f"k (importance samples) applies to objective='iwae'; received k={k} with "
            "objective='elbo'. Pass objective='iwae', or leave k at 1."
        )
    if objective == "iwae" and (beta != 1 or free_bits):
        raise ValueError(
            "objective='iwae' is a bound on log P(X) only with beta=1 and no free bits; received "
            f"beta={beta!r}, free_bits={free_bits!r}. Use objective='elbo' for a beta-VAE or "
            "free bits."
        )


def expected_shape(data_shape):
    return f"(batch, {', '.join(map(str, data_shape))})"


def check_dtype(dtype, data_shape):
    if not dtype.is_floating:
        raise TypeError(
            f"Expected floating-point inputs (float32) of shape (batch, *{data_shape}); "
            f"received dtype {dtype.name}. Convert with x.astype('float32') "
            "(and scale pixels to [0, 1])."
        )


def check_static_shape(shape, data_shape, where="", hint=""):
    """Raises where a known dimension of `shape` (a `tf.TensorShape`) disagrees."""
    if shape.rank is None:
        return
    shape = static_shape(shape)
    if len(shape) != len(data_shape) + 1 or any(
        got is not None and got != want for got, want in zip(shape[1:], data_shape, strict=False)
    ):
        raise ValueError(
            f"Expected inputs of shape {expected_shape(data_shape)}; received shape {shape}{where}."
            f"{hint}"
        )


def check_inputs(x, data_shape, unit_interval, compute_dtype):
    """`x` as a tensor of `compute_dtype`, its dtype, shape and values checked (the values in
    the graph: in [0, 1] when `unit_interval`, else finite)."""
    x = tf.convert_to_tensor(x) if not tf.is_tensor(x) else x
    check_dtype(x.dtype, data_shape)
    check_static_shape(x.shape, data_shape)
    x = tf.cast(x, compute_dtype)
    if x.shape.rank is None or None in static_shape(x.shape)[1:]:
        # A train function retraced for a second `fit` on other data sees relaxed (None)
        # dimensions: the static check above passes, so the real shape is checked here.
        x = check_dynamic_shape(x, data_shape)
    # One cheap test per batch (NaN fails every comparison); the messages, with the values
    # that broke it, are computed only in the branch that raises.
    if unit_interval:
        ok = tf.reduce_all(tf.logical_and(x >= 0.0, x <= 1.0))
    else:
        ok = tf.reduce_all(tf.math.is_finite(x))
    checked = tf.cond(ok, lambda: tf.constant(True), lambda: input_error(x))
    with tf.control_dependencies([checked]):
        return tf.identity(x)


def check_dynamic_shape(x, data_shape):
    shape = tf.shape(x)
    want = tf.constant(data_shape, tf.int32)
    ok = tf.cond(
        tf.equal(tf.size(shape), len(data_shape) + 1),
        lambda: tf.reduce_all(tf.equal(shape[1:], want)),
        lambda: tf.constant(False),
    )
    failed = tf.debugging.Assert(
        ok,
        [
            f"keras_vae.VAE: Expected inputs of shape {expected_shape(data_shape)}; received shape",
            shape,
        ],
        summarize=8,
    )
    with tf.control_dependencies([failed]):
        # The networks need the static shape (a functional model cannot take unknown rank).
        return tf.ensure_shape(tf.identity(x), (None, *data_shape))


def check_data(data, name, data_shape, unit_interval, pairs=False):
    """Checks what `fit`, `evaluate` or `predict` received before Keras starts.

    Arrays and eager tensors are checked whole (dtype, shape, and values: one min, max pass);
    a `tf.data.Dataset` by its element spec, its values by the in-graph check per batch.
    `pairs`: `data` may be an `(x,)` or `(x, y)` tuple (validation_data).
    """
    if pairs and isinstance(data, tuple) and data:
        data = data[0]
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, tuple) and spec:
            spec = spec[0]
        if isinstance(spec, tf.TensorSpec):
            check_dtype(spec.dtype, data_shape)
            hint = ""
            if spec.shape.rank is not None and static_shape(spec.shape) == data_shape:
                hint = " Batch the dataset with .batch(batch_size)."
            check_static_shape(spec.shape, data_shape, f" (the {name} dataset's elements)", hint)
        return
    if isinstance(data, np.ndarray) or (tf.is_tensor(data) and tf.executing_eagerly()):
        dtype = tf.as_dtype(data.dtype)
        check_dtype(dtype, data_shape)
        check_static_shape(tf.TensorShape(data.shape), data_shape)
        check_values(data, unit_interval)


def check_values(x, unit_interval):
    if not np.prod(x.shape):
        return  # nothing to check; Keras says what is wrong with no examples
    if tf.is_tensor(x):
        finite = bool(tf.reduce_all(tf.math.is_finite(x)))
        lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    else:
        # min and max propagate NaN: two passes and no temporary of the array's size.
        lo, hi = float(np.min(x)), float(np.max(x))
        finite = np.isfinite(lo) and np.isfinite(hi)
    if not finite:
        bad = ~np.isfinite(np.asarray(x).reshape(len(x), -1)).all(axis=1)
        raise InputError(
            f"keras_vae.VAE: inputs contain NaN or inf (the first in example "
            f"{int(np.argmax(bad))}, {int(bad.sum())} examples in all); expected finite "
            "values. Drop or fill those examples."
        )
    if unit_interval and (lo < 0.0 or hi > 1.0):
        raise InputError(
            f"keras_vae.VAE: likelihood='bernoulli' needs pixels in [0, 1]; received min "
            f"{lo:g} and max {hi:g}. Divide 0..255 images by 255, or use "
            "likelihood='gaussian'."
        )


def input_error(x):
    """Raises (as a graph assertion) the error that describes what is wrong with `x`."""
    finite = tf.debugging.assert_all_finite(
        x, "keras_vae.VAE: inputs contain NaN or inf; expected finite values."
    )
    with tf.control_dependencies([finite]):
        lo, hi = tf.reduce_min(x), tf.reduce_max(x)
    failed = tf.debugging.Assert(
        False,
        [
            "keras_vae.VAE: likelihood='bernoulli' needs pixels in [0, 1]; received min and max:",
            lo,
            hi,
            "Divide 0..255 images by 255, or use likelihood='gaussian'.",
        ],
    )
    with tf.control_dependencies([failed]):
        return tf.constant(False)


def check_latents(z, latent_dim, compute_dtype):
    z = tf.convert_to_tensor(z) if not tf.is_tensor(z) else z
    shape = static_shape(z.shape)
    if len(shape) != 2 or shape[1] not in (None, latent_dim):
        raise ValueError(
            f"Expected latents of shape (batch, {latent_dim}); received shape {shape}."
        )
    if not z.dtype.is_floating:
        raise TypeError(f"Expected floating-point latents; received dtype {z.dtype.name}.")
    z = tf.cast(z, compute_dtype)
    # A NaN or inf latent is refused, on every CPU: decoded, oneDNN's fused ReLU on AVX-512 maps
    # NaN to 0 and would answer a broken request with a plausible image. (LiteRT has no
    # assertions: there `VAE.decode` gives NaN rows instead.)
    finite = tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(z)),
        ["keras_vae.VAE: latents contain NaN or inf; expected finite values."],
    )
    with tf.control_dependencies([finite]):
        return tf.identity(z)
