"""Data in: named data sets and local files, validated once, scaled, split, then tf.data.

`load_dataset(spec)` returns numpy arrays and an `info` dict; `make_dataset(x, ...)` turns an
array into a shuffled, batched, prefetched `tf.data.Dataset` of examples alone (no labels: the
VAE needs none, and MultiWorkerMirroredStrategy's `fit` fails on `(x, y)` tuples).

Images come out as float32 `(N, H, W, C)` in [0, 1] (the MLP flattens them itself); vectors
(the ring, `.npy`/`.csv` tables) as float32 `(N, D)`.

Every named set but `mnist`/`fashion_mnist` loads offline in about a second: `digits` (8x8),
`digits28` (the same digits at MNIST's 28x28) and `photos64` (64x64 colour patches of two
photographs, for a Gaussian likelihood) from files scikit-learn installs, `ring` generated.
"""

import os
import typing

import numpy as np

# Local files are read in data_files (npz, npy, csv; the memory budget), data_idx and
# data_images; the names other modules and tests import from here are re-exported.
from keras_vae.training.data_files import (  # noqa: F401 - re-exported
    BUDGET_ENV,
    MEMORY_BUDGET_BYTES,
    DataError,
    check_regular_file,
    load_csv,
    load_npy,
    load_npz,
    memory_budget,
)
from keras_vae.training.data_idx import (  # noqa: F401 - re-exported
    IDX_IMAGE_MAGIC,
    IDX_LABEL_MAGIC,
    find_idx_pair,
    load_idx_file,
    read_idx,
)
from keras_vae.training.data_images import IMAGE_SUFFIXES, load_image_folder  # noqa: F401


