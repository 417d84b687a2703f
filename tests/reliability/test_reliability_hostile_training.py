"""Hostile inputs to training (issue 17): each one a clear refusal or a right answer.

Config values of the wrong type, seeds out of range, corrupt or foreign files in a run folder,
two trainers on one folder, a killed run's temporary files, an empty --run-dir, a full disk
under the backup's HDF5 writer, settings and .keras files that would need gigabytes, config
files that never end or nest too deeply, absurd --iwae-samples, bad --devices and TF_CONFIG,
and Ctrl-C during start-up. Real runs on 200 digits, real files, real processes.
"""

import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import reliability_helpers as helpers

from keras_vae.training import cli, evaluate, run_folder
from keras_vae.training.config import ConfigError, TrainConfig

FAST = {"data": "digits", "export": False, "iwae_samples": 2, "verbose": 0, "limit": 200}
FLAGS = ["--data", "digits", "--limit", "200", "--no-export", "--iwae-samples", "2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-epoch run on 200 digits; tests copy it before changing anything."""
    from keras_vae import training

    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    training.train({**FAST, "epochs": 1, "hidden_units": [16]}, run_dir)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err, err
    return err


def cli_exit(argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


# ------------------------------------------------------------------------------------------------
# 1, 2, 9: config values by type, seeds in range, bounded IWAE samples.


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("binarize", "false", "true or false"),
        ("export", "false", "true or false"),
        ("binarize", 0, "true or false"),
        ("epochs", "2", "an integer"),
        ("seed", "1", "an integer"),
        ("learning_rate", True, "a number"),
        ("limit", "all", "an integer"),
        ("verbose", 1.0, "an integer"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused_naming_field_value_and_type(
    field, value, expected
):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({**FAST, field: value})
    message = str(info.value)
    assert message.startswith(f"{field} must be {expected}")
    assert repr(value) in message and type(value).__name__ in message
    assert "\n" not in message


def test_string_booleans_in_a_config_file_are_refused_before_any_work(tmp_path, capsys):
    for field in ("binarize", "export"):
        config = tmp_path / f"{field}.json"
        config.write_text(json.dumps({field: "false"}))
        run_dir = tmp_path / f"run_{field}"
        assert cli_exit(["--config", str(config), "--run-dir", str(run_dir)]) == 2
        err = one_line_error(capsys)
        assert f"{field} must be true or false" in err and "'false' (str)" in err
        assert not run_dir.exists()


@pytest.mark.parametrize("seed", [-1, 2**31, 4294967296, 2**64])
def test_seeds_outside_int32_are_refused(seed, capsys):
    with pytest.raises(ConfigError, match=r"seed must be an integer"):
        TrainConfig(seed=seed)
    assert cli_exit(["--seed", str(seed)]) == 2
    assert "seed must be an integer" in one_line_error(capsys)


def test_the_largest_seed_is_accepted():
    assert TrainConfig(seed=2**31 - 1).seed == 2**31 - 1


def test_absurd_iwae_samples_are_refused_up_front(capsys):
    assert cli_exit(["--iwae-samples", "1000000000"]) == 2
    err = one_line_error(capsys)
    assert "iwae_samples must be an integer from 1 to 100000" in err


def test_a_float_too_large_for_a_float_is_a_config_error():
    with pytest.raises(ConfigError, match="beta must be a number"):
        TrainConfig.from_dict({"beta": 10**400})


# ------------------------------------------------------------------------------------------------
# 8 (files): --config that never ends, is too big, or nests too deeply.


def test_config_from_dev_zero_is_refused_at_once(capsys):
    assert cli_exit(["--config", "/dev/zero"]) == 2
    assert "is over 1048576 bytes" in one_line_error(capsys)


@pytest.mark.parametrize(
    "text, reason",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep"),
        ('{"data": "digits"', "not valid UTF-8 JSON"),
        ("[1, 2]", "holds a JSON list"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
    ],
)
def test_config_files_that_are_not_a_config_are_one_line_errors(text, reason, tmp_path, capsys):
    path = tmp_path / "config.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    assert cli_exit(["--config", str(path)]) == 2
    assert reason in one_line_error(capsys)


def test_config_from_a_fifo_nobody_writes_is_refused_at_once(tmp_path, capsys):
    # Opening a FIFO for reading waits for a writer: --config must not hang on one.
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert cli_exit(["--config", str(fifo)]) == 2
    assert "is empty" in one_line_error(capsys)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "make, reason",
    [
        pytest.param(lambda p: "/dev/zero", "is over 1048576 bytes", id="dev_zero"),
        pytest.param(lambda p: (p.write_text("[" * 100_000), p)[1], "nested too deeply", id="deep"),
        pytest.param(
            lambda p: (p.write_bytes(b"\xff{}"), p)[1], "not valid UTF-8 JSON", id="binary"
        ),
        pytest.param(lambda p: p, "Cannot read", id="missing"),
        pytest.param(
            lambda p: (p.write_text("[1]"), p)[1], "must be a TrainConfig or a dict", id="list"
        ),
    ],
)
def test_read_config_refuses_what_is_not_a_config_with_a_config_error(make, reason, tmp_path):
    from keras_vae.training.config import read_config

    with pytest.raises(ConfigError, match=reason):
        read_config(make(tmp_path / "config.json"))


def test_sizes_past_floats_range_are_refused_on_one_line():
    from keras_vae.training import model_size

    for values in ({"latent_dim": 10**400}, {"batch_size": 10**400}):
        with pytest.raises(model_size.ModelTooLarge, match=r"GiB") as info:
            model_size.check_training(TrainConfig.from_dict(values), (8, 8, 1))
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# 6: an empty run dir.


def test_an_empty_run_dir_is_refused(tmp_path, capsys, monkeypatch):
    from keras_vae import training

    monkeypatch.chdir(tmp_path)
    assert cli_exit([*FLAGS, "--run-dir", ""]) == 2
    assert "--run-dir must name a folder; received ''" in one_line_error(capsys)
    with pytest.raises(ConfigError, match="run_dir must name a folder"):
        training.train({**FAST, "epochs": 1}, "")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 3: corrupt or foreign files of a run folder, checked when it is opened to resume.


def _write(path, text):
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)


def _corrupt(run_dir, name, content):
    if content is None:
        os.remove(run_dir / name)
    else:
        _write(run_dir / name, content)


CORRUPTIONS = [
    ("config.json", "{not json", "not valid UTF-8 JSON"),
    pytest.param("config.json", "[" * 50_000 + "]" * 50_000, "nested too deeply", id="deep"),
    ("config.json", '{"data": "digits", "epochs": "1"}', "not a valid run config"),
    ("config.json", None, "is missing, though backup/state.json records a run"),
    ("backup/state.json", "\x00\x01garbage", "not valid UTF-8 JSON"),
    ("backup/state.json", '{"epoch": "1", "weights": "epoch_0001.weights.h5"}', "has epoch '1'"),
    ("backup/state.json", '{"epoch": 1, "weights": "../../x.weights.h5"}', "names the weights"),
    (
        "backup/state.json",
        '{"epoch": 1, "weights": "epoch_0001.weights.npz", "seed_state": "x"}',
        "seed_state",
    ),  # fmt: skip
    ("backup/state.json", '{"epoch": 2, "weights": "epoch_0002.weights.h5"}', "is missing"),
    ("history.csv", "epoch,loss\nabc,1.0\n", "not a number"),
    ("history.csv", "epoch,loss\n", "has rows for epochs []"),
    ("history.csv", "loss\n1.0\n", "has no epoch column"),
    ("history.csv", "epoch,loss\n0,1.0,7\n", "line 2 has"),
    ("history.csv", b"epoch,loss\n0,\xff\n", "not a readable CSV"),
    ("history.csv", None, "is missing, though the backup has 1 finished epochs"),
    ("backup/untrained.json", '{"negative_elbo": "NaN"}', "expected a finite number"),
    ("backup/untrained.json", "[]", "expected a finite number"),
]


@pytest.mark.parametrize("name, content, reason", CORRUPTIONS)
def test_corrupt_run_folder_files_are_one_line_errors_naming_the_file(
    run_copy, name, content, reason
):
    _corrupt(run_copy, name, content)
    before = helpers.tree_snapshot(run_copy)
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    with pytest.raises(run_folder.RunFolderError) as info:
        run_folder.prepare_run_dir(str(run_copy), config)
    message = str(info.value)
    assert reason in message, message
    assert str(run_copy / name) in message or str(run_copy / "backup") in message, message
    assert "run folder away" in message or "Restore" in message or "restore" in message
    assert "\n" not in message
    # Refused before anything was written; the lock was released (its file removed).
    assert helpers.tree_snapshot(run_copy) == before


def test_a_config_json_link_in_a_loop_is_not_a_regular_file(run_copy):
    # os.stat of the link fails with ELOOP: named as the run folder's file, not "cannot write".
    os.remove(run_copy / "config.json")
    os.symlink(run_copy / "config.json", run_copy / "config.json")
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    with pytest.raises(run_folder.RunFolderError, match="config.json is not a regular file"):
        run_folder.prepare_run_dir(str(run_copy), config)


@pytest.mark.parametrize("name", ["backup", "samples", "logs"])
@pytest.mark.parametrize("resume", [True, False], ids=["resume", "new"])
def test_a_file_where_the_trainer_writes_a_folder_is_refused_up_front(
    run_copy, tmp_path, name, resume
):
    # Otherwise the run trains an epoch, then fails writing there.
    folder = run_copy if resume else tmp_path / "new"
    folder.mkdir(exist_ok=True)
    if (folder / name).is_dir():
        shutil.rmtree(folder / name)
    (folder / name).write_bytes(b"not a folder")
    before = helpers.tree_snapshot(folder)
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    with pytest.raises(run_folder.RunFolderError, match=f"{name} is not a folder"):
        run_folder.prepare_run_dir(str(folder), config)
    assert helpers.tree_snapshot(folder) == before


def test_state_naming_another_runs_weights_is_refused(run_copy, finished_run):
    # A state.json pointing at a complete, valid weights file of another run folder.
    other = os.path.join(finished_run, "backup", "epoch_0001.weights.npz")
    (run_copy / "backup" / "state.json").write_text(json.dumps({"epoch": 1, "weights": other}))
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    with pytest.raises(run_folder.RunFolderError, match="expected 'epoch_0001.weights.npz'"):
        run_folder.prepare_run_dir(str(run_copy), config)
    # Also a link in this backup folder to another run's file.
    os.remove(run_copy / "backup" / "epoch_0001.weights.npz")
    os.symlink(other, run_copy / "backup" / "epoch_0001.weights.npz")
    (run_copy / "backup" / "state.json").write_text(
        json.dumps({"epoch": 1, "weights": "epoch_0001.weights.npz"})
    )
    with pytest.raises(run_folder.RunFolderError, match="not a file of this backup folder"):
        run_folder.prepare_run_dir(str(run_copy), config)


@pytest.mark.slow
def test_damaged_backup_weights_are_one_line_errors_through_the_command(run_copy, capsys):
    weights = run_copy / "backup" / "epoch_0001.weights.npz"
    weights.write_bytes(weights.read_bytes()[:300])  # a truncated archive
    argv = [*FLAGS, "--epochs", "2", "--hidden-units", "16", "--verbose", "0"]
    assert cli_exit([*argv, "--run-dir", str(run_copy)]) == 2
    err = one_line_error(capsys)
    assert f"Cannot restore the backup {weights}" in err and "start afresh" in err


def test_a_sound_run_folder_still_resumes_its_checks(run_copy):
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    backup_dir, lock = run_folder.prepare_run_dir(str(run_copy), config)
    lock.release()
    assert backup_dir == os.path.join(str(run_copy), "backup")
    assert run_folder.check_state(backup_dir) == 1


# ------------------------------------------------------------------------------------------------
# 4, 5: the run folder's lock, and a killed run's temporary files.


def _hold_lock_in_a_process(folder):
    """A second, real process holding the run folder's lock (as a trainer does: flock and pid);
    returns it once it holds the lock."""
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({os.path.join(str(folder), run_folder.LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0)\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_trainer_on_a_locked_folder_fails_at_once_naming_the_holder(run_copy):
    from keras_vae import training

    holder = _hold_lock_in_a_process(run_copy)
    try:
        before = helpers.tree_snapshot(run_copy)
        with pytest.raises(run_folder.RunFolderBusy) as info:
            training.train({**FAST, "epochs": 2, "hidden_units": [16]}, run_copy)
        message = str(info.value)
        assert f"(pid {holder.pid})" in message and str(run_copy) in message
        assert helpers.tree_snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder died: the kernel released its lock, and the next trainer takes it.
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    _, lock = run_folder.prepare_run_dir(str(run_copy), config)
    lock.release()
    assert not (run_copy / run_folder.LOCK_NAME).exists()


@pytest.mark.slow
def test_the_command_on_a_folder_another_trainer_holds_exits_2_on_one_line(run_copy):
    # This process holds the lock with the trainer's own RunLock; the command is a real second
    # process.
    with run_folder.RunLock(str(run_copy)):
        result = helpers.run_python(
            ["-m", "keras_vae.training", *FLAGS, "--epochs", "2", "--hidden-units", "16",
             "--verbose", "0", "--run-dir", str(run_copy)],
        )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"(pid {os.getpid()})" in lines[0], result.stderr[-2000:]
    assert "Another keras-vae-train" in lines[0] and str(run_copy) in lines[0]


def test_the_lock_is_held_for_the_whole_run_and_released_after(tmp_path):
    import keras

    from keras_vae import training

    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            fd = os.open(os.path.join(run_dir, run_folder.LOCK_NAME), os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
            finally:
                os.close(fd)

    run_dir = str(tmp_path / "run")
    training.train({**FAST, "epochs": 1, "hidden_units": [16]}, run_dir, callbacks=[Probe()])
    assert seen == ["held"]
    assert not os.path.exists(os.path.join(run_dir, run_folder.LOCK_NAME))
    # Released also when the run fails.
    with pytest.raises(ConfigError):
        training.train({**FAST, "epochs": 1, "hidden_units": [32]}, run_dir)
    lock = run_folder.RunLock(run_dir)
    lock.release()


def test_a_killed_runs_temporary_files_are_removed_at_start_and_nothing_else(run_copy):
    ours = [
        ".tmp-abcd_123.keras",
        "backup/.tmp-x1y2z3w4.weights.h5",
        "backup/.tmp-x1y2z3w5.weights.npz",
        "samples/.tmp-q9w8e7r6.png",
        ".tmp-k2j3h4g5",
    ]
    theirs = [".tmp-notours.txt", "notes.tmp", "backup/.tmp-short.weights.h5", "logs/.tmp-abcdefgh"]
    for name in ours + theirs:
        (run_copy / name).parent.mkdir(exist_ok=True)
        (run_copy / name).write_bytes(b"half written")
    config = TrainConfig.from_dict({**FAST, "epochs": 2, "hidden_units": [16]})
    _, lock = run_folder.prepare_run_dir(str(run_copy), config)
    lock.release()
    for name in ours:
        assert not (run_copy / name).exists(), name
    for name in theirs:
        assert (run_copy / name).read_bytes() == b"half written", name


def test_temporary_files_are_not_touched_while_another_trainer_holds_the_folder(run_copy):
    stale = run_copy / ".tmp-abcdefgh.keras"
    stale.write_bytes(b"being written by the holder")
    with run_folder.RunLock(str(run_copy)):
        with pytest.raises(run_folder.RunFolderBusy):
            run_folder.prepare_run_dir(
                str(run_copy), TrainConfig.from_dict({**FAST, "hidden_units": [16]})
            )
    assert stale.read_bytes() == b"being written by the holder"


# ------------------------------------------------------------------------------------------------
# 7: a full disk under the backup's writer (h5py crashed the process there, exit 139).


@pytest.mark.slow
def test_full_disk_at_the_backup_weights_is_a_clean_exit_1_on_one_line(tmp_path):
    argv = ["-m", "keras_vae.training", *FLAGS, "--epochs", "1", "--verbose", "0"]
    if helpers.can_mount():
        # 600 KiB: room for config.json, history.csv and untrained.json, not for the default
        # MLP's backup (weights and Adam's moments, about 1.2 MB).
        with helpers.small_tmpfs("600k") as disk:
            run_dir = disk / "run"
            result = helpers.run_python([*argv, "--run-dir", str(run_dir)], timeout=300)
            left = [p.name for p in run_dir.rglob(".tmp-*")]
    else:
        # No mount rights: a file size limit makes the same write fail (EFBIG), with SIGXFSZ
        # ignored so that it is an error, not a signal.
        run_dir = tmp_path / "run"
        import resource

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (600 * 1024, 600 * 1024))

        result = helpers.run_python(
            [*argv, "--run-dir", str(run_dir)], timeout=300, preexec_fn=limit
        )
        left = [p.name for p in run_dir.rglob(".tmp-*")]
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "epoch_0001.weights.npz" in lines[0]
    assert any(s in lines[0] for s in ("No space left", "File too large", "errno = 27"))
    assert left == []


# ------------------------------------------------------------------------------------------------
# 8 (sizes): settings and .keras files that would need gigabytes.


def test_a_huge_latent_dim_is_refused_before_anything_is_built(tmp_path, capsys):
    from keras_vae import training
    from keras_vae.training import model_size

    run_dir = tmp_path / "run"
    with pytest.raises(model_size.ModelTooLarge, match=r"3,8\d\d,\d{3},\d{3} weights"):
        training.train({**FAST, "epochs": 1, "latent_dim": 10_000_000}, run_dir)
    assert not run_dir.exists()
    assert cli_exit([*FLAGS, "--latent-dim", "10000000", "--run-dir", str(run_dir)]) == 2
    err = one_line_error(capsys)
    assert "budget is 4 GiB" in err and model_size.BUDGET_ENV in err


def test_a_huge_iwae_training_step_is_refused(tmp_path):
    from keras_vae import training
    from keras_vae.training import model_size

    config = {**FAST, "epochs": 1, "objective": "iwae", "k": 10**7}
    with pytest.raises(model_size.ModelTooLarge, match="One training step would hold"):
        training.train(config, tmp_path / "run")


def test_the_budget_can_be_raised_and_a_bad_budget_is_refused(monkeypatch):
    from keras_vae.training import model_size

    # 5e8 weights, 8 GB to train; one step's activations 15 GB: both fit 64 GiB.
    config = TrainConfig.from_dict({**FAST, "latent_dim": 10_000_000, "hidden_units": [16]})
    with pytest.raises(model_size.ModelTooLarge):
        model_size.check_training(config, (8, 8, 1))
    monkeypatch.setenv(model_size.BUDGET_ENV, "64")
    model_size.check_training(config, (8, 8, 1))
    monkeypatch.setenv(model_size.BUDGET_ENV, "lots")
    with pytest.raises(ConfigError, match="expected a positive number of GiB"):
        model_size.check_training(config, (8, 8, 1))


def test_the_size_counts_match_the_built_networks():
    import keras_vae
    from keras_vae.training import model_size

    for arch, shape, kwargs in [
        ("mlp", (8, 8, 1), {"hidden_units": (256, 128)}),
        ("conv", (28, 28, 1), {"filters": (32, 64), "dense_units": 16}),
        ("conv", (30, 30, 3), {"filters": (8, 16, 8), "dense_units": 4}),
    ]:
        vae = keras_vae.build_vae(shape, latent_dim=5, arch=arch, **kwargs)
        counted = model_size.network_parameters(arch, shape, 5, **kwargs)
        # Above by the data's size at most: a learned sigma is counted whether there is one.
        assert vae.count_params() <= counted <= vae.count_params() + math.prod(shape), arch


def _tampered_keras(source, out, latent_dim=10**7):
    """`source`'s .keras with latent_dim 3 turned into `latent_dim` in its config.json (the
    weights left as they are): a 10.9+ GB model described by a small file."""

    def edit(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Dense" and node["config"].get("units") == 6:
                node["config"]["units"] = 2 * latent_dim
            for key, value in node.items():
                if value == [None, 3]:
                    node[key] = [None, latent_dim]
                else:
                    edit(value)
        elif isinstance(node, list):
            for item in node:
                edit(item)

    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out


@pytest.fixture(scope="module")
def latent3_keras(tmp_path_factory):
    import keras

    import keras_vae

    path = tmp_path_factory.mktemp("latent3") / "model.keras"
    keras.utils.set_random_seed(0)
    keras_vae.build_vae((8, 8, 1), latent_dim=3, seed=0).save(path)  # MLP 256, 128
    return path


def test_a_tampered_keras_file_is_refused_before_it_is_built(latent3_keras, tmp_path, capsys):
    from keras_vae.training import model_size, sample

    tampered = _tampered_keras(latent3_keras, tmp_path / "tampered.keras")
    assert os.path.getsize(tampered) < 1_000_000
    with pytest.raises(model_size.ModelTooLarge, match=r"describes a model of [\d,]+ weights"):
        model_size.check_keras_file(str(tampered))
    model_size.check_keras_file(str(latent3_keras))  # the honest file passes
    out = str(tmp_path / "s")
    assert sample.main(["sample", str(tampered), "--num", "4", "--out", out]) == 2
    err = one_line_error(capsys)
    assert "Not loading it" in err
    assert not os.path.exists(out + ".npy")
    assert sample.main(["sample", str(latent3_keras), "--num", "4", "--out", out]) == 0
    # keras-vae-evaluate too: refused before Keras builds it.
    from keras_vae.training import evaluate

    assert evaluate.main([str(tampered), "--data", "digits", "--iwae-samples", "1"]) == 2
    assert "Not loading it" in one_line_error(capsys)


def test_a_weights_member_declaring_far_more_than_its_model_is_refused(tmp_path):
    # Keras reads model.weights.h5 whole: 200 KB of deflated zeros would take 200 MB (4 GB in
    # the fuzz case) for a model of some 2,500 weights.
    from keras_vae.training import model_size, sample

    source = helpers.REPO / "tests" / "data" / "mlp_bernoulli.keras"
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            if name != "model.weights.h5":
                out.writestr(name, src.read(name))
        with out.open("model.weights.h5", "w") as member:
            for _ in range(200):
                member.write(bytes(2**20))
    assert os.path.getsize(bomb) < 2**20
    with pytest.raises(model_size.ModelTooLarge, match=r"model\.weights\.h5 declares 209,715,200"):
        model_size.check_keras_file(str(bomb))
    model_size.check_keras_file(str(source))  # the honest file passes
    with pytest.raises(sample.UsageError, match="Not loading it"):
        sample.KerasModel(str(bomb))


# ------------------------------------------------------------------------------------------------
# 10: bad --devices and TF_CONFIG.


def test_a_device_named_twice_is_one_line(capsys, tmp_path):
    from keras_vae.training import distribute

    with pytest.raises(ConfigError, match="the same device"):
        distribute.make_strategy("mirrored", "/cpu:0,/CPU:0")
    argv = [*FLAGS, "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:0"]
    assert cli_exit([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    assert "list each device once" in one_line_error(capsys)


@pytest.mark.parametrize(
    "workers", [["localhost:abc"], ["localhost"], ["localhost:0"], ["localhost:70000"], [5]]
)
def test_tf_config_with_a_bad_port_is_one_line(workers, monkeypatch):
    from keras_vae.training import distribute

    tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with pytest.raises(ConfigError, match="expected host:port with a port from 1 to 65535"):
        distribute.make_strategy("multi-worker")


# ------------------------------------------------------------------------------------------------
# 11: Ctrl-C during start-up.


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path):
    # Interrupted once main() runs: while TensorFlow starts and the data loads, before any
    # epoch. (The imports before main, of keras_vae itself, are the package's to cover.)
    code = (
        "import sys\n"
        "from keras_vae.training import cli\n"
        "print('ready', flush=True)\n"
        f"sys.exit(cli.main({[*FLAGS, '--epochs', '1', '--run-dir', str(tmp_path / 'run')]!r}))\n"
    )
    process = helpers.start_python(["-c", code])
    # `python -c` is not one of the commands, so TensorFlow's import lines come first.
    for line in process.stdout:
        if line.strip() == "ready":
            break
    # Past the line that printed "ready" and inside main (a signal on that line itself would
    # be the test's own race, not the command's); main then runs for seconds.
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert output.strip().splitlines()[-1].startswith("keras-vae-train: interrupted")


# ------------------------------------------------------------------------------------------------
# keras-vae-evaluate's bad flags (fixed in training/evaluate.py): regression tests.


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--limit", "0"], "--limit must be an integer >= 2"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**31)"),
        (["--test-split", "nan"], "--test-split must be a fraction in (0, 1)"),
    ],
)
def test_evaluate_bad_flags_are_one_line_and_exit_2(finished_run, flags, reason, capsys):
    assert evaluate.main([str(finished_run), *flags]) == 2
    assert reason in one_line_error(capsys)
