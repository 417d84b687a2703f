"""The representative examples an export reports its int8 decode error on: loaded from a
`.npy`/`.npz` file and checked against a model's data shape and likelihood."""

import os

import numpy as np


def load_representative_data(path, label="representative_data"):
    """The array in a `.npy` file (or a `.npz` with one array, or with an `x` array).

    Only the file is checked here (its format, a floating-point dtype, finite values); the
    shape and range against a model are `check_representative_data`'s.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: no such file {path!r}; expected a .npy of examples.")
    how = "Save the examples, scaled as in training, with numpy.save('x.npy', x)."
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".npy", ".npz"):
        raise ValueError(
            f"{label} must be a .npy file of examples (N, *data_shape); received {path!r}. {how}"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"{label} {path!r} is not a readable NumPy {extension} file of numbers ({e}). {how}"
        ) from e
    if extension == ".npz":
        with loaded:
            names = list(loaded.files)
            if len(names) == 1 or "x" in names:
                data = loaded[names[0] if len(names) == 1 else "x"]
            else:
                raise ValueError(
                    f"{label} {path!r} holds arrays {names}; expected one array or one named "
                    f"'x'. {how}"
                )
    else:
        data = loaded
    return _check_values(data, label)


def _check_values(data, label):
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        peak = (
            f" and max {data.max()}" if data.size and np.issubdtype(data.dtype, np.number) else ""
        )
        raise ValueError(
            f"{label} must hold floating-point examples scaled as in training; received dtype "
            f"{data.dtype}{peak}. Convert with x.astype('float32') (images: divide by 255)."
        )
    if not np.all(np.isfinite(data)):
        raise ValueError(
            f"{label} must hold finite values; received {int(np.sum(~np.isfinite(data)))} NaN or "
            "infinite values. Drop or fill those examples."
        )
    return data


def check_representative_data(data, data_shape, likelihood, label="representative_data"):
    """`data` as float32 if it is finite float examples `(N, *data_shape)`, in [0, 1] for a
    Bernoulli model; otherwise a ValueError that says what was received and how to fix it."""
    data = _check_values(data, label)
    want = tuple(int(d) for d in data_shape)
    if data.ndim != len(want) + 1 or tuple(data.shape[1:]) != want or len(data) == 0:
        raise ValueError(
            f"{label} must be examples of shape (N, {', '.join(map(str, want))}) with N >= 1; "
            f"received shape {data.shape}. Pass the training examples as the model sees them."
        )
    if likelihood == "bernoulli" and (data.min() < 0 or data.max() > 1):
        raise ValueError(
            f"{label} must hold values in [0, 1] for a Bernoulli model; received min "
            f"{float(data.min()):g} and max {float(data.max()):g}. Scale as in training "
            "(images: divide by 255)."
        )
    return data.astype(np.float32)
