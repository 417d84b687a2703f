"""End to end at real sizes: 28x28 digits and 64x64 colour photographs, in bounded memory.

Each main job (train, evaluate, pictures, SavedModel and TFLite export) runs in its own process,
which reports its peak RSS; the exports are then served the way users serve them: the
SavedModel in a process that imports only TensorFlow, the `.tflite` with LiteRT.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

CEILING_MB = 3 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MAIN_JOB = """
import json, sys
from benchmarks.memory import peak_rss_mib
from keras_vae.training.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_mb": peak_rss_mib()}))
"""


def _run_python(code, *args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout, json.loads(out.stdout.strip().splitlines()[-1])


def _main_job(name, tmp_path_factory):
    """`keras-vae-train --data NAME --arch conv` for 2 epochs on 400 examples, export included."""
    run_dir = str(tmp_path_factory.mktemp(name) / "run")
    argv = ["--data", name, "--arch", "conv", "--epochs", "2", "--limit", "400"]
    log, result = _run_python(_MAIN_JOB, *argv, "--run-dir", run_dir, "--verbose", "2")
    return name, run_dir, log, result


@pytest.fixture(scope="module")
def digits28_job(tmp_path_factory):
    return _main_job("digits28", tmp_path_factory)


@pytest.fixture(scope="module")
def photos64_job(tmp_path_factory):
    return _main_job("photos64", tmp_path_factory)


JOBS = pytest.mark.parametrize("job", ["digits28_job", "photos64_job"])


@pytest.mark.slow
@JOBS
def test_main_job_completes_under_the_memory_ceiling(job, request):
    name, run_dir, log, result = request.getfixturevalue(job)
    assert result["code"] == 0
    assert result["peak_mb"] < CEILING_MB, result
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        held_out = json.load(f)["held_out"]
    # The evaluation's plan is recorded: 2 epochs x 400 training examples allow 800 decodes;
    # every held-out example is kept (fewer than 500) and K shrinks to fit.
    n = held_out["num_examples"]
    assert held_out["iwae_examples"] == n and held_out["iwae_samples"] == 800 // n
    assert np.isfinite(held_out["iwae_log_likelihood"])
    # Progress of the evaluation, as plain lines (stdout is not a terminal here).
    assert f"IWAE evaluation (K={800 // n}): {n}/{n} examples (100%)" in log
    for picture in ("samples.png", "reconstructions.png"):
        assert os.path.getsize(os.path.join(run_dir, picture)) > 1000


@pytest.mark.slow
@JOBS
def test_exported_tflite_samples_and_decodes_like_keras(job, request):
    import keras

    import keras_vae  # noqa: F401 - registers the VAE for loading

    name, run_dir, _, _ = request.getfixturevalue(job)
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    folder = os.path.join(run_dir, "export", "tflite")
    (path,) = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tflite")]
    interpreter = Interpreter(model_path=path)
    sample = interpreter.get_signature_runner("sample")
    out = sample(num_samples=np.array(6, np.int32), seed=np.array(3, np.int32))
    assert out["x"].shape == (6, *model.data_shape)
    decode = interpreter.get_signature_runner("decode")
    z = np.random.default_rng(0).standard_normal((5, model.latent_dim)).astype("float32")
    np.testing.assert_allclose(decode(z=z)["x"], model.decode(z).numpy(), atol=1e-4)


_SERVE = """
import json, sys
from benchmarks.memory import peak_rss_mib  # VmHWM: this process's own peak
# As a TF Serving process: none of these can be imported (`import tensorflow` tries keras and
# tolerates the ImportError).
for name in ("keras", "tf_keras", "keras_vae", "tensorflow_probability"):
    sys.modules[name] = None
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
meta = json.load(open(sys.argv[1] + "/assets.extra/keras_vae.json"))
fn = served.signatures["log_likelihood"]
shape = meta["data_shape"]
x = (np.random.default_rng(0).random((meta["max_batch"], *shape)) < 0.3).astype("float32")
scores = fn(x=tf.constant(x))["log_likelihood"].numpy()
peak = peak_rss_mib()
try:
    fn(x=tf.constant(np.concatenate([x, x[:1]])))
    refused = ""
except tf.errors.InvalidArgumentError as e:
    refused = e.message
print(json.dumps({"rows": len(scores), "finite": bool(np.isfinite(scores).all()),
                  "peak_mb": peak, "max_batch": meta["max_batch"], "refused": refused,
                  "modules": sorted(m for m in sys.modules if sys.modules[m] and m.split(".")[0]
                                    in ("keras", "keras_vae", "tensorflow_probability"))}))
"""


@pytest.mark.slow
def test_served_log_likelihood_of_the_largest_batch_stays_under_the_ceiling(digits28_job):
    _, run_dir, _, _ = digits28_job
    version = os.path.join(run_dir, "export", "vae", "1")
    _, result = _run_python(_SERVE, version)
    assert result["modules"] == []  # TensorFlow alone serves it, as TF Serving would
    assert result["rows"] == result["max_batch"] == 256 and result["finite"]
    assert result["peak_mb"] < CEILING_MB, result
    assert "at most 256 examples per request" in result["refused"]
