"""Training throughput of keras-vae against the reference recipe, hardware efficiency, and the
search for fast training defaults.

Every figure is examples per second of steady-state training (one `fit` epoch after a warm-up
epoch that traces and compiles), the median over repeats. Runs that are compared are interleaved
(A, B, A, B, ...) so that drift in the machine's speed hits both alike, and ratios are the
medians of the per-repeat ratios.

Run on its own: `python -m benchmarks.throughput [--quick]`.
"""

import time

import keras
import numpy as np
import tensorflow as tf

import keras_vae
from benchmarks import common, reference

# The two workloads: the MLP on the 8x8 digits and the official example's conv stack on 28x28.
CASES = {
    "mlp": {"data": "digits", "latent_dim": 4},
    "conv": {"data": "digits28", "latent_dim": 2},
}

# The official example's settings: numpy arrays into fit, batch 128, Adam, no XLA, one step per
# call. Every candidate default is measured against it.
BASELINE = {"batch_size": 128, "steps_per_execution": 1, "jit_compile": False, "pipeline": "numpy"}

# The settings recommended for keras-vae on a CPU, chosen from this sweep over several runs (see
# docs/benchmarks.md): many steps per tf.function call and a cached, prefetched tf.data pipeline
# win or tie everywhere; XLA loses on CPU for the conv model; batch 128 is kept so that the
# optimization matches the example's (256 is faster per example, but changes training).
RECOMMENDED = {
    "batch_size": 128,
    "steps_per_execution": 32,
    "jit_compile": False,
    "pipeline": "tf.data",
}

CANDIDATES = {
    "steps_per_execution": [8, 32],
    "jit_compile": [True],
    "batch_size": [64, 256],
    "pipeline": ["tf.data"],
}


def config_label(config):
    return (
        f"batch {config['batch_size']}, spe {config['steps_per_execution']}, "
        f"jit {'on' if config['jit_compile'] else 'off'}, {config['pipeline']}"
    )


def load_case_data(arch, quick):
    """Training examples for `arch`, tiled so one epoch lasts long enough to time."""
    loader = common.load_digits if CASES[arch]["data"] == "digits" else common.load_digits28
    x_train, _ = loader()
    # About 1.5 s per full epoch on 2 cores: long enough that fit's per-call set-up and the
    # machine's jitter stay small next to the work (a 0.4 s epoch moved ratios by +-20%).
    n = {"mlp": (4096, 32768), "conv": (512, 2048)}[arch][0 if quick else 1]
    return common.tile_to(x_train, n)


def build_model(kind, arch, input_shape, config, seed=0):
    """A compiled keras-vae ("keras-vae") or reference ("reference") model under `config`."""
    latent_dim = CASES[arch]["latent_dim"]
    keras.utils.set_random_seed(seed)
    if kind == "keras-vae":
        model = keras_vae.build_vae(input_shape, latent_dim=latent_dim, arch=arch, seed=seed)
    elif kind == "reference":
        model = reference.build_reference(input_shape, latent_dim, arch=arch, seed=seed)
    else:
        raise ValueError(f"Unknown model kind {kind!r}; expected 'keras-vae' or 'reference'.")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        steps_per_execution=config["steps_per_execution"],
        jit_compile=config["jit_compile"],
    )
    return model


def fit_inputs(x, config, seed=0):
    """`fit` keyword arguments feeding `x` as numpy arrays or as a cached, prefetched tf.data."""
    if config["pipeline"] == "numpy":
        return {"x": x, "batch_size": config["batch_size"], "shuffle": True}
    ds = (
        tf.data.Dataset.from_tensor_slices(x)
        .cache()
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(config["batch_size"])
        .prefetch(tf.data.AUTOTUNE)
    )
    return {"x": ds, "shuffle": False}


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        logs = logs or {}
        self.loss = float(logs.get("loss", logs.get("total_loss", float("nan"))))


def timed_epoch(model, inputs):
    """Trains one epoch; returns (wall seconds, CPU seconds of this process, the mean loss)."""
    timer = _EpochTimer()
    model.fit(**inputs, epochs=1, verbose=0, callbacks=[timer])
    return timer.seconds, timer.cpu_seconds, timer.loss


