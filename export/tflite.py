"""TFLite models for on-device decoding and sampling, converted from the serving SavedModel.

One `.tflite` file holds two signatures, `decode(z) -> x` and `sample(num_samples, seed) -> x, z`,
built from TFLite builtin ops only, so stock LiteRT runs it without the Flex delegate. `sample`
takes its noise from `keras_vae.rng` (an integer hash and Box-Muller): `seed >= 0` repeats a draw
(the same one the SavedModel's `sample` gives), `seed < 0` draws fresh noise with TFLite's
builtin random op on every call.

A sidecar JSON beside the `.tflite` says what an app needs: latent size, output shape,
likelihood, version and quantization.
"""

import json
import os
import uuid
import warnings

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_vae
from keras_vae.export import QUANTIZATION_NAMES
from keras_vae.export.inputs import check_representative_data
from keras_vae.export.saved_model import read_metadata
from keras_vae.training.console import quiet_native_logs

TFLITE_SIGNATURES = ("decode", "sample")
# int8 calibration: the `sample` signature's own draws for these seeds, fed to `decode` too.
_CALIBRATION_BATCH = 64
_CALIBRATION_SEEDS = range(8)
# representative_data examples on which the sidecar reports the int8 decode error.
_MAX_ERROR_EXAMPLES = 256


def _float32(converter, calibration):
    del converter, calibration


def _float16(converter, calibration):
    del calibration
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _per_tensor_dense(converter):
    # Per-channel quantization gives the Dense layers a float32 scale and an int64 zero point per
    # output unit, written again in each signature: for the conv decoder's Dense 2 -> 3136 that
    # outweighed the int8 weights (int8 file 95% of float32; per tensor 42%, benchmarks/).
    # The converter has no public switch for it yet.
    if hasattr(converter, "_experimental_disable_per_channel_quantization_for_dense_layers"):
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True


def _dynamic(converter, calibration):
    del calibration
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    _per_tensor_dense(converter)


def _int8(converter, calibration):
    # Weights and activations in int8 where the op allows it; inputs and outputs stay float32
    # and the integer hash of the noise stays uint32, so the signatures do not change.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    _per_tensor_dense(converter)


QUANTIZATIONS = dict(zip(QUANTIZATION_NAMES, (_float32, _float16, _dynamic, _int8), strict=True))


def check_quantization(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantize!r}; expected one of {list(QUANTIZATIONS)}."
        )
    return quantize


def _check_representative_data(data, meta):
    return check_representative_data(data, meta["data_shape"], meta["likelihood"])


def _convert(saved_model_dir, quantize, calibration=None):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(TFLITE_SIGNATURES)
    )
    # Builtins only (the default): a graph that needed Flex would fail here, not on a phone.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    QUANTIZATIONS[quantize](converter, calibration)
    with warnings.catch_warnings():
        # int8 calibration runs TF's own tf.lite.Interpreter, which warns of its deprecation.
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
        return converter.convert()


def _calibration(float_model):
    """A representative dataset in the (signature, inputs) form the TFLite calibrator takes.

    Both signatures see the same latents: the prior draws that `sample` makes for the
    calibration seeds, read from the float TFLite model (TFLite's kernels, as in the
    calibrator, rather than the NumPy twin, which may differ in the last bit). The decoder's
    activations then get one set of ranges, so the converter writes each int32 bias once for
    both signatures (for the conv decoder's 3136-unit Dense, 12 KiB less), and on a device
    `decode(z)` gives the `x` that `sample` returned with `z` (to one int8 output step). The
    prior is the distribution the decoder serves on a device: these signatures generate, and
    a trained VAE's posterior latents lie inside it.
    """
    sample = Interpreter(model_content=float_model).get_signature_runner("sample")
    count = np.array(_CALIBRATION_BATCH, np.int32)
    draws = [
        (seed, sample(num_samples=count, seed=np.array(seed, np.int32))["z"])
        for seed in _CALIBRATION_SEEDS
    ]

    def dataset():
        for seed, z in draws:
            yield ("sample", {"num_samples": count, "seed": np.array(seed, np.int32)})
            yield ("decode", {"z": z})

    return dataset