class Dataset(typing.NamedTuple):
    """Held-out split of one data set. `y_*` are integer labels or None; `info` describes it."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None
    y_test: np.ndarray | None
    info: dict


def load_dataset(spec, test_split=0.2, seed=0, limit=None):
    """Loads, validates, scales and splits the data named or located by `spec`.

    Args:
        spec: str. A name: "digits", "digits28", "photos64", "ring", "mnist",
            "fashion_mnist" (the keys of `LOADERS`); or a path: `.npz` (keys
            `x_train`/`x_test`[/`y_train`/`y_test`], or `x`[/`y`]), `.npy`, `.csv`, an IDX
            images file (`*-idx3-ubyte`, optionally `.gz`), a folder of IDX files
            (`train-images-idx3-ubyte`, `t10k-images-idx3-ubyte`, labels optional) or a folder
            of PNG/JPEG images (class subfolders give labels).
        test_split: float. Held-out fraction when the data has no test split of its own.
        seed: int. Seeds the split.
        limit: int or None. Keep at most this many training (and test) examples.

    Returns:
        A `Dataset`: `x_train`, `x_test` (float32), `y_train`, `y_test` (int64 or None), and
        `info` with `name`, `kind` ("image" or "vector"), `shape`, `likelihood` (the suggested
        one: "bernoulli" for images, "gaussian" for vectors and for `photos64`) and `scaled`.

    Raises:
        DataError: unreadable, truncated or corrupt files, wrong keys, mixed image sizes,
            empty or 0-d data, NaN/inf values, pixel values outside [0, 1] and 0..255,
            transparent images, FIFOs and devices, and data whose declared size as float32
            is over `memory_budget()` (4 GiB, or `KERAS_VAE_DATA_BUDGET_GIB`), checked from
            the headers before anything that size is read.

    Example:
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape
    (1437, 8, 8, 1)
    """
    if spec in LOADERS:
        raw = LOADERS[spec]()
    elif isinstance(spec, str) and os.path.exists(spec):
        raw = _load_path(spec)
    else:
        raise DataError(
            f"Unknown data {spec!r}; expected one of {', '.join(LOADERS)} or an existing path."
        )
    return _finish(raw, str(spec), test_split, seed, limit)


# ---------------------------------------------------------------------------------------------
# Named data sets.


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are counts 0..16 of a 4x4 block; /16 gives [0, 1].
    x = (digits.images / 16.0).astype("float32")[..., None]
    return {"x": x, "y": digits.target, "kind": "image", "scaled": "divided by 16"}


DIGITS28_BOX = 20  # MNIST's digits fill a 20x20 box centred in 28x28


def _digits28():
    """The 1797 digits at MNIST's size: (1797, 28, 28, 1) float32 in [0, 1], labels 0..9.

    Each 8x8 digit is upsampled bicubically to 20x20 and centred in a black 28x28 frame (a
    4-pixel border), the layout of MNIST, so a model or test built for MNIST's shape runs on
    real digits offline. Bicubic overshoot is clipped to [0, 1]. 5.6 MB; about 0.1 s after
    scikit-learn's import.
    """
    from PIL import Image

    raw = _digits()
    small = raw["x"][..., 0]
    border = (28 - DIGITS28_BOX) // 2
    x = np.zeros((len(small), 28, 28, 1), dtype="float32")
    for image, out in zip(small, x, strict=True):
        big = Image.fromarray(image, "F").resize((DIGITS28_BOX, DIGITS28_BOX), Image.BICUBIC)
        out[border : border + DIGITS28_BOX, border : border + DIGITS28_BOX, 0] = np.asarray(big)
    np.clip(x, 0.0, 1.0, out=x)
    scaled = (
        f"divided by 16, bicubic 8x8 -> {DIGITS28_BOX}x{DIGITS28_BOX}, centred in 28x28 "
        "(clipped to [0, 1])"
    )
    return {"x": x, "y": raw["y"], "kind": "image", "scaled": scaled}


PHOTOS64_SIZE = 64
# Patches per photograph at each downscaling factor. At full size a 64x64 patch is texture
# (tiles, petals); at 1/4 it holds a whole flower or the pagoda's roofs.
PHOTOS64_PATCHES = {1: 500, 2: 300, 4: 200}
PHOTOS64_NAMES = ("china", "flower")


def _photos64(patches=PHOTOS64_PATCHES, seed=0):
    """Colour patches of scikit-learn's two sample photographs, for a Gaussian likelihood.

    From china.jpg and flower.jpg (427x640 RGB each) and their copies downscaled by 2 and 4
    (Lanczos), `patches[factor]` 64x64 patches each at positions drawn from `seed`: by default
    2 photos x (500 + 300 + 200) = 2000 patches, (2000, 64, 64, 3) float32 in [0, 1], 98,304,000
    bytes. The label is the photo (0 china, 1 flower; `info["classes"]`), so the latent scatter
    shows whether the model tells the two scenes apart. The patches overlap and come from two
    photos only: a random held-out split measures fit to these scenes, not to new photographs.
    About 0.3 s after scikit-learn's import.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    size = PHOTOS64_SIZE
    count = len(PHOTOS64_NAMES) * sum(patches.values())
    # uint8 while cutting, then one float32 array scaled in place: the peak stays near its size.
    cut = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype="int64")
    i = 0
    for label, photo in enumerate(load_sample_images().images):
        for factor, n in patches.items():
            scaled = photo
            if factor > 1:
                shape = (photo.shape[1] // factor, photo.shape[0] // factor)
                scaled = np.asarray(Image.fromarray(photo).resize(shape, Image.LANCZOS))
            tops = rng.integers(0, scaled.shape[0] - size + 1, n)
            lefts = rng.integers(0, scaled.shape[1] - size + 1, n)
            for top, left in zip(tops, lefts, strict=True):
                cut[i] = scaled[top : top + size, left : left + size]
                i += 1
            labels[i - n : i] = label
    x = cut.astype("float32")
    x /= 255.0
    return {
        "x": x,
        "y": labels,
        "kind": "image",
        "scaled": "divided by 255",
        "likelihood": "gaussian",
        "classes": list(PHOTOS64_NAMES),
    }


def _ring(num_examples=5000, seed=1234):
    # The seed's toy: z ~ N(0, I) in 2-D mapped onto a ring by g(z) = z/10 + z/||z||.
    z = np.random.default_rng(seed).standard_normal((num_examples, 2))
    x = z / 10 + z / np.linalg.norm(z, axis=1, keepdims=True)
    return {"x": x.astype("float32"), "y": None, "kind": "vector", "scaled": "none (raw g(z))"}


def _keras_dataset(name):
    def load():
        import keras

        module = getattr(keras.datasets, name)
        try:
            (x_train, y_train), (x_test, y_test) = module.load_data()
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise DataError(
                f"Could not load {name} through keras.datasets (it downloads on first use and "
                f"this machine may be offline: {type(e).__name__}: {str(e)[:120]}). Pass a local "
                f"copy instead: --data /path/to/{name}.npz (the Keras layout with x_train, "
                "y_train, x_test, y_test) or --data a folder with the IDX files "
                "train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz."
            ) from None
        return {
            "x_train": x_train,
            "x_test": x_test,
            "y_train": y_train,
            "y_test": y_test,
            "kind": "image",
        }

    return load


# Name -> a function of no arguments returning a dict: "x" (and "y") or "x_train", "x_test"
# (and "y_train", "y_test"), "kind" ("image"/"vector"/None to infer), and optionally "scaled"
# (what info["scaled"] says; vectors with it skip the min-max scaling), "likelihood" (the
# suggested one, where not the kind's default) and "classes" (label names).
LOADERS = {
    "digits": _digits,
    "digits28": _digits28,
    "photos64": _photos64,
    "ring": _ring,
    "mnist": _keras_dataset("mnist"),
    "fashion_mnist": _keras_dataset("fashion_mnist"),
}


# ---------------------------------------------------------------------------------------------
# Local files.


def _load_path(path):
    lower = path.lower()
    if os.path.isdir(path):
        idx = find_idx_pair(path)
        if idx is not None:
            return idx
        return load_image_folder(path)
    check_regular_file(path)
    if lower.endswith(".npz"):
        return load_npz(path)
    if lower.endswith(".npy"):
        return load_npy(path)
    if lower.endswith(".csv"):
        return load_csv(path)
    if lower.endswith(("-idx3-ubyte", "-idx3-ubyte.gz", ".idx3-ubyte", ".idx3-ubyte.gz")):
        return load_idx_file(path)
    raise DataError(
        f"Unsupported data file {path!r}; expected .npz, .npy, .csv, an IDX file "
        "(*-idx3-ubyte[.gz]) or a folder of PNG/JPEG images."
    )


# ---------------------------------------------------------------------------------------------
# Checks, scaling and the split.


def _check_array(x, where):
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "uifb":
        kind = getattr(x, "dtype", type(x))
        raise DataError(f"{where}: expected a numeric array; received {kind}.")
    if x.ndim == 0:
        raise DataError(
            f"{where}: expected an array of examples (N, ...); received a single number (a 0-d "
            "array). Save the examples themselves, e.g. np.save(path, x) with x of shape (N, D)."
        )
    if x.size == 0 or x.shape[0] == 0:
        raise DataError(f"{where}: the data are empty (shape {x.shape}); nothing to train on.")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise DataError(
                f"{where}: {int(bad.sum())} values are NaN or inf (the first in example "
                f"{int(first[0])}); expected finite numbers. Clean or drop those examples."
            )


def _check_labels(y, where, key):
    if y is not None and np.ndim(y) == 0:
        raise DataError(
            f"{where}: {key} is a single value (a 0-d array); expected one label per example, "
            "shape (N,). Save the labels array, or leave it out."
        )


def _as_images(x, where):
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{where}: expected images of shape (N, H, W), (N, H, W, 1) or (N, H, W, 3); "
            f"received shape {x.shape}."
        )
    return x


