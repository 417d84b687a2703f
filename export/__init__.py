"""Trained VAE in, serving artefacts out: a SavedModel for TF Serving and TFLite for LiteRT.

The submodules load TensorFlow; they are imported on first use, so `keras-vae-export --help`
answers at once.

Example:
>>> paths = export.export_all(vae, "run/export", quantizations=("float32", "int8"),
...                           representative_data=x_train)
>>> paths["saved_model"], paths["tflite_int8"]
"""

import importlib
import os

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
    "export_saved_model": "export.saved_model",
    "read_metadata": "export.saved_model",
    "check_model": "export.saved_model",
    "export_tflite": "export.tflite",
    "sidecar_path": "export.tflite",
    "QUANTIZATIONS": "export.tflite",
}
_SUBMODULES = ("saved_model", "tflite", "cli")


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"export.{name}")
    raise AttributeError(f"module 'export' has no attribute {name!r}")


def tflite_path(out_dir, name="vae", version=1, quantize="float32"):
    """Where `export_all` writes a TFLite variant: `out_dir/tflite/<name>-v<version>-<quantize>.tflite`."""
    return os.path.join(os.fspath(out_dir), TFLITE_DIR, f"{name}-v{version}-{quantize}.tflite")


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
    `out_dir/tflite/`.

    Args:
        model: keras_vae.VAE. A built (normally trained) model.
        out_dir: str. Output folder.
        name: str. Model name (TF Serving's MODEL_NAME).
        version: int. SavedModel version folder.
        representative_data: array `(N, *data_shape)` or None. Examples on which the "int8"
            sidecar reports the decode error (calibration uses prior draws).
        quantizations: iterable of str. TFLite variants to write (may be empty).
        overwrite: bool. Replace an existing version and existing TFLite files.
        max_samples: int. Cap on `num_samples` per `sample` request of the SavedModel.
        iw_samples: int. Importance samples per example in `log_likelihood`.
        max_batch: int. Cap on the examples per request of the SavedModel's batch signatures.

    Returns:
        dict: `{"saved_model": path, "tflite_<quantization>": path, ...}`.
    """
    from export.saved_model import check_model, export_saved_model
    from export.tflite import check_quantization, export_tflite

    check_model(model)
    if isinstance(quantizations, str):
        quantizations = (quantizations,)
    quantizations = [check_quantization(q) for q in quantizations]
    targets = {q: tflite_path(out_dir, name, version, q) for q in quantizations}
    if not overwrite:
        existing = [p for p in targets.values() if os.path.exists(p)]
        if existing:
            raise FileExistsError(
                f"{existing[0]!r} already exists. Pass overwrite=True (--overwrite) to replace it, "
                "or choose a new version."
            )
    paths = {
        "saved_model": export_saved_model(
            model,
            out_dir,
            name,
            version,
            overwrite,
            max_samples=max_samples,
            iw_samples=iw_samples,
            max_batch=max_batch,
        )
    }
    for q, path in targets.items():
        paths[f"tflite_{q}"] = export_tflite(
            paths["saved_model"], path, quantize=q, representative_data=representative_data
        )
    return paths


__all__ = [
    "DEFAULT_IW_SAMPLES",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_SAMPLES",
    "QUANTIZATIONS",
    "QUANTIZATION_NAMES",
    "check_model",
    "export_all",
    "export_saved_model",
    "export_tflite",
    "read_metadata",
    "sidecar_path",
    "tflite_path",
]
