"""PyTorch side by side: keras-vae against the canonical PyTorch VAE example at equal epochs.

Three runs of the same MLP (784-400-20, ReLU, Bernoulli likelihood, Adam 1e-3, batch 128,
latent 20) on the same digits, each epoch binarized afresh:

- torch: the pytorch/examples VAE (`benchmarks/torch_vae_reference.py`) in a separate virtual
  environment's python, as a subprocess, with as many threads as the machine has cores;
- keras-vae-train: the real command, as a subprocess (`--no-export`; its own evaluation and
  pictures included), its printed training seconds and its wall-clock to exit;
- bare: `keras_vae.build_vae` in a plain `model.fit` in this process, with the trainer's
  `steps_per_execution` and the policy its default `--precision` gives on this machine,
  timed from the fit's start to its end (tracing included).

    python -m venv ~/.venvs/torch && ~/.venvs/torch/bin/pip install numpy torch==2.13.0
    python -m benchmarks.torch_side_by_side                     # ../shared/data/mnist-dev
    python -m benchmarks.torch_side_by_side --quick             # a smoke run, temp folder

The runs go in rounds (torch, keras-vae-train, bare, torch, ...) so that the machine's drift
hits all three; the figures are medians over the rounds, a ratio the median of the rounds'
ratios. PyTorch is not a dependency of keras-vae. Figures, never assertions.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/torch_side_by_side.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_SCRIPT = os.path.join(HERE, "torch_vae_reference.py")
DEFAULT_MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist-dev"))
DEFAULT_TORCH_PYTHON = "~/.venvs/torch/bin/python"
SETUP = "python -m venv ~/.venvs/torch && ~/.venvs/torch/bin/pip install numpy torch==2.13.0"
SETTINGS = {"hidden_units": 400, "latent_dim": 20, "batch_size": 128, "learning_rate": 1e-3}
SEED = 0
RUNS = {"torch": "PyTorch example (subprocess)", "keras-vae-train": "keras-vae-train "
        "(subprocess)", "bare": "keras-vae model.fit (in process)"}  # fmt: skip
TRAINED = re.compile(r"Trained (\d+) epochs in ([0-9.]+) s\.")


def load_data(mnist, num_train, num_test):
    """`(x_train, x_test, name)`: float32 `(N, 28, 28, 1)` pixels in [0, 1], not binarized."""
    from keras_vae.training.data import load_dataset

    data = load_dataset(mnist or "digits28", seed=SEED)
    name = f"MNIST ({mnist})" if mnist else "digits28 (offline)"
    return data.x_train[:num_train], data.x_test[:num_test], name


def write_data(folder, x_train, x_test, x_eval):
    """The files each side reads: `data.npz` for keras-vae-train (which binarizes its held-out
    set once with the same seed, giving `x_eval` again), flat `train.npy` and `test.npy`
    (`x_eval`) for PyTorch."""
    np.savez(os.path.join(folder, "data.npz"), x_train=x_train, x_test=x_test)
    np.save(os.path.join(folder, "train.npy"), x_train.reshape(len(x_train), -1))
    np.save(os.path.join(folder, "test.npy"), x_eval.reshape(len(x_eval), -1))


def check_torch(python):
    """Exits 2 with the set-up command when `python` cannot import torch and numpy."""
    ok = os.access(python, os.X_OK) and subprocess.run(
        [python, "-c", "import numpy, torch"], capture_output=True, check=False
    ).returncode == 0  # fmt: skip
    if not ok:
        print(f"No PyTorch at {python}; make it with: {SETUP}", file=sys.stderr)
        sys.exit(2)


def _run(command, what):
    """Runs `command`; returns `(stdout, wall seconds)`, or raises with the end of stderr."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout, wall


def run_torch(python, folder, epochs):
    command = [python, REFERENCE_SCRIPT, "--data", folder, "--epochs", str(epochs),
               "--threads", str(os.cpu_count()), "--seed", str(SEED)]  # fmt: skip
    stdout, wall = _run(command, "the PyTorch example")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "wall_seconds": wall}


def run_cli(folder, epochs, round_index):
    """keras-vae-train on `data.npz`; its printed training seconds, wall-clock and metrics."""
    run_dir = os.path.join(folder, f"run-{round_index}")
    s = SETTINGS
    command = [shutil.which("keras-vae-train") or "keras-vae-train",
        "--data", os.path.join(folder, "data.npz"), "--arch", "mlp",
        "--hidden-units", str(s["hidden_units"]), "--latent-dim", str(s["latent_dim"]),
        "--batch-size", str(s["batch_size"]), "--learning-rate", str(s["learning_rate"]),
        "--epochs", str(epochs), "--binarize", "--seed", str(SEED), "--no-export",
        "--run-dir", run_dir,
    ]  # fmt: skip
    stdout, wall = _run(command, "keras-vae-train")
    match = TRAINED.search(stdout)
    if match is None:
        raise RuntimeError(f"keras-vae-train printed no 'Trained N epochs in S s.': {stdout}")
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    shutil.rmtree(run_dir)
    seconds, held_out = float(match.group(2)), metrics["held_out"]
    return {
        "train_seconds": seconds,
        "examples_per_second": epochs * metrics["data"]["num_train"] / seconds,
        "held_out_negative_elbo": held_out["negative_elbo"],
        "iwae_seconds": held_out.get("iwae_seconds"),
        "wall_seconds": wall,
    }


