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

import csv
import gzip
import os
import struct
import typing
import zlib

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IDX_IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class DataError(ValueError):
    """The data could not be read or is not usable; the message says what to do."""


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
            empty data, NaN/inf values or pixel values outside [0, 1] and 0..255.

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
        idx = _find_idx_pair(path)
        if idx is not None:
            return idx
        return _load_image_folder(path)
    if lower.endswith(".npz"):
        return _load_npz(path)
    if lower.endswith(".npy"):
        return _load_npy(path)
    if lower.endswith(".csv"):
        return _load_csv(path)
    if lower.endswith(("-idx3-ubyte", "-idx3-ubyte.gz", ".idx3-ubyte", ".idx3-ubyte.gz")):
        return _load_idx_file(path)
    raise DataError(
        f"Unsupported data file {path!r}; expected .npz, .npy, .csv, an IDX file "
        "(*-idx3-ubyte[.gz]) or a folder of PNG/JPEG images."
    )


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            arrays = {k: archive[k] for k in keys}
    except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many types on bad bytes
        # (BadZipFile, EOFError, zlib.error, NotImplementedError for an unknown compression,
        # RuntimeError for an "encrypted" flag, ...): all mean the same to the user.
        raise DataError(
            f"Could not read {path!r} as .npz ({type(e).__name__}: {e}); the file is truncated, "
            "corrupt or not a NumPy archive. Write it with np.savez(path, x_train=..., "
            "x_test=...)."
        ) from None
    if {"x_train", "x_test"} <= keys:
        return {
            "x_train": arrays["x_train"],
            "x_test": arrays["x_test"],
            "y_train": arrays.get("y_train"),
            "y_test": arrays.get("y_test"),
            "kind": None,
        }
    if "x_train" in keys or "x" in keys:
        key = "x_train" if "x_train" in keys else "x"
        labels = arrays.get("y_train" if key == "x_train" else "y")
        return {"x": arrays[key], "y": labels, "kind": None}
    raise DataError(
        f"{path!r} holds arrays {sorted(keys)}; expected 'x_train' and 'x_test' (the Keras "
        "mnist.npz layout, labels 'y_train'/'y_test' optional), or 'x' (labels 'y' optional)."
    )


def _load_npy(path):
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - see _load_npz
        raise DataError(
            f"Could not read {path!r} as .npy ({type(e).__name__}: {e}); the file is truncated "
            "or corrupt. Write it with np.save(path, array)."
        ) from None
    return {"x": x, "y": None, "kind": None}


