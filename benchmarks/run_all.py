"""Runs every keras-vae benchmark and writes the tables, the JSON and the plot.

    python -m benchmarks.run_all            # the full run (about 20 minutes on 2 CPU cores,
                                            # 10 of them the real-size section)
    python -m benchmarks.run_all --quick    # a smoke run of everything (a few minutes)
    python -m benchmarks.run_all --mnist ~/data/mnist.npz   # adds MNIST to the quality and
                                                            # real-size tables

Writes `latest.json`, `latest.md`, `log_px_vs_k.png` and the real-size section's own
`real_size.{json,md}` to `benchmarks/results/` (a `--quick`
or `--only` run writes to a temporary folder unless `--out` is given). Figures are medians over repeats,
measured after warm-up in this one run; nothing here asserts anything.
"""

import argparse
import os
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/run_all.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, latency, memory, quality, real_size, throughput  # noqa: E402
from keras_vae.training.files import atomic_write_text  # noqa: E402

SECTIONS = ("throughput", "latency", "memory", "quality", "real_size")


def targets(results):
    """The issue's targets, each with the measured figure and whether it is met."""
    out = []
    tp = results.get("throughput")
    if tp:
        for row in tp["comparisons"]:
            if row["setting"] == "both: example settings":
                out.append(
                    (
                        f"{row['arch']} throughput keras-vae / reference, same settings >= 1.0",
                        f"{row['ratio']:.2f} (CPU-time ratio {row['cpu_ratio']:.2f})",
                        row["ratio"] >= 1.0,
                    )
                )
            if row["setting"] == "keras-vae recommended vs example as written":
                out.append(
                    (
                        f"{row['arch']} throughput keras-vae defaults / reference as written >= 1.2 (aim)",
                        f"{row['ratio']:.2f}",
                        row["ratio"] >= 1.2,
                    )
                )
            if row["arch"] == "conv" and row["setting"] == "both: recommended settings":
                share = row["keras_vae"]["share_of_matmul"]
                out.append(
                    ("conv training >= 50% of matmul FLOP/s", f"{100 * share:.0f}%", share >= 0.5)
                )
    lat = results.get("latency")
    if lat:
        for arch, entry in lat["targets"].items():
            if "tflite_b1_speedup_vs_predict" in entry:
                s = entry["tflite_b1_speedup_vs_predict"]
                out.append(
                    (f"{arch} TFLite batch-1 decode p50 >= 10x Keras predict", f"{s:.0f}x", s >= 10)
                )
        for row in lat.get("size_scaling", []):
            share = row["int8_share"]
            out.append(
                (
                    f"TFLite int8 file <= 30% of float32: {row['model']} "
                    f"({row['decoder_weights']:,} decoder weights)",
                    f"{100 * share:.0f}%",
                    share <= 0.3,
                )
            )
    qual = results.get("quality")
    if qual:
        for row in qual["comparisons"]:
            gap = row["elbo_gap_nats"]
            out.append(
                (
                    f"{row['dataset']}/{row['arch']} held-out -ELBO keras-vae <= reference "
                    f"({row['epochs']} epochs)",
                    f"{row['keras_vae']['negative_elbo']:.2f} vs "
                    f"{row['reference']['negative_elbo']:.2f} nats ({gap:+.2f})",
                    gap <= 0,
                )
            )
    real = results.get("real_size") or {}
    for row in real.get("throughput", []):
        out.append(
            (
                f"{row['data']}/{row['arch']} 28x28 throughput keras-vae / reference, same "
                "settings >= 1.0",
                f"{row['ratio']:.2f} (CPU-time ratio {row['cpu_ratio']:.2f})",
                row["ratio"] >= 1.0,
            )
        )
    for row in real.get("quality", []):
        out.append(
            (
                f"{row['data']}/{row['arch']} held-out -ELBO keras-vae <= reference "
                f"({row['epochs']} epochs)",
                f"{row['keras_vae']['negative_elbo']:.2f} vs "
                f"{row['reference']['negative_elbo']:.2f} nats ({row['elbo_gap']:+.2f})",
                row["elbo_gap"] <= 0,
            )
        )
    return [{"target": t, "measured": m, "met": bool(ok)} for t, m, ok in out]


