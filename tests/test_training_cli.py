"""keras-vae-train end to end on digits, keras-vae-evaluate, bad flags, and resumption after
SIGKILL."""

import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_vae.training import cli, evaluate, outputs, plots
from keras_vae.training.config import ConfigError, TrainConfig, option

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
QUICK = ["--no-export", "--iwae-samples", "20", "--verbose", "0"]
# A few quick epochs: 256 examples, 4 steps each.
SHORT = ["--data", "digits", "--epochs", "3", "--limit", "256", "--learning-rate", "0.005"]


def _history(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("run") / "digits")
    # With the progress bar, the closing summary and the export (SavedModel and TFLite).
    argv = [*SHORT, "--run-dir", run_dir, "--iwae-samples", "20", "--verbose", "1"]
    assert cli.main(argv) == 0
    return run_dir


@pytest.mark.slow
def test_cli_end_to_end_on_digits(digits_run, capsys):
    run_dir = digits_run
    for name in (
        "config.json", "model.keras", "history.csv", "metrics.json", "samples.png",
        "reconstructions.png", "latent_scatter.png", "latent_manifold.png",
    ):  # fmt: skip
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "logs")), "no TensorBoard logs"
    assert os.path.isfile(os.path.join(run_dir, "export", "vae", "1", "saved_model.pb"))
    assert os.path.getsize(os.path.join(run_dir, "export", "tflite", "vae-v1-float32.tflite"))

    def size(name):
        with Image.open(os.path.join(run_dir, name)) as image:
            image.load()
            return image.size

    grid = plots.SAMPLE_GRID
    assert size("samples.png") == plots.grid_size(grid, grid, 8, 8)
    assert size("reconstructions.png") == plots.grid_size(2, plots.RECONSTRUCTIONS, 8, 8)
    assert size("latent_manifold.png") == plots.grid_size(
        plots.MANIFOLD_GRID, plots.MANIFOLD_GRID, 8, 8
    )
    # digits have labels: the scatter gets a legend column on the right.
    assert size("latent_scatter.png") == (
        plots.SCATTER_SIZE + plots.LEGEND_WIDTH,
        plots.SCATTER_SIZE,
    )
    # Pictures on their cadence: the first and the last epoch always, any between the same size.
    pictures = sorted(os.listdir(os.path.join(run_dir, "samples")))
    assert pictures[0] == "epoch_000.png" and pictures[-1] == "epoch_002.png", pictures
    assert set(pictures) <= {f"epoch_{e:03d}.png" for e in range(3)}, pictures
    for name in pictures:
        assert size(f"samples/{name}") == plots.grid_size(grid, grid, 8, 8)

    rows = _history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)

    report = json.load(open(os.path.join(run_dir, "metrics.json")))
    held_out, untrained = report["held_out"], report["untrained"]
    for key in (
        "negative_elbo",
        "reconstruction",
        "kl",
        "iwae_log_likelihood",
        "iwae_bits_per_dim",
    ):
        assert math.isfinite(held_out[key]), key
    assert held_out["negative_elbo"] < untrained["negative_elbo"] - 5
    assert held_out["negative_elbo"] == pytest.approx(held_out["reconstruction"] + held_out["kl"])
    # IWAE is a tighter bound than the ELBO (K=20, so allow its Monte Carlo noise).
    assert -held_out["iwae_log_likelihood"] <= held_out["negative_elbo"] + 0.5
    assert held_out["iwae_bits_per_dim"] == pytest.approx(
        -held_out["iwae_log_likelihood"] / (64 * math.log(2))
    )
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["epochs"] == 3 and config["data"] == "digits" and config["latent_dim"] == 2

    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.data_shape == (8, 8, 1) and model.latent_dim == 2
    assert np.isfinite(np.asarray(model.sample(4, seed=0))).all()