def _quantization_error(saved_model_dir, content, data):
    """The int8 `decode` against the SavedModel's float `decode` on the posterior means of `data`."""
    signatures = tf.saved_model.load(saved_model_dir).signatures
    z = signatures["encode"](x=tf.constant(data))["mean"]
    want = signatures["decode"](z=z)["x"].numpy()
    got = Interpreter(model_content=content).get_signature_runner("decode")(z=z.numpy())["x"]
    error = np.abs(got - want)
    return {"examples": len(data), "max_abs": float(error.max()), "mean_abs": float(error.mean())}


def sidecar_path(out_path):
    """The JSON metadata file beside a `.tflite` file: `model.tflite` -> `model.json`."""
    root, _ = os.path.splitext(os.fspath(out_path))
    return root + ".json"


def _atomic_write(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(temp, "wb") as f:
            f.write(payload)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def export_tflite(saved_model_dir, out_path, quantize="float32", representative_data=None):
    """Converts an `export_saved_model` folder to one `.tflite` with `decode` and `sample`.

    Args:
        saved_model_dir: str. The version folder written by `export_saved_model`.
        out_path: str. Where to write the `.tflite`; the sidecar JSON goes beside it.
        quantize: str. "float32", "float16" (weights), "dynamic" (int8 weights, float
            activations) or "int8" (int8 weights and activations calibrated on prior draws,
            float inputs and outputs).
        representative_data: array `(N, *data_shape)` or None. Examples for "int8": the
            sidecar JSON then records the int8 `decode` error against the float SavedModel on
            their posterior means (up to 256 of them). Calibration itself uses prior draws,
            which is what the two signatures decode. Ignored by the other quantizations.

    Returns:
        `out_path`.

    Example:
    >>> export_tflite("serving/vae/1", "vae.tflite", quantize="float16")
    """
    check_quantization(quantize)
    saved_model_dir = os.fspath(saved_model_dir)
    meta = read_metadata(saved_model_dir)
    data = None
    if quantize == "int8" and representative_data is not None:
        data = _check_representative_data(representative_data, meta)[:_MAX_ERROR_EXAMPLES]
    # The converter and the interpreters print MLIR, SavedModel-reader and XNNPACK chatter.
    with quiet_native_logs():
        content = _converted(saved_model_dir, quantize)
    _atomic_write(out_path, content)
    error = None if data is None else _quantization_error(saved_model_dir, content, data)
    sidecar = _sidecar(meta, quantize, len(content), error)
    _atomic_write(
        sidecar_path(out_path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode()
    )
    return os.fspath(out_path)


def _converted(saved_model_dir, quantize):
    """The `.tflite` bytes of `quantize`; int8 is calibrated on the float model's prior draws."""
    if quantize == "int8":
        return _convert(saved_model_dir, "int8", _calibration(_convert(saved_model_dir, "float32")))
    return _convert(saved_model_dir, quantize)


def _sidecar(meta, quantize, size_bytes, decode_error):
    """The sidecar JSON of a `.tflite` converted from the SavedModel whose metadata is `meta`."""
    latent_dim, data_shape = meta["latent_dim"], meta["data_shape"]
    return {
        "format": "keras_vae.tflite/1",
        "name": meta["name"],
        "version": meta["version"],
        "keras_vae_version": keras_vae.__version__,
        "quantization": quantize,
        "calibration": None if quantize != "int8" else "prior (sample's draws, shared by decode)",
        "decode_error_on_data": decode_error,
        "latent_dim": latent_dim,
        "data_shape": data_shape,
        "output_shape": [-1, *data_shape],
        "likelihood": meta["likelihood"],
        # Pairs the file with its SavedModel (null when converted from an export_saved_model).
        "export_fingerprint": meta.get("export_fingerprint"),
        "max_samples": meta["max_samples"],
        # decode refuses more latents per call (older exports had no cap: null).
        "max_batch": meta.get("max_batch"),
        "size_bytes": size_bytes,
        "signatures": {
            "decode": {
                "inputs": {"z": {"dtype": "float32", "shape": [-1, latent_dim]}},
                "outputs": {"x": {"dtype": "float32", "shape": [-1, *data_shape]}},
            },
            "sample": {
                "inputs": {
                    "num_samples": {"dtype": "int32", "shape": []},
                    "seed": {"dtype": "int32", "shape": []},
                },
                "outputs": {
                    "x": {"dtype": "float32", "shape": [-1, *data_shape]},
                    "z": {"dtype": "float32", "shape": [-1, latent_dim]},
                },
                "seed": "seed >= 0 repeats a draw (keras_vae.rng); seed < 0 draws fresh noise",
            },
        },
    }
