"""Pixels and tables scaled for the model: images to float32 in [0, 1], tables min-max per
column from the training split; what was done is what `info["scaled"]` says."""

import numpy as np

from keras_vae.training.data_files import DataError


def scale_images(x_train, x_test, raw, name):
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


def scale_vectors(x_train, x_test, raw, name):
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
