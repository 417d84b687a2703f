"""training.console: the three command lines print no TensorFlow start-up or converter noise,
no progress-bar escape codes in a log, and still their results and one-line errors."""

import io
import json
import os
import re
import subprocess
import sys

import pytest

from keras_vae.training import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A user's environment: no TF_CPP_MIN_LOG_LEVEL (it did not hide these lines anyway).
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", console.ENV)},
    "PYTHONPATH": ROOT,
}
NATIVE = re.compile(r"^[EWIF]\d{4} ", re.M)
NOISE = ("absl::InitializeLog", "cuInit", "cpu_feature_guard", "fully_quantize", "XNNPACK")

INFO = b"I0000 00:00:1795636964.242205    3496 port.cc:153] oneDNN custom operations are on.\n"
BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ERROR = b"E0000 00:00:1795636967.992224    3496 cuda_platform.cc:52] failed call to cuInit\n"


def _run(*args):
    result = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
        timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert not NATIVE.search(output), output
    for noise in NOISE:
        assert noise not in output, output
    assert "\x1b[" not in output and "\r" not in output, repr(output)
    return result


def test_quiet_native_logs_drops_the_noise_and_keeps_other_lines(capfd, monkeypatch):
    monkeypatch.delenv(console.ENV, raising=False)
    with console.quiet_native_logs():
        os.write(2, BANNER + INFO + ERROR + b"fully_quantize: 0, inference_type: 6\n")
        os.write(2, b"something nobody expected\n")
    assert capfd.readouterr().err == "something nobody expected\n"


def test_quiet_native_logs_shows_the_errors_when_the_work_fails(capfd, monkeypatch):
    monkeypatch.delenv(console.ENV, raising=False)
    with pytest.raises(RuntimeError, match="conversion failed"):
        with console.quiet_native_logs():
            os.write(2, BANNER + INFO + ERROR)
            raise RuntimeError("conversion failed")
    assert capfd.readouterr().err == ERROR.decode()
    os.write(2, b"after\n")  # stderr is restored
    assert capfd.readouterr().err == "after\n"


def test_keras_vae_tf_logs_shows_everything(capfd, monkeypatch):
    monkeypatch.setenv(console.ENV, "1")
    assert console.tf_logs_wanted()
    with console.quiet_native_logs():
        os.write(2, BANNER + INFO)
    assert capfd.readouterr().err == (BANNER + INFO).decode()
    monkeypatch.setenv(console.ENV, "0")
    assert not console.tf_logs_wanted()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_verbosity_keeps_the_bar_for_a_terminal_only():
    assert console.fit_verbosity(1, _Terminal()) == 1
    assert console.fit_verbosity(1, io.StringIO()) == 2
    assert console.fit_verbosity(0, io.StringIO()) == 0
    assert console.fit_verbosity(2, _Terminal()) == 2


@pytest.mark.slow
def test_the_commands_print_results_and_errors_without_tensorflow_noise(tmp_path):
    run_dir = str(tmp_path / "run")
    # Export on: the TFLite converter runs too.
    train = _run("keras_vae.training", "--epochs", "1", "--limit", "200", "--run-dir", run_dir)
    assert train.returncode == 0, train.stderr
    assert train.stderr == "", train.stderr
    assert re.search(r"^\d+/\d+ - \d+s - .*loss: ", train.stdout, re.M), train.stdout
    assert "Held-out negative ELBO" in train.stdout
    assert os.path.isfile(os.path.join(run_dir, "export", "tflite", "vae-v1-float32.tflite"))

    evaluate = _run("keras_vae.training.evaluate", run_dir, "--iwae-samples", "2")
    assert evaluate.returncode == 0 and evaluate.stderr == "", evaluate.stderr
    assert "negative_elbo" in json.loads(evaluate.stdout[evaluate.stdout.index("{") :])

    # int8: the calibration prints "fully_quantize: ..." and XNNPACK's greeting.
    out = str(tmp_path / "export")
    export = _run("keras_vae.export", run_dir, "--out", out, "--quantize", "float32", "int8")
    assert export.returncode == 0 and export.stderr == "", export.stderr
    assert "tflite_int8: " in export.stdout

    missing = _run("keras_vae.export", str(tmp_path / "nowhere"), "--out", out)
    assert missing.returncode == 2
    assert missing.stderr.startswith("keras-vae-export: error: No such model file")
    assert missing.stderr.count("\n") == 1, missing.stderr


@pytest.mark.parametrize(
    "argv, orig_argv, expected",
    [
        (
            ["/usr/bin/keras-vae-train", "--epochs", "1"],
            ["python", "/usr/bin/keras-vae-train"],
            True,
        ),
        (["-m"], ["python", "-m", "keras_vae.training", "--help"], True),
        (["-m"], ["python", "-m", "mytool"], False),  # another -m program importing keras_vae
        (["train.py"], ["python", "train.py"], False),  # a user's script
        ([], [], False),
    ],
)
def test_only_keras_vae_commands_start_tensorflow_quietly(argv, orig_argv, expected):
    from keras_vae import quiet

    assert quiet.launched_as_command(argv, orig_argv) is expected


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_starts_is_one_line_and_exit_130(tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "keras_vae.training", "--epochs", "1", "--run-dir",
         str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    time.sleep(1.0)  # inside the several seconds of TensorFlow's import
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_one_line_parser_names_the_command_and_its_help(capsys):
    parser = console.OneLineParser(prog="keras-vae-x")
    parser.add_subparsers(dest="mode", required=True).add_parser("go").add_argument("--n", type=int)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["go", "--n", "x"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "keras-vae-x: error: argument --n: invalid int value: 'x' (see keras-vae-x go --help)\n"
    )
