"""`keras-vae-sample`: prior samples, decodes, reconstructions and interpolations from a `.keras`
file, a run folder or an export, checked against the Python API and the export's signatures."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_vae
from keras_vae import export, rng
from keras_vae.training import sample
from keras_vae.training.data import LOADERS

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MLP VAE trained one epoch on digits, saved as a run folder and exported."""
    root = tmp_path_factory.mktemp("sample")
    keras.utils.set_random_seed(0)
    x = LOADERS["digits"]()["x"][:256]
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,), seed=0)
    vae.compile(optimizer="adam")
    vae.fit(x, epochs=1, batch_size=64, verbose=0)
    run = root / "run"
    run.mkdir()
    vae.save(run / "model.keras")
    exported = export.export_saved_model(vae, root / "export", name="vae", version=1)
    np.save(root / "x.npy", x[:5])
    np.save(root / "z.npy", np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], "float32"))
    return {"root": root, "run": run, "export": pathlib.Path(exported), "vae": vae, "x": x[:5]}


def _run(capsys, *argv):
    code = sample.main([str(a) for a in argv])
    return code, capsys.readouterr()


def _written(capsys, out, *argv):
    code, printed = _run(capsys, *argv, "--out", out)
    assert code == 0, printed.err
    assert printed.out.splitlines() == [
        f"wrote {out}.npy  (float32 {np.load(f'{out}.npy').shape})",
        f"wrote {out}.png",
    ]
    with Image.open(f"{out}.png") as image:
        assert image.format == "PNG" and image.width > 50 and image.height > 50
    array = np.load(f"{out}.npy")
    assert array.dtype == np.float32
    return array


def test_sample_from_keras_is_repeatable_and_seeded(trained, tmp_path, capsys):
    a = _written(capsys, tmp_path / "a", "sample", trained["run"], "--num", 16, "--seed", 0)
    b = _written(capsys, tmp_path / "b", "sample", trained["run"] / "model.keras", "--num", 16)
    c = _written(capsys, tmp_path / "c", "sample", trained["run"], "--num", 16, "--seed", 1)
    assert a.shape == (16, 8, 8, 1)
    np.testing.assert_array_equal(a, b)  # --seed defaults to 0
    assert np.abs(a - c).max() > 1e-3
    # z comes from keras_vae.rng, the generator of the export's sample signature.
    z = rng.standard_normal_numpy((16, 2), seed=0)
    np.testing.assert_allclose(a, np.asarray(trained["vae"].decode(z)), atol=1e-5)


def test_sample_from_export_calls_its_signature(trained, tmp_path, capsys):
    out = _written(capsys, tmp_path / "s", "sample", trained["export"], "--num", 9, "--seed", 7)
    signature = tf.saved_model.load(str(trained["export"])).signatures["sample"]
    want = signature(num_samples=tf.constant(9), seed=tf.constant(7))["x"].numpy()
    np.testing.assert_allclose(out, want, atol=1e-6)
    # The same seed gives the same images from the .keras file.
    keras_out = _written(capsys, tmp_path / "k", "sample", trained["run"], "--num", 9, "--seed", 7)
    np.testing.assert_allclose(out, keras_out, atol=1e-5)


@pytest.mark.parametrize("source", ["run", "export"])
def test_decode_reconstruct_interpolate_match_the_api(trained, tmp_path, capsys, source):
    vae, x, root = trained["vae"], trained["x"], trained["root"]
    model = trained[source]
    z = np.load(root / "z.npy")
    decoded = _written(capsys, tmp_path / "d", "decode", model, "--latents", root / "z.npy")
    np.testing.assert_allclose(decoded, np.asarray(vae.decode(z)), atol=1e-5)

    recon = _written(capsys, tmp_path / "r", "reconstruct", model, "--inputs", root / "x.npy")
    assert recon.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(recon, np.asarray(vae.reconstruct(x)), atol=1e-5)

    line = _written(
        capsys, tmp_path / "i", "interpolate", model, "--inputs", root / "x.npy", "--steps", 6
    )
    assert line.shape == (6, 8, 8, 1)
    mean = np.asarray(vae.encode(x[:2])[0])
    t = np.linspace(0.0, 1.0, 6, dtype="float32")[:, None]
    want = np.asarray(vae.decode((1 - t) * mean[0] + t * mean[1]))
    np.testing.assert_allclose(line, want, atol=1e-5)


