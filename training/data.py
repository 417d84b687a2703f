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

# The named data sets, the tf.data pipeline and the scaling have modules of their own; the
# names other modules import from here are re-exported.
from keras_vae.training.named_data import (  # noqa: F401 - re-exported
    DIGITS28_BOX,
    LOADERS,
    PHOTOS64_NAMES,
    PHOTOS64_PATCHES,
    PHOTOS64_SIZE,
)
from keras_vae.training.pipeline import (  # noqa: F401 - re-exported
    _binarize,
    _noise_seed,
    binarize_once,
    make_dataset,
    steps_per_epoch,
)
from keras_vae.training.scaling import scale_images, scale_vectors


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
# Checks and the split (the scaling is in scaling.py).


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
    scale = scale_images if kind == "image" else scale_vectors
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


def _class_labels(y_train, y_test):
    """The labels as int64, or both None unless they are integer class labels (only those
    colour the latent scatter)."""
    labels = [y for y in (y_train, y_test) if y is not None]
    if labels and not all(np.issubdtype(y.dtype, np.integer) for y in labels):
        return None, None
    y_train = None if y_train is None else y_train.astype("int64")
    y_test = None if y_test is None else y_test.astype("int64")
    return y_train, y_test
