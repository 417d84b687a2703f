"""Seeded standard normal noise from operations every runtime has, addressed by counters.

TF's seeded random ops (`StatelessRandomNormalV2`) are not TFLite builtins: stock LiteRT cannot run
them without the Flex delegate. The `sample` signature therefore builds its noise from a
counter-based hash instead, with uint32 xor, shift and multiply (builtins in TFLite and plain ops
in TF): element `j` of a draw with seed `s` is a pure function of `(s, j)`, so a draw is
repeatable, identical on a TF Serving server and on a phone (up to float rounding of log and
cos), and independent of batch size. The same generator is written in NumPy
(`standard_normal_numpy`) so tests and users can reproduce a draw anywhere. The importance
weighted estimators draw from it too (`normal_at`, one substream per example), so their noise
does not depend on how a memory budget splits the work.

The hash is Chris Wellons' "lowbias32" (a 32-bit integer finalizer with very low avalanche
bias). Two hashed counters give two uniforms with 24-bit resolution, exactly representable in
float32, in (0, 1); the Box-Muller transform turns them into one standard normal.
"""

import math

import numpy as np
import tensorflow as tf

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
# Mixed into the seed so that seed 0 does not start from the all-zero state.
_SEED_SALT = 0x9E3779B9
_SUB_SALT = 0x85EBCA6B
_TWO_PI = 2.0 * math.pi


def _hash_tf(x):
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(_M1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(_M2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _uniform_tf(bits):
    # The top 24 bits, centred in their bin: exactly representable in float32, never 0 or 1.
    top = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
    return (top + 0.5) * (1.0 / 16777216.0)


def stream_key(seed):
    """The uint32 key of the stream that `seed` (an int32 scalar, any value) selects."""
    return _hash_tf(
        tf.bitwise.bitwise_xor(
            tf.cast(tf.bitcast(tf.cast(seed, tf.int32), tf.uint32), tf.uint32),
            tf.constant(_SEED_SALT, tf.uint32),
        )
    )


def content_ids(x):
    """One uint32 per example of `x` `[B, ...]`, a pure function of the example's values.

    The bits of each value (as float32) times a fixed odd weight per position, summed in int32:
    integer sums wrap but are exact in any order, so an example's id does not depend on the
    batch it comes in, its position there, or how a kernel splits the sum. Equal examples share
    an id; -0.0 and 0.0 differ (their bits do).
    """
    flat = tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
    bits = tf.bitcast(flat, tf.int32)
    positions = tf.range(tf.shape(flat)[1])
    weights = tf.bitwise.bitwise_or(
        tf.bitcast(_hash_tf(tf.bitcast(positions, tf.uint32)), tf.int32), 1
    )
    mixed = tf.reduce_sum(bits * weights[tf.newaxis], axis=1)
    return _hash_tf(tf.bitcast(mixed, tf.uint32))


def substream_keys(key, index):
    """Keys of independent streams under `key`, one per element of the int `index` tensor.

    The importance-weighted estimators key each example's stream by its `content_ids`, so its
    noise is the same whatever the batch around it, wherever it sits in it, and however the
    work is split into chunks.
    """
    index = tf.cast(index, tf.uint32)
    salted = tf.bitwise.bitwise_xor(index, tf.constant(_SUB_SALT, tf.uint32))
    return _hash_tf(tf.bitwise.bitwise_xor(_hash_tf(salted), key))


def normal_at(key, counter):
    """Standard normal float32 values at the uint32 positions `counter` of the stream `key`.

    `key` broadcasts against `counter`; element j of a stream is a pure function of (key, j).
    """
    counter = tf.cast(counter, tf.uint32) * tf.constant(2, tf.uint32)
    u1 = _uniform_tf(_hash_tf(tf.bitwise.bitwise_xor(_hash_tf(counter), key)))
    u2 = _uniform_tf(
        _hash_tf(tf.bitwise.bitwise_xor(_hash_tf(counter + tf.constant(1, tf.uint32)), key))
    )
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(_TWO_PI * u2)


def standard_normal(shape, seed):
    """Standard normal float32 noise of a (dynamic) `shape`, a pure function of `seed`.

    Args:
        shape: 1-D int32 tensor or list. The shape of the draw.
        seed: int32 scalar tensor. Its 32 bits select the stream (negative seeds are valid).

    Returns:
        float32 tensor of `shape`.

    Example:
    >>> z = standard_normal([16, 2], tf.constant(0))
    """
    shape = tf.cast(shape, tf.int32)
    normal = normal_at(stream_key(seed), tf.range(tf.reduce_prod(shape)))
    return tf.reshape(normal, shape)


def _hash_np(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(_M1)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(_M2)
    return x ^ (x >> np.uint32(16))


def _uniform_np(bits):
    return ((bits >> np.uint32(8)).astype(np.float32) + np.float32(0.5)) * np.float32(
        1.0 / 16777216.0
    )


def standard_normal_numpy(shape, seed):
    """The NumPy twin of `standard_normal`: the same draw for the same `shape` and `seed`.

    Example:
    >>> z = standard_normal_numpy((16, 2), seed=0)
    """
    shape = tuple(int(d) for d in shape)
    with np.errstate(over="ignore"):
        key = _hash_np(np.array(seed, np.int32).view(np.uint32) ^ np.uint32(_SEED_SALT))
        counter = np.arange(math.prod(shape), dtype=np.uint32) * np.uint32(2)
        u1 = _uniform_np(_hash_np(_hash_np(counter) ^ key))
        u2 = _uniform_np(_hash_np(_hash_np(counter + np.uint32(1)) ^ key))
    normal = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(_TWO_PI) * u2)
    return normal.astype(np.float32).reshape(shape)
