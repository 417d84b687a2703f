"""Export faults: a killed export, an unwritable or full output folder.

TF Serving loads the highest numbered folder under `BASE/<name>/`: that folder must always be a
complete SavedModel, and earlier versions must never be touched by a failed export.
"""

import json
import os
import shutil
import signal
import threading

import pytest
import reliability_helpers as helpers
import tensorflow as tf

from keras_vae import export

SAVED_MODEL_FILES = ("saved_model.pb", "variables/variables.index", "assets.extra/keras_vae.json")


def numeric_versions(model_dir):
    return sorted((int(e) for e in os.listdir(model_dir) if e.isdigit()), reverse=True)


def is_complete(version_dir):
    return all(os.path.isfile(os.path.join(version_dir, f)) for f in SAVED_MODEL_FILES)


def assert_serves(version_dir):
    loaded = tf.saved_model.load(str(version_dir))
    out = loaded.signatures["sample"](num_samples=tf.constant(2), seed=tf.constant(0))
    assert out["x"].shape == (2, 8, 8, 1)


def base_with_version_1(base):
    """`base/vae/1`, a copy of the shared export (cheaper than exporting again)."""
    target = base / "vae" / "1"
    shutil.copytree(helpers.saved_model_dir(), target)
    return target


class VersionWatcher(threading.Thread):
    """Polls `model_dir` like TF Serving's file system poller, and records any numbered folder
    that is visible while incomplete."""

    def __init__(self, model_dir):
        super().__init__(daemon=True)
        self.model_dir = model_dir
        self.stop = threading.Event()
        self.incomplete, self.polls = [], 0

    def run(self):
        while not self.stop.is_set():
            for version in numeric_versions(self.model_dir):
                path = os.path.join(self.model_dir, str(version))
                if not is_complete(path) and os.path.exists(path):
                    self.incomplete.append(sorted(os.listdir(path)))
            self.polls += 1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(timeout=10)


@pytest.mark.slow
def test_killed_export_leaves_earlier_versions_and_the_highest_version_complete(tmp_path):
    base = tmp_path / "serving"
    v1 = base_with_version_1(base)
    before = helpers.tree_snapshot(v1)
    model_path = tmp_path / "model.keras"
    helpers.tiny_vae().save(model_path)
    model_dir = base / "vae"

    def temp_with_variables():
        return any(
            e.startswith(".tmp-") and os.path.isdir(model_dir / e / "variables")
            for e in os.listdir(model_dir)
        )

    # TF Serving's poller runs beside the export the whole time: it must never see a numbered
    # folder that is not a complete SavedModel.
    with VersionWatcher(str(model_dir)) as watcher:
        process = helpers.start_python(
            ["-m", "keras_vae.export", str(model_path), "--out", str(base), "--version", "2"]
        )
        midway, _, output = helpers.sigkill_when(process, temp_with_variables, 240, interval=0.002)
    assert midway, output[-3000:]
    assert process.returncode == -signal.SIGKILL
    assert watcher.polls > 0 and watcher.incomplete == []
    # Whatever instant the kill hit, the highest numbered folder is complete and serves, and
    # version 1 is byte for byte what it was.
    highest = model_dir / str(numeric_versions(model_dir)[0])
    assert is_complete(highest)
    assert_serves(highest)
    assert helpers.tree_snapshot(v1) == before
    # The next export on this host removes what the killed process left (its pid is dead).
    leftovers = [e for e in os.listdir(model_dir) if not e.isdigit()]
    if 2 not in numeric_versions(model_dir):  # else the kill came just after the rename
        assert leftovers, "the kill left no temporary folder and no version 2"
    removed = export.saved_model.remove_stale_temps(str(model_dir))
    assert sorted(os.path.basename(p) for p in removed) == sorted(leftovers)
    assert [e for e in os.listdir(model_dir) if not e.isdigit()] == []


def test_export_into_a_path_below_a_file_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError) as info:
        export.export_saved_model(helpers.tiny_vae(), blocker / "serving", version=1)
    assert str(blocker) in str(info.value)
    assert blocker.read_text() == "x"


DISK_FULL = ("No space left on device", "File too large")


@pytest.mark.slow
def test_full_disk_export_fails_clearly_and_keeps_earlier_versions(tmp_path):
    with helpers.scratch_disk(tmp_path) as disk:
        base = disk / "serving"
        v1 = base_with_version_1(base)
        before = helpers.tree_snapshot(v1)
        # Replacing version 1 itself (overwrite=True) is the hardest case: the new SavedModel is
        # written beside it first, so the disk fills before version 1 is touched.
        with helpers.nearly_full_disk(disk, 4096), pytest.raises(Exception) as info:  # noqa: B017
            export.export_saved_model(helpers.tiny_vae(), base, version=1, overwrite=True)
        assert any(s in str(info.value) for s in DISK_FULL), repr(info.value)
        assert sorted(os.listdir(base / "vae")) == ["1"]  # no temporary folder left
        assert helpers.tree_snapshot(v1) == before
        assert_serves(v1)


