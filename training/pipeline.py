"""The tf.data pipeline: arrays in, batches out, shuffled and binarized from stateless seeds
so that an epoch is the same after a resume and on any number of replicas."""

import numpy as np


def steps_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Batches in one pass over `num_examples` examples."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def make_dataset(
    x, batch_size, shuffle=False, seed=0, binarize=False, drop_remainder=False, first_epoch=0,
    y=None, padded=False, last_epoch=None,
):  # fmt: skip
    """A `tf.data.Dataset` of batches of `x` (with `y`, its conditions, when given), prefetched.

    Without `shuffle`: one pass over `x` in order. With `shuffle`: a stream of epochs
    `first_epoch`..`last_epoch - 1`, endless without `last_epoch` (iterate it with
    `steps_per_epoch(len(x), batch_size, drop_remainder)` steps per epoch),
    epoch e being a permutation drawn from the stateless seed `(seed, e)`. Epoch e is thus the
    same whether training started at epoch 0 or resumed at `first_epoch` = e, and the same on
    one device and on N replicas. `binarize` draws each batch's pixels from Bernoulli(x),
    fresh for every epoch and batch (dynamic binarization), also from stateless seeds.

    Elements are `x` batches, `(x, y)` with `y`, and with `padded` `(x, y, sample_weight)`: every
    batch is full, the last one of a pass topped up with copies of example 0 of weight 0 (the
    others weigh 1; `y` is then `[B, 0]` when not given). A VAE's step averages over the real
    examples only, so each step is the same on one device and split over any number of
    replicas or workers, whatever the data size (training.distribute).

    Example:
    >>> ds = make_dataset(load_dataset("digits").x_train, 64, shuffle=True)
    """
    import tensorflow as tf

    options = tf.data.Options()
    # The examples live in memory: shard by example, never by file, across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    x = tf.convert_to_tensor(x)
    n = int(x.shape[0])
    if y is not None:
        y = tf.convert_to_tensor(y)
    drop_remainder = drop_remainder and not padded

    def batches_of(order):
        batches = tf.data.Dataset.from_tensor_slices(order).batch(
            batch_size, drop_remainder=drop_remainder
        )
        return batches.map(_pad)

    def _pad(idx):
        real = tf.shape(idx)[0]
        if not padded:
            return idx, tf.ones([real])
        weights = tf.cast(tf.range(batch_size) < real, tf.float32)
        return tf.pad(idx, [[0, batch_size - real]]), weights

    def gather(epoch, i, idx, weights):
        batch = tf.gather(x, idx)
        if binarize:
            batch = _binarize(batch, _noise_seed(seed, epoch, i))
        if not padded:
            return batch if y is None else (batch, tf.gather(y, idx))
        condition = tf.zeros([batch_size, 0]) if y is None else tf.gather(y, idx)
        return batch, condition, weights

    if not shuffle:
        ds = batches_of(tf.range(n, dtype=tf.int64)).enumerate()
        ds = ds.map(lambda i, pair: gather(0, i, *pair), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    def one_epoch(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return batches_of(tf.argsort(keys)).enumerate().map(lambda i, pair: (epoch, i, *pair))

    # A stream that ends with the run: under MultiWorkerMirroredStrategy, deleting the iterator
    # of an endless one at the end of `fit` stalled both workers for seconds (4.5 s on 200
    # digits; 35-100 s were seen at MNIST size), measured in docs/cluster.md.
    ds = tf.data.Dataset.range(first_epoch, 2**62 if last_epoch is None else last_epoch)
    ds = ds.flat_map(one_epoch)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _noise_seed(seed, epoch, batch):
    """The stateless seed of batch `batch` of epoch `epoch`'s binarization noise.

    Folded in from the root `(seed, -1)`: the epochs' permutations use `(seed, epoch)` with
    epoch >= 0, so the two streams never share a seed.
    """
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    root = tf.constant([seed, -1], tf.int64)
    return fold_in(fold_in(root, tf.cast(epoch, tf.int64)), tf.cast(batch, tf.int64))


def _binarize(batch, seed):
    import tensorflow as tf

    noise = tf.random.stateless_uniform(tf.shape(batch), seed=seed)
    return tf.cast(noise < batch, batch.dtype)


def binarize_once(x, seed):
    """A fixed binarization of `x` (held-out data for a Bernoulli model trained with
    dynamic binarization)."""
    return (np.random.default_rng(seed).random(x.shape) < x).astype("float32")
