"""TFLite models run by LiteRT: decode against Keras per quantization, sample's seeding and
statistics, the sidecar JSON, and errors."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from export_helpers import copy_version, digits, saved_model, serving_section, tflite, vae
from tensorflow.lite.python import schema_py_generated as schema

from keras_vae import export, rng

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def _runner(quantize, signature):
    interpreter = Interpreter(model_path=tflite(quantize))
    return interpreter.get_signature_runner(signature)


def _sample(runner, n, seed):
    out = runner(num_samples=np.array(n, np.int32), seed=np.array(seed, np.int32))
    return out["x"], out["z"]


def _latents():
    # Prior draws and the posterior means of held-out digits: what the decoder sees in use.
    model = vae()
    mean, _ = model.encode(digits()[1500:1564])
    prior = rng.standard_normal_numpy((64, model.latent_dim), seed=99)
    return np.concatenate([prior, np.asarray(mean)]).astype(np.float32)


def test_signatures_and_builtin_ops_only():
    interpreter = Interpreter(model_path=tflite("float32"))
    assert interpreter.get_signature_list() == {
        "decode": {"inputs": ["z"], "outputs": ["x"]},
        "sample": {"inputs": ["num_samples", "seed"], "outputs": ["x", "z"]},
    }
    # A Flex (select TF) op would appear as a custom op named "Flex..." in the flatbuffer.
    with open(tflite("float32"), "rb") as f:
        assert b"Flex" not in f.read()


@pytest.mark.slow
def test_decode_matches_keras_per_quantization():
    model, z = vae(), _latents()
    expected = np.asarray(model.decode(z))
    errors, sizes = {}, {}
    for quantize in QUANTIZATIONS:
        got = _runner(quantize, "decode")(z=z)["x"]
        assert got.shape == expected.shape and got.dtype == np.float32
        errors[quantize] = float(np.max(np.abs(got - expected)))
        sizes[quantize] = os.path.getsize(tflite(quantize))
    print("TFLite decode max abs error vs Keras:", errors)
    print("TFLite sizes (bytes):", sizes)
    assert errors["float32"] <= 1e-5
    assert errors["float16"] <= 1e-2
    # Quantized to int8, pixel means (in [0, 1]) stay close: reported above, bounded loosely.
    assert errors["dynamic"] <= 0.05
    assert errors["int8"] <= 0.1
    assert sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float32"]


def test_seeded_sample_is_repeatable_and_matches_keras():
    model, sample = vae(), _runner("float32", "sample")
    x1, z1 = _sample(sample, 32, seed=5)
    x2, z2 = _sample(sample, 32, seed=5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(z1, z2)
    # The noise is keras_vae.rng's, and the images are Keras' decode of it.
    np.testing.assert_allclose(
        z1, rng.standard_normal_numpy((32, model.latent_dim), seed=5), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(x1, np.asarray(model.decode(z1)), rtol=0, atol=1e-5)
    _, z_other = _sample(sample, 32, seed=6)
    assert np.max(np.abs(z_other - z1)) > 0.5
    # A prefix of a longer draw is the shorter draw: element j depends on (seed, j) only.
    _, z_long = _sample(sample, 64, seed=5)
    np.testing.assert_allclose(z_long[:32], z1, rtol=0, atol=1e-6)


def test_sample_count_is_clamped_to_the_cap():
    # LiteRT has no assertion op (the converter drops TF's): the graph clamps num_samples to
    # 1..max_samples, so a request stays bounded where the SavedModel would refuse it.
    sample = _runner("float32", "sample")
    assert _sample(sample, export.DEFAULT_MAX_SAMPLES + 1, seed=0)[0].shape == (1024, 8, 8, 1)
    assert _sample(sample, -5, seed=0)[0].shape == (1, 8, 8, 1)


def test_negative_seed_draws_anew_each_call():
    sample = _runner("float32", "sample")
    _, z1 = _sample(sample, 16, seed=-1)
    _, z2 = _sample(sample, 16, seed=-1)
    assert z1.shape == (16, 2)
    assert np.max(np.abs(z1 - z2)) > 0.5


def _check_moments(a, b, what, num_se=5.0):
    """Per-pixel mean and std of `a` and `b` (independent draws) agree within `num_se`
    standard errors of their difference."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    se_mean = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    gap_mean = np.abs(a.mean(0) - b.mean(0))

    def var_of_std(v):
        # Var(sample std) ~ (m4 - s^4) / (4 n s^2) (delta method), for any distribution.
        s2 = v.var(0)
        m4 = ((v - v.mean(0)) ** 4).mean(0)
        return (m4 - s2**2) / (4 * len(v) * np.maximum(s2, 1e-12))

    se_std = np.sqrt(var_of_std(a) + var_of_std(b))
    gap_std = np.abs(a.std(0) - b.std(0))
    # A pixel that is ~constant in both (a corner) has a tiny SE; 1e-4 absorbs float rounding.
    assert np.all(gap_mean <= num_se * se_mean + 1e-4), (what, np.max(gap_mean / se_mean))
    assert np.all(gap_std <= num_se * se_std + 1e-4), (what, np.max(gap_std / se_std))
    print(
        f"{what}: max |mean gap| / SE = {np.max(gap_mean / (se_mean + 1e-12)):.2f}, "
        f"max |std gap| / SE = {np.max(gap_std / (se_std + 1e-12)):.2f}"
    )