@pytest.mark.slow
def test_evaluate_command_repeats_the_runs_numbers(digits_run, tmp_path, capsys):
    out = str(tmp_path / "m.json")
    # Data, split and seed come from the run's config.json next to the model.
    code = evaluate.main([os.path.join(digits_run, "model.keras"), "--iwae-samples", "20",
                          "--json", out])  # fmt: skip
    assert code == 0
    ours = json.load(open(out))
    theirs = json.load(open(os.path.join(digits_run, "metrics.json")))["held_out"]
    for key in ("negative_elbo", "reconstruction", "kl", "iwae_log_likelihood"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    assert evaluate.main([digits_run, "--data", "ring", "--iwae-samples", "0"]) == 2
    assert "shape" in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_with_a_different_config_is_refused(digits_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--latent-dim", "3", "--epochs", "3", "--run-dir", digits_run, *QUICK])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "different config" in err and "latent_dim: 2 -> 3" in err


def test_fewer_epochs_than_the_run_has_trained_are_refused(digits_run, capsys):
    config_before = open(os.path.join(digits_run, "config.json")).read()
    done = json.load(open(os.path.join(digits_run, "backup", "state.json")))["epoch"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*SHORT, "--epochs", str(done - 1), "--run-dir", digits_run, *QUICK])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"already trained {done} epochs; --epochs {done - 1} asks for fewer" in err
    # The run's config still says what its model is.
    assert open(os.path.join(digits_run, "config.json")).read() == config_before


@pytest.mark.slow
def test_help_shows_examples():
    out = subprocess.run(
        [sys.executable, "-m", "keras_vae.training", "--help"], capture_output=True, text=True, env=ENV,
        check=True,
    ).stdout  # fmt: skip
    assert "examples:" in out and "keras-vae-train --data mnist.npz" in out
    assert "--strategy" in out and "TF_CONFIG" in out


def test_every_config_field_has_a_flag_with_help_in_its_group():
    parser = cli.build_parser()
    flags = {a.dest: a for a in parser._actions}
    titles = {g.title: g for g in parser._action_groups}
    for field in dataclasses.fields(TrainConfig):
        action = flags[field.name]
        assert action.option_strings[0] == "--" + field.name.replace("_", "-")
        assert action.help and "{" not in action.help, field.name
        assert action.default is None, field.name  # so that flags override --config
        assert action in titles[field.metadata["group"]]._group_actions, field.name
    assert set(flags) - {f.name for f in dataclasses.fields(TrainConfig)} == {
        "help", "config", "run_dir",
    }  # fmt: skip
    help_text = parser.format_help()
    assert "--binarize, --no-binarize" in help_text and "(default off)" in help_text
    assert "Adam step size (default 0.001)" in help_text and "--arch {mlp,conv}" in help_text


def test_a_new_config_field_is_a_new_flag(monkeypatch, capsys):
    @dataclasses.dataclass(frozen=True)
    class Extended(TrainConfig):
        warmup_epochs: int = option(0, "training", "epochs of KL warm-up (default {default})")

    monkeypatch.setattr(cli, "TrainConfig", Extended)
    parser = cli.build_parser()
    assert "--warmup-epochs WARMUP_EPOCHS" in parser.format_help()
    assert "epochs of KL warm-up (default 0)" in parser.format_help()
    config = cli.config_from_args(parser.parse_args(["--warmup-epochs", "5", "--epochs", "2"]))
    assert config.warmup_epochs == 5 and config.epochs == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--warmup-epochs", "five"])
    assert "invalid int value: 'five'" in capsys.readouterr().err


def test_flags_override_the_config_file_field_by_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "ring", "epochs": 5, "export": False, "sigma": 0.1}))
    args = cli.build_parser().parse_args(
        ["--config", str(path), "--epochs", "7", "--sigma", "learned"]
    )
    config = cli.config_from_args(args)
    assert (config.data, config.epochs, config.export, config.sigma) == (
        "ring",
        7,
        False,
        "learned",
    )
    assert config.latent_dim == TrainConfig().latent_dim


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--epochs", "-1"], "epochs must be an integer >= 1; received -1"),
        (["--data", "imagenet"], "Unknown data 'imagenet'"),
        (["--latent-dim", "0"], "latent_dim must be an integer >= 1; received 0"),
        (["--data", "/no/such/mnist.npz"], "does not exist"),
        (["--learning-rate", "0"], "learning_rate must be a number > 0"),
        (["--arch", "transformer"], "invalid choice: 'transformer'"),
        (["--batch-size", "ten"], "invalid int value: 'ten'"),
        (["--sigma", "-1"], "sigma must be a number > 0"),
        (["--data", "ring", "--arch", "conv"], "--arch conv needs images"),
        (["--devices", "/gpu:0"], "--devices applies to --strategy mirrored"),
        # Python's int() reads "1_0" as 10 and " 7" as 7; a flag takes ASCII digits only.
        (["--seed", "1_0"], "invalid int value: '1_0'"),
        (["--epochs", " 7"], "invalid int value: ' 7'"),
        # Beyond float32 a setting is inf or 0 in the graph: it was a NaN loss blamed on the
        # learning rate (and a RuntimeWarning over several lines for --free-bits 1e308).
        (["--free-bits", "1e308"], "free_bits must be a number from 0 to 3.40282e+38, the float32"),
        (
            ["--likelihood", "gaussian", "--sigma", "1e-300"],
            "sigma must be a number from 1.17549e-38",
        ),
        (["--learning-rate", "1e39"], "learning_rate must be a number from"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_any_work(argv, reason, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert reason in err
    assert err.count("\n") == 1 and err.startswith("keras-vae-train: error:")
    assert not run_dir.exists()


@pytest.mark.slow
def test_resumes_after_sigkill_with_one_history_row_per_epoch(digits_run, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = [*SHORT, "--run-dir", run_dir, *QUICK]
    # The launcher kills the process with SIGKILL right after epoch 0 is recorded.
    command = [sys.executable, os.path.join(ROOT, "tests", "sigkill_after_epoch.py"), "0", *argv]
    crashed = subprocess.run(command, env=ENV, capture_output=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert [int(r["epoch"]) for r in _history(run_dir)] == [0]
    assert not os.path.exists(os.path.join(run_dir, "metrics.json"))
    # A stale row from an epoch the backup never recorded must be dropped on resumption.
    with open(os.path.join(run_dir, "history.csv"), "a") as f:
        f.write("1,1,1,1,1,1,1\n")

    # The same command again (run in this process, to spare a TensorFlow start-up).
    argv[argv.index("--verbose") + 1] = "2"
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 0" in out
    assert "Epoch 2/3" in out and "Epoch 1/3" not in out
    # The summary counts what this process trained, not the run's three epochs.
    assert "Resumed after epoch 0: trained epochs 1-2 (2 in this process) in " in out
    assert "s; 3 in all." in out and "Trained 3 epochs" not in out
    rows = _history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[1]["loss"]) != 1.0
    report = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert report["epochs"] == 3
    # Weights, optimizer, noise generator and the epoch's data order all come back: the
    # resumed run ends where the uninterrupted one (the same flags, in digits_run) did.
    resumed_model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    full_model = keras.models.load_model(os.path.join(digits_run, "model.keras"))
    for a, b in zip(resumed_model.weights, full_model.weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_rerunning_a_finished_run_says_there_was_nothing_to_train(digits_run, tmp_path, capsys):
    run_dir = str(tmp_path / "finished")
    shutil.copytree(digits_run, run_dir, ignore=shutil.ignore_patterns("export"))
    capsys.readouterr()
    argv = [*SHORT, "--run-dir", run_dir, "--no-export", "--iwae-samples", "20", "--verbose", "1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "Nothing to train: the run already has 3 epochs; the pictures and metrics were remade "
        "from its model. Pass a larger --epochs to train more."
    ) in out
    assert "Trained" not in out


@pytest.mark.parametrize(
    "initial_epoch, epochs_run, line",
    [
        (0, 30, "Trained 30 epochs in 12.5 s."),
        (30, 30, "Nothing to train: the run already has 30 epochs;"),
        (
            10,
            200,
            "Resumed after epoch 9: trained epochs 10-199 (190 in this process) in 12.5 s; "
            "200 in all.",
        ),
    ],
)
def test_summary_says_what_this_process_trained(initial_epoch, epochs_run, line):
    metrics = {"negative_elbo": 30.0, "reconstruction": 25.0, "kl": 5.0}
    result = {
        "metrics": metrics,
        "untrained": metrics,
        "epochs_run": epochs_run,
        "initial_epoch": initial_epoch,
        "seconds": 12.5,
        "run_dir": "runs/x",
        "files": {"model.keras": "runs/x/model.keras"},
    }
    assert outputs.summary(result).splitlines()[1].startswith(line)


@pytest.mark.slow
def test_evaluate_with_zero_iwae_samples_says_the_estimate_is_skipped(digits_run, capsys):
    capsys.readouterr()
    assert evaluate.main([digits_run, "--iwae-samples", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "keras-vae-evaluate: --iwae-samples 0: the IWAE log-likelihood is skipped (ELBO terms "
        "only); pass --iwae-samples 1 or more for it (1 is the cheapest).\n"
    )
    metrics = json.loads(captured.out)
    assert "negative_elbo" in metrics and "iwae_log_likelihood" not in metrics


def test_a_folder_of_test_idx_files_only_exits_2_with_one_line(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">iiii", 0x00000803, 2, 4, 4) + bytes(32)
    )
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", str(folder), "--run-dir", str(run_dir), *QUICK])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-vae-train: error:")
    assert "holds only test IDX files (t10k-images-idx3-ubyte)" in err
    assert "needs the training images train-images-idx3-ubyte[.gz]" in err
    assert not run_dir.exists()  # the data is checked before the run folder is made


def test_objective_and_network_flags_round_trip_through_config_json(tmp_path):
    args = cli.build_parser().parse_args(
        ["--objective", "iwae", "--k", "5", "--warmup-epochs", "10", "--hidden-units", "400",
         "--activation", "elu", "--likelihood", "continuous_bernoulli", "--filters", "16,32,64",
         "--dense-units", "64"]
    )  # fmt: skip
    config = cli.config_from_args(args)
    assert (config.objective, config.k, config.warmup_epochs) == ("iwae", 5, 10)
    assert config.hidden_units == (400,) and config.filters == (16, 32, 64)
    assert config.network_kwargs() == {"hidden_units": (400,), "activation": "elu"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    again = cli.config_from_args(cli.build_parser().parse_args(["--config", str(path)]))
    assert again == config
    assert json.loads(path.read_text())["hidden_units"] == [400]


@pytest.mark.parametrize(
    "flags, message",
    [(["--hidden-units", "0"], "positive integers"), (["--objective", "iwae", "--beta", "0.5"],
     "--beta 1"), (["--k", "3"], "--objective iwae"), (["--free-bits", "-1"], "free_bits"),
     (["--warmup-epochs", "-2"], "warmup_epochs")],
)  # fmt: skip
def test_bad_objective_flags_are_one_line_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(flags + ["--run-dir", "/nonexistent/never-written"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cosine_schedule_decays_to_a_thirtieth_over_the_run():
    from keras_vae.training import trainer
    from keras_vae.training.config import TrainConfig

    config = TrainConfig(learning_rate=3e-3, lr_schedule="cosine", epochs=10)
    schedule = trainer._learning_rate(config, steps_per_epoch=50)
    assert float(schedule(0)) == pytest.approx(3e-3)
    assert float(schedule(250)) == pytest.approx(3e-3 * (1 / 30 + (1 - 1 / 30) * 0.5), rel=1e-4)
    assert float(schedule(500)) == pytest.approx(1e-4, rel=1e-4)
    assert trainer._learning_rate(TrainConfig(learning_rate=2e-3), 50) == 2e-3
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--seed", "nan"], "argument --seed: invalid int value: 'nan'"),
        (["--limit", "1_0"], "argument --limit: invalid int value: '1_0'"),
        (["--iwae-samples"], "argument --iwae-samples: expected one argument"),
    ],
)
def test_evaluate_usage_errors_are_one_line(argv, reason, tmp_path, capsys):
    # argparse's own errors came with its usage block, over several lines.
    try:
        code = evaluate.main([str(tmp_path / "model.keras"), *argv])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("keras-vae-evaluate: error: ") and err.count("\n") == 1, err
    assert reason in err


@pytest.mark.parametrize("flag", ["--json", "--data"])
def test_evaluate_refuses_an_empty_data_or_json(flag, tmp_path, capsys):
    # An empty --json wrote nothing and an empty --data meant the run's data, both silently.
    assert evaluate.main([str(tmp_path / "model.keras"), flag, " "]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"keras-vae-evaluate: error: {flag} must name ") and err.count("\n") == 1
    ), err


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "deep"])
def test_evaluate_reads_the_runs_config_bounded_and_without_blocking(kind, tmp_path, capsys):
    # A FIFO named config.json beside the model blocked for ever; a link to /dev/zero grew the
    # process without bound (a bare json.load).
    (tmp_path / "model.keras").write_bytes(b"not read: the config comes first")
    config = tmp_path / "config.json"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", config)
    else:
        config.write_text("[" * 100_000 + "]" * 100_000)
    assert evaluate.main([str(tmp_path / "model.keras")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-vae-evaluate: error: ") and err.count("\n") == 1, err
    assert "config.json" in err, err
