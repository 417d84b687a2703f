"""Monte Carlo estimates of log P(X) whose memory is bounded by a budget in bytes.

An estimate with K samples per example decodes K * B latents. At 28x28 a conv decoder's
activations take about half a megabyte per latent, so K = 5000 for 16 images (80,000 decodes)
would need tens of gigabytes at once. Here the (example, sample) pairs are processed in chunks:
a chunk holds as many pairs as fit in `memory_budget` bytes of activations, sized from the
decoder's (and encoder's) own graph (`activation_bytes`), so the same code serves an MLP on
8x8 digits and a conv net on 64x64 photographs. The loop is a `tf.while_loop`, so a SavedModel
signature runs it inside the graph.

The noise of sample k for example b is element k of the example's own stream of `keras_vae.rng`
(a counter-based generator): the estimate is the same whatever the budget, the chunking and the
batch around the example (up to float rounding of the sums).
"""

import math
import weakref

import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import objectives, rng

tfd = tfp.distributions

# Bytes of activations one chunk of decodes may hold. 256 MiB keeps the conv nets' chunks at a
# few hundred latents at 28x28 and 64x64x3 (large enough to run at full speed; measured in
# benchmarks/) and a process training and evaluating at those sizes under 3 GiB (tests/).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

# Ops whose outputs are not activations of the batch: weights, constants, shape bookkeeping and
# aliases of other tensors.
_NOT_ACTIVATIONS = frozenset(
    {"Const", "Placeholder", "ReadVariableOp", "VarHandleOp", "Identity", "NoOp", "Shape"}
)
_BYTES = weakref.WeakKeyDictionary()


