"""Fuzz cases for the command lines: hostile flags for keras-vae-train, -evaluate, -sample and
-export, each command run in this process by its console-script entry (`main(argv)`).

A clear refusal is a non-zero exit (2 for a bad flag, 1 for a failure) with one line on stderr,
`keras-vae-<command>: error: ...`, that names the flag (or the config field it sets); a
traceback, a usage block, a refusal that names something else, a hang or memory growth
(`fuzz.MEMORY_LIMIT_BYTES`) is misbehaved. Every run that would really train is tiny (64
digits, one epoch, latent 2, one hidden layer of 16); every output goes to a temporary folder,
and the commands run in one (a relative path they accept never lands in the repository).
TF_CONFIG and the other variables a case sets are restored after it. The valid cases
(`--help`, a tiny run, evaluations, samples, an export) check what was written.
"""

import contextlib
import dataclasses
import functools
import importlib
import io
import json
import math
import os
import re

import reliability_helpers as helpers
from fuzz import Case

# The console scripts of setup.py, each `module:main`.
COMMANDS = {
    "train": "keras_vae.training.cli",
    "evaluate": "keras_vae.training.evaluate",
    "sample": "keras_vae.training.sample",
    "export": "keras_vae.export.cli",
}
# A run that trains next to nothing: the hostile flag comes after it and overrides its value.
TINY_TRAIN = (
    "--data", "digits", "--limit", "64", "--epochs", "1", "--latent-dim", "2",
    "--hidden-units", "16", "--batch-size", "32", "--no-export", "--iwae-samples", "2",
    "--eval-examples", "16", "--verbose", "0",
)  # fmt: skip


class Refused(Exception):
    """A command exited non-zero; the message is "exit N: <its stderr>"."""


class Traceback(Exception):
    """A command printed a Python traceback on stderr: never a clear refusal."""


@dataclasses.dataclass
class Output:
    stdout: str
    stderr: str