def run_bare(x_train, x_eval, epochs):
    """keras-vae's model in a plain `fit`, compiled as the trainer compiles it."""
    import keras

    import keras_vae
    from keras_vae import precision
    from keras_vae.training.data import make_dataset, steps_per_epoch
    from keras_vae.training.evaluate import evaluate
    from keras_vae.training.trainer import _steps_per_execution

    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    s = SETTINGS
    # The policy keras-vae-train's default --precision resolves to here: like for like.
    from keras_vae.training.config import TrainConfig

    policy, _ = precision.resolve_policy(
        TrainConfig().precision, precision.cpu_flags(), precision.gpu_devices()
    )
    with precision.policy_scope(policy):
        model = keras_vae.build_vae(
            x_train.shape[1:], latent_dim=s["latent_dim"], arch="mlp", likelihood="bernoulli",
            seed=SEED, hidden_units=(s["hidden_units"],),
        )  # fmt: skip
    steps = steps_per_epoch(len(x_train), s["batch_size"])
    model.compile(
        optimizer=keras.optimizers.Adam(s["learning_rate"]),
        steps_per_execution=_steps_per_execution(steps),
    )
    ds = make_dataset(x_train, s["batch_size"], shuffle=True, seed=SEED, binarize=True)
    start = time.perf_counter()
    model.fit(ds, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    held_out = evaluate(
        precision.as_float32(model), x_eval, iwae_samples=0, seed=SEED, progress=False
    )
    return {
        "train_seconds": seconds,
        "examples_per_second": epochs * len(x_train) / seconds,
        "held_out_negative_elbo": held_out["negative_elbo"],
        "steps_per_execution": _steps_per_execution(steps),
        "policy": policy,
    }


def run(args):
    """Every round of the three runs; returns the results (rounds, medians, ratios)."""
    from keras_vae.training.data import binarize_once

    x_train, x_test, data_name = load_data(args.mnist, args.num_train, args.num_test)
    x_eval = binarize_once(x_test, SEED)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="keras-vae-torch-") as folder:
        write_data(folder, x_train, x_test, x_eval)
        for i in range(args.repeats):
            one = {
                "torch": lambda: run_torch(args.torch_python, folder, args.epochs),
                "keras-vae-train": lambda i=i: run_cli(folder, args.epochs, i),
                "bare": lambda: run_bare(x_train, x_eval, args.epochs),
            }
            rounds.append({})
            for name in RUNS:
                rounds[-1][name] = r = one[name]()
                wall = f", wall {r['wall_seconds']:.1f} s" if "wall_seconds" in r else ""
                print(f"round {i + 1}/{args.repeats} {name:15s} training {r['train_seconds']:6.1f} s "
                      f"({r['examples_per_second']:5.0f} ex/s){wall}, held-out -ELBO "
                      f"{r['held_out_negative_elbo']:.2f}", flush=True)  # fmt: skip
    settings = dict(SETTINGS, epochs=args.epochs, repeats=args.repeats,
                    torch_threads=os.cpu_count(), quick=args.quick)  # fmt: skip
    return {"machine": common.machine_info(), "data": data_name, "num_train": len(x_train),
            "num_test": len(x_test), "settings": settings, "rounds": rounds,
            "medians": _medians(rounds), "ratios": _ratios(rounds)}  # fmt: skip


def _medians(rounds):
    keys = ("train_seconds", "examples_per_second", "wall_seconds", "held_out_negative_elbo",
            "iwae_seconds")  # fmt: skip
    return {
        name: {
            key: float(np.median([r[name][key] for r in rounds]))
            for key in keys
            if rounds[0][name].get(key) is not None
        }
        for name in RUNS
    }


# (what, run, yardstick, seconds compared): a ratio is the yardstick's seconds over the run's,
# the run's speed over the yardstick's (>= 1: the run is at least as fast).
COMPARISONS = (
    ("keras-vae-train / PyTorch, training", "keras-vae-train", "torch", "train_seconds"),
    ("keras-vae-train / PyTorch, wall-clock to exit", "keras-vae-train", "torch", "wall_seconds"),
    ("bare model.fit / PyTorch, training", "bare", "torch", "train_seconds"),
    ("keras-vae-train / bare model.fit, training", "keras-vae-train", "bare", "train_seconds"),
)


def _ratios(rounds):
    out = {}
    for what, run_name, yardstick, key in COMPARISONS:
        values = [r[yardstick][key] / r[run_name][key] for r in rounds]
        out[what] = {"median": float(np.median(values)), "min": min(values), "max": max(values),
                     "rounds": values}  # fmt: skip
    return out


