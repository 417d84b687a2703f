"""Trained VAE in, serving artefacts out: a SavedModel for TF Serving and TFLite for LiteRT.

Installed as `keras_vae.export` (the folder is the repository's top-level export/). The
submodules are imported on first use.

Example:
>>> from keras_vae import export
>>> paths = export.export_all(vae, "run/export", quantizations=("float32", "int8"),
...                           representative_data=x_train)
>>> paths["saved_model"], paths["tflite_int8"]
"""

import importlib
import os
import shutil

# Where a SavedModel written by keras-vae-export keeps its metadata (keras_vae.json).
METADATA_PATH = os.path.join("assets.extra", "keras_vae.json")
DEFAULT_MAX_SAMPLES = 1024
DEFAULT_IW_SAMPLES = 64
# Examples per request of the batch signatures: 256 28x28 images to the conv model's
# log_likelihood are 16,384 decodes, a few seconds on one core.
DEFAULT_MAX_BATCH = 256
TFLITE_DIR = "tflite"
# The TFLite variants, keys of export.tflite.QUANTIZATIONS: named here, where `keras-vae-export
# --help` reads them without loading TensorFlow.
QUANTIZATION_NAMES = ("float32", "float16", "dynamic", "int8")

_LAZY = {
    "export_saved_model": "keras_vae.export.saved_model",
    "read_metadata": "keras_vae.export.saved_model",
    "check_model": "keras_vae.export.saved_model",
    "export_tflite": "keras_vae.export.tflite",
    "sidecar_path": "keras_vae.export.tflite",
    "verify": "keras_vae.export.publish",
    "ExportLockedError": "keras_vae.export.publish",
    "QUANTIZATIONS": "keras_vae.export.tflite",
}
_SUBMODULES = ("saved_model", "tflite", "cli", "publish")


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_vae.export.{name}")
    raise AttributeError(f"module 'keras_vae.export' has no attribute {name!r}")


def tflite_path(out_dir, name="vae", version=1, quantize="float32"):
    """Where `export_all` writes a TFLite variant: `out_dir/tflite/<name>-v<version>-<quantize>.tflite`."""
    return os.path.join(os.fspath(out_dir), TFLITE_DIR, f"{name}-v{version}-{quantize}.tflite")


# TF Serving parses version folders as int64; the signatures count examples in int32.
MAX_VERSION = 2**63 - 1
MAX_COUNT = 2**31 - 1


def check_version(version, label="version"):
    """`version` if it is an integer in 1..2**63-1: TF Serving orders numeric version folders
    (as int64) and serves the highest, and a version 0 is easily a mistake (an unset counter)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"{label} must be an integer >= 1; received {version!r}. TF Serving serves the "
            "highest numbered version folder: start at 1 and count up."
        )
    if version > MAX_VERSION:
        raise ValueError(
            f"{label} must be at most {MAX_VERSION} (TF Serving reads versions as int64); "
            f"received {version}. Count versions up from 1."
        )
    return version


def check_count(value, label):
    """`value` if it is an integer in 1..2**31-1: `max_samples`, `max_batch` and `iw_samples`
    are compared with the int32 counts of a request inside the graph."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValueError(
            f"{label} must be an integer >= 1 and <= {MAX_COUNT} (the served model counts in "
            f"int32); received {label}={value!r}."
        )
    return value


def check_out_dir(out_dir, label="out_dir"):
    """Raises NotADirectoryError if `out_dir`, or a folder above it, is an existing file."""
    path = os.path.abspath(os.fspath(out_dir))
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return out_dir
        path = parent
    if not os.path.isdir(path):
        where = (
            "is a file"
            if path == os.path.abspath(os.fspath(out_dir))
            else f"is below {path!r}, a file"
        )
        raise NotADirectoryError(
            f"{label} {os.fspath(out_dir)!r} {where}; expected a folder (TF Serving's model base "
            "path). Choose another path or move the file away."
        )
    return out_dir


def load_representative_data(path, label="representative_data"):
    """The array in a `.npy` file (or a `.npz` with one array, or with an `x` array).

    Only the file is checked here (its format, a floating-point dtype, finite values); the
    shape and range against a model are `check_representative_data`'s.
    """
    import numpy as np

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
    import numpy as np

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
    import numpy as np

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


