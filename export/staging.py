"""The phases of `keras_vae.export.export_all`: its arguments checked, a rerun recognised,
the version staged (SavedModel, TFLite files, metadata) and committed."""

import os
import shutil

from keras_vae.export import TFLITE_DIR, check_count, check_out_dir, check_version, publish
from keras_vae.export.folders import _temp_name, remove_stale_temps
from keras_vae.export.inputs import check_representative_data, load_representative_data
from keras_vae.export.saved_model import (
    check_model,
    check_name,
    commit,
    read_metadata,
    stage_saved_model,
)
from keras_vae.export.tflite import check_quantization, export_tflite, sidecar_path


def _check_arguments(model, out_dir, name, version, representative_data, quantizations, limits):
    """Every argument of `export_all` checked before the first file is written: a rejected
    export leaves nothing behind, and its retry needs no --overwrite.

    Returns `(quantizations as a list, representative_data as float32 or None)`.
    """
    check_model(model)
    check_name(name)
    check_version(version)
    for label, value in limits.items():
        check_count(value, label)
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
    return quantizations, representative_data


def _already_exported(out_dir, name, version, targets, digest, overwrite):
    """True if the version folder holds this very export, complete (a rerun); raises
    FileExistsError if it, or one of the TFLite `targets`, holds something else and `overwrite`
    is False."""
    target = os.path.join(out_dir, name, str(version))
    if os.path.exists(target) and not overwrite:
        if read_metadata(target).get("export_fingerprint") == digest:
            publish.verify(out_dir, name, version)
            return True
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
    return False


def _commit(temp, staging, out_dir, name, version, overwrite):
    """Step 4 of `keras_vae.export.publish`: the staged version committed, then what is left
    of the temporary SavedModel (and the staged TFLite files if nothing was committed) removed."""
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


def _fingerprint(model, name, version, quantizations, limits, representative_data):
    options = {"name": name, "version": version, "quantizations": sorted(set(quantizations))}
    return publish.fingerprint(model, {**options, **limits}, representative_data)


def _stage(model, out_dir, name, version, targets, digest, limits, representative_data):
    """Steps 3 of `keras_vae.export.publish`: the SavedModel in a temporary folder, its TFLite
    files converted from it into a staging folder, and the metadata that lists them.

    Returns `(temporary SavedModel, staging folder or None)`; on failure removes both.
    """
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
