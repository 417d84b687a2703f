"""Export faults: a killed export, an unwritable or full output folder.

TF Serving loads the highest numbered folder under `BASE/<name>/`: that folder must always be a
complete SavedModel, and earlier versions must never be touched by a failed export.
"""

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
