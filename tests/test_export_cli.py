"""`keras-vae-export`: a run folder or a .keras file in, SavedModel and TFLite files out."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from export_helpers import REPO, digits, vae

from keras_vae.export import cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run folder as keras-vae-train leaves it: model.keras and config.json."""
    path = tmp_path_factory.mktemp("run")
    vae().save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"data": "digits", "latent_dim": 2}))
    return path


@pytest.mark.slow
def test_exports_a_run_dir(run_dir, tmp_path, capsys):
    out = tmp_path / "export"
    np.save(tmp_path / "x.npy", digits()[:64])
    argv = [str(run_dir), "--out", str(out), "--version", "3", "--quantize", "int8"]
    assert cli.main([*argv, "--representative-data", str(tmp_path / "x.npy")]) == 0
    printed = capsys.readouterr().out
    saved = out / "vae" / "3"
    assert f"saved_model: {saved}" in printed
    sig = tf.saved_model.load(str(saved)).signatures
    z = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    np.testing.assert_allclose(
        sig["decode"](z=tf.constant(z))["x"].numpy(), np.asarray(vae().decode(z)), atol=1e-5
    )
    assert sorted(os.listdir(out / "tflite")) == ["vae-v3-int8.json", "vae-v3-int8.tflite"]
    path = out / "tflite" / "vae-v3-int8.tflite"
    decode = Interpreter(model_path=str(path)).get_signature_runner("decode")
    assert decode(z=z)["x"].shape == (2, 8, 8, 1)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["version"] == 3 and meta["quantization"] == "int8"
    assert meta["calibration"] == "prior (sample's draws, shared by decode)"
    assert meta["decode_error_on_data"]["examples"] == 64

    # The same command again must not replace version 3.
    mtime = os.path.getmtime(saved / "saved_model.pb")
    assert cli.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert os.path.getmtime(saved / "saved_model.pb") == mtime