def _load_csv(path):
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line_number, row in enumerate(csv.reader(f), start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                try:
                    rows.append([float(cell) for cell in row])
                except ValueError:
                    if line_number == 1 and not rows:
                        continue  # a header row
                    raise DataError(
                        f"{path!r} line {line_number}: expected numbers separated by commas; "
                        f"received {','.join(row)[:80]!r}."
                    ) from None
    except UnicodeDecodeError:
        raise DataError(
            f"{path!r} is not a text .csv file (it does not decode as UTF-8)."
        ) from None
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise DataError(
            f"{path!r} has rows of different lengths {sorted(widths)}; every row must hold the "
            "same number of columns."
        )
    return {"x": np.asarray(rows, dtype="float64"), "y": None, "kind": "vector"}


def _open_maybe_gzip(path):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def read_idx(path, magic=IDX_IMAGE_MAGIC):
    """Reads an MNIST IDX file (raw or .gz): images `(N, rows, cols)` or labels `(N,)`, uint8.

    Raises `DataError` on a wrong magic number or a truncated or corrupt file.
    """
    try:
        with _open_maybe_gzip(path) as f:
            content = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"Could not read IDX file {path!r} ({type(e).__name__}: {e}); the file is truncated "
            "or corrupt. Download it again."
        ) from None
    ndim = 3 if magic == IDX_IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(content) < 4:
        raise DataError(f"IDX file {path!r} is {len(content)} bytes, shorter than its header.")
    found = struct.unpack(">i", content[:4])[0]
    if found != magic:
        what = "images (idx3)" if magic == IDX_IMAGE_MAGIC else "labels (idx1)"
        raise DataError(
            f"IDX file {path!r} has magic number {found:#010x}; expected {magic:#010x} for "
            f"unsigned-byte {what}. Is it the right file?"
        )
    if len(content) < header:
        raise DataError(f"IDX file {path!r} is {len(content)} bytes, shorter than its header.")
    dims = struct.unpack(f">{ndim}i", content[4:header])
    expected = int(np.prod(dims))
    if len(content) - header != expected:
        raise DataError(
            f"IDX file {path!r} should hold {expected} bytes of data for shape {dims} but holds "
            f"{len(content) - header}; the file is truncated or corrupt."
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(folder, prefix, kind):
    for name in (f"{prefix}-{kind}-ubyte", f"{prefix}-{kind}-ubyte.gz"):
        for candidate in (name, name.replace("-ubyte", ".ubyte")):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def _labels_beside(images_path):
    """The IDX labels file next to an images file (train-images-idx3-ubyte[.gz] ->
    train-labels-idx1-ubyte[.gz]), or None."""
    folder, name = os.path.split(images_path)
    stem = name[:-3] if name.lower().endswith(".gz") else name
    labels = stem.replace("images", "labels").replace("idx3", "idx1")
    if labels == stem:
        return None
    for candidate in (labels, labels + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_idx_labels(labels_path, images_path, count):
    labels = read_idx(labels_path, IDX_LABEL_MAGIC)
    if len(labels) != count:
        raise DataError(
            f"{labels_path!r} has {len(labels)} labels for {count} images in {images_path!r}; "
            "expected one label per image. Put the matching labels file beside it or remove it."
        )
    return labels


def _load_idx_file(path):
    """One IDX images file, with the labels file beside it when there is one (same count)."""
    x = read_idx(path, IDX_IMAGE_MAGIC)
    labels = _labels_beside(path)
    y = _read_idx_labels(labels, path, len(x)) if labels else None
    return {"x": x, "y": y, "kind": "image"}


def _find_idx_pair(folder):
    train = _idx_file(folder, "train-images", "idx3")
    test = _idx_file(folder, "t10k-images", "idx3")
    if train is None and test is not None:
        found = sorted(n for n in os.listdir(folder) if "idx" in n.lower())
        raise DataError(
            f"The folder {folder!r} holds only test IDX files ({', '.join(found)}); a folder "
            "needs the training images train-images-idx3-ubyte[.gz] (t10k-* and labels "
            f"optional). Add it, or pass --data {test!r} to train on the test images alone."
        )
    if train is None:
        return None
    result = {"kind": "image"}
    train_labels = _idx_file(folder, "train-labels", "idx1")
    test_labels = _idx_file(folder, "t10k-labels", "idx1")
    x_train = read_idx(train, IDX_IMAGE_MAGIC)
    y_train = _read_idx_labels(train_labels, train, len(x_train)) if train_labels else None
    if test is None:
        result.update(x=x_train, y=y_train)
        return result
    x_test = read_idx(test, IDX_IMAGE_MAGIC)
    y_test = _read_idx_labels(test_labels, test, len(x_test)) if test_labels else None
    if y_train is None or y_test is None:
        y_train = y_test = None
    result.update(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    return result


def _load_image_folder(folder):
    from PIL import Image

    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(
            os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_SUFFIXES)
        )
    if not files:
        names = sorted(os.listdir(folder))
        found = "it is empty" if not names else f"it holds {', '.join(names[:5])}"
        found += ", ..." if len(names) > 5 else ""
        raise DataError(
            f"The folder {folder!r} holds no PNG/JPEG images and no IDX training images "
            f"(train-images-idx3-ubyte[.gz]); {found}. Nothing to train on: point --data at a "
            "folder of images, an IDX folder or file, or a .npz/.npy/.csv file."
        )
    classes = sorted({os.path.relpath(os.path.dirname(f), folder) for f in files})
    images, first = [], None
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
                array = np.asarray(image.convert(mode))
        except Exception as e:  # noqa: BLE001 - Pillow raises many types on bad bytes
            raise DataError(
                f"Could not decode image {path!r} ({type(e).__name__}: {e}); the file is "
                "truncated or corrupt. Remove or replace it."
            ) from None
        if array.ndim == 2:
            array = array[..., None]
        if first is None:
            first = (path, array.shape)
        elif array.shape[:2] != first[1][:2]:
            raise DataError(
                f"Images differ in size: {first[0]!r} is {first[1][1]}x{first[1][0]} (WxH) but "
                f"{path!r} is {array.shape[1]}x{array.shape[0]}. Resize them to one size."
            )
        images.append(array)
    channels = max(a.shape[-1] for a in images)
    if channels == 3:
        images = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in images]
    labels = None
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[os.path.relpath(os.path.dirname(f), folder)] for f in files])
    return {"x": np.stack(images), "y": labels, "kind": "image", "classes": classes}


# ---------------------------------------------------------------------------------------------
# Checks, scaling and the split.


def _check_array(x, where):
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "uifb":
        kind = getattr(x, "dtype", type(x))
        raise DataError(f"{where}: expected a numeric array; received {kind}.")
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
        span = np.where(hi > lo, hi - lo, 1.0)
        x_train, x_test = (x_train - lo) / span, (x_test - lo) / span
        scaling = {
            "scaled": "min-max per column from the training split",
            "min": lo.tolist(),
            "max": hi.tolist(),
        }
    return x_train.astype("float32"), x_test.astype("float32"), scaling, "gaussian"


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
