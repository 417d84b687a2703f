"""Training faults: SIGKILL mid-epoch, a loss that turns NaN, an unwritable or full run folder.

Each one must lose nothing: the same command resumes from the last finished epoch with exactly
one history row per epoch, and the files of earlier epochs (model.keras, backup/, history rows)
stay intact and loadable, never with NaN weights.
"""

import contextlib
import csv
import errno
import json
import math
import os
import shutil
import signal
import subprocess

import keras
import numpy as np
import pytest
import reliability_helpers as helpers

import keras_vae

FAST = {"data": "digits", "export": False, "iwae_samples": 2, "verbose": 0, "limit": 200}


def history_rows(run_dir):
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def history_epochs(run_dir):
    return [int(r["epoch"]) for r in history_rows(run_dir)]


def assert_finite_model(path):
    model = keras.models.load_model(path)  # safe mode
    assert isinstance(model, keras_vae.VAE)
    for weight in model.weights:
        assert np.isfinite(np.asarray(weight)).all(), weight.path
    return model


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-epoch run on 200 digits; tests copy it and resume it for more epochs."""
    from keras_vae import training

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    training.train({**FAST, "epochs": 1}, run_dir)
    return run_dir


# ------------------------------------------------------------------------------------------------
# SIGKILL.


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes_without_lost_or_doubled_rows(tmp_path):
    run_dir = tmp_path / "run"
    epochs = 4
    command = [
        "-m", "keras_vae.training", "--data", "digits", "--limit", "300", "--epochs", str(epochs),
        "--latent-dim", "3", "--no-export", "--iwae-samples", "2", "--verbose", "2",
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    process = helpers.start_python(command)
    # Kill as soon as two epochs are recorded: the process is then inside epoch 2 (or still
    # writing epoch 1's backup), never at a clean stopping point.
    progressed, alive, output = helpers.sigkill_when(
        process, lambda: len(history_rows(run_dir)) >= 2, 240
    )
    assert progressed and alive, output[-3000:]
    assert process.returncode == -signal.SIGKILL
    killed_at = history_epochs(run_dir)
    assert killed_at == list(range(len(killed_at))) and len(killed_at) < epochs
    if os.path.exists(run_dir / "model.keras"):
        assert_finite_model(run_dir / "model.keras")

    resumed = helpers.run_python(command, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch" in resumed.stdout
    # The resumed run trains only the epochs that were not finished before the kill.
    ran = [line for line in resumed.stdout.splitlines() if line.startswith("Epoch ")]
    assert 0 < len(ran) < epochs, ran
    assert ran[-1] == f"Epoch {epochs}/{epochs}"
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    for row in rows:
        assert all(math.isfinite(float(v)) for k, v in row.items() if k != "epoch"), row
    assert_finite_model(run_dir / "model.keras")
    assert (run_dir / "metrics.json").exists()


# ------------------------------------------------------------------------------------------------
# NaN.


@pytest.mark.slow
def test_nan_loss_stops_the_run_with_a_clear_message_and_no_nan_model(tmp_path, capsys):
    from keras_vae.training import cli

    run_dir = tmp_path / "run"
    argv = [
        "--data", "digits", "--limit", "200", "--epochs", "3", "--learning-rate", "1e6",
        "--no-export", "--verbose", "0", "--run-dir", str(run_dir),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "The loss became NaN or inf at epoch 0" in err
    assert "Lower --learning-rate" in err
    assert len(err.strip().splitlines()) == 1, err
    # Nothing diverged was recorded: no NaN model, no NaN history row, no backup to resume.
    assert not (run_dir / "model.keras").exists()
    assert history_rows(run_dir) == []
    assert not (run_dir / "backup" / "state.json").exists()


class _AbsurdLearningRateAt(keras.callbacks.Callback):
    """Fault injection: from epoch `epoch` on, Adam's step size is 1e6."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.optimizer.learning_rate.assign(1e6)