def test_overwrite(trained, tmp_path, capsys):
    out = tmp_path / "s"
    _written(capsys, out, "sample", trained["run"], "--num", 4)
    code, printed = _run(capsys, "sample", trained["run"], "--num", 4, "--seed", 3, "--out", out)
    assert code == 2 and "already exists; pass --overwrite" in printed.err
    before = np.load(f"{out}.npy")
    after = _written(capsys, out, "sample", trained["run"], "--num", 4, "--seed", 3, "--overwrite")
    assert np.abs(before - after).max() > 1e-3


def _bad_arrays(root):
    np.save(root / "z3.npy", np.zeros((2, 3), "float32"))
    np.save(root / "zint.npy", np.zeros((2, 2), "int64"))
    z = np.zeros((2, 2), "float32")
    z[1, 0] = np.nan
    np.save(root / "znan.npy", z)
    np.save(root / "x7.npy", np.zeros((2, 7, 7, 1), "float32"))
    np.save(root / "x255.npy", np.full((2, 8, 8, 1), 255.0, "float32"))
    np.save(root / "x1.npy", np.zeros((1, 8, 8, 1), "float32"))
    np.save(root / "zmany.npy", np.zeros((1025, 2), "float32"))
    (root / "weights.h5").write_bytes(b"")
    (root / "empty").mkdir(exist_ok=True)


# (argv with {run}, {export}, {root} placeholders, a part of the expected message)
BAD = [
    (["sample", "{root}/missing.keras"], "no such model file or folder: '"),
    (["sample", "{root}/empty"], "is a folder without model.keras or saved_model.pb"),
    (["sample", "{root}/weights.h5"], "expected a .keras file, a run folder"),
    (["decode", "{run}", "--latents", "{root}/z3.npy"], "expected latents of shape (N, 2); "),
    (["decode", "{export}", "--latents", "{root}/z3.npy"], "received shape (2, 3)"),
    (["decode", "{run}", "--latents", "{root}/zint.npy"], "holds dtype int64; expected floating"),
    (["decode", "{run}", "--latents", "{root}/znan.npy"], "contains NaN or inf"),
    (["decode", "{run}", "--latents", "{root}/zmany.npy"], "holds 1025 rows"),
    (["decode", "{run}", "--latents", "{root}/nope.npy"], "no such file"),
    (["reconstruct", "{run}", "--inputs", "{root}/x7.npy"], "expected examples of shape (N, 8, 8, 1)"),
    (["reconstruct", "{export}", "--inputs", "{root}/x255.npy"], "expects values in [0, 1]"),
    (["interpolate", "{run}", "--inputs", "{root}/x1.npy"], "expected at least 2 examples"),
    (["interpolate", "{run}", "--inputs", "{root}/x.npy", "--steps", "1"], "--steps must be"),
    (["sample", "{run}", "--num", "0"], "--num must be between 1 and 1024; received 0."),
    (["sample", "{export}", "--num", "1025"], "received 1025"),
    (["sample", "{run}", "--seed", "-1"], "--seed must be between 0 and"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), BAD)
