"""The five serving signatures of an exported VAE as functions with their input specs, each
batch checked at run time (the table is in `keras_vae.export.saved_model`)."""

import math

import tensorflow as tf

from keras_vae import rng

# log_likelihood draws its importance samples from this fixed seed: the same request gives the
# same scores, which is what an anomaly threshold needs.
LOG_LIKELIHOOD_SEED = 0
SIGNATURES = ("serving_default", "encode", "decode", "sample", "log_likelihood")


def signatures(model, max_samples, iw_samples, max_batch):
    """`{name: (function, input_signature)}` for `SIGNATURES`, in that order.

    Args:
        model: keras_vae.VAE. A built model (checked by the caller).
        max_samples: int. Cap on `num_samples` per `sample` request.
        iw_samples: int. Importance samples per example in `log_likelihood`.
        max_batch: int. Cap on the examples (or latents) per request of the batch signatures.
    """
    x_spec = tf.TensorSpec((None, *model.data_shape), tf.float32, name="x")
    z_spec = tf.TensorSpec((None, int(model.latent_dim)), tf.float32, name="z")
    int_specs = [
        tf.TensorSpec((), tf.int32, name="num_samples"),
        tf.TensorSpec((), tf.int32, name="seed"),
    ]

    def reconstruct(x):
        return {"reconstruction": _float32(model.reconstruct(_checked(x, "x", x_spec, max_batch)))}

    def encode(x):
        mean, scale = model.encode(_checked(x, "x", x_spec, max_batch))
        return {"mean": _float32(mean), "scale": _float32(scale)}

    def decode(z):
        return {"x": _float32(model.decode(_checked(z, "z", z_spec, max_batch)))}

    def log_likelihood(x):
        x = _checked(x, "x", x_spec, max_batch)
        ll = model.log_likelihood(x, num_samples=iw_samples, seed=LOG_LIKELIHOOD_SEED)
        return {"log_likelihood": _float32(ll)}

    return {
        "serving_default": (reconstruct, [x_spec]),
        "encode": (encode, [x_spec]),
        "decode": (decode, [z_spec]),
        "sample": (_sample_function(model, max_samples), int_specs),
        "log_likelihood": (log_likelihood, [x_spec]),
    }


def _float32(tensor):
    return tf.cast(tensor, tf.float32)


def _sample_function(model, max_samples):
    """The `sample` signature: `num_samples` prior draws decoded, repeatable for `seed >= 0`."""
    latent_dim = int(model.latent_dim)

    def sample(num_samples, seed):
        checks = [
            tf.debugging.assert_greater_equal(
                num_samples,
                1,
                message=f"sample: num_samples must be between 1 and {max_samples}",
            ),
            tf.debugging.assert_less_equal(
                num_samples,
                max_samples,
                message=(
                    f"sample: num_samples must be between 1 and {max_samples} (max_samples, "
                    "fixed at export); ask for fewer per request"
                ),
            ),
        ]
        with tf.control_dependencies(checks):
            # The TFLite converter drops assertions and LiteRT has none: there the clamp is what
            # keeps a request bounded (the asserts above have already refused it in TF).
            count = tf.clip_by_value(num_samples, 1, max_samples)
            shape = tf.stack([count, latent_dim])
        repeatable = rng.standard_normal(shape, seed)
        # Seeds 0 and 0 are the random ops' "unseeded": TF seeds the kernel from the OS when
        # the model loads, TFLite's RANDOM_STANDARD_NORMAL from std::random_device. The raw op
        # is needed: tf.random.normal traced after keras.utils.set_random_seed (the trainer's)
        # bakes a seed in, and every new process then drew the same "fresh" samples.
        fresh = tf.raw_ops.RandomStandardNormal(shape=shape, dtype=tf.float32, seed=0, seed2=0)
        z = tf.where(seed >= 0, repeatable, fresh)
        return {"x": _float32(model.decode(z)), "z": z}

    return sample


def _checked(tensor, name, spec, max_batch):
    """`tensor` after a run-time check of its shape against `spec` (batch dimension free).

    A loaded signature does not check shapes, and TF Serving feeds whatever a request holds: an
    image of the wrong size could otherwise pass through a convolutional encoder unnoticed.
    Everything here is computed from the fed tensor at run time: `tf.rank`, or the length of
    `tf.shape`, would be folded to the signature's static rank, and Grappler may delete the
    final reshape as redundant for the same reason, so the data reaches the model through an
    identity that waits for the check.
    """
    want = [int(d) for d in spec.shape[1:]]
    got = tf.shape(tensor)
    # Padded so that a tensor of another rank compares without a broadcasting error of its own.
    padded = tf.concat([got[1:], tf.fill([len(want)], -1)], 0)[: len(want)]
    batch = tf.reduce_prod(got[:1])  # 1 for a scalar, whose got[0] would not exist
    # The rank counted from the shape's values (all >= 0), which no optimizer can know.
    rank = tf.reduce_sum(tf.cast(tf.greater_equal(got, 0), tf.int32))
    ok = tf.reduce_all(
        tf.stack(
            [
                tf.equal(rank, len(want) + 1),
                tf.reduce_all(tf.equal(padded, tf.constant(want, tf.int32))),
                tf.equal(tf.size(tensor, out_type=tf.int32), batch * math.prod(want)),
            ]
        )
    )
    dims = ", ".join(map(str, want))
    check = tf.debugging.Assert(
        ok, [f"{name} must have shape (batch, {dims}) and dtype float32; received shape", got]
    )
    capped = tf.debugging.Assert(
        batch <= max_batch,
        [
            f"{name}: at most {max_batch} examples per request (max_batch, fixed at export); "
            "split the request. Received batch",
            batch,
        ],
    )
    with tf.control_dependencies([check, capped]):
        checked = tf.identity(tensor)
    # The converter drops assertions, so in TFLite this reshape is the check: its target has
    # one row more than the tensor holds unless the shape is right and the batch within
    # max_batch, so LiteRT refuses the request (a RuntimeError from RESHAPE) before any
    # activation is allocated, instead of reading a [B, 3] or [B, 2, 1] tensor as [3B/2, 2] or
    # [B, 2], or decoding a million latents until the process is killed. In TF the asserts
    # above have already refused such a request with their message.
    rows = tf.where(tf.logical_and(ok, batch <= max_batch), batch, batch + 1)
    return tf.reshape(checked, tf.concat([tf.reshape(rows, [1]), want], 0))
