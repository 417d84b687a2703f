"""Sampling latency: decoding z into images through every serving path, and the file sizes.

Paths, each at batch 1 and batch 64, p50 and p99 over repeated calls after warm-up:
eager `VAE.decode`, Keras `predict` (the decoder's), the SavedModel `decode` signature loaded
with `tf.saved_model.load`, and the `.tflite` `decode` signature (float32, float16, dynamic-range
int8, full int8) run by LiteRT's `Interpreter` through its signature runner, as an app would.

Run on its own: `python -m benchmarks.latency [--quick]`.
"""

import os
import tempfile
import traceback

import keras
import numpy as np
import tensorflow as tf

import keras_vae
from benchmarks import common

BATCHES = (1, 64)
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
CASES = {
    "mlp": {"data": "digits", "latent_dim": 4},
    "conv": {"data": "digits28", "latent_dim": 2},
}


def train_small(arch, epochs=2, seed=0):
    """A briefly trained keras-vae model (weights with realistic ranges for quantization)."""
    loader = common.load_digits if CASES[arch]["data"] == "digits" else common.load_digits28
    x_train, _ = loader()
    keras.utils.set_random_seed(seed)
    model = keras_vae.build_vae(
        x_train.shape[1:], latent_dim=CASES[arch]["latent_dim"], arch=arch, seed=seed
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=epochs, batch_size=128, verbose=0)
    return model, x_train


def _dir_size(path):
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


def export_model(model, out_dir, representative_data):
    """Exports through the `export` package; returns (paths, None) or (None, reason)."""
    try:
        from keras_vae import export
    except ImportError as e:
        return None, f"the export package is not importable ({e})"
    try:
        paths = export.export_all(
            model,
            out_dir,
            quantizations=QUANTIZATIONS,
            representative_data=representative_data[:256],
        )
    except Exception as e:  # noqa: BLE001 - report any export failure as a skipped row
        traceback.print_exc()
        return None, f"export failed: {type(e).__name__}: {e}"
    return paths, None


def _saved_model_decoder(path):
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["decode"]
    (input_name,) = signature.structured_input_signature[1].keys()

    def decode(z):
        return next(iter(signature(**{input_name: tf.constant(z)}).values())).numpy()

    # Keep the loaded object alive as long as the function is.
    decode.loaded = loaded
    return decode


def _tflite_decoder(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("decode")
    (input_name,) = runner.get_input_details().keys()

    def decode(z):
        return next(iter(runner(**{input_name: z}).values()))

    decode.interpreter = interpreter
    return decode


def _tflite_sampler(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("sample")
    seed = np.array(-1, np.int32)  # a fresh draw per call, as an app sampling would

    def sample(z):
        return runner(num_samples=np.array(len(z), np.int32), seed=seed)["x"]

    sample.interpreter = interpreter
    return sample


def decoders(model, paths):
    """name -> function z (numpy) -> images (numpy), for every available path.

    The `sample` rows (noise drawn inside the model) use only the batch size of `z`.
    """
    out = {
        "eager decode": lambda z: model.decode(z).numpy(),
        "Keras predict": lambda z: model.decoder.predict(z, verbose=0),
    }
    if paths:
        out["SavedModel decode"] = _saved_model_decoder(paths["saved_model"])
        for q in QUANTIZATIONS:
            out[f"TFLite {q}"] = _tflite_decoder(paths[f"tflite_{q}"])
        out["TFLite float32 sample (noise inside)"] = _tflite_sampler(paths["tflite_float32"])
    return out


# File sizes as the decoder grows: the two workloads above and MNIST-size MLPs. Not trained: a
# file's size depends on the layers' shapes, as long as no weight is a constant the converter
# can fold (a fresh model's zero biases are dropped), so every weight is drawn at random.
SIZE_CASES = {
    "mlp 8x8, 256-128, latent 4": {"shape": (8, 8, 1), "arch": "mlp", "latent_dim": 4},
    "conv 28x28, latent 2": {"shape": (28, 28, 1), "arch": "conv", "latent_dim": 2},
    "mlp 28x28, 256-128, latent 2": {"shape": (28, 28, 1), "arch": "mlp", "latent_dim": 2},
    "mlp 28x28, 512-256, latent 16": {
        "shape": (28, 28, 1),
        "arch": "mlp",
        "latent_dim": 16,
        "hidden_units": (512, 256),
    },
}
SIZE_QUANTIZATIONS = ("float32", "dynamic", "int8")


def file_parts(path):
    """`(constant bytes, other bytes)` of a `.tflite`: weights and biases vs graph and metadata."""
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        content = f.read()
    model = schema.Model.GetRootAsModel(content, 0)
    constants = sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))
    return constants, len(content) - constants


