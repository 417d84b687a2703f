"""Load: calls/s of one loaded SavedModel shared by N threads, and of per-thread LiteRT
interpreters, with every result checked against a single-threaded reference.

The model is the size of training's default (MLP, hidden 256/128, latent 2, 8x8 digits),
trained for one epoch; pass `--saved-model` / `--tflite` to measure your own export instead.
Each thread makes `--calls` calls, round-robin over the signatures; calls/s is the total number
of calls over the wall time from the first to the last. The single-thread row is the same work
on one thread, so the ratio is the speed-up from threads (bounded by the cores).

Run: `python -m benchmarks.load [--threads 8] [--calls 200]`.
"""

import argparse
import os
import tempfile
import threading
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tiny_export(folder):
    import keras

    import keras_vae
    from keras_vae import export
    from keras_vae.training.data import LOADERS

    x = LOADERS["digits"]()["x"]
    keras.utils.set_random_seed(0)
    model = keras_vae.build_vae((8, 8, 1), latent_dim=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, epochs=1, batch_size=64, verbose=0)
    saved = export.export_saved_model(model, folder, name="vae", version=1)
    tflite = export.export_tflite(saved, os.path.join(folder, "vae.tflite"))
    return saved, tflite, x


def _hammer(make_worker_calls, threads, calls):
    """Runs `calls` calls on each of `threads` threads; returns (seconds, mismatches, errors).

    `make_worker_calls(thread)` returns a function `step(i) -> bool` (True when the result
    matched its reference); it runs inside the thread, so per-thread state is built there.
    """
    errors, mismatches = [], [0]
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    go = threading.Event()

    def run(thread):
        try:
            step = make_worker_calls(thread)
            ready.wait()
            go.wait()
            bad = sum(not step(i) for i in range(calls))
            with lock:
                mismatches[0] += bad
        except BaseException as e:  # noqa: BLE001 - reported in the table
            errors.append(repr(e))
            ready.abort()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
    return time.perf_counter() - start, mismatches[0], errors


def saved_model_load(saved_model_dir, x, threads, calls):
    import tensorflow as tf

    sig = tf.saved_model.load(saved_model_dir).signatures
    rng = np.random.default_rng(0)
    z = rng.standard_normal((threads, 1, 2)).astype("float32")
    xs = [x[t * 16 : (t + 1) * 16] for t in range(threads)]

    def calls_for(t):
        return [
            lambda: sig["serving_default"](x=tf.constant(xs[t]))["reconstruction"].numpy(),
            lambda: sig["decode"](z=tf.constant(z[t]))["x"].numpy(),
            lambda: sig["sample"](num_samples=tf.constant(4), seed=tf.constant(t))["x"].numpy(),
        ]

    reference = [[f() for f in calls_for(t)] for t in range(threads)]

    def make(t):
        fns = calls_for(t)
        return lambda i: np.allclose(fns[i % 3](), reference[t][i % 3], atol=1e-5)

    return _hammer(make, threads, calls)


def litert_load(tflite_path, threads, calls):
    from ai_edge_litert.interpreter import Interpreter

    z = np.random.default_rng(0).standard_normal((threads, 1, 2)).astype("float32")

    def calls_for(t):
        interpreter = Interpreter(model_path=tflite_path)  # not thread-safe: one per thread
        decode = interpreter.get_signature_runner("decode")
        sample = interpreter.get_signature_runner("sample")
        return [
            lambda: decode(z=z[t])["x"].copy(),
            lambda: sample(num_samples=np.array(4, np.int32), seed=np.array(t, np.int32))[
                "x"
            ].copy(),
        ]

    reference = [[f() for f in calls_for(t)] for t in range(threads)]

    def make(t):
        fns = calls_for(t)
        return lambda i: np.allclose(fns[i % 2](), reference[t][i % 2], atol=1e-5)

    return _hammer(make, threads, calls)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200, help="calls per thread")
    parser.add_argument("--saved-model", help="a SavedModel version folder (default: tiny one)")
    parser.add_argument("--tflite", help="a .tflite with decode and sample (default: tiny one)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.calls < 1:
        parser.error("--threads and --calls must be >= 1")

    with tempfile.TemporaryDirectory(prefix="keras_vae_load_") as folder:
        saved, tflite, x = _tiny_export(folder)
        saved = args.saved_model or saved
        tflite = args.tflite or tflite
        print(f"{os.cpu_count()} CPU cores; {args.calls} calls per thread")
        print(f"{'target':<34} {'threads':>7} {'calls':>6} {'seconds':>8} {'calls/s':>9} "
              f"{'wrong':>5} {'errors':>6}")  # fmt: skip
        for name, fn, path in (
            ("SavedModel (one, shared)", saved_model_load, saved),
            ("LiteRT (one interpreter/thread)", litert_load, tflite),
        ):
            for threads in sorted({1, args.threads}):
                args_ = (path, x, threads, args.calls) if fn is saved_model_load else (
                    path, threads, args.calls)  # fmt: skip
                seconds, wrong, errors = fn(*args_)
                total = threads * args.calls
                print(
                    f"{name:<34} {threads:>7} {total:>6} {seconds:>8.2f} "
                    f"{total / seconds:>9.0f} {wrong:>5} {len(errors):>6}",
                    flush=True,
                )
                for e in errors[:3]:
                    print(f"  error: {e}")


if __name__ == "__main__":
    main()
