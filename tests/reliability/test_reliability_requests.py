"""Bad requests to the exported model: each a clear error from the signature, never a crash.

What the SavedModel answers (the same as TF Serving, which runs the same graph):
- `x` of the wrong shape or rank, `z` of the wrong width: InvalidArgumentError "x must have
  shape (batch, ...)" from an in-graph check (a loaded signature does not check shapes itself).
- the wrong dtype (int32, float64 tensors): InvalidArgumentError "expected to be a float tensor".
- `sample` with num_samples < 1 or above the cap fixed at export: InvalidArgumentError
  "num_samples must be between 1 and <max_samples>".
- NaN or inf anywhere in `x` (serving_default, encode, log_likelihood): InvalidArgumentError
  "inputs contain NaN or inf" for the whole request; pixels outside [0, 1] for a Bernoulli
  model: InvalidArgumentError "needs pixels in [0, 1]".
- NaN in `z` (decode): defined as NaN out in those rows only; other rows are unaffected.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import reliability_helpers as helpers
import tensorflow as tf

from keras_vae.export import DEFAULT_MAX_BATCH

InvalidArgument = tf.errors.InvalidArgumentError


@pytest.fixture(scope="module")
def signatures():
    return helpers.loaded_saved_model().signatures


@pytest.fixture(scope="module")
def x():
    return tf.constant(helpers.digits()[:4])


@pytest.mark.parametrize("name", ["serving_default", "encode", "log_likelihood"])
@pytest.mark.parametrize(
    "shape", [(4, 8, 8), (4, 16, 16, 1), (4, 8, 8, 3), (4, 64), (8, 8, 1)], ids=str
)
def test_wrong_input_shape_is_refused(signatures, name, shape):
    with pytest.raises(InvalidArgument, match=r"x must have shape \(batch, 8, 8, 1\)"):
        signatures[name](x=tf.zeros(shape))


def test_wrong_latent_width_is_refused(signatures):
    with pytest.raises(InvalidArgument, match=r"z must have shape \(batch, 2\)"):
        signatures["decode"](z=tf.zeros((3, 5)))


@pytest.mark.parametrize("dtype", [tf.int32, tf.float64, tf.uint8, tf.float16])
def test_wrong_input_dtype_is_refused(signatures, dtype):
    with pytest.raises(InvalidArgument, match="expected to be a float tensor"):
        signatures["serving_default"](x=tf.zeros((2, 8, 8, 1), dtype))
    with pytest.raises(InvalidArgument, match="expected to be a float tensor"):
        signatures["decode"](z=tf.zeros((2, 2), dtype))


@pytest.mark.parametrize("dtype", [tf.int64, tf.float32])
def test_wrong_sample_count_dtype_is_refused(signatures, dtype):
    with pytest.raises(InvalidArgument, match="expected to be a int32 tensor"):
        signatures["sample"](num_samples=tf.constant(3, dtype), seed=tf.constant(0))


def test_missing_or_unknown_input_names_are_refused(signatures, x):
    with pytest.raises(TypeError, match="missing a required argument: 'seed'"):
        signatures["sample"](num_samples=tf.constant(3))
    with pytest.raises(TypeError):
        signatures["serving_default"](images=x)


@pytest.mark.parametrize("count", [0, -1, -(2**31), helpers.MAX_SAMPLES + 1, 2**31 - 1])
def test_sample_count_out_of_range_is_refused(signatures, count):
    with pytest.raises(InvalidArgument, match=f"between 1 and {helpers.MAX_SAMPLES}"):
        signatures["sample"](num_samples=tf.constant(count, tf.int32), seed=tf.constant(0))


def test_sample_count_at_the_cap_works(signatures):
    out = signatures["sample"](num_samples=tf.constant(helpers.MAX_SAMPLES), seed=tf.constant(3))
    assert out["x"].shape == (helpers.MAX_SAMPLES, 8, 8, 1)
    assert np.isfinite(out["x"].numpy()).all()


@pytest.mark.parametrize("name", ["serving_default", "encode", "log_likelihood"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(signatures, x, name, bad):
    values = x.numpy().copy()
    values[1, 3, 4, 0] = bad  # one bad pixel in one example refuses the whole request
    with pytest.raises(InvalidArgument, match="inputs contain NaN or inf"):
        signatures[name](x=tf.constant(values))


def test_pixels_outside_unit_interval_are_refused(signatures, x):
    with pytest.raises(InvalidArgument, match=r"needs pixels in \[0, 1\]"):
        signatures["serving_default"](x=x * 255.0)
    with pytest.raises(InvalidArgument, match=r"needs pixels in \[0, 1\]"):
        signatures["encode"](x=x - 0.5)


def test_nan_latents_are_refused(signatures):
    z = np.array([[np.nan, 0.0], [0.5, -0.5], [np.inf, 1.0]], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="latents contain NaN or inf"):
        signatures["decode"](z=tf.constant(z))
    finite = signatures["decode"](z=tf.constant(z[1:2]))["x"].numpy()
    np.testing.assert_allclose(finite, helpers.tiny_vae().decode(z[1:2]).numpy(), atol=1e-6)


_NAN_DECODE = """
import json, sys
import numpy as np
import tensorflow as tf
import keras_vae
vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, arch="conv", filters=(4, 8), seed=0)
z = np.array([[np.nan, 0.0], [0.5, -0.5], [np.inf, 1.0]], np.float32)
refused = []
for decode in (vae.decode, tf.function(vae.decode)):
    try:
        decode(z)
        refused.append(False)
    except tf.errors.InvalidArgumentError as e:
        refused.append("latents contain NaN or inf" in e.message)