def test_nan_mid_run_keeps_the_last_good_model_and_backup(tmp_path):
    # The run's own callbacks (RunState, FiniteGuard) in a real fit; the loss turns NaN in
    # epoch 2 because the learning rate becomes absurd there.
    from keras_vae.training import callbacks

    keras.utils.set_random_seed(0)
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    run_dir, backup_dir = tmp_path / "run", tmp_path / "run" / "backup"
    run_state = callbacks.RunState(str(run_dir), str(backup_dir))
    guard = callbacks.FiniteGuard()
    vae.fit(
        helpers.digits()[:256],
        epochs=4,
        batch_size=64,
        verbose=0,
        callbacks=[_AbsurdLearningRateAt(2), guard, run_state],
    )
    assert guard.diverged_at is not None and guard.diverged_at[0] == 2
    # The fault happened (the guard saw it); RunState then put the last good epoch back into the
    # model, from the backup, to write it as model.keras.
    assert callbacks.weights_are_finite(vae)
    assert run_state.last_good_epoch == 1
    assert history_epochs(run_dir) == [0, 1]
    good = assert_finite_model(run_dir / "model.keras")
    # model.keras and the backup hold the same epoch-1 weights.
    restored = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,), seed=0)
    restored.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert callbacks.restore(restored, str(backup_dir)) == 2
    for a, b, c in zip(good.weights, restored.weights, vae.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(c), np.asarray(b))
    assert not [p for p in os.listdir(run_dir) if p.startswith(".tmp-")]


# ------------------------------------------------------------------------------------------------
# Storage.


def test_run_folder_that_cannot_be_created_gives_a_clear_error(tmp_path, capsys):
    from keras_vae.training import cli

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # A path below a regular file cannot be created, even by root (chmod would not stop root).
    with pytest.raises(SystemExit) as info:
        cli.main(["--data", "ring", "--epochs", "1", "--run-dir", str(blocker / "run")])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Cannot write to the run folder" in err and str(blocker / "run") in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused_and_keeps_the_run(finished_run, tmp_path):
    from keras_vae import training

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = helpers.tree_snapshot(run_dir)
    with pytest.raises(training.ConfigError, match=r"learning_rate: 0.001 -> 1000000.0"):
        training.train({**FAST, "epochs": 2, "learning_rate": 1e6}, run_dir)
    assert helpers.tree_snapshot(run_dir) == before


