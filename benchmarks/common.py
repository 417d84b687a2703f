"""What every benchmark shares: data, timing statistics, FLOP counts, the machine, result files."""

import argparse
import datetime
import json
import math
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from keras_vae.training.files import atomic_write_text

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# ------------------------------------------------------------------------------------------
# Data


def load_digits(seed=0, num_test=297):
    """scikit-learn's 8x8 digits as `(8, 8, 1)` float32 images in [0, 1]: `(x_train, x_test)`.

    The split is a fixed permutation (`seed`), so every benchmark sees the same held-out set.
    """
    from keras_vae.training.data import LOADERS

    images = LOADERS["digits"]()["x"]
    images = images[np.random.default_rng(seed).permutation(len(images))]
    return images[num_test:], images[:num_test]


def load_digits28():
    """`training.data`'s `digits28`: the digits at MNIST's 28x28 (20x20 centred), `(train, test)`.

    One definition of the set for the trainer, the tests and the benchmarks (it was a bilinear
    resize of the whole 8x8 image here before; the per-example cost is the same).
    """
    from keras_vae.training.data import load_dataset

    data = load_dataset("digits28")
    return data.x_train, data.x_test


def tile_to(x, n):
    """Repeats the examples of `x` until there are exactly `n` (for long steady-state epochs)."""
    reps = math.ceil(n / len(x))
    return np.concatenate([x] * reps, axis=0)[:n]


# ------------------------------------------------------------------------------------------
# Statistics


def summarize(values):
    """Median, p50, p99, min and max of a list of measurements (seconds or rates)."""
    v = np.asarray(values, dtype="float64")
    return {
        "median": float(np.median(v)),
        "p50": float(np.percentile(v, 50)),
        "p99": float(np.percentile(v, 99)),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def time_calls(fn, repeats, warmup=3, budget_s=None, min_repeats=20):
    """Calls `fn()` `warmup` times, then `repeats` times; returns the timed durations (seconds).

    With `budget_s`, fewer repeats (at least `min_repeats`) are made when `repeats` calls would
    take longer than the budget, judged from the last warm-up call.
    """
    last = 0.0
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        last = time.perf_counter() - start
    if budget_s is not None and last > 0:
        repeats = max(min(repeats, min_repeats), min(repeats, int(budget_s / last)))
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


# ------------------------------------------------------------------------------------------
# FLOPs


def _layer_forward_flops(layer):
    """Multiply-adds x 2 of one layer for one example; 0 for layers without a kernel."""
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        return 2 * int(fan_in) * int(units)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # Each input pixel is scattered to k*k outputs: Hin*Win*k*k*Cin*Cout multiply-adds.
        # (Counting over the output pixels would overstate a stride-2 layer four times.)
        kh, kw, c_out, c_in = layer.kernel.shape
        _, h_in, w_in, _ = layer.input.shape
        return 2 * int(h_in) * int(w_in) * int(kh) * int(kw) * int(c_in) * int(c_out)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, c_in, c_out = layer.kernel.shape
        _, h_out, w_out, _ = layer.output.shape
        return 2 * int(h_out) * int(w_out) * int(kh) * int(kw) * int(c_in) * int(c_out)
    return 0


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def forward_flops(*models):
    """Forward FLOPs per example of functional Keras models, counted from their layers.

    Dense: 2 * in * out. Conv2D: 2 * Hout * Wout * k * k * Cin * Cout. Conv2DTranspose:
    2 * Hin * Win * k * k * Cin * Cout. Biases, activations and the loss are left out (they are
    a few percent at most for these networks).

    Example:
    >>> forward_flops(vae.encoder, vae.decoder)
    """
    return sum(_layer_forward_flops(layer) for m in models for layer in _leaf_layers(m))


def training_flops(*models):
    """FLOPs of one training step per example: forward + backward ~= 3 x forward."""
    return 3 * forward_flops(*models)


def matmul_flops_per_second(n=2048, repeats=7, chain=4, dtype="float32"):
    """Measured dense-matmul FLOP/s in `dtype`: the median of `repeats` runs of `chain` n x n
    matmuls."""
    a = tf.cast(tf.random.normal((n, n), seed=1), dtype)
    b = tf.cast(tf.random.normal((n, n), seed=2) / math.sqrt(n), dtype)

    @tf.function
    def run(a):
        for _ in range(chain):
            a = tf.matmul(a, b)
        return tf.reduce_sum(a)

    durations = time_calls(lambda: run(a).numpy(), repeats, warmup=2)
    flops = 2.0 * n**3 * chain
    stats = summarize([flops / d for d in durations])
    stats["n"] = n
    return stats


# ------------------------------------------------------------------------------------------
# Machine and result files


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info():
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": [g.name for g in gpus],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def machine_line(info):
    gpu = f", GPUs: {', '.join(info['gpus'])}" if info["gpus"] else ", no GPU"
    return (
        f"{info['date_utc']} on {info['cpu']} ({info['cpu_count']} cores{gpu}), "
        f"{info['platform']}, Python {info['python']}, TF {info['tensorflow']}, "
        f"Keras {info['keras']}"
    )


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def markdown_table(headers, rows):
    """A GitHub markdown table from a header list and rows of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value, digits=3):
    """Formats a number with `digits` significant figures; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def run_per_arch(doc, cases, run, markdown, argv=None):
    """The command line of a benchmark part that runs per workload: `[--quick] [--arch A]...`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--arch", choices=sorted(cases), action="append")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick, archs=tuple(args.arch or cases))))