def measure_interleaved(entries, num_examples, repeats):
    """Examples/s of each entry, measured round-robin after one warm-up epoch each.

    Args:
        entries: list of `(name, model, fit_kwargs)`.
        num_examples: int. Examples in one epoch.
        repeats: int. Timed epochs per entry.

    Returns:
        dict name -> {"rates": [...] (wall-clock examples/s), "median", "cpu_rates": [...]
        (examples per CPU-second of this process, less sensitive to other processes),
        "cpu_median", "loss"}.
    """
    for _, model, inputs in entries:
        timed_epoch(model, inputs)
    rates = {name: [] for name, _, _ in entries}
    cpu_rates = {name: [] for name, _, _ in entries}
    losses = {}
    for r in range(repeats):
        # Alternate the order too (A, B, then B, A) so neither always runs first.
        order = entries if r % 2 == 0 else entries[::-1]
        for name, model, inputs in order:
            seconds, cpu_seconds, loss = timed_epoch(model, inputs)
            rates[name].append(num_examples / seconds)
            cpu_rates[name].append(num_examples / cpu_seconds)
            losses[name] = loss
    return {
        name: {
            "rates": rates[name],
            "median": float(np.median(rates[name])),
            "cpu_rates": cpu_rates[name],
            "cpu_median": float(np.median(cpu_rates[name])),
            "loss": losses[name],
        }
        for name in rates
    }


def paired_ratio(a, b, key="rates"):
    """Median over repeats of rate_a / rate_b (each pair measured back to back)."""
    return float(np.median(np.asarray(a[key]) / np.asarray(b[key])))


def ratio_range(a, b, key="rates"):
    """`(lowest, highest)` of the per-round ratios rate_a / rate_b: the run's own noise."""
    ratios = np.asarray(a[key]) / np.asarray(b[key])
    return float(ratios.min()), float(ratios.max())


def _config_key(config):
    return tuple(sorted(config.items()))


def compare(arch, x, recommended, repeats, built=None):
    """keras-vae against the reference, at the example's settings and at `recommended`.

    The (up to) four models are measured round-robin in one loop; the comparisons are the
    pairs: both at the example's settings, both at the recommended settings, and keras-vae at
    the recommended settings against the reference as the example writes it. `built` maps
    `_config_key(config)` to an already compiled keras-vae model to reuse (saves tracing).
    """
    shape = x.shape[1:]
    configs = {"example": BASELINE, "recommended": recommended}
    if recommended == BASELINE:
        configs.pop("recommended")
    entries = []
    for setting, config in configs.items():
        for kind in ("keras-vae", "reference"):
            model = (built or {}).get(_config_key(config)) if kind == "keras-vae" else None
            model = model or build_model(kind, arch, shape, config)
            entries.append((f"{kind} {setting}", model, fit_inputs(x, config)))
    res = measure_interleaved(entries, len(x), repeats)
    if "recommended" not in configs:
        configs["recommended"] = BASELINE
        res["keras-vae recommended"] = res["keras-vae example"]
        res["reference recommended"] = res["reference example"]
    flops = common.training_flops(entries[0][1].encoder, entries[0][1].decoder)
    pairs = [("both: example settings", "example", "example")]
    pairs += [
        ("both: recommended settings", "recommended", "recommended"),
        ("keras-vae recommended vs example as written", "recommended", "example"),
    ]
    rows = []
    for label, ours, theirs in pairs:
        a, b = res.get(f"keras-vae {ours}"), res.get(f"reference {theirs}")
        if a is None or b is None:
            continue
        rows.append(
            {
                "arch": arch,
                "setting": label,
                "config_keras_vae": configs[ours],
                "config_reference": configs[theirs],
                "keras_vae": a,
                "reference": b,
                "ratio": paired_ratio(a, b),
                "cpu_ratio": paired_ratio(a, b, "cpu_rates"),
                "train_flops_per_example": flops,
            }
        )
    return rows