def markdown(result):
    fmt, s, m = common.fmt, result["settings"], result["medians"]
    lines = [
        "# keras-vae against the PyTorch VAE example, side by side",
        "",
        f"Machine: {common.machine_line(result['machine'])}; PyTorch "
        f"{result['rounds'][0]['torch']['torch']} with {s['torch_threads']} threads. The cores "
        "may be shared with other jobs: read the ratios, not the absolute figures.",
        f"Data: {result['data']}, {result['num_train']} training digits (binarized afresh every "
        f"epoch), {result['num_test']} held out (binarized once, seed {SEED}, the same bits for "
        f"all three). MLP 784-{s['hidden_units']}-{s['latent_dim']}, Bernoulli, Adam "
        f"{s['learning_rate']:g}, batch {s['batch_size']}, {s['epochs']} epochs; "
        f"{s['repeats']} round(s) of torch, keras-vae-train, bare; medians. keras-vae-train and "
        f"bare in the default `--precision`'s policy, "
        f"{result['rounds'][0]['bare'].get('policy', 'float32')}; PyTorch in float32."
        + (" Quick smoke run: the figures mean nothing." if s["quick"] else ""),
        "",
    ]
    rows = [
        [RUNS[name], fmt(m[name]["train_seconds"]), fmt(m[name]["examples_per_second"]),
         fmt(m[name].get("wall_seconds")), f"{m[name]['held_out_negative_elbo']:.2f}"]
        for name in RUNS
    ]  # fmt: skip
    headers = ["run", "training s", "examples/s", "wall-clock s, start to exit",
               "held-out -ELBO (nats)"]  # fmt: skip
    lines += [common.markdown_table(headers, rows), ""]
    rows = [
        [what, f"{r['median']:.2f}", f"{r['min']:.2f} to {r['max']:.2f}",
         "yes" if r["median"] >= 1.0 else "no"]
        for what, r in result["ratios"].items()
    ]  # fmt: skip
    headers = ["speed ratio (the yardstick's seconds / the run's)", "median of rounds",
               "rounds' range", ">= 1.0"]  # fmt: skip
    lines += [common.markdown_table(headers, rows), "", *_where_the_time_goes(m), ""]
    return "\n".join(lines)


def _where_the_time_goes(m):
    cli, bare = m["keras-vae-train"], m["bare"]
    iwae = cli.get("iwae_seconds")
    return [
        "Training s: PyTorch, its epochs loop; keras-vae-train, the 'Trained N epochs in S s' "
        "it prints (its `fit` with the per-epoch held-out pass, latent frame, history, backup, "
        "model.keras, samples picture and TensorBoard); bare, `fit` alone, tracing included. "
        "Wall-clock: the subprocess from start to exit (Python and library start-up, data, "
        "the final evaluation and pictures; keras-vae-train without export).",
        "",
        f"keras-vae-train's medians: {cli['train_seconds'] - bare['train_seconds']:.1f} s more "
        "training than the bare loop (the trainer's callbacks and per-epoch held-out pass), "
        f"{cli['wall_seconds'] - cli['train_seconds']:.1f} s outside training"
        + (f", of which {iwae:.1f} s the IWAE log-likelihood." if iwae else "."),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python -m benchmarks.torch_side_by_side --torch-python "
        "~/.venvs/torch/bin/python --epochs 20 --repeats 3",
    )
    default_mnist = DEFAULT_MNIST if os.path.isdir(DEFAULT_MNIST) else None
    parser.add_argument("--mnist", default=default_mnist,
                        help="MNIST IDX folder or .npz (default ../shared/data/mnist-dev if it "
                        "exists, else the offline digits28)")  # fmt: skip
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON,
                        help=f"a python with numpy and torch (default {DEFAULT_TORCH_PYTHON})")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three runs")
    parser.add_argument("--num-train", type=int, default=8000, help="first training digits")
    parser.add_argument("--num-test", type=int, default=1000, help="first held-out digits")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 epochs, 2000 digits, 1 round, temp folder")  # fmt: skip
    parser.add_argument("--out", help="results folder (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.num_train, args.num_test, args.repeats = 2, 2000, 250, 1
    if min(args.epochs, args.repeats, args.num_train, args.num_test) < 1:
        parser.error("--epochs, --repeats, --num-train and --num-test must be >= 1")
    args.torch_python = os.path.expanduser(args.torch_python)
    check_torch(args.torch_python)
    out = args.out or (tempfile.mkdtemp(prefix="keras-vae-torch-") if args.quick else None)
    out = out or common.RESULTS_DIR
    result = run(args)
    from keras_vae.training.files import atomic_write_text

    os.makedirs(out, exist_ok=True)
    common.write_json(os.path.join(out, "torch_side_by_side.json"), result)
    atomic_write_text(os.path.join(out, "torch_side_by_side.md"), markdown(result))
    print(markdown(result))
    print(f"Wrote {out}/torch_side_by_side.json and torch_side_by_side.md.")
    return result


if __name__ == "__main__":
    main()
