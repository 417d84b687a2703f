"""MNIST IDX files in (raw or gzip'd): one images file, or a folder of train/t10k images and labels.

The header's dimensions are read as the unsigned integers the format defines, checked against
the file's length (raw) and the memory budget before the data are read, so a gzip bomb is
refused without being inflated.
"""

import gzip
import math
import os
import struct
import zlib

import numpy as np

from keras_vae.training.data_files import (
    FLOAT32_BYTES,
    DataError,
    check_regular_file,
    claim_memory,
)

IDX_IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _read_up_to(f, count):
    """Up to `count` bytes of `f`, fewer only at its end."""
    chunks, left = [], count
    while left > 0:
        chunk = f.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _idx_dims(path, f, magic):
    """The dimensions an IDX header declares, reading only the header."""
    ndim = 3 if magic == IDX_IMAGE_MAGIC else 1
    header = _read_up_to(f, 4 + 4 * ndim)
    if len(header) < 4:
        raise DataError(f"IDX file {path!r} is {len(header)} bytes, shorter than its header.")
    found = struct.unpack(">i", header[:4])[0]
    if found != magic:
        what = "images (idx3)" if magic == IDX_IMAGE_MAGIC else "labels (idx1)"
        raise DataError(
            f"IDX file {path!r} has magic number {found:#010x}; expected {magic:#010x} for "
            f"unsigned-byte {what}. Is it the right file?"
        )
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"IDX file {path!r} is {len(header)} bytes, shorter than its header.")
    # Unsigned, as the format defines them: no negative dimension, and math.prod of Python
    # ints cannot overflow the way np.prod of int32s did.
    return struct.unpack(f">{ndim}I", header[4:])


def _idx_payload(path, f, dims, spent):
    """The IDX data after the header: sized and budgeted before it is read."""
    expected, header = math.prod(dims), 4 + 4 * len(dims)
    gz = path.lower().endswith(".gz")
    if not gz:
        held = os.fstat(f.fileno()).st_size - header
        _check_idx_count(path, dims, expected, held)
    claim_memory(f"IDX file {path!r} declares shape {dims}", expected, spent)
    # One byte more than declared: a longer file shows itself, and a gzip stream is read to its
    # end, where its CRC-32 is checked.
    content = _read_up_to(f, expected + 1)
    if gz and len(content) != expected:
        _check_idx_count(path, dims, expected, len(content), more=len(content) > expected)
    return content


def _check_idx_count(path, dims, expected, held, more=False):
    if held != expected:
        holds = f"more than {expected}" if more else str(held)
        raise DataError(
            f"IDX file {path!r} should hold {expected} bytes of data for shape {dims} but holds "
            f"{holds}; the file is truncated or corrupt."
        )


def read_idx(path, magic=IDX_IMAGE_MAGIC, spent=0):
    """Reads an MNIST IDX file (raw or .gz): images `(N, rows, cols)` or labels `(N,)`, uint8.

    `spent`: bytes already claimed from the memory budget by files loaded with this one.
    Raises `DataError` on a wrong magic number, a truncated or corrupt file, or a declared size
    over `memory_budget()` (checked before the data are read, so a gzip bomb is never inflated).
    """
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        check_regular_file(path)
        with opener(path, "rb") as f:
            dims = _idx_dims(path, f, magic)
            content = _idx_payload(path, f, dims, spent)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"Could not read IDX file {path!r} ({type(e).__name__}: {e}); the file is truncated "
            "or corrupt. Download it again."
        ) from None
    return np.frombuffer(content, dtype=np.uint8).reshape(dims)


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


def load_idx_file(path):
    """One IDX images file, with the labels file beside it when there is one (same count)."""
    x = read_idx(path, IDX_IMAGE_MAGIC)
    labels = _labels_beside(path)
    y = _read_idx_labels(labels, path, len(x)) if labels else None
    return {"x": x, "y": y, "kind": "image"}


def find_idx_pair(folder):
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
    x_test = read_idx(test, IDX_IMAGE_MAGIC, spent=x_train.size * FLOAT32_BYTES)
    y_test = _read_idx_labels(test_labels, test, len(x_test)) if test_labels else None
    if y_train is None or y_test is None:
        y_train = y_test = None
    result.update(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    return result