def test_bad_arguments_fail_clearly(tmp_path, capsys):
    assert cli.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "without model.keras" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.keras"), "--out", str(tmp_path / "o")]) == 2
    assert "No such model file" in capsys.readouterr().err
    (tmp_path / "weights.h5").write_bytes(b"")
    assert cli.main([str(tmp_path / "weights.h5"), "--out", str(tmp_path / "o")]) == 2
    assert "Expected a .keras file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(tmp_path), "--out", "o", "--quantize", "int4"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_help_shows_an_example():
    result = subprocess.run(
        [sys.executable, "-m", "keras_vae.export", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "example:" in result.stdout and "--quantize" in result.stdout


def test_the_quantize_choices_are_the_tflite_variants():
    from keras_vae.export import QUANTIZATION_NAMES, tflite

    assert tuple(tflite.QUANTIZATIONS) == QUANTIZATION_NAMES
    quantize = next(a for a in cli._parser()._actions if a.dest == "quantize")
    assert tuple(quantize.choices) == QUANTIZATION_NAMES


def _bad_representative_files(folder):
    """Files a new user may pass as --representative-data, each with what the error must say."""
    x = digits()[:8]
    np.save(folder / "pixels.npy", (x * 255).astype("uint8"))
    np.save(folder / "pixels255.npy", x * 255)
    np.save(folder / "flat.npy", x.reshape(8, -1))
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.savez(folder / "two.npz", a=x, b=x)
    (folder / "table.csv").write_text("0.1,0.2\n")
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return {
        "table.csv": "must be a .npy file of examples (N, *data_shape); received",
        "objects.npy": "is not a readable NumPy .npy file of numbers",
        "two.npz": "holds arrays ['a', 'b']; expected one array or one named 'x'",
        "pixels.npy": "received dtype uint8 and max 255. Convert with x.astype('float32')",
        "pixels255.npy": "values in [0, 1] for a Bernoulli model; received min 0 and max 255",
        "flat.npy": "shape (N, 8, 8, 1) with N >= 1; received shape (8, 64)",
        "nan.npy": "must hold finite values; received 1 NaN or infinite values",
        "missing.npy": "no such file",
    }


def test_bad_representative_data_fails_before_anything_is_written(run_dir, tmp_path, capsys):
    # Once, the file was read after the SavedModel was written: a CSV got numpy's allow_pickle
    # advice, 0..255 pixels a graph dump and an int8 .tflite without its sidecar, and the retry
    # then needed --overwrite.
    out = tmp_path / "export"
    for name, said in _bad_representative_files(tmp_path).items():
        argv = [str(run_dir), "--out", str(out), "--quantize", "int8"]
        assert cli.main([*argv, "--representative-data", str(tmp_path / name)]) == 2, name
        captured = capsys.readouterr()
        assert captured.err.startswith("keras-vae-export: error: --representative-data"), name
        assert said in captured.err and captured.err.count("\n") == 1, captured.err
        # The file alone is checked before the model loads; its shape and range just after.
        needs_the_model = name in ("pixels255.npy", "flat.npy")
        assert ("Loading" in captured.out) == needs_the_model, name
        assert not out.exists(), f"{name}: a rejected export wrote files"


def test_out_that_is_a_file_and_version_0_fail_clearly(run_dir, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = {
        (str(a_file), "1"): f"--out {str(a_file)!r} is a file; expected a folder (TF Serving's "
        "model base path)",
        (str(a_file / "sub"), "1"): f"is below {str(a_file)!r}, a file; expected a folder",
        (str(tmp_path / "o"), "0"): "--version must be an integer >= 1; received 0.",
        (str(tmp_path / "o"), "-2"): "--version must be an integer >= 1; received -2.",
    }
    for (out, version), said in cases.items():
        assert cli.main([str(run_dir), "--out", out, "--version", version]) == 2
        captured = capsys.readouterr()
        assert said in captured.err and captured.err.count("\n") == 1, captured.err
        assert "Errno" not in captured.err and "Loading" not in captured.out
    assert a_file.read_text() == "x" and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_representative_data_may_be_an_npz(run_dir, tmp_path):
    np.savez(tmp_path / "x.npz", x=digits()[:16], y=np.arange(16))
    out = tmp_path / "export"
    argv = [str(run_dir), "--out", str(out), "--quantize", "int8"]
    assert cli.main([*argv, "--representative-data", str(tmp_path / "x.npz")]) == 0
    meta = json.loads((out / "tflite" / "vae-v1-int8.json").read_text())
    assert meta["decode_error_on_data"]["examples"] == 16


def test_out_of_range_numbers_fail_clearly_before_loading(run_dir, tmp_path, capsys):
    # --version 2**70 was accepted (TF Serving reads versions as int64), and --max-samples 2**31
    # failed deep in the graph with "Input 'y' of 'LessEqual' Op has type int64".
    out = tmp_path / "o"
    cases = {
        ("--version", str(2**70)): "--version must be at most 9223372036854775807 (TF Serving",
        ("--max-samples", str(2**31)): "--max-samples must be an integer >= 1 and <= 2147483647",
        ("--max-batch", "0"): "--max-batch must be an integer >= 1 and <= 2147483647",
        ("--iw-samples", str(2**40)): "--iw-samples must be an integer >= 1 and <= 2147483647",
    }
    for flag, said in cases.items():
        assert cli.main([str(run_dir), "--out", str(out), *flag]) == 2, flag
        captured = capsys.readouterr()
        assert said in captured.err and captured.err.count("\n") == 1, captured.err
        assert "Loading" not in captured.out
    from keras_vae import export

    with pytest.raises(ValueError, match="max_samples must be an integer >= 1 and <= 2147483647"):
        export.export_all(vae(), out, max_samples=2**31)
    with pytest.raises(ValueError, match="version must be at most 9223372036854775807"):
        export.export_saved_model(vae(), out, version=2**63)
    assert not out.exists()


def test_usage_errors_are_one_line(run_dir, tmp_path, capsys):
    # argparse's errors came with its usage block; --version 1_0 (int() reads it as 10) wrote
    # version folder 10.
    for argv, reason in [
        (["--version", "abc"], "argument --version: invalid int value: 'abc'"),
        (["--version", "1_0"], "argument --version: invalid int value: '1_0'"),
        (["--precision", "float16"], "unrecognized arguments: --precision float16"),
    ]:
        with pytest.raises(SystemExit) as stop:
            cli.main([str(run_dir), "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err
        assert stop.value.code == 2
        assert err.startswith("keras-vae-export: error: ") and err.count("\n") == 1, err
        assert reason in err
    assert list(tmp_path.iterdir()) == []


def test_empty_out_is_refused(run_dir, tmp_path, capsys, monkeypatch):
    # --out "" (an unset shell variable) exported into the current folder.
    monkeypatch.chdir(tmp_path)
    assert cli.main([str(run_dir), "--out", ""]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("keras-vae-export: error: --out must name a folder") and err.count("\n") == 1
    ), err
    assert list(tmp_path.iterdir()) == []