def _scale_pixels(x_train, x_test, where):
    """Maps pixels to [0, 1]: integers and 0..255 floats by 255 (or the dtype's max)."""
    # Per split rather than concatenated: no temporary copy of the whole data set.
    lo = float(min(np.min(x_train), np.min(x_test)))
    hi = float(max(np.max(x_train), np.max(x_test)))
    if x_train.dtype.kind in "ui":
        if lo < 0:
            raise DataError(f"{where}: integer pixels must be >= 0; received a minimum of {lo}.")
        if hi > 255:
            raise DataError(
                f"{where}: integer pixels range up to {hi:g}; expected 0..255. Scale them to "
                "floats in [0, 1] first (e.g. x / 1023 for 10-bit or x / 65535 for 16-bit data)."
            )
        return 255.0, "divided by 255"
    if x_train.dtype.kind == "b":
        return 1.0, "none (boolean)"
    if lo >= 0 and hi <= 1:
        return 1.0, "none (already in [0, 1])"
    if lo >= 0 and hi <= 255:
        return 255.0, "divided by 255"
    raise DataError(
        f"{where}: pixel values range over [{lo:g}, {hi:g}]; expected [0, 1] or 0..255. Rescale "
        "the images, or save them as a table (.npy 2-D or .csv) for a Gaussian likelihood."
    )


