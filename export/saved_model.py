"""A trained VAE as a SavedModel in TF Serving's layout, `BASE_DIR/<name>/<version>/`.

Five signatures, each with named inputs and outputs, explicit dtypes, and an open batch
dimension:

| signature         | inputs                                         | outputs                       |
|-------------------|------------------------------------------------|-------------------------------|
| `serving_default` | `x` float32 `[B, *data_shape]`                 | `reconstruction` (same shape) |
| `encode`          | `x`                                            | `mean`, `scale` `[B, latent]` |
| `decode`          | `z` float32 `[B, latent]`                      | `x` `[B, *data_shape]`        |
| `sample`          | `num_samples` int32 `[]`, `seed` int32 `[]`    | `x`, `z`                      |
| `log_likelihood`  | `x`                                            | `log_likelihood` `[B]` (nats) |

`sample` is capped at `max_samples` per request, and the signatures that take a batch
(`serving_default`, `encode`, `decode`, `log_likelihood`) at `max_batch` examples, so one request
cannot make a server allocate unbounded memory or time; `log_likelihood` decodes its
`B * iw_samples` latents in chunks within `keras_vae.estimators.DEFAULT_MEMORY_BUDGET` bytes; `seed >= 0` gives a repeatable draw (the same on a server and in the TFLite
model, see `keras_vae.rng`), `seed < 0` a fresh one per call. `log_likelihood` is the importance
weighted estimate with `iw_samples` posterior samples and a fixed seed, so a request's scores are
repeatable.

The SavedModel is written to a temporary folder beside the target and renamed into place: TF
Serving (which loads the highest numbered folder) never sees a half-written version. With its
TFLite files it is published as one (`keras_vae.export.publish`), one export per folder at a time.
"""

import json
import os
import shutil

import keras

import keras_vae
from keras_vae import estimators
from keras_vae.export import (
    DEFAULT_IW_SAMPLES,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_SAMPLES,
    METADATA_PATH,
    check_count,
    check_version,
    publish,
)
from keras_vae.export.folders import (  # noqa: F401 (_exchange: re-exported for the tests)
    _exchange,
    _move_into_place,
    _temp_name,
    remove_stale_temps,
)
from keras_vae.export.signatures import LOG_LIKELIHOOD_SEED, SIGNATURES, signatures