def size_scaling(quick=False):
    """float32, dynamic and int8 `.tflite` sizes of decoders from 65k to 700k weights.

    Each file is split into constants (weights, biases) and the rest (the two signatures'
    graphs, the sampler's integer hash, names, metadata), which does not grow with the model.
    """
    from keras_vae import export

    rows = []
    cases = list(SIZE_CASES.items())[: 3 if quick else None]
    for name, case in cases:
        print(f"latency: sizes: {name}", flush=True)
        kwargs = {"hidden_units": case["hidden_units"]} if "hidden_units" in case else {}
        model = keras_vae.build_vae(
            case["shape"], latent_dim=case["latent_dim"], arch=case["arch"], seed=0, **kwargs
        )
        rng = np.random.default_rng(0)
        for weight in model.weights:
            weight.assign(0.05 * rng.standard_normal(weight.shape).astype("float32"))
        with tempfile.TemporaryDirectory(prefix="kvae-size-") as out:
            paths = export.export_all(model, out, quantizations=SIZE_QUANTIZATIONS)
            files = {q: file_parts(paths[f"tflite_{q}"]) for q in SIZE_QUANTIZATIONS}
        float32 = sum(files["float32"])
        rows.append(
            {
                "model": name,
                "decoder_weights": int(model.decoder.count_params()),
                **{f"{q}_bytes": sum(files[q]) for q in SIZE_QUANTIZATIONS},
                **{f"{q}_share": sum(files[q]) / float32 for q in ("dynamic", "int8")},
                "int8_constant_bytes": files["int8"][0],
                "int8_other_bytes": files["int8"][1],
            }
        )
    return rows


def run(quick=False, archs=("mlp", "conv"), keep_dir=None):
    """Measures decode latency per path and batch; returns rows, sizes and skip reasons.

    `keep_dir` (a folder) keeps the exported files there (the memory benchmark reuses the
    float32 `.tflite`); otherwise they go to a temporary folder that is removed.
    """
    repeats = 30 if quick else 300
    budget_s = 0.3 if quick else 0.6  # per row: slow paths get fewer calls (at least 20)
    rows, sizes, skipped, exported = [], {}, {}, {}
    for arch in archs:
        print(f"latency: {arch}: training a small model and exporting it", flush=True)
        model, x_train = train_small(arch, epochs=1 if quick else 2)
        out_dir = os.path.join(keep_dir, arch) if keep_dir else tempfile.mkdtemp(prefix="kvae-lat-")
        paths, reason = export_model(model, out_dir, x_train)
        if reason:
            print(f"latency: {arch}: skipping the SavedModel and TFLite rows: {reason}", flush=True)
            skipped[arch] = reason
        else:
            exported[arch] = paths
            sizes[arch] = {"SavedModel (folder)": _dir_size(paths["saved_model"])}
            for q in QUANTIZATIONS:
                sizes[arch][f"TFLite {q}"] = os.path.getsize(paths[f"tflite_{q}"])
        rng = np.random.default_rng(0)
        for name, decode in decoders(model, paths).items():
            for batch in BATCHES:
                z = rng.standard_normal((batch, model.latent_dim)).astype("float32")
                seconds = common.time_calls(
                    lambda d=decode, z=z: d(z), repeats, warmup=5, budget_s=budget_s
                )
                stats = common.summarize(seconds)
                rows.append(
                    {
                        "arch": arch,
                        "path": name,
                        "batch": batch,
                        "p50_ms": 1e3 * stats["p50"],
                        "p99_ms": 1e3 * stats["p99"],
                        "calls": len(seconds),
                    }
                )
    result = {"rows": rows, "sizes_bytes": sizes, "skipped": skipped, "exported": exported}
    if not skipped:
        result["size_scaling"] = size_scaling(quick)
    result["targets"] = _targets(result)
    return result