def sweep(arch, x, repeats):
    """One factor at a time away from BASELINE, all configs of one arch interleaved.

    Returns `(built, rows)`: the compiled models by `_config_key`, and one row per variant.
    """
    configs = [("baseline", dict(BASELINE))]
    for factor, values in CANDIDATES.items():
        for value in values:
            configs.append((f"{factor}={value}", {**BASELINE, factor: value}))
    entries = [
        (name, build_model("keras-vae", arch, x.shape[1:], cfg), fit_inputs(x, cfg))
        for name, cfg in configs
    ]
    res = measure_interleaved(entries, len(x), repeats)
    base = res["baseline"]
    built = {
        _config_key(cfg): model for (_, cfg), (_, model, _) in zip(configs, entries, strict=True)
    }
    return built, [
        {
            "arch": arch,
            "variant": name,
            "config": cfg,
            "examples_per_s": res[name]["median"],
            "speedup_vs_baseline": paired_ratio(res[name], base),
        }
        for name, cfg in configs
    ]


def best_config(sweep_rows, min_gain=1.03):
    """Each factor's fastest value in one sweep (kept only if >= `min_gain` x the baseline).

    One run's winners move with the machine's noise; the defaults (`RECOMMENDED`) are chosen
    from several runs.
    """
    config = dict(BASELINE)
    for factor in CANDIDATES:
        rows = [r for r in sweep_rows if r["variant"].startswith(factor + "=")]
        best = max(rows, key=lambda r: r["speedup_vs_baseline"])
        if best["speedup_vs_baseline"] >= min_gain:
            config[factor] = best["config"][factor]
    return config


def layer_efficiency(arch, batch_size=128, repeats=10):
    """Forward + backward FLOP/s of each layer with a kernel, alone, at `batch_size`.

    Shows where a model's training falls short of the matmul rate: each layer is timed by
    itself (a tf.function computing its output and the gradients for its input and kernel),
    so the figure is the layer's own efficiency, without the rest of the step.
    """
    shape = (8, 8, 1) if CASES[arch]["data"] == "digits" else (28, 28, 1)
    model = keras_vae.build_vae(shape, latent_dim=CASES[arch]["latent_dim"], arch=arch, seed=0)
    rows = []
    for net in (model.encoder, model.decoder):
        for layer in net.layers:
            flops = common._layer_forward_flops(layer)
            if not flops:
                continue
            x = tf.random.normal((batch_size, *layer.input.shape[1:]), seed=0)
            dy = tf.random.normal((batch_size, *layer.output.shape[1:]), seed=1)

            @tf.function
            def step(x, dy, layer=layer):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x)
                grads = tape.gradient(y, [x, *layer.trainable_weights], output_gradients=dy)
                return tf.add_n([tf.reduce_sum(g) for g in grads])

            seconds = common.time_calls(
                lambda s=step, x=x, dy=dy: s(x, dy).numpy(), repeats, warmup=3
            )
            rows.append(
                {
                    "arch": arch,
                    "layer": f"{net.name}/{layer.name} ({type(layer).__name__}, "
                    f"{tuple(layer.input.shape[1:])} -> {tuple(layer.output.shape[1:])})",
                    "train_mflop_per_example": 3 * flops / 1e6,
                    "flops_per_s": 3 * flops * batch_size / float(np.median(seconds)),
                }
            )
    return rows