def test_bad_inputs_fail_on_one_line_before_writing(trained, tmp_path, capsys, argv, expected):
    _bad_arrays(trained["root"])
    names = {k: str(trained[k]) for k in ("run", "export", "root")}
    out = tmp_path / "out"
    code, printed = _run(capsys, *(a.format(**names) for a in argv), "--out", out)
    assert code == 2
    assert printed.err.startswith("keras-vae-sample: error: ")
    assert printed.err.count("\n") == 1, printed.err
    assert expected in printed.err
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(trained, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "s"
    code, printed = _run(capsys, "sample", trained["run"], "--out", out)
    assert code == 2 and printed.err.count("\n") == 1
    assert f"the folder {str(out.parent)!r} does not exist" in printed.err
    assert not (tmp_path / "no").exists()


def test_vector_data_is_a_scatter(tmp_path):
    points = np.random.default_rng(0).standard_normal((50, 3)).astype("float32")
    figure = sample.picture(points, (3,), "50 prior samples", inputs=points + 1)
    (axes,) = figure.axes
    assert axes.get_xlabel() == "x[0]" and axes.get_ylabel() == "x[1]"
    assert len(axes.collections) == 2
    figure.savefig(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as image:
        assert image.format == "PNG"


@pytest.mark.slow
def test_help_shows_examples_and_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "keras_vae.training.sample", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout and "keras-vae-sample sample" in result.stdout
    assert "keras-vae-sample=keras_vae.training.sample:main" in (REPO / "setup.py").read_text()


@pytest.mark.parametrize("out", ["", "{tmp}/folder/", "{tmp}/.npy"])
def test_out_without_a_file_prefix_is_refused(trained, tmp_path, capsys, monkeypatch, out):
    # --out "" (an unset shell variable) wrote .npy and .png, hidden files, in the current folder.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    code, printed = _run(capsys, "sample", trained["run"], "--out", out.format(tmp=tmp_path))
    assert code == 2 and printed.err.count("\n") == 1, printed.err
    assert "--out must end in a file name prefix, e.g. samples or out/samples" in printed.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder"]


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["sample", "m.keras", "--out", "s", "--seed", "nan"], "argument --seed: invalid int"),
        (["sample", "m.keras", "--out", "s", "--num", "1_6"], "invalid int value: '1_6'"),
        (["draw", "m.keras"], "argument MODE: invalid choice: 'draw'"),
        (["sample", "m.keras", "--out", "s", "--number", "3"], "unrecognized arguments: --number"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, reason):
    # argparse printed its usage block first, and named the subcommand's parser as the program.
    with pytest.raises(SystemExit) as stop:
        sample.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("keras-vae-sample: error: ") and err.count("\n") == 1, err
    assert reason in err


@pytest.mark.parametrize(
    "make, reason",
    [
        pytest.param(lambda p: os.mkfifo(p), "is not a regular file", id="fifo"),
        pytest.param(lambda p: os.symlink("/dev/zero", p), "is not a regular file", id="dev_zero"),
        pytest.param(lambda p: p.write_bytes(b""), "is not a .keras file (not a zip", id="empty"),
        pytest.param(lambda p: p.write_text("hello"), "is not a .keras file (not a zip", id="text"),
    ],
)
def test_a_model_path_that_is_no_keras_file_is_one_line_at_once(make, reason, tmp_path, capsys):
    # A FIFO blocked the zip reader for ever and /dev/zero fed it gigabytes; any non-zip file
    # was Keras' "File not found".
    path = tmp_path / "m.keras"
    make(path)
    code, printed = _run(capsys, "sample", path, "--num", 2, "--out", tmp_path / "s")
    assert code == 2 and printed.err.count("\n") == 1, printed.err
    assert reason in printed.err and "File not found" not in printed.err


def test_a_tampered_layer_says_what_is_wrong_not_keras_advice_for_authors(
    trained, tmp_path, capsys
):
    # Keras wraps the reason once per level in "... could not be deserialized properly. Please
    # ensure that components ... are explicitly deserialized in the model's from_config()".
    import json
    import zipfile

    with zipfile.ZipFile(trained["run"] / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    text = members["config.json"].decode()
    members["config.json"] = text.replace('"activation": "relu"', json.dumps(
        {"activation": {"module": "os", "class_name": "function", "config": "system",
                        "registered_name": "function"}})[1:-1]).encode()  # fmt: skip
    assert members["config.json"].decode() != text
    path = tmp_path / "tampered.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    code, printed = _run(capsys, "sample", path, "--num", 2, "--out", tmp_path / "s")
    assert code == 2 and printed.err.count("\n") == 1, printed.err
    assert "Could not locate function 'system'" in printed.err
    assert "deserialized properly" not in printed.err and "Full object config" not in printed.err