def render(results):
    lines = [
        "# keras-vae benchmarks",
        "",
        f"Machine: {common.machine_line(results['machine'])}.",
        f"Mode: {'quick (smoke run)' if results['quick'] else 'full'}; "
        f"total time {results['seconds']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in results["section_seconds"].items())
        + ").",
        "",
        "## Targets",
        "",
        common.markdown_table(
            ["target", "measured", "met"],
            [[t["target"], t["measured"], "yes" if t["met"] else "no"] for t in results["targets"]],
        ),
    ]
    renderers = {
        "throughput": ("Training throughput and hardware efficiency", throughput.markdown),
        "latency": ("Sampling latency and file sizes", latency.markdown),
        "memory": ("Peak memory", memory.markdown),
        "quality": ("Quality at equal epochs", quality.markdown),
        "real_size": ("At real size: 28x28 and 64x64x3", real_size.markdown),
    }
    for key, (title, fn) in renderers.items():
        if key in results:
            lines += ["", f"## {title}", "", fn(results[key])]
    if "quality" in results and results["quality"].get("plot"):
        lines += ["", f"![log P(X) estimates vs K]({os.path.basename(results['quality']['plot'])})"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python -m benchmarks.run_all --quick --only throughput",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run of everything")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these parts")
    parser.add_argument(
        "--mnist", help="local MNIST (.npz or IDX folder) for the quality and real-size tables"
    )
    parser.add_argument("--out", help="results folder (default benchmarks/results/)")
    args = parser.parse_args(argv)
    # Only a full run of every part replaces the committed results; a partial or quick one
    # would overwrite them with a subset.
    out_dir = args.out or (
        tempfile.mkdtemp(prefix="keras-vae-bench-")
        if args.quick or args.only
        else common.RESULTS_DIR
    )
    sections = args.only or SECTIONS
    started = time.perf_counter()
    results = {"machine": common.machine_info(), "quick": args.quick}
    print(f"Benchmarking on {common.machine_line(results['machine'])}", flush=True)
    timings = results["section_seconds"] = {}
    mark = time.perf_counter()

    def lap(name):
        nonlocal mark
        timings[name] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()

    if "throughput" in sections:
        results["throughput"] = throughput.run(quick=args.quick)
        lap("throughput")
    # The latency run's exports feed the memory run's TFLite sampler, then are removed.
    with tempfile.TemporaryDirectory(prefix="keras-vae-bench-export-") as export_dir:
        if "latency" in sections:
            results["latency"] = latency.run(quick=args.quick, keep_dir=export_dir)
            lap("latency")
        if "memory" in sections:
            exported = results.get("latency", {}).get("exported", {})
            tflite = {arch: paths["tflite_float32"] for arch, paths in exported.items()}
            results["memory"] = memory.run(quick=args.quick, tflite_paths=tflite)
            lap("memory")
    if "quality" in sections:
        results["quality"] = quality.run(
            quick=args.quick, mnist=args.mnist, plot_path=os.path.join(out_dir, "log_px_vs_k.png")
        )
        lap("quality")
    if "real_size" in sections:
        results["real_size"] = real_size.run(quick=args.quick, mnist=args.mnist)
        results["real_size"]["machine"] = results["machine"]
        real_size.write(results["real_size"], out_dir, echo=False)
        lap("real_size")
    results["seconds"] = time.perf_counter() - started
    results["targets"] = targets(results)
    text = render(results)
    common.write_json(os.path.join(out_dir, "latest.json"), results)
    atomic_write_text(os.path.join(out_dir, "latest.md"), text)
    print(text)
    print(f"Wrote {out_dir}/latest.json, latest.md and the plot (and real_size.* if run).")


if __name__ == "__main__":
    main()
