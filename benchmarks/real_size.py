"""Benchmarks at real size: 28x28 digits (MNIST when given) and 64x64x3 photographs.

Five parts, each a table:

- throughput: training examples/s of keras-vae against the reference recipe at 28x28, MLP and
  conv, both at the official example's settings, interleaved (ratios are paired per round);
- quality: held-out negative ELBO and IWAE NLL (nats) of both after the same training;
- memory: peak RSS of training, of the final evaluation and of the export (SavedModel + TFLite),
  each in a fresh process, at 28x28 (conv) and 64x64x3 (photos64, conv, Gaussian);
- evaluation: the final IWAE evaluation's seconds against the training's, for runs of
  `keras-vae-train`'s own plan (`training.trainer.train`);
- budget: `VAE.log_likelihood` decodes/s (in this process, interleaved, as ratios to the
  256 MiB default) and peak RSS (a fresh process each) against `memory_budget`.

The 28x28 data is `training.data`'s `digits28` (the 8x8 digits upsampled to 20x20 and centred
in 28x28, MNIST's layout; `common.load_digits28` reads the same). With `--mnist PATH` the
quality and evaluation parts also run on MNIST, and throughput, memory and budget use MNIST.

Run on its own: `python -m benchmarks.real_size [--quick] [--mnist /path/to/mnist-dev]`
(writes `benchmarks/results/real_size.{md,json}` on a full run).
"""

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/real_size.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, memory  # noqa: E402

PARTS = ("throughput", "quality", "memory", "evaluation", "budget")
ARCHS = ("mlp", "conv")
BUDGETS_MIB = (16, 64, 256, 1024)
IWAE_K = 1000
ELBO_DRAWS = 5
# Memory jobs run two at a time: a process's peak RSS is its own whatever runs beside it.
PARALLEL_JOBS = 2


def load(spec, limit=None):
    """`training.data.load_dataset(spec)`: the one loader of the named sets and of MNIST."""
    from keras_vae.training.data import load_dataset

    return load_dataset(spec, limit=limit)


def data_sets(mnist):
    """`[(label, spec)]`: digits28, then MNIST when a path is given."""
    return [("digits28", "digits28")] + ([("mnist", mnist)] if mnist else [])


# ------------------------------------------------------------------------------------------
# 1. Training throughput at 28x28.