# Without assertions (as in LiteRT), in a graph where Grappler fuses MatMul/Conv + BiasAdd + ReLU
# into oneDNN kernels: NaN rows still.
out = tf.function(vae._decode_mean)(z).numpy()
print(json.dumps({"refused": refused, "nan_rows": [bool(np.isnan(row).all()) for row in out]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_nan_latents_fail_the_same_with_onednn_on_and_off(onednn):
    # oneDNN's ReLU maps NaN to 0 on AVX-512 CPUs; the promise must not depend on the kernels.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", _NAN_DECODE], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"refused": [True, True], "nan_rows": [True, False, True]}


def test_empty_batch_gives_empty_outputs(signatures):
    empty = tf.zeros((0, 8, 8, 1))
    assert signatures["serving_default"](x=empty)["reconstruction"].shape == (0, 8, 8, 1)
    assert signatures["log_likelihood"](x=empty)["log_likelihood"].shape == (0,)


# ------------------------------------------------------------------------------------------------
# The TFLite model: LiteRT has no assertion op, so the graph itself must keep requests bounded.

_LITERT_SAMPLE = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("sample")
try:
    out = runner(num_samples=np.array(int(sys.argv[2]), np.int32), seed=np.array(0, np.int32))
    print(json.dumps({"rows": int(out["x"].shape[0])}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"""


@pytest.mark.parametrize("count", [-1, helpers.MAX_SAMPLES + 1])
def test_tflite_sample_count_out_of_range_neither_crashes_nor_exceeds_the_cap(count):
    path = helpers.tflite_path()
    with open(path.replace(".tflite", ".json"), encoding="utf-8") as f:
        assert json.load(f)["max_samples"] == helpers.MAX_SAMPLES
    proc = helpers.run_python(["-c", _LITERT_SAMPLE, path, str(count)], timeout=120)
    # A negative return code is a signal: the interpreter crashed (SIGSEGV) on the request.
    assert proc.returncode == 0, f"LiteRT died with {proc.returncode} on num_samples={count}"
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    if "rows" in answer:
        assert 0 <= answer["rows"] <= helpers.MAX_SAMPLES, answer
    else:
        assert "num_samples" in answer["error"], answer


@pytest.mark.parametrize("shape", [(DEFAULT_MAX_BATCH + 1, 2), (10**6, 2), (4, 2, 1), (4, 3)])
def test_tflite_decode_refuses_a_batch_above_the_cap_or_a_wrong_shape(shape):
    # No assertion op in LiteRT: the export's reshape refuses these before the decoder runs
    # (a million latents were once decoded until the process passed 12 GB).
    from ai_edge_litert.interpreter import Interpreter

    path = helpers.tflite_path()
    with open(path.replace(".tflite", ".json"), encoding="utf-8") as f:
        assert json.load(f)["max_batch"] == DEFAULT_MAX_BATCH
    decode = Interpreter(model_path=path).get_signature_runner("decode")
    with pytest.raises(RuntimeError, match="RESHAPE"):
        decode(z=np.zeros(shape, np.float32))
    assert decode(z=np.zeros((DEFAULT_MAX_BATCH, 2), np.float32))["x"].shape[0] == DEFAULT_MAX_BATCH