def invoke(command, argv, env=None):
    """Runs `keras-vae-<command> ARGV` in this process; returns its `Output` when it exits 0.

    `env` sets (a value) or removes (None) environment variables for the run only. Raises
    `Refused` on a non-zero exit, `Traceback` when stderr holds one.
    """
    main = importlib.import_module(COMMANDS[command]).main
    out, err = io.StringIO(), io.StringIO()
    with (
        _environ(env or {}),
        contextlib.chdir(_scratch()),  # a relative path a command accepts lands here
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    stderr = err.getvalue()
    if isinstance(code, str):  # sys.exit("message") prints it and exits 1
        stderr, code = stderr + code + "\n", 1
    code = code or 0
    if "Traceback (most recent call last)" in stderr:
        raise Traceback(f"exit {code}: {stderr[-1500:]}")
    if code != 0:
        raise Refused(f"exit {code}: {stderr}")
    return Output(out.getvalue(), stderr)


@functools.cache
def _scratch():
    """The folder the commands run in: never the repository."""
    return helpers.temp_dir("flags_cwd")


@contextlib.contextmanager
def _environ(changes):
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


def _set(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def refusal(command, *names):
    """The regex of a clear refusal: exit 1 or 2 and exactly one line, `keras-vae-<command>:
    error: ...`, that names one of `names`: a flag (`--latent-dim`, or `latent_dim must`, as
    the config's checks name the field it sets) or any other text (a value, `TF_CONFIG`)."""
    named = "|".join(_named(n) for n in names)
    return rf"\Aexit [12]: keras-vae-{command}: error: [^\n]*(?:{named})[^\n]*\n?\Z"


def _named(name):
    if not name.startswith("--"):
        return re.escape(name)
    field = name[2:].replace("-", "_")
    return rf"{re.escape(name)}\b|\b{re.escape(field)} must\b"


# ------------------------------------------------------------------------------------------------
# What the cases run against: one tiny trained run folder, made once per worker.


@functools.cache
def trained_run():
    """A run folder (model.keras, config.json) from `keras-vae-train` on 64 digits."""
    run_dir = os.path.join(helpers.temp_dir("flags_run"), "run")
    invoke("train", [*TINY_TRAIN, "--run-dir", run_dir])
    return run_dir


def _out(prefix):
    """A fresh path under a temporary folder (it does not exist yet)."""
    return os.path.join(helpers.temp_dir(f"flags_{prefix}"), prefix)


# ------------------------------------------------------------------------------------------------
# Case builders.


def refused(name, command, argv, names, env=None, seconds=60.0):
    """A case whose command line must be refused clearly, naming one of `names`."""
    names = (names,) if isinstance(names, str) else tuple(names)

    def run():
        return invoke(command, argv() if callable(argv) else argv, env)

    return Case(
        f"{command}: {name}",
        run,
        refusal=refusal(command, *names),
        errors=(Refused,),
        seconds=seconds,
    )


def train_refused(name, flags, names, env=None, seconds=60.0):
    return refused(
        name,
        "train",
        lambda: [*TINY_TRAIN, "--run-dir", _out("train"), *(flags() if callable(flags) else flags)],
        names,
        env,
        seconds,
    )


def model_refused(name, command, flags, names, seconds=60.0):
    """A case of `command` on the trained run folder (and a fresh --out) with `flags` after."""

    def argv():
        head = {
            "evaluate": [trained_run()],
            "sample": ["sample", trained_run(), "--out", _out("sample")],
            "export": [trained_run(), "--out", _out("export")],
        }[command]
        return [*head, *flags]

    return refused(name, command, argv, names, seconds=seconds)


def valid(name, command, argv, check, seconds=60.0):
    def run():
        return invoke(command, argv() if callable(argv) else argv)

    return Case(
        f"{command}: {name}",
        run,
        expect="result",
        errors=(Refused,),
        check=check,
        seconds=seconds,
    )


# ------------------------------------------------------------------------------------------------
# Checks of accepted runs.


def _help_check(prog):
    def check(output):
        if "usage:" not in output.stdout or prog not in output.stdout:
            return f"--help printed no usage of {prog}: {output.stdout[:200]!r}"
        if "example" not in output.stdout:
            return "--help shows no example"
        return None

    return check


def _tiny_run(flags):
    """`run` of a tiny keras-vae-train with `flags` after it; returns its run folder."""

    def run():
        run_dir = _out("train")
        invoke("train", [*TINY_TRAIN, "--run-dir", run_dir, *flags])
        return run_dir

    return run


def _check_run(run_dir):
    missing = [
        f for f in ("model.keras", "config.json", "metrics.json", "history.csv")
        if not os.path.isfile(os.path.join(run_dir, f))
    ]  # fmt: skip
    if missing:
        return f"the run folder lacks {missing}"
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("epochs") != 1 or config.get("limit") != 64:
        return f"config.json is not the run's: {config}"
    return None


def _check_samples(num, shape=(8, 8, 1)):
    def check(path):
        import numpy as np

        array = np.load(path + ".npy")
        if array.shape != (num, *shape) or array.dtype != np.float32:
            return f"{path}.npy holds {array.dtype} {array.shape}; expected float32 {(num, *shape)}"
        if not (np.isfinite(array).all() and 0 <= array.min() and array.max() <= 1):
            return f"{path}.npy holds values outside [0, 1]"
        if not os.path.getsize(path + ".png"):
            return f"{path}.png is empty"
        return None

    return check


def _sample(flags, prefix="s"):
    """`run` of keras-vae-sample on the trained run; returns the output prefix."""

    def run():
        out = _out(prefix)
        invoke("sample", ["sample", trained_run(), "--out", out, *flags])
        return out

    return run


def _evaluate(flags):
    """`run` of keras-vae-evaluate on the trained run with `flags` and a fresh --json; returns
    `(Output, the --json path)`."""

    def run():
        path = _out("metrics.json")
        return invoke("evaluate", [trained_run(), *flags, "--json", path]), path

    return run


def _check_metrics(result):
    output, path = result
    printed = json.loads(output.stdout[output.stdout.index("{") :])
    for key in ("negative_elbo", "iwae_log_likelihood", "kl", "active_units"):
        if key not in printed:
            return f"the metrics lack {key}: {sorted(printed)}"
    if not all(math.isfinite(printed[k]) for k in ("negative_elbo", "iwae_log_likelihood")):
        return f"non-finite metrics: {printed}"
    with open(path, encoding="utf-8") as f:
        if json.load(f) != printed:
            return f"{path} differs from the metrics printed"
    return None


def _check_export(output):
    lines = [line for line in output.stdout.splitlines() if line.startswith("saved_model: ")]
    if not lines:
        return f"no saved_model line in {output.stdout[-300:]!r}"
    folder = lines[0].split(": ", 1)[1]
    if not os.path.isfile(os.path.join(folder, "saved_model.pb")):
        return f"{folder} holds no saved_model.pb"
    return None


# ------------------------------------------------------------------------------------------------
# The cases.

TF_CONFIGS = {
    "a non-numeric port": '{"cluster": {"worker": ["localhost:abc"]}, '
    '"task": {"type": "worker", "index": 0}}',
    "invalid JSON": '{"cluster": {"worker": ["localhost:2222"]',
    "no task": '{"cluster": {"worker": ["localhost:2222"]}}',
    "a task index outside the cluster": '{"cluster": {"worker": ["localhost:2222"]}, '
    '"task": {"type": "worker", "index": 3}}',
    "a port above 65535": '{"cluster": {"worker": ["localhost:70000"]}, '
    '"task": {"type": "worker", "index": 0}}',
    "a list": "[1, 2]",
    "JSON nested 100000 deep": "[" * 100_000 + "]" * 100_000,
    "a task index that is not a number": '{"cluster": {"worker": ["localhost:2222"]}, '
    '"task": {"type": "worker", "index": "zero"}}',
    "cluster.worker a string": '{"cluster": {"worker": "localhost:2222"}, '
    '"task": {"type": "worker", "index": 0}}',
}


def _fast_cases():
    cases = [
        valid("--help", "train", ["--help"], _help_check("keras-vae-train")),
        Case("train: a tiny run", trained_run, expect="result", errors=(Refused,), check=_check_run, seconds=120.0),
        train_refused("--seed 4294967296", ["--seed", "4294967296"], "--seed"),
        train_refused("--seed -1", ["--seed", "-1"], "--seed"),
        train_refused("--seed nan", ["--seed", "nan"], "--seed"),
        train_refused("--latent-dim 10000000", ["--latent-dim", "10000000"], "--latent-dim"),
        train_refused("--latent-dim 0", ["--latent-dim", "0"], "--latent-dim"),
        train_refused("--epochs 0", ["--epochs", "0"], "--epochs"),
        train_refused("--epochs 1e9", ["--epochs", "1e9"], "--epochs"),
        train_refused("--batch-size 0", ["--batch-size", "0"], "--batch-size"),
        train_refused("--learning-rate nan", ["--learning-rate", "nan"], "--learning-rate"),
        train_refused("--seed 1_0", ["--seed", "1_0"], "--seed"),
        train_refused("--test-split nan", ["--test-split", "nan"], "--test-split"),
        train_refused("--free-bits 1e308", ["--free-bits", "1e308"], "--free-bits"),
        train_refused("--iwae-samples 1000000000", ["--iwae-samples", "1000000000"], "--iwae-samples"),
        train_refused("--devices /cpu:0,/cpu:0", ["--strategy", "mirrored", "--devices", "/cpu:0,/cpu:0"], "--devices"),
        train_refused("--run-dir ''", ["--run-dir", ""], "--run-dir"),
        train_refused("--data nonexistent", ["--data", "no/such/data.npz"], ("--data", "Data path")),
        train_refused("--precision garbage", ["--precision", "garbage"], "--precision"),
        train_refused("an unknown flag", ["--latent-dims", "2"], "--latent-dims"),
        train_refused("--config a folder", ["--config", helpers.REPO / "tests"], "--config"),
        train_refused(
            "TF_CONFIG with a non-numeric port",
            ["--strategy", "multi-worker"],
            "TF_CONFIG",
            env={"TF_CONFIG": TF_CONFIGS["a non-numeric port"]},
        ),
        valid("--help", "evaluate", ["--help"], _help_check("keras-vae-evaluate")),
        model_refused("--limit 0", "evaluate", ["--limit", "0"], "--limit"),
        model_refused("--seed -1", "evaluate", ["--seed", "-1"], "--seed"),
        model_refused("--iwae-samples 1000000000", "evaluate", ["--iwae-samples", "1000000000"], "--iwae-samples"),
        model_refused("--test-split 1.5", "evaluate", ["--test-split", "1.5"], "--test-split"),
        model_refused("an unknown flag", "evaluate", ["--samples", "3"], "--samples"),
        model_refused("--json ''", "evaluate", ["--json", ""], "--json"),
        valid("--help", "sample", ["--help"], _help_check("keras-vae-sample")),
        Case("sample: 4 samples", _sample(["--num", "4"]), expect="result", errors=(Refused,), check=_check_samples(4)),
        model_refused("--num 0", "sample", ["--num", "0"], "--num"),
        model_refused("--num 2**31", "sample", ["--num", str(2**31)], "--num"),
        model_refused("--seed 2**31", "sample", ["--seed", str(2**31)], "--seed"),
        model_refused("--seed nan", "sample", ["--seed", "nan"], "--seed"),
        refused("--out ''", "sample", lambda: ["sample", trained_run(), "--out", ""], "--out"),
        valid("--help", "export", ["--help"], _help_check("keras-vae-export")),
        model_refused("--version 2**70", "export", ["--version", str(2**70)], "--version"),
        model_refused("--version abc", "export", ["--version", "abc"], "--version"),
        model_refused("--max-samples 2**31", "export", ["--max-samples", str(2**31)], "--max-samples"),
        refused("--out ''", "export", lambda: [trained_run(), "--out", ""], "--out"),
    ]  # fmt: skip
    return cases


def _full_cases():
    cases = [
        train_refused("--seed 1.5", ["--seed", "1.5"], "--seed"),
        train_refused("--seed of 5000 digits", ["--seed", "9" * 5000], "--seed"),
        train_refused("--seed ' 7'", ["--seed", " 7"], "--seed"),
        train_refused("--test-split 1", ["--test-split", "1"], "--test-split"),
        train_refused("--learning-rate inf", ["--learning-rate", "inf"], "--learning-rate"),
        train_refused("--learning-rate 1e308", ["--learning-rate", "1e308"], "--learning-rate"),
        train_refused("--beta nan", ["--beta", "nan"], "--beta"),
        train_refused("--sigma 1e-300", ["--likelihood", "gaussian", "--sigma", "1e-300"], "--sigma"),
        train_refused("--batch-size 10**12", ["--batch-size", str(10**12)], "--batch-size"),
        train_refused("--k 10**6", ["--objective", "iwae", "--k", str(10**6)], "--k"),
        train_refused("--run-dir of 300 characters", lambda: ["--run-dir", os.path.join(_out("long"), "x" * 300)], "--run-dir"),
        train_refused("--run-dir a file", lambda: ["--run-dir", os.path.join(trained_run(), "config.json")], "--run-dir"),
        train_refused("--data /dev/zero", ["--data", "/dev/zero"], "'/dev/zero'"),
        train_refused(
            "KERAS_VAE_MODEL_BUDGET_GIB nan", [], "KERAS_VAE_MODEL_BUDGET_GIB",
            env={"KERAS_VAE_MODEL_BUDGET_GIB": "nan"},
        ),
        train_refused("--latent-dim -1", ["--latent-dim", "-1"], "--latent-dim"),
        train_refused("--latent-dim 10**30", ["--latent-dim", str(10**30)], "--latent-dim"),
        train_refused("--epochs -1", ["--epochs", "-1"], "--epochs"),
        train_refused("--batch-size -5", ["--batch-size", "-5"], "--batch-size"),
        train_refused("--learning-rate -1", ["--learning-rate", "-1"], "--learning-rate"),
        train_refused("--learning-rate 0", ["--learning-rate", "0"], "--learning-rate"),
        train_refused("--test-split -0.1", ["--test-split", "-0.1"], "--test-split"),
        train_refused("--test-split 1.5", ["--test-split", "1.5"], "--test-split"),
        train_refused("--devices /gpu:7", ["--strategy", "mirrored", "--devices", "/gpu:7"], ("--devices", "/gpu:7")),
        train_refused("--devices garbage", ["--strategy", "mirrored", "--devices", "garbage"], ("--devices", "garbage")),
        train_refused("--devices ,", ["--strategy", "mirrored", "--devices", ","], "--devices"),
        train_refused("--devices without mirrored", ["--devices", "/cpu:0"], "--devices"),
        train_refused("--run-dir '   '", ["--run-dir", "   "], "--run-dir"),
        train_refused("--data ''", ["--data", ""], "--data"),
        train_refused("--data /", ["--data", "/"], ("--data", "'/'"), seconds=30.0),
        train_refused("--arch unknown", ["--arch", "transformer"], "--arch"),
        train_refused("--hidden-units 0", ["--hidden-units", "0"], "--hidden-units"),
        train_refused("--hidden-units 16,x", ["--hidden-units", "16,x"], "--hidden-units"),
        train_refused("--sigma -1", ["--likelihood", "gaussian", "--sigma", "-1"], "--sigma"),
        train_refused("--k 5 without iwae", ["--k", "5"], "--k"),
        train_refused("--verbose 7", ["--verbose", "7"], "--verbose"),
        train_refused("--limit 1", ["--limit", "1"], "--limit"),
        train_refused("--eval-examples 0", ["--eval-examples", "0"], "--eval-examples"),
        train_refused("a flag without its value", ["--epochs"], "--epochs"),
        train_refused("a positional argument", ["digits"], "digits"),
        train_refused("--config a missing file", ["--config", "no/such/config.json"], "--config"),
        train_refused("--config /dev/null", ["--config", "/dev/null"], "--config"),
        *[
            train_refused(
                f"TF_CONFIG with {what}", ["--strategy", "multi-worker"], "TF_CONFIG",
                env={"TF_CONFIG": raw},
            )
            for what, raw in TF_CONFIGS.items() if what != "a non-numeric port"
        ],
        train_refused("no TF_CONFIG for multi-worker", ["--strategy", "multi-worker"], "TF_CONFIG", env={"TF_CONFIG": None}),
        model_refused("--limit -1", "evaluate", ["--limit", "-1"], "--limit"),
        model_refused("--data ''", "evaluate", ["--data", ""], "--data"),
        model_refused("--data /dev/zero", "evaluate", ["--data", "/dev/zero"], "'/dev/zero'"),
        model_refused("--json a folder", "evaluate", ["--iwae-samples", "1", "--json", "/tmp"], "'/tmp'"),
        model_refused("--seed 4294967296", "evaluate", ["--seed", "4294967296"], "--seed"),
        model_refused("--seed nan", "evaluate", ["--seed", "nan"], "--seed"),
        model_refused("--test-split nan", "evaluate", ["--test-split", "nan"], "--test-split"),
        model_refused("--test-split -0.1", "evaluate", ["--test-split", "-0.1"], "--test-split"),
        model_refused("--iwae-samples -1", "evaluate", ["--iwae-samples", "-1"], "--iwae-samples"),
        model_refused("--examples 0", "evaluate", ["--examples", "0"], "--examples"),
        model_refused("--data nonexistent", "evaluate", ["--data", "no/such/data.npz"], ("--data", "no/such/data.npz")),
        model_refused("--data /", "evaluate", ["--data", "/"], ("--data", "'/'"), seconds=30.0),
        refused("no model", "evaluate", ["no/such/model.keras"], "no/such/model.keras"),
        model_refused("--num -1", "sample", ["--num", "-1"], "--num"),
        model_refused("--num 1025", "sample", ["--num", "1025"], "--num"),
        model_refused("--seed -1", "sample", ["--seed", "-1"], "--seed"),
        model_refused("--num ' 4'", "sample", ["--num", " 4"], "--num"),
        refused("--out a folder/", "sample", lambda: ["sample", trained_run(), "--out", _out("d") + os.sep], "--out"),
        refused("--steps 2**40", "sample", lambda: ["interpolate", trained_run(), "--inputs", "x.npy", "--steps", str(2**40), "--out", _out("i")], "--steps"),
        model_refused("an unknown flag", "sample", ["--number", "3"], "--number"),
        refused("an unknown mode", "sample", ["draw", "model.keras", "--out", "x"], "draw"),
        refused("no mode", "sample", [], "MODE"),
        model_refused("--version -1", "export", ["--version", "-1"], "--version"),
        model_refused("--version 0", "export", ["--version", "0"], "--version"),
        model_refused("--version 1_0", "export", ["--version", "1_0"], "--version"),
        model_refused("--name ../x", "export", ["--name", "../x"], "--name"),
        model_refused("--max-batch 0", "export", ["--max-batch", "0"], "--max-batch"),
        model_refused("--iw-samples 2**31", "export", ["--iw-samples", str(2**31)], "--iw-samples"),
        model_refused("--quantize garbage", "export", ["--quantize", "garbage"], "--quantize"),
        model_refused("an unknown flag", "export", ["--precision", "float16"], "--precision"),
        refused("no --out", "export", lambda: [trained_run()], "--out"),
        refused("--out a file", "export", lambda: [trained_run(), "--out", os.path.join(trained_run(), "config.json")], "--out"),
        # Repeated flags: the last one wins, as argparse (and most command lines) have it.
        Case("sample: --num 3 --num 5", _sample(["--num", "3", "--num", "5"]), expect="result", errors=(Refused,), check=_check_samples(5)),
        Case("sample: the most samples", _sample(["--num", "1024", "--seed", str(2**31 - 1)]), expect="result", errors=(Refused,), check=_check_samples(1024)),
        Case("evaluate: a tiny evaluation", _evaluate(["--iwae-samples", "4", "--examples", "32"]), expect="result", errors=(Refused,), check=_check_metrics),
        Case("evaluate: --iwae-samples at its cap, on one example", _evaluate(["--iwae-samples", "100000", "--examples", "1"]), expect="result", errors=(Refused,), check=_check_metrics),
        Case("evaluate: --examples beyond the held-out set", _evaluate(["--iwae-samples", "1", "--examples", str(10**12)]), expect="result", errors=(Refused,), check=_check_metrics),
        Case("train: --batch-size beyond the data", _tiny_run(["--batch-size", "1000"]), expect="result", errors=(Refused,), check=_check_run),
        valid("a SavedModel", "export", lambda: [trained_run(), "--out", _out("export")], _check_export, seconds=120.0),
    ]  # fmt: skip
    return cases


def flags_cases(full):
    """The cases in their fixed order: the fast subset, then (with `full`) the rest."""
    return _fast_cases() + (_full_cases() if full else [])