def throughput_part(spec, label, quick, archs=ARCHS):
    """keras-vae and the reference at the example's settings, one epoch each, interleaved."""
    from benchmarks import throughput

    x_train = load(spec).x_train
    # About 1.5 s an epoch on 2 cores (see throughput.load_case_data).
    sizes = {"mlp": (512, 12288), "conv": (256, 2048)}
    repeats = 1 if quick else 9
    rows = []
    for arch in archs:
        print(f"real size: throughput {label}/{arch}", flush=True)
        x = common.tile_to(x_train, sizes[arch][0 if quick else 1])
        config = throughput.BASELINE
        entries = [
            (kind, throughput.build_model(kind, arch, x.shape[1:], config), None)
            for kind in ("keras-vae", "reference")
        ]
        entries = [(kind, model, throughput.fit_inputs(x, config)) for kind, model, _ in entries]
        res = throughput.measure_interleaved(entries, len(x), repeats)
        ours, ref = res["keras-vae"], res["reference"]
        low, high = throughput.ratio_range(ours, ref)
        rows.append(
            {
                "data": label,
                "arch": arch,
                "config": config,
                "examples": len(x),
                "rounds": repeats,
                "keras_vae": ours["median"],
                "reference": ref["median"],
                "ratio": throughput.paired_ratio(ours, ref),
                "ratio_range": [low, high],
                "cpu_ratio": throughput.paired_ratio(ours, ref, "cpu_rates"),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------
# 2. Held-out quality after the same training.


def _batches(x, size=256):
    return [x[i : i + size] for i in range(0, len(x), size)]


def held_out(model, x_test, iwae_examples, k, draws, reference_decodes=None):
    """Mean negative ELBO over `x_test` (`draws` posterior draws each) and IWAE NLL (nats).

    Batched, so the ELBO at 28x28 stays within memory. A reference model is recognized by
    `reference_decodes`: the latents its IWAE decodes at once (keras-vae's default budget's
    chunk for the same networks; the reference's own default would need gigabytes at 28x28).
    """
    import numpy as np

    from benchmarks import reference

    is_reference = reference_decodes is not None
    elbos = []
    for s in range(draws):
        for i, batch in enumerate(_batches(x_test)):
            seed = 1000 * s + i
            if is_reference:
                elbos.append(reference.reference_elbo(model, batch, seed=seed).numpy())
            else:
                elbos.append(model.elbo(batch, seed=seed).numpy())
    x = x_test[:iwae_examples]
    start = time.perf_counter()
    if is_reference:
        ll = reference.reference_log_likelihood(model, x, k, seed=0, max_decodes=reference_decodes)
    else:
        ll = model.log_likelihood(x, num_samples=k, seed=0)
    return {
        "negative_elbo": float(-np.mean(np.concatenate(elbos))),
        "iwae_nll": float(-np.mean(np.asarray(ll))),
        "iwae_seconds": time.perf_counter() - start,
    }


def quality_part(spec, label, quick, archs=ARCHS):
    """keras-vae and the reference trained alike (`quality.train_pair`), then held out."""
    from benchmarks import quality
    from keras_vae import estimators

    data = load(spec)
    # About a minute of conv training per model on 2 cores for either set.
    epochs = {"digits28": 10}.get(label, 2)
    n_train, n_test, k, iwae_examples = None, None, IWAE_K, 100
    if quick:
        epochs, n_train, n_test, k, iwae_examples = 1, 128, 32, 10, 8
    x_train, x_test = data.x_train[:n_train], data.x_test[:n_test]
    rows = []
    for arch in archs:
        print(f"real size: quality {label}/{arch}, {epochs} epochs", flush=True)
        start = time.perf_counter()
        ours, ref = quality.train_pair(arch, x_train, epochs)
        train_seconds = time.perf_counter() - start
        row = {
            "data": label,
            "arch": arch,
            "epochs": epochs,
            "num_train": len(x_train),
            "num_test": len(x_test),
            "iwae_k": k,
            "iwae_examples": min(iwae_examples, len(x_test)),
            "elbo_draws": ELBO_DRAWS if not quick else 1,
            "train_seconds_both": train_seconds,
        }
        draws = row["elbo_draws"]
        row["keras_vae"] = held_out(ours, x_test, iwae_examples, k, draws)
        decodes = estimators.pairs_per_chunk(ours, k)
        row["reference"] = held_out(ref, x_test, iwae_examples, k, draws, decodes)
        row["elbo_gap"] = row["keras_vae"]["negative_elbo"] - row["reference"]["negative_elbo"]
        row["iwae_gap"] = row["keras_vae"]["iwae_nll"] - row["reference"]["iwae_nll"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------
# 3. Peak memory of training, evaluation and export, each in a fresh process.

# name -> (data spec or None for the primary 28x28 set, likelihood)
MEMORY_CASES = {"28x28 conv": (None, "bernoulli"), "64x64x3 conv": ("photos64", "gaussian")}


def _job_model(args, x_shape):
    import keras

    import keras_vae

    keras.utils.set_random_seed(0)
    return keras_vae.build_vae(
        x_shape, latent_dim=2, arch="conv", likelihood=args.likelihood, sigma=None, seed=0
    )


def _job_train(args):
    """As `keras-vae-train` trains: its data pipeline, batch 64, Adam, `--epochs` epochs."""
    import keras

    from keras_vae.training.data import make_dataset, steps_per_epoch

    data = load(args.data)
    model = _job_model(args, data.x_train.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = make_dataset(data.x_train, 64, shuffle=True, seed=0)
    steps = steps_per_epoch(len(data.x_train), 64)
    model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, verbose=0)


def _job_evaluate(args):
    """`training.evaluate.evaluate` at K = 1000 on `--examples` held-out examples.

    The weights are untrained: the memory does not depend on their values. The peak is
    reached in the first chunk of decodes; more examples only take longer.
    """
    from keras_vae.training.evaluate import evaluate

    data = load(args.data)
    model = _job_model(args, data.x_test.shape[1:])
    evaluate(model, data.x_test, IWAE_K, args.examples, seed=0, progress=False)


def _job_export(args):
    """`export.export_all` as `keras-vae-train` calls it: SavedModel and float32 TFLite."""
    from keras_vae import export

    data = load(args.data)
    model = _job_model(args, data.x_train.shape[1:])
    with tempfile.TemporaryDirectory(prefix="keras-vae-bench-export-") as out:
        export.export_all(model, out, representative_data=data.x_train[:256])


def _job_log_likelihood(args):
    """`VAE.log_likelihood` with `--k` samples under `--budget-mib`, called twice."""
    data = load(args.data)
    model = _job_model(args, data.x_test.shape[1:])
    x = data.x_test[: args.examples]
    for _ in range(2):
        model.log_likelihood(x, args.k, seed=0, memory_budget=args.budget_mib * 2**20).numpy()


JOBS = {
    "import-tf": memory._job_import_tf,
    "train": _job_train,
    "evaluate": _job_evaluate,
    "export": _job_export,
    "log-likelihood": _job_log_likelihood,
}


def _measure_all(jobs):
    """Peak RSS (MiB) of each `(job, kwargs)` in its own process, `PARALLEL_JOBS` at a time."""
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_JOBS) as pool:
        futures = [
            pool.submit(memory.measure, job, module="benchmarks.real_size", **kwargs)
            for job, kwargs in jobs
        ]
        return [f.result() for f in futures]


def memory_part(spec, label, quick):
    epochs = 1 if quick else 2
    examples = 1 if quick else 4
    jobs, rows = [], []
    for case, (data, likelihood) in MEMORY_CASES.items():
        data = data or spec
        name = f"{label} {case}" if data == spec else f"photos64 {case}"
        common_args = {"data": data, "likelihood": likelihood}
        for job, extra, what in (
            ("train", {"epochs": epochs}, f"train ({epochs} epochs, batch 64)"),
            ("evaluate", {"examples": examples}, f"final evaluation (K={IWAE_K})"),
            ("export", {}, "export (SavedModel + float32 TFLite)"),
        ):
            jobs.append((job, {**common_args, **extra}))
            rows.append({"case": name, "job": job, "what": what})
    if not quick:
        jobs.insert(0, ("import-tf", {}))
        rows.insert(0, {"case": "-", "job": "import-tf", "what": "python + import keras_vae"})
    print(f"real size: memory, {len(jobs)} processes", flush=True)
    for row, mib in zip(rows, _measure_all(jobs), strict=True):
        row["mib"] = mib
    return rows


# ------------------------------------------------------------------------------------------
# 4. The final evaluation's time against the training's, as keras-vae-train plans it.


def evaluation_part(runs, quick):
    """Trains each run with `training.trainer.train` (no export); seconds of both phases."""
    from keras_vae.training.trainer import train

    rows = []
    # A smoke run trains only the 28x28 conv run, for one epoch of 128 examples.
    for label, config in runs if not quick else [r for r in runs if r[1].get("arch") == "conv"]:
        config = {**config, "export": False, "verbose": 0}
        if quick:
            config.update(epochs=1, limit=128)
        print(f"real size: keras-vae-train {label}", flush=True)
        with tempfile.TemporaryDirectory(prefix="keras-vae-bench-run-") as run_dir:
            result = train(config, run_dir)
        m = result["metrics"]
        rows.append(
            {
                "run": label,
                "config": config,
                "train_seconds": result["seconds"],
                "iwae_seconds": m["iwae_seconds"],
                "iwae_samples": m["iwae_samples"],
                "iwae_examples": m["iwae_examples"],
                "eval_share": m["iwae_seconds"] / result["seconds"],
                "negative_elbo": m["negative_elbo"],
                "iwae_nll": -m["iwae_log_likelihood"],
            }
        )
    return rows


def evaluation_runs(mnist):
    runs = [
        ("digits, mlp (the defaults)", {"data": "digits"}),
        ("digits28, conv", {"data": "digits28", "arch": "conv"}),
    ]
    if mnist:
        runs.append(("mnist-dev, mlp", {"data": mnist}))
    return runs


# ------------------------------------------------------------------------------------------
# 5. log_likelihood's speed and memory against its budget.

# name -> (data spec or None for the primary 28x28 set, likelihood, held-out examples)
BUDGET_CASES = {"28x28 conv": (None, "bernoulli", 8), "64x64x3 conv": ("photos64", "gaussian", 2)}


def budget_part(spec, label, quick):
    """Decodes/s per budget in this process (round-robin), peak RSS in fresh processes."""
    import numpy as np

    from keras_vae import estimators

    budgets = (16, 256) if quick else BUDGETS_MIB
    rounds = 1 if quick else 3
    k = 100 if quick else IWAE_K
    rows, jobs = [], []
    for case, (data, likelihood, examples) in BUDGET_CASES.items():
        data = data or spec
        examples = 1 if quick else examples
        args = argparse.Namespace(likelihood=likelihood)
        x = load(data).x_test[:examples]
        model = _job_model(args, x.shape[1:])
        decodes = examples * k
        print(f"real size: log_likelihood {case}, budgets {budgets} MiB", flush=True)

        def call(b, model=model, x=x):
            return model.log_likelihood(x, k, seed=0, memory_budget=b * 2**20).numpy()

        for b in budgets:
            call(b)  # traces
        rates = {b: [] for b in budgets}
        for r in range(rounds):
            for b in budgets if r % 2 == 0 else budgets[::-1]:
                start = time.perf_counter()
                call(b)
                rates[b].append(decodes / (time.perf_counter() - start))
        base = rates[256]
        for b in budgets:
            rows.append(
                {
                    "case": f"{label} {case}" if data == spec else f"photos64 {case}",
                    "budget_mib": b,
                    "k": k,
                    "pairs_per_chunk": estimators.pairs_per_chunk(model, k, b * 2**20),
                    "decodes": decodes,
                    "decodes_per_s": float(np.median(rates[b])),
                    "vs_256": float(np.median(np.asarray(rates[b]) / np.asarray(base))),
                }
            )
            jobs.append(
                (
                    "log-likelihood",
                    {
                        "data": data,
                        "likelihood": likelihood,
                        "examples": examples,
                        "k": k,
                        "budget_mib": b,
                    },
                )
            )
    print(f"real size: log_likelihood peak RSS, {len(jobs)} processes", flush=True)
    for row, mib in zip(rows, _measure_all(jobs), strict=True):
        row["peak_rss_mib"] = mib
    return rows


# ------------------------------------------------------------------------------------------


def run(quick=False, mnist=None, parts=PARTS, archs=ARCHS):
    """Runs the real-size benchmarks; returns a dict with one list of rows per part.

    `archs` selects the models of the throughput and quality parts (the others are fixed).
    """
    if mnist:
        load(mnist)  # checked first, so a bad path fails before minutes of work
    primary_label, primary = data_sets(mnist)[-1]
    out = {"quick": quick, "mnist": mnist, "section_seconds": {}}
    steps = {
        "throughput": lambda: throughput_part(primary, primary_label, quick, archs),
        "quality": lambda: [
            row
            for label, spec in data_sets(mnist)
            for row in quality_part(spec, label, quick, archs)
        ],
        "memory": lambda: memory_part(primary, primary_label, quick),
        "evaluation": lambda: evaluation_part(evaluation_runs(mnist), quick),
        "budget": lambda: budget_part(primary, primary_label, quick),
    }
    for part in parts:
        start = time.perf_counter()
        out[part] = steps[part]()
        out["section_seconds"][part] = round(time.perf_counter() - start, 1)
    return out


def markdown(result):
    fmt = common.fmt
    lines = []
    if result.get("throughput"):
        lines += [
            "Training throughput at 28x28, both at the example's settings (batch 128, numpy, "
            "one step per call), interleaved epochs; ratio = median of the per-round ratios:",
            "",
            common.markdown_table(
                ["data", "model", "keras-vae ex/s", "reference ex/s", "ratio (range)", "CPU ratio"],
                [
                    [
                        r["data"],
                        r["arch"],
                        fmt(r["keras_vae"]),
                        fmt(r["reference"]),
                        "{:.2f} ({:.2f} to {:.2f})".format(r["ratio"], *r["ratio_range"]),
                        f"{r['cpu_ratio']:.2f}",
                    ]
                    for r in result["throughput"]
                ],
            ),
            "",
        ]
    if result.get("quality"):
        q = result["quality"]
        lines += [
            f"Held-out quality after the same training (nats; -ELBO over all held-out examples, "
            f"{q[0]['elbo_draws']} draws; IWAE NLL with K={q[0]['iwae_k']} on the first "
            f"{q[0]['iwae_examples']}; lower is better):",
            "",
            common.markdown_table(
                [
                    "data",
                    "model",
                    "epochs",
                    "keras-vae -ELBO",
                    "reference -ELBO",
                    "gap",
                    "keras-vae IWAE NLL",
                    "reference IWAE NLL",
                    "gap",
                ],
                [
                    [
                        r["data"],
                        r["arch"],
                        f"{r['epochs']} x {r['num_train']}",
                        fmt(r["keras_vae"]["negative_elbo"], 4),
                        fmt(r["reference"]["negative_elbo"], 4),
                        f"{r['elbo_gap']:+.2f}",
                        fmt(r["keras_vae"]["iwae_nll"], 4),
                        fmt(r["reference"]["iwae_nll"], 4),
                        f"{r['iwae_gap']:+.2f}",
                    ]
                    for r in q
                ],
            ),
            "",
        ]
    if result.get("memory"):
        lines += [
            "Peak RSS, each job in a fresh process (weights untrained for evaluation and export: "
            "their memory does not depend on the values):",
            "",
            common.markdown_table(
                ["workload", "job", "peak RSS (MiB)"],
                [[r["case"], r["what"], fmt(r["mib"])] for r in result["memory"]],
            ),
            "",
        ]
    if result.get("evaluation"):
        lines += [
            "keras-vae-train's own plan (no export): the final IWAE evaluation against the "
            "training (fit, with its per-epoch validation and sample pictures):",
            "",
            common.markdown_table(
                ["run", "epochs", "train s", "K x examples", "IWAE s", "IWAE / train"],
                [
                    [
                        r["run"],
                        r["config"].get("epochs", 30),
                        fmt(r["train_seconds"]),
                        f"{r['iwae_samples']} x {r['iwae_examples']}",
                        fmt(r["iwae_seconds"]),
                        f"{100 * r['eval_share']:.0f}%",
                    ]
                    for r in result["evaluation"]
                ],
            ),
            "",
        ]
    if result.get("budget"):
        lines += [
            f"`VAE.log_likelihood` (K={result['budget'][0]['k']}) against memory_budget: decodes/s in one process "
            "(calls interleaved; ratio to 256 MiB per round), peak RSS of a fresh process "
            "making the call:",
            "",
            common.markdown_table(
                [
                    "workload",
                    "budget MiB",
                    "pairs/chunk",
                    "decodes/s",
                    "vs 256 MiB",
                    "peak RSS MiB",
                ],
                [
                    [
                        r["case"],
                        r["budget_mib"],
                        r["pairs_per_chunk"],
                        fmt(r["decodes_per_s"]),
                        f"{r['vs_256']:.2f}",
                        fmt(r["peak_rss_mib"]),
                    ]
                    for r in result["budget"]
                ],
            ),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _job_main(args):
    JOBS[args.job](args)
    print(json.dumps({"job": args.job, "peak_rss_mib": memory.peak_rss_mib()}))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python -m benchmarks.real_size --mnist /data/mnist-dev",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--mnist", help="MNIST as training.data reads it (IDX folder or .npz)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    parser.add_argument("--out", help="results folder (default benchmarks/results/ on a full run)")
    parser.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
    for name, kind in (
        ("data", str),
        ("likelihood", str),
        ("epochs", int),
        ("examples", int),
        ("k", int),
    ):
        parser.add_argument(f"--{name}", type=kind, help=argparse.SUPPRESS)
    parser.add_argument("--budget-mib", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        return _job_main(args)
    out_dir = args.out or (
        tempfile.mkdtemp(prefix="keras-vae-bench-") if args.quick or args.only else None
    )
    out_dir = out_dir or common.RESULTS_DIR
    print(f"Benchmarking on {common.machine_line(common.machine_info())}", flush=True)
    result = run(quick=args.quick, mnist=args.mnist, parts=args.only or PARTS)
    write(result, out_dir)
    return None


def write(result, out_dir, echo=True):
    """Writes `real_size.json` and `real_size.md` to `out_dir` (and prints the tables)."""
    from keras_vae.training.files import atomic_write_text

    result.setdefault("machine", common.machine_info())
    text = (
        "# keras-vae benchmarks at real size\n\n"
        f"Machine: {common.machine_line(result['machine'])}.\n"
        f"Mode: {'quick (smoke run)' if result['quick'] else 'full'}; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result["section_seconds"].items())
        + ".\n"
        + "28x28 data: digits28 (training.data)"
        + (f"; MNIST from {result['mnist']}" if result.get("mnist") else "")
        + ".\n\n"
        + markdown(result)
    )
    common.write_json(os.path.join(out_dir, "real_size.json"), result)
    atomic_write_text(os.path.join(out_dir, "real_size.md"), text)
    if echo:
        print(text)
        print(f"Wrote {out_dir}/real_size.json and real_size.md.")


if __name__ == "__main__":
    main()
