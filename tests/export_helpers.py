"""Shared by the export tests: tiny trained models, their exports, and a TF Serving REST emulator.

Models and exports are cached per process, so the SavedModel, TFLite and CLI tests train and
export each one once.
"""

import functools
import json
import os
import pathlib
import shutil
import tempfile

import keras
import numpy as np

import keras_vae
from keras_vae import export
from keras_vae.export import rest_examples
from keras_vae.export.rest_examples import compact_json, rest_predict  # noqa: F401  (for the tests)
from keras_vae.training.data import LOADERS

REPO = pathlib.Path(__file__).resolve().parent.parent
REQUESTS_DIR = REPO / "docs" / "requests"
SERVING_DOC = REPO / "docs" / "serving.md"


def serving_section():
    """The serving documentation, docs/serving.md."""
    return SERVING_DOC.read_text(encoding="utf-8")


SIGNATURES = rest_examples.SIGNATURES


@functools.cache
def digits():
    """Digits as (N, 8, 8, 1) float32 in [0, 1], like training's default data."""
    return LOADERS["digits"]()["x"]


@functools.cache
def vae():
    """A small conv VAE with training's default data shape and latent size ((8, 8, 1), 2):
    conv ops in TF and TFLite, and a shape check that matters (7x7 images pass its encoder)."""
    keras.utils.set_random_seed(0)
    model = keras_vae.build_vae(
        (8, 8, 1), latent_dim=2, arch="conv", seed=0, filters=(8, 16), dense_units=16
    )
    # Untrained, but every weight (biases included) moved off its initial value: outputs
    # vary with z and x as a trained model's do, without the cost of tracing train_step.
    noise = np.random.default_rng(0)
    for w in model.weights:
        w.assign(w.numpy() + 0.15 * noise.standard_normal(w.shape).astype("float32"))
    return model


@functools.cache
def saved_model():
    """`(base_dir, version_dir)` of `vae()` exported with the defaults."""
    base = tempfile.mkdtemp(prefix="keras_vae_export_")
    return base, export.export_saved_model(vae(), base, name="vae", version=1)


@functools.cache
def tflite(quantize):
    """Path of `vae()`'s `.tflite` for `quantize` (int8 with its error on digits in the sidecar)."""
    out = os.path.join(tempfile.mkdtemp(prefix="keras_vae_tflite_"), f"vae-{quantize}.tflite")
    return export.export_tflite(
        saved_model()[1], out, quantize=quantize, representative_data=digits()[:256]
    )


def copy_version(base_dir, version=1):
    """Copies the cached export into `base_dir/vae/<version>` (cheaper than exporting again)."""
    target = os.path.join(base_dir, "vae", str(version))
    shutil.copytree(saved_model()[1], target)
    return target


# ------------------------------------------------------------------------------------------------
# TF Serving's REST :predict, columnar ("inputs") form, emulated on a loaded SavedModel.


def load_request(signature):
    with open(REQUESTS_DIR / f"{signature}.request.json", encoding="utf-8") as f:
        return json.load(f)


def load_response(signature):
    with open(REQUESTS_DIR / f"{signature}.response.json", encoding="utf-8") as f:
        return json.load(f)


def write_rest_examples(saved_model_dir, out_dir=REQUESTS_DIR, decimals=4):
    """Writes `<signature>.response.json` for each request file, from a real export."""
    return rest_examples.write_rest_examples(saved_model_dir, out_dir, decimals)


def shape_of(nested):
    return list(np.shape(np.asarray(nested)))
