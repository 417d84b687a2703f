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
    "load_representative_data": "keras_vae.export.inputs",
    "check_representative_data": "keras_vae.export.inputs",
    # export_all's phases, which the reliability tests drive one at a time.
    "_fingerprint": "keras_vae.export.staging",
    "_stage": "keras_vae.export.staging",
}
_SUBMODULES = ("saved_model", "tflite", "cli", "publish", "inputs", "staging")


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
    from keras_vae.export import publish, staging

    limits = {"max_samples": max_samples, "iw_samples": iw_samples, "max_batch": max_batch}
    quantizations, representative_data = staging._check_arguments(
        model, out_dir, name, version, representative_data, quantizations, limits
    )
    out_dir = os.fspath(out_dir)
    targets = {q: tflite_path(out_dir, name, version, q) for q in quantizations}
    paths = {
        "saved_model": os.path.join(out_dir, name, str(version)),
        **{f"tflite_{q}": p for q, p in targets.items()},
    }
    with publish.locked(out_dir):
        # A killed export may have committed its SavedModel but not moved its TFLite files.
        publish.repair(out_dir)
        digest = staging._fingerprint(
            model, name, version, quantizations, limits, representative_data
        )
        if staging._already_exported(out_dir, name, version, targets, digest, overwrite):
            return paths  # the same export, already complete (a rerun): nothing to do
        temp, staged = staging._stage(
            model, out_dir, name, version, targets, digest, limits, representative_data
        )
        staging._commit(temp, staged, out_dir, name, version, overwrite)
    return paths


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