@pytest.mark.slow
def test_sample_statistics_match_keras():
    n = 2000
    model, sample = vae(), _runner("float32", "sample")
    reference = np.asarray(model.sample(n, seed=123))  # Keras' own sampler (TF Philox noise)
    seeded, z = _sample(sample, n, seed=11)
    fresh, _ = _sample(sample, n, seed=-1)
    _check_moments(seeded, reference, "TFLite sample(seed=11) vs Keras")
    _check_moments(fresh, reference, "TFLite sample(seed=-1) vs Keras")
    # The latents themselves are standard normal: mean 0 (SE 1/sqrt(n)), std 1 (SE 1/sqrt(2n)).
    assert np.all(np.abs(z.mean(0)) <= 5 / np.sqrt(n))
    assert np.all(np.abs(z.std(0) - 1) <= 5 / np.sqrt(2 * n))


def test_sidecar_describes_the_model():
    with open(export.sidecar_path(tflite("int8"))) as f:
        meta = json.load(f)
    assert meta["latent_dim"] == 2
    assert meta["data_shape"] == [8, 8, 1] and meta["output_shape"] == [-1, 8, 8, 1]
    assert meta["likelihood"] == "bernoulli"
    assert meta["version"] == 1 and meta["quantization"] == "int8"
    assert meta["calibration"] == "prior (sample's draws, shared by decode)"
    assert meta["size_bytes"] == os.path.getsize(tflite("int8"))
    assert set(meta["signatures"]) == {"decode", "sample"}


def test_int8_sidecar_reports_the_error_on_the_given_data():
    with open(export.sidecar_path(tflite("int8"))) as f:
        reported = json.load(f)["decode_error_on_data"]
    # Recomputed here: LiteRT's int8 decode against Keras on the posterior means of the data.
    x = digits()[:256]
    z = np.asarray(vae().encode(x)[0])
    error = np.abs(_runner("int8", "decode")(z=z)["x"] - np.asarray(vae().decode(z)))
    assert reported["examples"] == 256
    np.testing.assert_allclose(reported["max_abs"], error.max(), atol=1e-5)
    np.testing.assert_allclose(reported["mean_abs"], error.mean(), atol=1e-6)
    assert 0 < reported["mean_abs"] < 0.02
    with open(export.sidecar_path(tflite("float32"))) as f:
        assert json.load(f)["decode_error_on_data"] is None


def test_int8_signatures_share_one_quantization():
    """Calibrated on the same latents, decode and sample quantize the decoder alike: decoding the
    z that sample returned gives its x (to one int8 output step), and each int32 bias is stored
    once for both signatures."""
    sample = _runner("int8", "sample")(
        num_samples=np.array(32, np.int32), seed=np.array(5, np.int32)
    )
    decoded = _runner("int8", "decode")(z=sample["z"])["x"]
    assert np.abs(decoded - sample["x"]).max() <= 1 / 255 + 1e-6
    with open(tflite("int8"), "rb") as f:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(f.read(), 0))
    contents = [bytes(b.data) for b in model.buffers if b.data is not None and len(b.data) >= 64]
    assert len(contents) == len(set(contents)), "a constant is stored twice"


def test_wrong_latent_shape_fails():
    decode = _runner("float32", "decode")
    # Without the export's reshape, TFLite would read [4, 3] as [6, 2] and answer 6 images.
    with pytest.raises(RuntimeError, match="RESHAPE"):
        decode(z=np.zeros((4, 3), np.float32))
    # A rank-3 z once passed as [4, 2] (same element count): refused now.
    with pytest.raises(RuntimeError, match="RESHAPE"):
        decode(z=np.zeros((4, 2, 1), np.float32))
    assert decode(z=np.zeros((5, 2), np.float32))["x"].shape == (5, 8, 8, 1)