@contextlib.contextmanager
def read_only(folder):
    """`folder` made read-only for everyone, root included: a read-only bind mount."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, timeout=10)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, timeout=10)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=10)


def test_read_only_run_folder_gives_a_clear_error_and_keeps_the_run(finished_run, tmp_path):
    from keras_vae import training

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = helpers.tree_snapshot(run_dir)
    if helpers.can_mount():
        context = read_only(run_dir)
    else:
        if os.geteuid() == 0:
            pytest.skip("root without mount rights: nothing can make a folder read-only to root")
        context = _chmod_read_only(run_dir)  # plain permissions do stop a non-root user
    with context, pytest.raises(OSError, match="Cannot write to the run folder"):
        training.train({**FAST, "epochs": 2}, run_dir)
    assert helpers.tree_snapshot(run_dir) == before


@contextlib.contextmanager
def _chmod_read_only(folder):
    os.chmod(folder, 0o500)
    try:
        yield folder
    finally:
        os.chmod(folder, 0o700)


@pytest.mark.slow
def test_full_disk_mid_training_gives_a_clear_error_keeps_the_run_and_resumes(
    finished_run, tmp_path
):
    from keras_vae import training

    with helpers.scratch_disk(tmp_path) as disk:
        run_dir = disk / "run"
        shutil.copytree(finished_run, run_dir)
        before = helpers.tree_snapshot(run_dir)
        rows_before = history_rows(run_dir)
        # Room for config.json and history.csv, not for the weights of the next backup.
        with helpers.nearly_full_disk(disk, 96 * 1024), pytest.raises(OSError) as info:
            training.train({**FAST, "epochs": 2}, run_dir)
        assert info.value.errno in (errno.ENOSPC, errno.EFBIG) or any(
            s in str(info.value) for s in ("No space left", "File too large")
        ), info.value
        assert str(run_dir) in str(info.value)
        after = helpers.tree_snapshot(run_dir)
        # Everything of the finished epoch is intact; no temporary file is left behind.
        for name, content in before.items():
            if name not in ("history.csv", "config.json"):
                assert after.get(name) == content, name
        assert history_rows(run_dir)[: len(rows_before)] == rows_before
        assert not [p for p in after if os.path.basename(p).startswith(".tmp-")]
        assert_finite_model(run_dir / "model.keras")

        # Space freed: the same call resumes and finishes with one row per epoch.
        training.train({**FAST, "epochs": 2}, run_dir)
        assert history_epochs(run_dir) == [0, 1]
        assert_finite_model(run_dir / "model.keras")


class _Crash(BaseException):
    """Stands for the process dying (SIGKILL) at the instant it is raised: files already
    renamed into place stay, nothing after runs."""


@pytest.mark.slow
def test_backup_weights_and_state_always_describe_the_same_epoch(tmp_path, monkeypatch):
    from keras_vae import training
    from keras_vae.training import backup, callbacks

    real, seen = backup.atomic_write_text, []

    def crash_before_second_state(path, text):
        # Fault injection at one exact instant: epoch 1's weights are in backup/, its
        # state.json is not written yet.
        if os.path.basename(path) == "state.json":
            seen.append(path)
            if len(seen) == 2:
                raise _Crash()
        return real(path, text)

    monkeypatch.setattr(backup, "atomic_write_text", crash_before_second_state)
    run_dir = tmp_path / "run"
    with pytest.raises(_Crash):
        training.train({**FAST, "epochs": 3, "latent_dim": 3}, run_dir)
    monkeypatch.undo()

    # state.json says one epoch is finished and model.keras holds that epoch's weights; the
    # backup a resumed run starts from must hold the same ones.
    at_epoch_1 = assert_finite_model(run_dir / "model.keras")
    restored = keras_vae.build_vae((8, 8, 1), latent_dim=3, seed=0)
    restored.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert callbacks.restore(restored, str(run_dir / "backup")) == 1
    for a, b in zip(at_epoch_1.weights, restored.weights, strict=True):
        if "seed_generator" not in a.path:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_a_resumed_run_without_its_untrained_record_says_so_instead_of_measuring_the_trained(
    finished_run, tmp_path, capsys
):
    # backup/untrained.json lost (an older run folder, a careless clean-up): the model in memory
    # at the start is the restored, trained one, and its numbers were reported as "untrained".
    from keras_vae import training

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    os.remove(run_dir / "backup" / "untrained.json")
    result = training.train({**FAST, "epochs": 2, "verbose": 1}, run_dir)
    assert result["untrained"] is None
    assert json.load(open(run_dir / "metrics.json"))["untrained"] is None
    assert "(untrained not recorded;" in capsys.readouterr().out
    assert not (run_dir / "backup" / "untrained.json").exists()


def test_backups_restore_every_variable_and_earlier_versions_h5_backups_still_resume(tmp_path):
    from keras_vae.training import backup, run_folder

    def trained():
        keras.utils.set_random_seed(0)
        vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(16,), seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        return vae

    vae = trained()
    vae.fit(helpers.digits()[:128], epochs=2, batch_size=32, verbose=0)
    for name, save in (
        ("npz", lambda folder: backup.write(folder, backup.snapshot(vae, 1))),
        ("h5", None),
    ):
        folder = tmp_path / name
        folder.mkdir()
        if save:
            save(str(folder))
        else:  # what earlier versions wrote: Keras' save_weights and a state.json naming it
            vae.save_weights(str(folder / "epoch_0001.weights.h5"))
            state = {"epoch": 1, "weights": "epoch_0001.weights.h5", "seed_state": [0, 0]}
            (folder / "state.json").write_text(json.dumps(state))
        assert run_folder.check_state(str(folder)) == 1
        fresh = trained()
        assert backup.restore(fresh, str(folder)) == 1
        for a, b in zip(backup._variables(vae), backup._variables(fresh), strict=True):
            if name == "npz" or "seed_generator" not in a.path:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert sorted(os.listdir(tmp_path / "npz")) == ["epoch_0001.weights.npz", "state.json"]
