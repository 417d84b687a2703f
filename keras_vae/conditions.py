"""The condition c of a conditional VAE (Sohn et al. 2015): class labels or float vectors.

A conditional VAE has the encoder Q(z|X, c), the decoder P(X|z, c) and the prior P(z) = N(0, I).
Its networks take c as a second input, always a float vector of `condition_size` values: the
one-hot of a class label for `num_classes`, the user's vector itself for `condition_dim`. The
functions here check what a user passes as `condition=` and turn it into that vector; each error
says what was received and what was expected.

Arrays, Python values and eager tensors are checked whole in Python (a `ValueError`); symbolic
tensors (a `tf.data` pipeline in `fit`, a SavedModel signature) by their static shape and dtype
and, for their values, by one assertion in the graph.
"""

import keras
import numpy as np
import tensorflow as tf


def check_condition_args(num_classes, condition_dim):
    """The size of the networks' condition input (None for an unconditional model)."""
    for name, value in (("num_classes", num_classes), ("condition_dim", condition_dim)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ValueError(f"{name} must be an integer >= 1 or None; received {name}={value!r}.")
    if num_classes is not None and condition_dim is not None:
        raise ValueError(
            f"Pass num_classes (integer class labels) or condition_dim (float vectors), not both; "
            f"received num_classes={num_classes}, condition_dim={condition_dim}. For labels with "
            "side information, append the one-hot to the vector and pass condition_dim."
        )
    size = num_classes if num_classes is not None else condition_dim
    return None if size is None else int(size)


def expected(num_classes, condition_dim):
    """What a conditional model takes as `condition=`, in words."""
    if num_classes is not None:
        return f"integer class labels 0..{num_classes - 1} of shape (batch,), or one label"
    return f"float vectors of shape (batch, {condition_dim}), or one vector of shape ({condition_dim},)"


def _received(condition):
    if tf.is_tensor(condition) or isinstance(condition, np.ndarray):
        return f"an array of shape {tuple(condition.shape)} and dtype {condition.dtype.name}"
    text = repr(condition)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_condition(condition):
    """The error for a `condition=` given to an unconditional model."""
    raise ValueError(
        f"This VAE is unconditional; received condition={_received(condition)}. Leave condition "
        "out, or build the model with num_classes= (class labels) or condition_dim= (vectors)."
    )


def condition_vector(condition, num_classes, condition_dim, batch_size, dtype="float32"):
    """The networks' condition input `[batch_size, condition_size]` for a user's `condition`.

    Args:
        condition: class labels (ints, `[B]`, `[B, 1]` or one label) for `num_classes`; float
            vectors (`[B, condition_dim]` or one vector) for `condition_dim`. One label or
            vector is given to every example.
        num_classes: int or None.
        condition_dim: int or None.
        batch_size: int or int32 scalar tensor. The number of examples it conditions.
        dtype: the result's dtype.

    Returns:
        A float tensor `[batch_size, num_classes or condition_dim]`.
    """
    if condition is None:
        raise ValueError(
            f"This VAE is conditional: pass condition= {expected(num_classes, condition_dim)}; "
            "received no condition."
        )
    symbolic = tf.is_tensor(condition) and not hasattr(condition, "numpy")
    if symbolic:
        c = _graph_condition(condition, num_classes, condition_dim, batch_size)
    else:
        c = _array_condition(condition, num_classes, condition_dim, batch_size)
    if num_classes is not None:
        return tf.one_hot(c, num_classes, dtype=dtype)
    return tf.cast(c, dtype)


def _array_condition(condition, num_classes, condition_dim, batch_size):
    c = condition.numpy() if tf.is_tensor(condition) else np.asarray(condition)
    want = expected(num_classes, condition_dim)
    rows = (
        None if tf.is_tensor(batch_size) and not hasattr(batch_size, "numpy") else int(batch_size)
    )
    if num_classes is not None:
        if c.ndim == 2 and c.shape[1] == num_classes and num_classes > 1:
            raise ValueError(
                f"Expected {want}; received shape {c.shape}. One-hot rows? Pass the labels: "
                "np.argmax(c, axis=1)."
            )
        if c.dtype == bool or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(
                f"Expected {want}; received dtype {c.dtype.name}. Pass the labels as integers "
                "(e.g. y.astype('int32'))."
            )
        if c.ndim == 2 and c.shape[1] == 1:
            c = c[:, 0]
        if c.ndim > 1:
            raise ValueError(f"Expected {want}; received shape {c.shape}.")
        if c.size and (c.min() < 0 or c.max() >= num_classes):
            bad = int(np.argmax((c < 0) | (c >= num_classes))) if c.ndim else 0
            value = int(c.reshape(-1)[bad])
            where = f" (example {bad})" if c.ndim else ""
            raise ValueError(
                f"Class labels must be in 0..{num_classes - 1}; received {value}{where}. "
                f"Expected {want}."
            )
    else:
        if c.dtype == bool or not np.issubdtype(c.dtype, np.number):
            raise ValueError(f"Expected {want}; received dtype {c.dtype.name}.")
        if c.ndim not in (1, 2) or c.shape[-1] != condition_dim:
            raise ValueError(
                f"Condition vectors must have length {condition_dim}: expected {want}; "
                f"received shape {c.shape}."
            )
        if not np.all(np.isfinite(c)):
            raise ValueError(f"Condition vectors contain NaN or inf; expected {want}.")
    single = c.ndim == (0 if num_classes is not None else 1)
    if single:
        if rows is None:
            return (
                tf.fill([batch_size], tf.constant(c))
                if num_classes is not None
                else (tf.tile(tf.constant(c)[tf.newaxis], [batch_size, 1]))
            )
        c = np.broadcast_to(c, (rows, *c.shape))
    elif rows is not None and len(c) != rows:
        raise ValueError(
            f"Received {len(c)} conditions for {rows} examples; expected one per example "
            "(or a single one for all)."
        )
    return tf.constant(c)


def _graph_condition(c, num_classes, condition_dim, batch_size):
    want = expected(num_classes, condition_dim)
    shape = c.shape
    if num_classes is not None:
        if not c.dtype.is_integer:
            raise ValueError(f"Expected {want}; received dtype {c.dtype.name}.")
        if shape.rank == 2 and shape[1] == 1:
            c = c[:, 0]
        elif shape.rank is not None and shape.rank > 1:
            raise ValueError(f"Expected {want}; received shape {tuple(shape)}.")
        if c.shape.rank == 0:
            c = tf.fill([batch_size], c)
        ok = tf.reduce_all((c >= 0) & (c < num_classes))
        message = f"keras_vae.VAE: class labels must be in 0..{num_classes - 1}; received min, max:"
        values = [tf.reduce_min(c), tf.reduce_max(c)]
    else:
        if not (c.dtype.is_floating or c.dtype.is_integer):
            raise ValueError(f"Expected {want}; received dtype {c.dtype.name}.")
        if shape.rank not in (None, 1, 2) or (
            shape.rank and shape[-1] not in (None, condition_dim)
        ):
            raise ValueError(
                f"Condition vectors must have length {condition_dim}: expected {want}; received "
                f"shape {tuple(shape)}."
            )
        c = tf.cast(c, "float32")
        if c.shape.rank == 1:
            c = tf.tile(c[tf.newaxis], [batch_size, 1])
        ok = tf.reduce_all(tf.math.is_finite(c))
        message = "keras_vae.VAE: condition vectors contain NaN or inf; expected finite values."
        values = []
    rows = tf.shape(c)[0]
    ok_rows = tf.equal(rows, tf.cast(batch_size, rows.dtype))
    checked = tf.debugging.Assert(ok, [message, *values], summarize=4)
    counted = tf.debugging.Assert(
        ok_rows,
        ["keras_vae.VAE: one condition per example expected; received, for:", rows, batch_size],
    )
    with tf.control_dependencies([checked, counted]):
        c = tf.identity(c)
    if condition_dim is not None:
        c = tf.ensure_shape(c, (None, condition_dim))
    return c


def check_condition_data(data, name, num_classes, condition_dim, num_examples=None):
    """Checks the conditions `fit`, `evaluate` or `predict` received before Keras starts.

    Arrays and eager tensors are checked whole (`condition_vector`'s checks); a dataset's by its
    element spec (its values by the assertion in the graph, per batch).
    """
    if data is None:
        raise ValueError(
            f"This VAE is conditional: {name} must come with its conditions, as (x, c) pairs "
            f"(fit(x, c), a dataset of (x, c), validation_data=(x, c)) with c "
            f"{expected(num_classes, condition_dim)}; received x alone."
        )
    if isinstance(data, tf.TensorSpec):
        rank = data.shape.rank
        want = expected(num_classes, condition_dim)
        if num_classes is not None and not data.dtype.is_integer:
            raise ValueError(
                f"The {name} dataset's conditions: expected {want}; received dtype "
                f"{data.dtype.name}."
            )
        if num_classes is not None and rank is not None and rank > 1 and data.shape[-1] != 1:
            raise ValueError(
                f"The {name} dataset's conditions: expected {want}; received shape "
                f"{tuple(data.shape)}."
            )
        if (
            condition_dim is not None
            and rank is not None
            and (rank != 2 or data.shape[-1] not in (None, condition_dim))
        ):
            raise ValueError(
                f"The {name} dataset's conditions must have length {condition_dim}: "
                f"expected {want}; received shape {tuple(data.shape)}."
            )
        return
    if isinstance(data, (np.ndarray, list)) or (tf.is_tensor(data) and hasattr(data, "numpy")):
        c = np.asarray(data)
        if num_examples is not None and (c.ndim == 0 or len(c) != num_examples):
            count = "one condition" if c.ndim == 0 else f"{len(c)} conditions"
            raise ValueError(
                f"{name}: received {count} for {num_examples} examples; expected one per example, "
                f"{expected(num_classes, condition_dim)}."
            )
        condition_vector(c, num_classes, condition_dim, len(c) if c.ndim else 1)


def check_networks(encoder, decoder, condition_size):
    """The latent size a conditional encoder `[x, c] -> [B, 2 * latent_dim]` and decoder
    `[z, c] -> [B, *data_shape]` agree on, with c of `condition_size`; TypeError/ValueError
    otherwise."""
    for name, net, first in (("encoder", encoder, "x"), ("decoder", decoder, "z")):
        if not isinstance(net, keras.Model) or not net.built:
            raise TypeError(
                f"{name} must be a built keras.Model (e.g. functional, with keras.Input); "
                f"received {type(net).__name__}."
            )
        inputs = net.inputs if isinstance(net.inputs, (list, tuple)) else [net.inputs]
        shapes = [tuple(t.shape[1:]) for t in inputs]
        if len(inputs) != 2 or shapes[1] != (condition_size,):
            raise ValueError(
                f"A conditional VAE's {name} takes two inputs, [{first}, c] with c of shape "
                f"(batch, {condition_size}) (a one-hot label or the condition vector; "
                f"build_mlp/build_conv(..., condition_dim={condition_size}) make such networks); "
                f"the {name} given takes inputs of shapes {shapes}."
            )
    latent_shape = tuple(decoder.inputs[0].shape[1:])
    if len(latent_shape) != 1 or latent_shape[0] is None or latent_shape[0] < 1:
        raise ValueError(
            f"The decoder must take z of shape (batch, latent_dim) first; it takes {latent_shape}."
        )
    latent_dim = int(latent_shape[0])
    out = tuple(encoder.output.shape[1:])
    if out != (2 * latent_dim,):
        raise ValueError(
            f"The encoder must output (batch, 2 * latent_dim) = (batch, {2 * latent_dim}): the "
            f"posterior mean and scale for the decoder's latent_dim={latent_dim}; it outputs "
            f"(batch, {', '.join(map(str, out))})."
        )
    data_shape = tuple(decoder.output.shape[1:])
    if tuple(encoder.inputs[0].shape[1:]) != data_shape:
        raise ValueError(
            f"The encoder takes examples of shape {tuple(encoder.inputs[0].shape[1:])} but the "
            f"decoder produces {data_shape}; they must agree."
        )
    return latent_dim