def check_model(model):
    """Raises a clear error unless `model` is a built `keras_vae.VAE`."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a trained keras_vae.VAE; received {type(model).__name__}. Load one with "
            "keras.models.load_model('model.keras')."
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"The model {model.name!r} is not built (it has no weights yet), so there is nothing "
            "to export. Build it with keras_vae.build_vae(...), train it, or load a saved one."
        )
    if not isinstance(model, keras_vae.VAE):
        raise TypeError(
            f"Expected a keras_vae.VAE; received a {type(model).__name__}. The export needs the "
            "VAE's encode/decode/log_likelihood methods."
        )


def check_name(name):
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", os.sep))
    ):
        raise ValueError(
            "name must be a non-empty folder name without path separators and not starting "
            f"with '.'; received name={name!r}."
        )
    return name


def metadata(model, name, version, max_samples, iw_samples, max_batch):
    """What a client needs to know about the export, also written beside the SavedModel."""
    return {
        "format": "keras_vae.export/1",
        "name": name,
        "version": version,
        "keras_vae_version": keras_vae.__version__,
        "latent_dim": int(model.latent_dim),
        "data_shape": [int(d) for d in model.data_shape],
        "likelihood": model.likelihood_name,
        "max_samples": max_samples,
        "max_batch": max_batch,
        "iw_samples": iw_samples,
        "memory_budget_bytes": estimators.DEFAULT_MEMORY_BUDGET,
        "log_likelihood_seed": LOG_LIKELIHOOD_SEED,
        "signatures": list(SIGNATURES),
        "rng": "keras_vae.rng.standard_normal (lowbias32 counter hash + Box-Muller)",
    }


def build_archive(
    model,
    max_samples=DEFAULT_MAX_SAMPLES,
    iw_samples=DEFAULT_IW_SAMPLES,
    max_batch=DEFAULT_MAX_BATCH,
):
    """A `keras.export.ExportArchive` with the five serving signatures of `model`."""
    check_model(model)
    check_count(max_samples, "max_samples")
    check_count(iw_samples, "iw_samples")
    check_count(max_batch, "max_batch")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, specs) in signatures(model, max_samples, iw_samples, max_batch).items():
        archive.add_endpoint(name, function, input_signature=specs)
    return archive


def read_metadata(saved_model_dir):
    """The metadata written by `export_saved_model`, or a clear error for other folders."""
    path = os.path.join(saved_model_dir, METADATA_PATH)
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel in {saved_model_dir!r} (no saved_model.pb). Pass the version folder "
            "written by export_saved_model, e.g. OUT/vae/1."
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"{saved_model_dir!r} is a SavedModel but not a keras-vae export (no {METADATA_PATH})."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def export_saved_model(
    model,
    base_dir,
    name="vae",
    version=1,
    overwrite=False,
    max_samples=DEFAULT_MAX_SAMPLES,
    iw_samples=DEFAULT_IW_SAMPLES,
    max_batch=DEFAULT_MAX_BATCH,
):
    """Writes `model` as a SavedModel for TF Serving to `base_dir/<name>/<version>/`.

    The SavedModel is written to a temporary folder beside the target (named `.tmp-...`, which TF
    Serving ignores) and renamed into place, so a failure or a kill midway leaves no partial
    version folder and never touches other versions. The version then has no TFLite files:
    replacing a version removes the ones of the model it replaced (`export_all` writes both).
    One export at a time writes to `base_dir` (a lock; a second one fails at once).

    Args:
        model: keras_vae.VAE. A built (normally trained) model.
        base_dir: str. TF Serving's model base path holds `base_dir/<name>`.
        name: str. The model name (TF Serving's `MODEL_NAME`).
        version: int. The version folder, >= 1; TF Serving serves the highest.
        overwrite: bool. Replace an existing version folder (otherwise `FileExistsError`).
        max_samples: int. Cap on `num_samples` per `sample` request.
        iw_samples: int. Importance samples per example in `log_likelihood`.
        max_batch: int. Cap on the examples (or latents) per `serving_default`, `encode`,
            `decode` and `log_likelihood` request.

    Returns:
        The path of the version folder.

    Example:
    >>> path = export_saved_model(vae, "serving", name="vae", version=1)
    >>> tf.saved_model.load(path).signatures["sample"](num_samples=4, seed=0)["x"]
    """
    check_model(model)
    check_name(name)
    check_version(version)
    check_count(max_samples, "max_samples")
    check_count(iw_samples, "iw_samples")
    check_count(max_batch, "max_batch")
    base_dir = os.fspath(base_dir)
    target = os.path.join(base_dir, name, str(version))
    with publish.locked(base_dir):
        publish.repair(base_dir)
        if os.path.exists(target) and not overwrite:
            raise FileExistsError(
                f"{target!r} already exists. Pass overwrite=True (--overwrite) to replace it, or "
                "choose a new version."
            )
        temp = stage_saved_model(
            model, base_dir, name, version, max_samples, iw_samples, max_batch, {"tflite": {}}
        )
        try:
            commit(temp, base_dir, name, version, overwrite)
        finally:
            if os.path.exists(temp):
                shutil.rmtree(temp, ignore_errors=True)
    return target


def stage_saved_model(
    model, base_dir, name, version, max_samples, iw_samples, max_batch, extra_metadata=None
):
    """Writes the SavedModel to a temporary folder in `base_dir/<name>/`; returns its path.

    `extra_metadata` is merged into the metadata (the caller's record of TFLite files).
    """
    archive = build_archive(model, max_samples, iw_samples, max_batch)
    model_dir = os.path.join(base_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temps(model_dir)
    temp = _temp_name(model_dir, f"v{version}")
    try:
        archive.write_out(temp, verbose=False)
        meta = metadata(model, name, version, max_samples, iw_samples, max_batch)
        publish.write_metadata(temp, {**meta, **(extra_metadata or {})})
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


def commit(temp, base_dir, name, version, overwrite, committed=None):
    """Moves the staged SavedModel `temp` into place and publishes its TFLite files.

    Ctrl-C waits until both are done. `committed`, a list, gets True appended once the
    version folder is the new one (from then on its staged TFLite files must be kept for
    `publish.repair` if publishing fails).
    """
    target = os.path.join(base_dir, name, str(version))
    with publish.interrupts_deferred():
        _move_into_place(temp, target, overwrite)
        if committed is not None:
            committed.append(True)
        publish.publish(base_dir, name, version)
    return target