def _split(x, y, test_split, seed):
    n = len(x)
    if n < 2:
        raise DataError(f"The data hold {n} example; at least 2 are needed for a held-out split.")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, int(round(n * test_split))), n - 1)
    test, train = order[:n_test], order[n_test:]
    return x[train], x[test], (None if y is None else y[train]), (None if y is None else y[test])


def _finish(raw, name, test_split, seed, limit):
    """A loader's dict (see `LOADERS`) checked, split, cut to `limit`, scaled and described."""
    x_train, x_test, y_train, y_test, split = _train_test(raw, name, test_split, seed)
    if limit is not None:
        # Copies, so a slice does not keep the whole data set alive (nothing below copies).
        x_train, x_test = x_train[:limit].copy(), x_test[:limit].copy()
        y_train = None if y_train is None else y_train[:limit]
        y_test = None if y_test is None else y_test[:limit]
    kind = raw.get("kind") or ("vector" if x_train.ndim == 2 else "image")
    scale = _scale_images if kind == "image" else _scale_vectors
    x_train, x_test, scaling, likelihood = scale(x_train, x_test, raw, name)
    y_train, y_test = _class_labels(y_train, y_test)
    info = {
        "name": name,
        "kind": kind,
        "shape": list(x_train.shape[1:]),
        "num_train": int(len(x_train)),
        "num_test": int(len(x_test)),
        "likelihood": likelihood,
        "split": split,
        "labels": y_train is not None,
        **scaling,
    }
    if "classes" in raw and y_train is not None:
        info["classes"] = raw["classes"]
    return Dataset(x_train, x_test, y_train, y_test, info)


def _train_test(raw, name, test_split, seed):
    """`(x_train, x_test, y_train, y_test, split)`, checked: the data's own split, or a seeded
    random one of `raw["x"]`; `split` says which."""
    if "x" in raw:
        x, y = raw["x"], raw.get("y")
        _check_array(x, name)
        _check_labels(y, name, "y")
        if y is not None and len(y) != len(x):
            raise DataError(f"{name}: {len(y)} labels for {len(x)} examples; expected one each.")
        split = f"random {1 - test_split:.0%}/{test_split:.0%} split (seed {seed})"
        return (*_split(x, y, test_split, seed), split)
    x_train, x_test = raw["x_train"], raw["x_test"]
    y_train, y_test = raw.get("y_train"), raw.get("y_test")
    _check_array(x_train, f"{name} (x_train)")
    _check_array(x_test, f"{name} (x_test)")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{name}: x_train examples have shape {x_train.shape[1:]} but x_test examples "
            f"{x_test.shape[1:]}; they must agree."
        )
    for labels, xs, key in ((y_train, x_train, "y_train"), (y_test, x_test, "y_test")):
        _check_labels(labels, name, key)
        if labels is not None and len(labels) != len(xs):
            raise DataError(f"{name}: {key} has {len(labels)} labels for {len(xs)} examples.")
    return x_train, x_test, y_train, y_test, "the data's own train/test split"


def _scale_images(x_train, x_test, raw, name):
    """Images as float32 `(N, H, W, C)` in [0, 1]; returns them, `{"scaled": how}` and the
    suggested likelihood (Bernoulli unless the loader says otherwise)."""
    x_train, x_test = _as_images(x_train, name), _as_images(x_test, name)
    divisor, scaled = _scale_pixels(x_train, x_test, name)
    # copy=False and no division by 1: float32 data in [0, 1] (photos64's 98 MB) are not
    # copied again after the split.
    x_train = x_train.astype("float32", copy=False)
    x_test = x_test.astype("float32", copy=False)
    if divisor != 1.0:
        x_train, x_test = x_train / divisor, x_test / divisor
    return (
        x_train,
        x_test,
        {"scaled": raw.get("scaled", scaled)},
        raw.get("likelihood", "bernoulli"),
    )


