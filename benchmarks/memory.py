"""Peak memory (resident set size) of training and of the TFLite sampler, each in its own process.

Each measurement starts a fresh Python process that does one job and prints its own peak RSS
(VmHWM from /proc/self/status on Linux; `ru_maxrss` elsewhere), so nothing loaded by another job
or by the parent counts. The
baselines (an interpreter that only imports TensorFlow and keras-vae, or only LiteRT) show how
much of the peak is the libraries and how much the work.

Run on its own: `python -m benchmarks.memory --tflite PATH.tflite [--quick]`.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

# TensorFlow is imported inside the jobs only: the "tflite" jobs must not load it.

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib():
    # On Linux ru_maxrss survives exec: a child started from a large parent reports the parent's
    # peak. VmHWM in /proc/self/status is this program's own high-water mark.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _job_import_tf(args):
    import keras_vae  # noqa: F401


def _job_train(args):
    import keras

    import keras_vae
    from benchmarks import common

    loader = common.load_digits if args.arch == "mlp" else common.load_digits28
    x_train, _ = loader()
    model = keras_vae.build_vae(
        x_train.shape[1:], latent_dim=4 if args.arch == "mlp" else 2, arch=args.arch, seed=0
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=args.epochs, batch_size=128, verbose=0)


def _job_import_litert(args):
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401


def _job_tflite_sample(args):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=args.tflite, num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("sample")
    for i in range(args.calls):
        runner(num_samples=np.array(args.batch, np.int32), seed=np.array(i, np.int32))


JOBS = {
    "import-tf": _job_import_tf,
    "train": _job_train,
    "import-litert": _job_import_litert,
    "tflite-sample": _job_tflite_sample,
}


def measure(job, module="benchmarks.memory", **kwargs):
    """Runs `job` of `module` (`python -m module --job job`) in a fresh process; returns its
    peak RSS in MiB."""
    cmd = [sys.executable, "-m", module, "--job", job]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory job {job!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def run(quick=False, tflite_paths=None, archs=("mlp", "conv")):
    """Peak RSS of each job.

    Args:
        quick: bool. One training epoch instead of two.
        tflite_paths: dict arch -> float32 `.tflite` with a `sample` signature (the latency
            benchmark's exports), or None to skip the sampler rows.
        archs: which models to train.
    """
    epochs = 1 if quick else 2
    rows = [{"job": "python + import keras_vae (TF, Keras, TFP)", "mib": measure("import-tf")}]
    for arch in archs:
        print(f"memory: training {arch} in a subprocess", flush=True)
        rows.append(
            {
                "job": f"train {arch} ({epochs} epochs, batch 128)",
                "mib": measure("train", arch=arch, epochs=epochs),
            }
        )
    rows.append({"job": "python + import ai_edge_litert", "mib": measure("import-litert")})
    for arch, path in (tflite_paths or {}).items():
        print(f"memory: TFLite {arch} sampler in a subprocess", flush=True)
        for batch in (1, 64):
            rows.append(
                {
                    "job": f"TFLite float32 {arch} sample (batch {batch}, 100 calls)",
                    "mib": measure("tflite-sample", tflite=path, batch=batch, calls=100),
                }
            )
    if not tflite_paths:
        rows.append({"job": "TFLite sampler", "mib": None, "skipped": "no .tflite file given"})
    return {"rows": rows}


def markdown(result):
    from benchmarks import common

    return common.markdown_table(
        ["process", "peak RSS (MiB)"],
        [
            [r["job"], common.fmt(r["mib"]) if r["mib"] else r.get("skipped", "-")]
            for r in result["rows"]
        ],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--tflite", help="a .tflite file with a `sample` signature")
    parser.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
    parser.add_argument("--arch", default="mlp", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        JOBS[args.job](args)
        print(json.dumps({"job": args.job, "peak_rss_mib": peak_rss_mib()}))
        return
    paths = {"given": args.tflite} if args.tflite else None
    print(markdown(run(quick=args.quick, tflite_paths=paths)))


if __name__ == "__main__":
    main()