def _graph_bytes(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    total = 0
    for op in graph.get_operations():
        if op.type in _NOT_ACTIVATIONS:
            continue
        for tensor in op.outputs:
            if tensor.shape.is_fully_defined() and tensor.dtype.is_numpy_compatible:
                total += tensor.shape.num_elements() * tensor.dtype.size
    return total


def activation_bytes(model):
    """Bytes of activations per example of the encoder, and per decoded latent.

    Summed over every tensor that the networks' graphs compute for a batch of one (the decoder
    together with the likelihood's log P(X|z)), which is what a chunk's peak memory grows with.
    Any Keras network works, functional or subclassed. Cached per model.

    Returns:
        `(encode_bytes, decode_bytes)`, two ints.
    """
    cached = _BYTES.get(model)
    if cached is None:
        dtype = model.compute_dtype
        x_spec = tf.TensorSpec((1, *model.data_shape), dtype)
        z_spec = tf.TensorSpec((1, model.latent_dim), dtype)
        if getattr(model, "condition_size", None) is None:
            encode = _graph_bytes(model.encoder, x_spec)
            decode = _graph_bytes(
                lambda z, x: model.likelihood.log_prob(x, model.decoder(z)), z_spec, x_spec
            )
        else:
            c_spec = tf.TensorSpec((1, model.condition_size), dtype)
            encode = _graph_bytes(lambda x, c: model.encoder([x, c]), x_spec, c_spec)
            decode = _graph_bytes(
                lambda z, x, c: model.likelihood.log_prob(x, model.decoder([z, c])),
                z_spec, x_spec, c_spec,
            )  # fmt: skip
        cached = _BYTES[model] = (max(encode, 1), max(decode, 1))
    return cached


def pairs_per_chunk(model, num_samples, memory_budget=DEFAULT_MEMORY_BUDGET):
    """How many (example, sample) pairs one chunk decodes within `memory_budget` bytes.

    A chunk of n pairs decodes n latents and encodes the at most n / K + 2 examples they belong
    to; at least one pair, however small the budget.
    """
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(
            f"memory_budget must be a number of bytes >= 1; received {memory_budget!r}."
        )
    encode, decode = activation_bytes(model)
    room = memory_budget - 2 * encode
    return max(1, int(room // (decode + encode / num_samples)))


def check_num_samples(num_samples):
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1; received {num_samples!r}.")
    return int(num_samples)


def _noise(key, ids, examples, samples, latent_dim):
    """eps for the pairs (examples[i], samples[i]): `[n, latent_dim]`, from per-example streams
    keyed by the examples' content (`ids`, `rng.content_ids`), not their position."""
    keys = rng.substream_keys(key, tf.gather(ids, examples))[:, tf.newaxis]
    counter = samples[:, tf.newaxis] * latent_dim + tf.range(latent_dim)[tf.newaxis]
    return rng.normal_at(keys, counter)


def _segment_logsumexp(values, segments, num_segments):
    """logsumexp of `values` within each segment; -inf for empty ones."""
    top = tf.math.unsorted_segment_max(values, segments, num_segments)
    top = tf.where(tf.math.is_finite(top), top, tf.zeros_like(top))
    total = tf.math.unsorted_segment_sum(
        tf.exp(values - tf.gather(top, segments)), segments, num_segments
    )
    return top + tf.math.log(total)


def _log_weights(model, x, ids, examples, samples, key, proposal, condition=None):
    """Log-weights of the pairs (examples[i], samples[i]) of `x`, in float32: `[n]`.

    "posterior": log P(X|z) + log P(z) - log Q(z|X) with z ~ Q(z|X), the encoder run on the
    examples the pairs cover. "prior": log P(X|z) with z ~ P(z). A conditional model's
    `condition` (`[B, condition_size]`, the networks' input) goes with each example.
    """
    dtype = tf.float32  # the estimate's sums, under mixed precision too
    eps = tf.cast(_noise(key, ids, examples, samples, model.latent_dim), dtype)
    xs = tf.cast(tf.gather(x, examples), dtype)
    cs = None if condition is None else tf.gather(condition, examples)
    if proposal == "prior":
        return model.likelihood.log_prob(
            xs, tf.cast(model.decoder_params(eps, condition=cs), dtype)
        )
    first = examples[0]
    local = examples - first
    covered = x[first : examples[-1] + 1]
    if condition is None:
        encoding = model.encoder(covered)
    else:
        encoding = model.encoder([covered, condition[first : examples[-1] + 1]])
    posterior = model.posterior_from_encoding(encoding)
    loc = tf.gather(posterior.loc, local)
    scale = tf.gather(posterior.scale.diag, local)
    z = loc + scale * eps
    prior = objectives.standard_normal_prior(model.latent_dim, dtype)
    return objectives.importance_log_weights(
        model.likelihood.log_prob(xs, tf.cast(model.decoder_params(z, condition=cs), dtype)),
        prior.log_prob(z),
        tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale).log_prob(z),
    )


def _chunked(model, x, num_samples, seed, memory_budget, proposal, keep_all, condition=None):
    """Runs the estimator over chunks of (example, sample) pairs.

    `proposal` is "posterior" (importance sampling with Q(z|X)) or "prior" (the naive
    estimate). Returns the logsumexp over each example's samples `[B]`, accumulated chunk by
    chunk, and with `keep_all` the log-weights `[B * K]` (example-major), else None.
    """
    k = check_num_samples(num_samples)
    chunk = pairs_per_chunk(model, k, memory_budget)
    batch = tf.shape(x)[0]
    total = batch * k
    key = rng.stream_key(seed)
    ids = rng.content_ids(x)

    def step(start, acc, *weights):
        pairs = tf.range(start, tf.minimum(start + chunk, total))
        examples, samples = pairs // k, pairs % k
        log_w = _log_weights(model, x, ids, examples, samples, key, proposal, condition)
        first, span = examples[0], examples[-1] - examples[0] + 1
        part = _segment_logsumexp(log_w, examples - first, span)
        rows = tf.range(first, first + span)[:, tf.newaxis]
        merged = tf.reduce_logsumexp(tf.stack([tf.gather_nd(acc, rows), part]), axis=0)
        acc = tf.tensor_scatter_nd_update(acc, rows, merged)
        return (start + chunk, acc) + tuple(w.write(start // chunk, log_w) for w in weights)

    acc = tf.fill([batch], tf.constant(-math.inf, tf.float32))
    weights = (tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False),)
    loop_vars = (tf.constant(0), acc) + (weights if keep_all else ())
    out = tf.while_loop(lambda start, *_: start < total, step, loop_vars)
    return out[1], (out[2].concat() if keep_all else None)


def importance_weighted(
    model, x, num_samples, seed, memory_budget=DEFAULT_MEMORY_BUDGET, condition=None
):
    """The IWAE estimate of log P(X) per example, `[B]` nats, in bounded memory.

    log P(X) ~= log (1/K) sum_k P(X|z_k) P(z_k) / Q(z_k|X),   z_k ~ Q(z|X)
    (`objectives.importance_weighted_log_likelihood`, accumulated chunk by chunk).

    Args:
        model: keras_vae.VAE.
        x: float tensor `[B, *data_shape]`, already checked.
        num_samples: int. K.
        seed: int32 scalar (int or tensor). Selects the noise streams.
        memory_budget: int. Bytes of activations a chunk may hold.
        condition: float tensor `[B, condition_size]` or None. A conditional model's condition
            vectors (`VAE._condition_vector`): the estimate is then of log P(X|c). The noise
            stays keyed by x's content alone.
    """
    total, _ = _chunked(model, x, num_samples, seed, memory_budget, "posterior", False, condition)
    return _overflow_is_impossible(total - math.log(check_num_samples(num_samples)))


def importance_log_weights(
    model, x, num_samples, seed, memory_budget=DEFAULT_MEMORY_BUDGET, condition=None
):
    """log P(X|z_k) + log P(z_k) - log Q(z_k|X) for z_k ~ Q(z|X): `[K, B]`, in bounded memory."""
    _, weights = _chunked(model, x, num_samples, seed, memory_budget, "posterior", True, condition)
    return tf.transpose(tf.reshape(weights, [-1, check_num_samples(num_samples)]))


def naive(model, x, num_samples, seed, memory_budget=DEFAULT_MEMORY_BUDGET, condition=None):
    """The naive estimate log (1/K) sum_k P(X|z_k), z_k ~ P(z): `[B]` nats, in bounded memory.

    (`objectives.naive_log_likelihood`, accumulated chunk by chunk.)
    """
    total, _ = _chunked(model, x, num_samples, seed, memory_budget, "prior", False, condition)
    return _overflow_is_impossible(total - math.log(check_num_samples(num_samples)))


def _overflow_is_impossible(log_likelihood):
    """NaN estimates as -inf. Inputs are checked finite before they get here, so a NaN can only
    come from float32 overflow inside the networks on a huge finite input (x = 3e38 makes the
    encoder's activations inf - inf): such an input lies outside anything the model has seen,
    its likelihood is 0, and a NaN would pass every anomaly threshold (NaN < t is false)."""
    return tf.where(tf.math.is_nan(log_likelihood), -math.inf, log_likelihood)