def export_all(
    model,
    out_dir,
    name="vae",
    version=1,
    representative_data=None,
    quantizations=("float32",),
    overwrite=False,
    max_samples=DEFAULT_MAX_SAMPLES,
    iw_samples=DEFAULT_IW_SAMPLES,
    max_batch=DEFAULT_MAX_BATCH,
):
    """Writes the SavedModel (`out_dir/<name>/<version>/`) and one `.tflite` per quantization.

    `out_dir` is TF Serving's base path; the TFLite files and their sidecar JSON go to
    `out_dir/tflite/`. One version is one model: everything is written under temporary names
    and published together (see `keras_vae.export.publish`), so a failed, interrupted or killed
    export never leaves a version whose TFLite files belong to another model; the SavedModel's
    metadata lists its TFLite files with their SHA-256 (`export.verify` checks them). Rerun
    after a kill, the same call finishes the export; rerun after it completed, it does nothing.
    One export at a time writes to `out_dir`: a second one fails at once (`ExportLockedError`).

    Args:
        model: keras_vae.VAE. A built (normally trained) model.
        out_dir: str. Output folder.
        name: str. Model name (TF Serving's MODEL_NAME).
        version: int. SavedModel version folder, >= 1.
        representative_data: array `(N, *data_shape)`, a path to a `.npy` of one (or a `.npz`
            with one array, or an `x` array), or None. Examples on which the "int8" sidecar
            reports the decode error (calibration uses prior draws). Checked before anything
            is written: finite floats of the model's data shape, in [0, 1] for a Bernoulli
            model.
        quantizations: iterable of str. TFLite variants to write (may be empty).
        overwrite: bool. Replace an existing version and existing TFLite files.
        max_samples: int. Cap on `num_samples` per `sample` request of the SavedModel.
        iw_samples: int. Importance samples per example in `log_likelihood`.
        max_batch: int. Cap on the examples per request of the SavedModel's batch signatures.

    Returns:
        dict: `{"saved_model": path, "tflite_<quantization>": path, ...}`.
    """
    from keras_vae.export import publish
    from keras_vae.export.saved_model import check_model, check_name, commit, read_metadata
    from keras_vae.export.tflite import check_quantization

    # Every argument is checked before the first file is written: a rejected export leaves
    # nothing behind, and its retry needs no --overwrite.
    check_model(model)
    check_name(name)
    check_version(version)
    check_count(max_samples, "max_samples")
    check_count(iw_samples, "iw_samples")
    check_count(max_batch, "max_batch")
    check_out_dir(out_dir)
    if isinstance(quantizations, str):
        quantizations = (quantizations,)
    quantizations = [check_quantization(q) for q in quantizations]
    if isinstance(representative_data, (str, os.PathLike)):
        representative_data = load_representative_data(representative_data)
    if representative_data is not None:
        representative_data = check_representative_data(
            representative_data, model.data_shape, model.likelihood_name
        )
    out_dir = os.fspath(out_dir)
    target = os.path.join(out_dir, name, str(version))
    targets = {q: tflite_path(out_dir, name, version, q) for q in quantizations}
    paths = {"saved_model": target, **{f"tflite_{q}": p for q, p in targets.items()}}
    limits = {"max_samples": max_samples, "iw_samples": iw_samples, "max_batch": max_batch}
    with publish.locked(out_dir):
        # A killed export may have committed its SavedModel but not moved its TFLite files.
        publish.repair(out_dir)
        digest = _fingerprint(model, name, version, quantizations, limits, representative_data)
        if os.path.exists(target) and not overwrite:
            if read_metadata(target).get("export_fingerprint") == digest:
                publish.verify(out_dir, name, version)
                return paths  # the same export, already complete (a rerun): nothing to do
            raise FileExistsError(
                f"{target!r} already exists. Pass overwrite=True (--overwrite) to replace it, "
                "or choose a new version."
            )
        existing = [p for p in targets.values() if os.path.exists(p)]
        if existing and not overwrite:
            raise FileExistsError(
                f"{existing[0]!r} already exists. Pass overwrite=True (--overwrite) to replace it, "
                "or choose a new version."
            )
        temp, staging = _stage(
            model, out_dir, name, version, targets, digest, limits, representative_data
        )
        committed = []
        try:
            commit(temp, out_dir, name, version, overwrite, committed)
        finally:
            # Before the commit the staged files are nobody's; after it they are the version's,
            # kept for publish.repair should publishing have failed.
            if staging is not None and not committed:
                shutil.rmtree(staging, ignore_errors=True)
            if os.path.exists(temp):
                shutil.rmtree(temp, ignore_errors=True)
    return paths


def _fingerprint(model, name, version, quantizations, limits, representative_data):
    from keras_vae.export import publish

    options = {"name": name, "version": version, "quantizations": sorted(set(quantizations))}
    return publish.fingerprint(model, {**options, **limits}, representative_data)


def _stage(model, out_dir, name, version, targets, digest, limits, representative_data):
    """Steps 3 of `keras_vae.export.publish`: the SavedModel in a temporary folder, its TFLite
    files converted from it into a staging folder, and the metadata that lists them.

    Returns `(temporary SavedModel, staging folder or None)`; on failure removes both.
    """
    from keras_vae.export import publish
    from keras_vae.export.saved_model import (
        _temp_name,
        read_metadata,
        remove_stale_temps,
        stage_saved_model,
    )
    from keras_vae.export.tflite import export_tflite, sidecar_path

    extra = {"export_fingerprint": digest, "tflite": {}}
    temp = stage_saved_model(model, out_dir, name, version, **limits, extra_metadata=extra)
    tflite_dir = os.path.join(out_dir, TFLITE_DIR)
    staging = None
    try:
        if os.path.isdir(tflite_dir) or targets:
            os.makedirs(tflite_dir, exist_ok=True)
            remove_stale_temps(tflite_dir)
        if targets:
            staging = _temp_name(tflite_dir, "staging")
            os.mkdir(staging)
        for q, path in targets.items():
            # Converted from the staged SavedModel: the one this version will hold.
            staged = export_tflite(
                temp,
                os.path.join(staging, os.path.basename(path)),
                quantize=q,
                representative_data=representative_data,
            )
            for file in (staged, sidecar_path(staged)):
                extra["tflite"][os.path.basename(file)] = {
                    "sha256": publish.sha256(file),
                    "staged": os.path.relpath(file, tflite_dir),
                }
        publish.write_metadata(temp, {**read_metadata(temp), **extra})
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return temp, staging


__all__ = [
    "DEFAULT_IW_SAMPLES",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_SAMPLES",
    "QUANTIZATIONS",
    "QUANTIZATION_NAMES",
    "ExportLockedError",
    "MAX_COUNT",
    "MAX_VERSION",
    "check_count",
    "check_model",
    "check_out_dir",
    "check_representative_data",
    "check_version",
    "export_all",
    "export_saved_model",
    "export_tflite",
    "load_representative_data",
    "read_metadata",
    "sidecar_path",
    "tflite_path",
    "verify",
]