@pytest.mark.slow
def test_full_disk_tflite_export_keeps_the_earlier_file(tmp_path):
    with helpers.scratch_disk(tmp_path) as disk:
        (disk / "tflite").mkdir()
        target = disk / "tflite" / "vae.tflite"
        shutil.copy(helpers.tflite_path(), target)
        before = target.read_bytes()
        with helpers.nearly_full_disk(disk, 4096), pytest.raises(OSError) as info:
            export.export_tflite(helpers.saved_model_dir(), target, quantize="float32")
        assert any(s in str(info.value) for s in DISK_FULL), repr(info.value)
        assert target.read_bytes() == before
        assert sorted(os.listdir(disk / "tflite")) == ["vae.tflite"]


def test_export_cli_reports_an_unwritable_output_folder_on_one_line(tmp_path, capsys):
    from keras_vae.export import cli

    model_path = tmp_path / "model.keras"
    helpers.tiny_vae().save(model_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = cli.main([str(model_path), "--out", str(blocker / "serving")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("keras-vae-export: error:") and len(err.strip().splitlines()) == 1
    assert str(blocker) in err


def test_export_cli_reports_a_corrupt_model_file_on_one_line(tmp_path, capsys):
    from keras_vae.export import cli

    model_path = tmp_path / "model.keras"
    helpers.tiny_vae().save(model_path)
    content = bytearray(model_path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # inside the weights: the zip's CRC-32 catches it
    model_path.write_bytes(bytes(content))
    code = cli.main([str(model_path), "--out", str(tmp_path / "serving")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("keras-vae-export: error:") and "model.keras" in err
    assert not (tmp_path / "serving").exists()


# ------------------------------------------------------------------------------------------------
# One version, one model: the SavedModel and its TFLite files are published together.


def _other_model(tmp_path):
    """The tiny VAE with every weight moved: another model, saved as `other.keras`."""
    import keras
    import numpy as np

    path = tmp_path / "tiny.keras"
    helpers.tiny_vae().save(path)
    model = keras.models.load_model(path)
    for w in model.weights:
        w.assign(w.numpy() + np.float32(0.25))
    model.save(tmp_path / "other.keras")
    return model, tmp_path / "other.keras"


def _decode(tflite_file, z):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tflite_file)).get_signature_runner("decode")
    return runner(z=z)["x"]


@pytest.mark.slow
def test_a_rerun_is_a_no_op_and_a_version_lists_its_tflite_files(tmp_path):
    out = tmp_path / "out"
    paths = export.export_all(helpers.tiny_vae(), out, quantizations=("float32",))
    meta = export.verify(out, "vae", 1)
    sidecar = out / "tflite" / "vae-v1-float32.json"
    assert sorted(meta["tflite"]) == ["vae-v1-float32.json", "vae-v1-float32.tflite"]
    assert json.loads(sidecar.read_text())["export_fingerprint"] == meta["export_fingerprint"]
    mtime = os.path.getmtime(paths["tflite_float32"])
    # The same export again (e.g. rerun after a kill that came just after the commit): done.
    assert export.export_all(helpers.tiny_vae(), out, quantizations=("float32",)) == paths
    assert os.path.getmtime(paths["tflite_float32"]) == mtime
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_all(helpers.tiny_vae(), out, quantizations=("float32",), max_samples=8)
    # A TFLite file replaced by another model's is detected.
    shutil.copy(helpers.tflite_path(), paths["tflite_float32"])
    with pytest.raises(ValueError, match="vae-v1-float32.tflite is not the file exported with it"):
        export.verify(out, "vae", 1)
    assert sorted(os.listdir(out / "vae")) == ["1"]
    assert sorted(os.listdir(out / "tflite")) == ["vae-v1-float32.json", "vae-v1-float32.tflite"]


@pytest.mark.slow
def test_a_kill_between_commit_and_publish_is_finished_by_the_next_export(tmp_path):
    """The state a kill just after the SavedModel's swap leaves (the new SavedModel beside the
    old model's TFLite files), made with the export's own steps; the next export finishes it."""
    import numpy as np

    from keras_vae.export import saved_model

    out = tmp_path / "out"
    old = export.export_all(helpers.tiny_vae(), out, quantizations=("float32", "float16"))
    model, _ = _other_model(tmp_path)
    targets = {"float32": old["tflite_float32"]}
    limits = {"max_samples": 1024, "iw_samples": 64, "max_batch": 256}
    digest = export._fingerprint(model, "vae", 1, ["float32"], limits, None)
    temp, _ = export._stage(model, str(out), "vae", 1, targets, digest, limits, None)
    saved_model._move_into_place(temp, old["saved_model"], overwrite=True)
    shutil.rmtree(temp)
    with pytest.raises(ValueError, match="not the file exported with it; .*float16.* belongs to"):
        export.verify(out, "vae", 1)
    # The next export to the folder, even of another model, first moves the staged files into
    # place and removes the old model's float16 file (before it cleans the staging area that
    # all models share).
    export.export_all(helpers.tiny_vae(), out, name="other", quantizations=())
    export.verify(out, "vae", 1)
    # The same call again (without overwrite) then finds the export complete: nothing to do.
    assert export.export_all(model, out, quantizations=("float32",))["saved_model"] == str(
        out / "vae" / "1"
    )
    assert sorted(os.listdir(out / "tflite")) == ["vae-v1-float32.json", "vae-v1-float32.tflite"]
    z = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    np.testing.assert_allclose(
        _decode(old["tflite_float32"], z), np.asarray(model.decode(z)), atol=1e-5
    )


def test_a_second_export_to_the_same_folder_is_refused_while_one_runs(tmp_path, capsys):
    from keras_vae.export import cli, publish

    model_path = tmp_path / "model.keras"
    helpers.tiny_vae().save(model_path)
    out = tmp_path / "out"
    with publish.locked(out):
        with pytest.raises(export.ExportLockedError, match="another keras-vae-export is writing"):
            export.export_all(helpers.tiny_vae(), out)
        code = cli.main([str(model_path), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"another keras-vae-export is writing {str(out)!r} (pid {os.getpid()})" in err
    assert os.listdir(out) == [publish.LOCK_NAME]
    # Released with the holder: the same command now runs.
    assert cli.main([str(model_path), "--out", str(out)]) == 0


def _fingerprint_of(version_dir):
    try:
        with open(os.path.join(version_dir, "assets.extra", "keras_vae.json")) as f:
            return json.load(f).get("export_fingerprint")
    except (OSError, ValueError):
        return None


def _staging(tflite_dir):
    """Whether a staging folder exists: it is made just before the TFLite conversion starts."""
    try:
        return any(e.startswith(".tmp-") for e in os.listdir(tflite_dir))
    except OSError:
        return False


@pytest.mark.slow
def test_a_killed_overwrite_keeps_the_old_model_whole_and_its_rerun_completes(tmp_path):
    """`keras-vae-export --overwrite --tflite` SIGKILLed while converting leaves the old model and
    its TFLite files; the same command again exports the new one, TFLite files included."""
    import numpy as np

    out = tmp_path / "out"
    old = export.export_all(helpers.tiny_vae(), out, quantizations=("float32",))
    old_fingerprint = export.verify(out, "vae", 1)["export_fingerprint"]
    old_tflite = helpers.tree_snapshot(out / "tflite")
    model, model_path = _other_model(tmp_path)
    command = ["-m", "keras_vae.export", str(model_path), "--out", str(out), "--tflite"]
    command.append("--overwrite")
    version = out / "vae" / "1"
    # Killed while converting (the window between the SavedModel's swap and the TFLite renames
    # is a few renames: test_a_kill_between_commit_and_publish_is_finished_by_the_next_export).
    process = helpers.start_python(command)
    reached, _, output = helpers.sigkill_when(process, lambda: _staging(out / "tflite"), 240, 0.002)
    assert reached, output[-3000:]
    assert is_complete(version) and _fingerprint_of(version) == old_fingerprint
    # Not committed: the old model and its files, byte for byte (beside the killed run's
    # staging folder, which the next export removes).
    published = helpers.tree_snapshot(out / "tflite")
    assert {k: v for k, v in published.items() if not k.startswith(".tmp-")} == old_tflite
    export.verify(out, "vae", 1)
    # The same command again completes the export.
    rerun = helpers.run_python(command, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    meta = export.verify(out, "vae", 1)
    assert meta["export_fingerprint"] not in (None, old_fingerprint)
    z = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    np.testing.assert_allclose(
        _decode(old["tflite_float32"], z), np.asarray(model.decode(z)), atol=1e-5
    )
    assert [e for e in os.listdir(out / "tflite") if e.startswith(".tmp-")] == []


@pytest.mark.slow
def test_ctrl_c_exits_130_on_one_line_and_leaves_nothing_half_written(tmp_path):
    import subprocess
    import sys

    base = tmp_path / "serving"
    v1 = base_with_version_1(base)
    before = helpers.tree_snapshot(v1)
    model_path = tmp_path / "model.keras"
    helpers.tiny_vae().save(model_path)
    model_dir = base / "vae"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_vae.export", str(model_path), "--out", str(base)]
        + ["--version", "2", "--tflite"],
        cwd=helpers.REPO,
        env=helpers.python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        midway = helpers.wait_for(
            lambda: any(e.startswith(".tmp-") for e in os.listdir(model_dir)), 240, process, 0.002
        )
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert midway
    assert process.returncode == 130, err[-3000:]
    assert err.count("\n") == 1 and err.startswith("keras-vae-export: interrupted"), err
    assert sorted(os.listdir(model_dir)) == ["1"]
    assert helpers.tree_snapshot(v1) == before
    leftovers = os.listdir(base / "tflite") if (base / "tflite").exists() else []
    assert leftovers == [], leftovers