def test_decode_refuses_more_than_max_batch_latents():
    # LiteRT has no assertions: a million latents were decoded until the process passed 12 GB.
    # The reshape that checks the shape also refuses batches above the cap, before the decoder
    # allocates anything; the cap is the SavedModel's, recorded in the sidecar.
    with open(export.sidecar_path(tflite("float32"))) as f:
        assert json.load(f)["max_batch"] == export.DEFAULT_MAX_BATCH
    decode = _runner("float32", "decode")
    cap = export.DEFAULT_MAX_BATCH
    assert decode(z=np.zeros((cap, 2), np.float32))["x"].shape == (cap, 8, 8, 1)
    for rows in (cap + 1, 10**6):
        with pytest.raises(RuntimeError, match="RESHAPE"):
            decode(z=np.zeros((rows, 2), np.float32))


def test_bad_arguments_fail_clearly(tmp_path):
    path = saved_model()[1]
    out = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=r"Unknown quantization 'int4'; expected one of"):
        export.export_tflite(path, out, quantize="int4")
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        export.export_tflite(tmp_path, out)
    with pytest.raises(ValueError, match=r"shape \(N, 8, 8, 1\)"):
        export.export_tflite(path, out, quantize="int8", representative_data=np.zeros((4, 64)))
    assert not out.exists()
    with pytest.raises(ValueError, match=r"values in \[0, 1\] for a Bernoulli model; received"):
        export.export_tflite(path, out, quantize="int8", representative_data=digits()[:4] * 255)
    assert not out.exists()


def test_export_all_checks_representative_data_before_writing(tmp_path):
    # Checked once the SavedModel was written, bad data left a version behind (the retry then
    # needed overwrite=True) and, for 0..255 pixels, an int8 .tflite without its sidecar.
    out = tmp_path / "out"
    bad = {
        "0..255 pixels": (digits()[:4] * 255, r"in \[0, 1\] for a Bernoulli model; received min 0"),
        "flat": (digits()[:4].reshape(4, -1), r"shape \(N, 8, 8, 1\) with N >= 1; received"),
        "integers": (np.zeros((4, 8, 8, 1), np.int64), "received dtype int64 and max 0"),
        "NaN": (np.full((4, 8, 8, 1), np.nan, np.float32), "must hold finite values"),
    }
    for data, said in bad.values():
        with pytest.raises(ValueError, match=said):
            export.export_all(vae(), out, quantizations=("int8",), representative_data=data)
    (tmp_path / "x.csv").write_text("0.5\n")
    with pytest.raises(ValueError, match=r"must be a \.npy file of examples"):
        export.export_all(vae(), out, representative_data=tmp_path / "x.csv")
    assert not out.exists(), "a rejected export wrote files"


def test_representative_data_files_load(tmp_path):
    # Here, the loader alone: a .npy, or a .npz with one array or an "x" array.
    x = digits()[:4]
    folder = tmp_path
    np.save(folder / "x.npy", x)
    np.savez(folder / "one.npz", x)
    np.savez(folder / "named.npz", x=x, labels=np.arange(4))
    for name in ("x.npy", "one.npz", "named.npz"):
        np.testing.assert_array_equal(export.load_representative_data(folder / name), x)
    checked = export.check_representative_data(x.astype("float64"), (8, 8, 1), "bernoulli")
    assert checked.dtype == np.float32
    # A Gaussian model's data (standardized tables) need not lie in [0, 1].
    export.check_representative_data(x * 10 - 3, (8, 8, 1), "gaussian")


def test_python_snippets_in_the_docs_run(tmp_path, monkeypatch):
    """docs/serving.md's Python blocks, run against an export laid out as it says."""
    out = tmp_path / "OUT"
    copy_version(out, 1)
    (out / "tflite").mkdir()
    shutil.copy(tflite("float32"), out / "tflite" / "vae-v1-float32.tflite")
    shutil.copy(export.sidecar_path(tflite("float32")), out / "tflite" / "vae-v1-float32.json")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", serving_section(), re.S)
    assert len(blocks) == 2
    served, device = {"x_test": digits()[:5]}, {}
    exec(blocks[0], served)
    exec(blocks[1], device)
    assert served["images"].shape == (16, 8, 8, 1) and served["scores"].shape == (5,)
    assert device["images"].shape == device["fresh"].shape == (16, 8, 8, 1)
    assert device["walk"].shape == (64, 8, 8, 1)