def run(quick=False, archs=("mlp", "conv"), recommended=None):
    """Runs the throughput benchmarks.

    Args:
        quick: bool. Smaller epochs and fewer repeats (a smoke run).
        archs: which workloads.
        recommended: dict arch -> config for the "recommended" comparisons (default
            `RECOMMENDED` for every arch).

    Returns:
        dict with `matmul`, `comparisons`, `sweep`, `recommended`, `fastest_per_factor` (each
        factor's fastest value in this run's sweep, kept if >= 1.03x) and, with conv,
        `layers`.
    """
    # keras-vae and the reference cost the same per step; single rounds scatter by +-10% on a
    # shared 2-core machine, so the median needs many of them.
    repeats = 2 if quick else 11
    sweep_repeats = 2 if quick else 3
    # The matmul rate is sampled before, between and after the training runs, and the median
    # of those samples is the yardstick: the machine's speed drifts when it is shared.
    matmul_samples = []

    def sample_matmul():
        print("throughput: measuring matmul FLOP/s", flush=True)
        stats = common.matmul_flops_per_second(n=1024 if quick else 2048, repeats=3 if quick else 5)
        matmul_samples.append(stats["median"])
        return stats

    n = sample_matmul()["n"]
    out = {"comparisons": [], "sweep": [], "recommended": {}, "fastest_per_factor": {}}
    for arch in archs:
        x = load_case_data(arch, quick)
        print(f"throughput: {arch}: sweeping candidate defaults", flush=True)
        built, rows = sweep(arch, x, sweep_repeats)
        out["sweep"].extend(rows)
        out["fastest_per_factor"][arch] = best_config(rows)
        config = (recommended or {}).get(arch, RECOMMENDED)
        out["recommended"][arch] = config
        print(
            f"throughput: {arch}: keras-vae vs reference at the example's settings and at "
            f"{config_label(config)}",
            flush=True,
        )
        out["comparisons"].extend(compare(arch, x, config, repeats, built))
        sample_matmul()
    if "conv" in archs:
        print("throughput: conv: per-layer efficiency", flush=True)
        out["layers"] = layer_efficiency("conv", repeats=5 if quick else 10)
        sample_matmul()
    matmul = {
        "n": n,
        "median": float(np.median(matmul_samples)),
        "min": float(min(matmul_samples)),
        "max": float(max(matmul_samples)),
        "samples": matmul_samples,
    }
    out["matmul"] = matmul
    if "layers" in out:
        for row in out["layers"]:
            row["share_of_matmul"] = row["flops_per_s"] / matmul["median"]
    for row in out["comparisons"]:
        flops = row["train_flops_per_example"]
        for key in ("keras_vae", "reference"):
            row[key]["flops_per_s"] = row[key]["median"] * flops
            row[key]["share_of_matmul"] = row[key]["flops_per_s"] / matmul["median"]
    return out


def markdown(result):
    mm = result["matmul"]
    lines = [
        f"Dense matmul ({mm['n']}x{mm['n']} float32): {mm['median'] / 1e9:.1f} GFLOP/s, the median "
        f"of {len(mm['samples'])} samples taken between the runs (range "
        f"{mm['min'] / 1e9:.1f} to {mm['max'] / 1e9:.1f}).",
        "",
        common.markdown_table(
            [
                "model",
                "setting",
                "keras-vae ex/s",
                "reference ex/s",
                "ratio (rounds' range)",
                "CPU-time ratio",
                "train MFLOP/ex",
                "keras-vae GFLOP/s",
                "share of matmul",
            ],
            [
                [
                    r["arch"],
                    r["setting"],
                    common.fmt(r["keras_vae"]["median"]),
                    common.fmt(r["reference"]["median"]),
                    "{:.2f} ({:.2f} to {:.2f})".format(
                        r["ratio"], *ratio_range(r["keras_vae"], r["reference"])
                    ),
                    f"{r['cpu_ratio']:.2f}",
                    common.fmt(r["train_flops_per_example"] / 1e6),
                    common.fmt(r["keras_vae"]["flops_per_s"] / 1e9),
                    f"{100 * r['keras_vae']['share_of_matmul']:.0f}%",
                ]
                for r in result["comparisons"]
            ],
        ),
        "",
        "Candidate defaults (keras-vae, one factor changed from batch 128, spe 1, jit off, numpy):",
        "",
        common.markdown_table(
            ["model", "variant", "ex/s", "speed-up"],
            [
                [
                    r["arch"],
                    r["variant"],
                    common.fmt(r["examples_per_s"]),
                    f"{r['speedup_vs_baseline']:.2f}x",
                ]
                for r in result["sweep"]
            ],
        ),
        "",
    ]
    for arch, cfg in result["recommended"].items():
        lines.append(f"Recommended (measured above) for {arch}: {config_label(cfg)}.")
    for arch, cfg in result.get("fastest_per_factor", {}).items():
        lines.append(
            f"Fastest value of each factor in this run's sweep, {arch}: {config_label(cfg)}."
        )
    if result.get("layers"):
        lines += [
            "",
            "Each layer of the conv model alone (forward + backward, batch 128):",
            "",
            common.markdown_table(
                ["layer", "train MFLOP/ex", "GFLOP/s", "share of matmul"],
                [
                    [
                        r["layer"],
                        common.fmt(r["train_mflop_per_example"]),
                        common.fmt(r["flops_per_s"] / 1e9),
                        f"{100 * r['share_of_matmul']:.0f}%",
                    ]
                    for r in result["layers"]
                ],
            ),
        ]
    return "\n".join(lines)


def main(argv=None):
    common.run_per_arch(__doc__, CASES, run, markdown, argv)


if __name__ == "__main__":
    main()
