"""Mixed precision on this machine: float32 and bfloat16 matmul peaks, then training throughput
and held-out NLL for keras-vae in float32, keras-vae `--precision auto` and the reference recipe
(float32), for the MLP and the conv network at 28x28.

    python -m benchmarks.precision                       # offline digits28 (1797 digits, 28x28)
    python -m benchmarks.precision --mnist ../shared/data/mnist-dev
    python -m benchmarks.precision --quick --out /tmp/p   # a smoke run

Each throughput is also given as a share of the matmul peak of its own precision (training
FLOPs per example x examples/s / peak), which says how much of the processor the recipe uses.
Where `auto` resolves to float32 (no native bf16) the bf16 rows say so and equal float32. The
models are measured round-robin in one run (benchmarks/throughput.py's `measure_interleaved`);
the machine may be shared, so read ratios, not absolute rates. Nothing here asserts anything.
"""

import argparse
import os
import sys
import tempfile

if __package__ in (None, ""):  # `python benchmarks/precision.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vae  # noqa: E402
from benchmarks import common, reference, throughput  # noqa: E402
from keras_vae import precision  # noqa: E402

NETWORKS = {"mlp": {"latent_dim": 20, "hidden_units": (400,)}, "conv": {"latent_dim": 16}}
BATCH = 128


def _data(mnist, quick):
    from keras_vae.training.data import binarize_once, load_dataset

    data = load_dataset(mnist or "digits28", seed=0)
    x_train, x_test = data.x_train, binarize_once(data.x_test, 0)
    if quick:
        return x_train[:512], x_test[:64]
    return x_train, x_test[:1000]


def _build(kind, arch, policy, shape):
    network = dict(NETWORKS[arch])
    latent_dim = network.pop("latent_dim")
    with precision.policy_scope(policy):
        keras.utils.set_random_seed(0)
        if kind == "reference":
            model = reference.build_reference(shape, latent_dim, arch=arch, seed=0, **network)
        else:
            model = keras_vae.build_vae(shape, latent_dim, arch=arch, seed=0, **network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=8)
    return model


def _nll(kind, model, x_test, k):
    if kind == "reference":
        return -float(np.mean(reference.reference_log_likelihood(model, x_test, k)))
    return -float(np.mean(precision.as_float32(model).log_likelihood(x_test, k, seed=0)))


def run(mnist=None, quick=False, archs=("mlp", "conv")):
    auto, reason = precision.resolve_policy("auto", precision.cpu_flags(), precision.gpu_devices())
    peaks = {"float32": common.matmul_flops_per_second(repeats=3 if quick else 7)}
    bf16_native = auto == "mixed_bfloat16"
    if bf16_native:
        peaks["mixed_bfloat16"] = common.matmul_flops_per_second(
            repeats=3 if quick else 7, dtype="bfloat16"
        )
    print(f"auto -> {auto} ({reason}); matmul peaks (GFLOP/s): "
          + ", ".join(f"{k} {v['median'] / 1e9:.0f}" for k, v in peaks.items()), flush=True)  # fmt: skip
    x_train, x_test = _data(mnist, quick)
    rows = []
    for arch in archs:
        entries = [("keras-vae float32", "keras-vae", "float32"), ("reference float32",
                   "reference", "float32")]  # fmt: skip
        if bf16_native:
            entries.insert(1, ("keras-vae auto", "keras-vae", auto))
        built = {name: _build(kind, arch, policy, x_train.shape[1:]) for name, kind, policy in
                 entries}  # fmt: skip
        flops = common.training_flops(built["keras-vae float32"].encoder,
                                      built["keras-vae float32"].decoder)  # fmt: skip
        inputs = throughput.fit_inputs(x_train, {"pipeline": "numpy", "batch_size": BATCH})
        repeats = 2 if quick else 5
        rates = throughput.measure_interleaved(
            [(name, built[name], inputs) for name, _, _ in entries], len(x_train), repeats
        )
        # Equal epochs for the NLL: the warm-up and timed epochs count, then the rest up to 10.
        epochs = 1 + repeats if quick else 10
        for model in built.values():
            model.fit(**inputs, epochs=epochs - 1 - repeats, verbose=0)
        k = 10 if quick else 200
        for name, kind, policy in entries:
            rate = rates[name]["median"]
            peak = peaks[policy if policy in peaks else "float32"]["median"]
            rows.append({
                "arch": arch, "model": name, "policy": policy, "examples_per_s": rate,
                "vs_float32": rate / rates["keras-vae float32"]["median"],
                "share_of_peak": flops * rate / peak, "held_out_nll": _nll(kind, built[name],
                x_test, k), "epochs": epochs, "iwae_k": k,
            })  # fmt: skip
            print(f"{arch:4s} {name:18s} {rate:8.0f} ex/s  x{rows[-1]['vs_float32']:.2f}  "
                  f"{100 * rows[-1]['share_of_peak']:.0f}% of its peak  NLL "
                  f"{rows[-1]['held_out_nll']:.2f}", flush=True)  # fmt: skip
    return {"machine": common.machine_info(), "auto": auto, "reason": reason,
            "peaks": {k: v["median"] for k, v in peaks.items()}, "rows": rows}  # fmt: skip


def markdown(result):
    lines = [
        "# Mixed precision",
        "",
        common.machine_line(result["machine"]),
        "",
        f"`--precision auto` here: {result['auto']} ({result['reason']}). Matmul peaks: "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in result["peaks"].items())
        + ".",
        "",
    ]
    headers = ["arch", "model", "policy", "examples/s", "vs float32", "share of peak",
               "held-out NLL (nats)"]  # fmt: skip
    rows = [[r["arch"], r["model"], r["policy"], f"{r['examples_per_s']:.0f}",
             f"{r['vs_float32']:.2f}", f"{100 * r['share_of_peak']:.0f}%",
             f"{r['held_out_nll']:.2f}"] for r in result["rows"]]  # fmt: skip
    lines += [common.markdown_table(headers, rows), ""]
    if result["rows"]:
        r = result["rows"][0]
        lines.append(f"NLL after {r['epochs']} epochs, IWAE K={r['iwae_k']}, one fixed "
                     "binarization of the held-out digits.")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", help="an MNIST folder or file (default: offline digits28)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--out", help="folder for precision.{json,md} (default benchmarks/results)")
    args = parser.parse_args(argv)
    out = args.out or (tempfile.mkdtemp() if args.quick else common.RESULTS_DIR)
    result = run(args.mnist, args.quick)
    common.write_json(os.path.join(out, "precision.json"), result)
    from keras_vae.training.files import atomic_write_text

    atomic_write_text(os.path.join(out, "precision.md"), markdown(result))
    print(f"wrote {out}/precision.json and precision.md")
    return result


if __name__ == "__main__":
    main()