def _scale_vectors(x_train, x_test, raw, name):
    """A table as float32 `(N, D)`, min-max scaled per column unless the loader scaled it;
    returns it, the scaling (`scaled`, and `min`/`max` when min-max) and "gaussian"."""
    if x_train.ndim != 2:
        raise DataError(
            f"{name}: expected a table of shape (N, D); received shape {x_train.shape}."
        )
    x_train, x_test = x_train.astype("float64"), x_test.astype("float64")
    if "scaled" in raw:
        scaling = {"scaled": raw["scaled"]}
    else:
        # Min-max from the training split only, so the held-out numbers stay honest.
        lo, hi = x_train.min(axis=0), x_train.max(axis=0)
        x_train, x_test = _min_max(x_train, lo, hi), _min_max(x_test, lo, hi)
        _check_float32_range(x_test, lo, hi, name)
        scaling = {
            "scaled": "min-max per column from the training split",
            "min": lo.tolist(),
            "max": hi.tolist(),
        }
    return x_train.astype("float32"), x_test.astype("float32"), scaling, "gaussian"


def _min_max(x, lo, hi):
    """`(x - lo) / (hi - lo)` in float64, computed in halves: for a column spanning -1e308 to
    1e308 the difference overflows to inf (and the scaled values to NaN) but its half does not.
    Halving is exact (bar subnormals), so ordinary data scale to the same bits as before."""
    half_span = np.where(hi > lo, hi / 2 - lo / 2, 0.5)
    x = x / 2
    x -= lo / 2
    x /= half_span
    return x


def _check_float32_range(x_test, lo, hi, name):
    # Training values land in [0, 1]; a held-out value far outside a narrow training range can
    # land past float32's 3.4e38 and become inf when cast.
    too_big = np.abs(x_test) > np.finfo("float32").max
    if too_big.any():
        column = int(np.argwhere(too_big)[0][1])
        raise DataError(
            f"{name}: column {column} spans [{lo[column]:g}, {hi[column]:g}] in the training "
            "split, and min-max scaling by that range sends held-out values past float32's "
            "range (3.4e38). Rescale or drop that column."
        )


def _class_labels(y_train, y_test):
    """The labels as int64, or both None unless they are integer class labels (only those
    colour the latent scatter)."""
    labels = [y for y in (y_train, y_test) if y is not None]
    if labels and not all(np.issubdtype(y.dtype, np.integer) for y in labels):
        return None, None
    y_train = None if y_train is None else y_train.astype("int64")
    y_test = None if y_test is None else y_test.astype("int64")
    return y_train, y_test


# ---------------------------------------------------------------------------------------------
# tf.data.


def steps_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Batches in one pass over `num_examples` examples."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def make_dataset(
    x, batch_size, shuffle=False, seed=0, binarize=False, drop_remainder=False, first_epoch=0
):
    """A `tf.data.Dataset` of batches of `x` alone (no labels), prefetched.

    Without `shuffle`: one pass over `x` in order. With `shuffle`: an endless stream of epochs
    (iterate it with `steps_per_epoch(len(x), batch_size, drop_remainder)` steps per epoch),
    epoch e being a permutation drawn from the stateless seed `(seed, e)`. Epoch e is thus the
    same whether training started at epoch 0 or resumed at `first_epoch` = e, and the same on
    one device and on N replicas. `binarize` draws each batch's pixels from Bernoulli(x),
    fresh for every epoch and batch (dynamic binarization), also from stateless seeds.

    Example:
    >>> ds = make_dataset(load_dataset("digits").x_train, 64, shuffle=True)
    """
    import tensorflow as tf

    options = tf.data.Options()
    # The examples live in memory: shard by example, never by file, across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if not shuffle:
        ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size, drop_remainder=drop_remainder)
        if binarize:
            ds = ds.enumerate().map(
                lambda i, batch: _binarize(batch, _noise_seed(seed, 0, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    x = tf.convert_to_tensor(x)
    n = int(x.shape[0])

    def one_epoch(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        order = tf.argsort(keys)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(
            batch_size, drop_remainder=drop_remainder
        )
        return batches.enumerate().map(lambda i, idx: (epoch, i, idx))

    def gather(epoch, i, idx):
        batch = tf.gather(x, idx)
        if binarize:
            batch = _binarize(batch, _noise_seed(seed, epoch, i))
        return batch

    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(one_epoch)
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