def _targets(result):
    out = {}
    by_key = {(r["arch"], r["path"], r["batch"]): r for r in result["rows"]}
    for arch in {r["arch"] for r in result["rows"]}:
        predict = by_key.get((arch, "Keras predict", 1))
        tfl = by_key.get((arch, "TFLite float32", 1))
        entry = {}
        if predict and tfl:
            entry["tflite_b1_speedup_vs_predict"] = predict["p50_ms"] / tfl["p50_ms"]
        sizes = result["sizes_bytes"].get(arch)
        if sizes:
            entry["int8_size_share"] = sizes["TFLite int8"] / sizes["TFLite float32"]
            entry["dynamic_size_share"] = sizes["TFLite dynamic"] / sizes["TFLite float32"]
        out[arch] = entry
    return out


def markdown(result):
    rows = [
        [
            r["arch"],
            r["path"],
            r["batch"],
            common.fmt(r["p50_ms"]),
            common.fmt(r["p99_ms"]),
            r["calls"],
        ]
        for r in result["rows"]
    ]
    lines = [
        common.markdown_table(["model", "path", "batch", "p50 ms", "p99 ms", "calls"], rows),
        "",
    ]
    size_rows = [
        [arch, name, f"{size / 1024:,.1f}", f"{100 * size / sizes['TFLite float32']:.0f}%"]
        for arch, sizes in result["sizes_bytes"].items()
        for name, size in sizes.items()
    ]
    if size_rows:
        lines += [
            common.markdown_table(["model", "file", "KiB", "of TFLite float32"], size_rows),
            "",
        ]
    if result.get("size_scaling"):
        lines += [
            "File sizes as the decoder grows (models of these shapes with random weights; constants are "
            "weights and biases, the rest is the graph of both signatures and metadata):",
            "",
            common.markdown_table(
                [
                    "model",
                    "decoder weights",
                    "float32 KiB",
                    "dynamic KiB",
                    "int8 KiB",
                    "int8: constants KiB",
                    "int8: rest KiB",
                ],
                [
                    [
                        r["model"],
                        f"{r['decoder_weights']:,}",
                        f"{r['float32_bytes'] / 1024:,.1f}",
                        f"{r['dynamic_bytes'] / 1024:,.1f} ({100 * r['dynamic_share']:.0f}%)",
                        f"{r['int8_bytes'] / 1024:,.1f} ({100 * r['int8_share']:.0f}%)",
                        f"{r['int8_constant_bytes'] / 1024:,.1f}",
                        f"{r['int8_other_bytes'] / 1024:,.1f}",
                    ]
                    for r in result["size_scaling"]
                ],
            ),
            "",
        ]
    for arch, entry in result["targets"].items():
        if "tflite_b1_speedup_vs_predict" in entry:
            lines.append(
                f"{arch}: TFLite float32 batch-1 decode p50 is "
                f"{entry['tflite_b1_speedup_vs_predict']:.0f}x faster than Keras predict."
            )
    for arch, reason in result["skipped"].items():
        lines.append(f"{arch}: SavedModel and TFLite rows skipped: {reason}.")
    return "\n".join(lines)


def main(argv=None):
    common.run_per_arch(__doc__, CASES, run, markdown, argv)


if __name__ == "__main__":
    main()
