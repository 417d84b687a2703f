"""Mixed precision: the policy `auto` picks from what a processor reports, training in bfloat16,
and a bf16-trained model that saves, resumes and exports in float32 like any other."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import precision
from keras_vae.training import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZEN3 = {"avx2", "fma", "avx512f"}  # AVX-512 without bf16
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}


@pytest.mark.parametrize(
    "requested, flags, gpus, expected",
    [
        ("auto", ZEN3, [], "float32"),
        ("auto", SAPPHIRE_RAPIDS, [], "mixed_bfloat16"),
        ("auto", {"avx512_bf16"}, [], "mixed_bfloat16"),  # AMD Zen 4
        ("auto", set(), [], "float32"),  # /proc/cpuinfo unreadable: float32 when in doubt
        ("auto", ZEN3, [(8, 0)], "mixed_bfloat16"),  # an A100: the GPU decides, not the CPU
        ("auto", SAPPHIRE_RAPIDS, [(7, 0)], "float32"),  # a V100 has no bf16
        ("auto", SAPPHIRE_RAPIDS, [(9, 0), None], "float32"),  # one GPU of unknown capability
        ("float32", SAPPHIRE_RAPIDS, [(9, 0)], "float32"),
        ("bfloat16", ZEN3, [], "mixed_bfloat16"),
        ("float16", ZEN3, [], "mixed_float16"),
    ],
)
def test_auto_resolves_from_the_cpu_flags_and_the_gpus(requested, flags, gpus, expected):
    policy, reason = precision.resolve_policy(requested, flags, gpus)
    assert policy == expected
    assert reason.startswith("auto:" if requested == "auto" else requested)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()
    with pytest.raises(ValueError, match="Unknown precision 'bf16'"):
        precision.resolve_policy("bf16")


def _fit(policy, x_train, x_test, epochs=12):
    with precision.policy_scope(policy):
        keras.utils.set_random_seed(0)
        vae = keras_vae.build_vae((8, 8, 1), latent_dim=4, hidden_units=(64,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    vae.fit(x_train, epochs=epochs, batch_size=64, verbose=0)
    terms = precision.as_float32(vae).elbo_terms(x_test, np.zeros((len(x_test), 4), "float32"))
    return vae, float(np.mean(terms["reconstruction"] + terms["kl"]))


def test_bfloat16_training_learns_like_float32_with_float32_numbers(binary_digits):
    x_train, x_test = binary_digits
    assert keras.mixed_precision.global_policy().name == "float32"
    f32, f32_nelbo = _fit("float32", x_train, x_test)
    bf16, bf16_nelbo = _fit("mixed_bfloat16", x_train, x_test)
    assert keras.mixed_precision.global_policy().name == "float32"  # the scope restored it
    assert bf16.dtype_policy.name == "mixed_bfloat16"
    assert bf16.decoder.layers[-1].compute_dtype == "bfloat16"
    untrained = _fit("float32", x_train, x_test, epochs=0)[1]
    # Both learn (untrained ~44 nats) and end within a nat of each other (measured ~0.3).
    assert f32_nelbo < untrained - 10 and bf16_nelbo < untrained - 10
    assert abs(bf16_nelbo - f32_nelbo) < 1.0, (bf16_nelbo, f32_nelbo)
    # The posterior, the KL, log P(X|z) and the estimates stay float32 under the policy.
    terms = bf16.elbo_terms(x_test[:8], np.zeros((8, 4), "float32"))
    assert {t.dtype for t in terms.values()} == {tf.float32}
    assert bf16.log_likelihood(x_test[:4], 8, seed=0).dtype == tf.float32
    assert bf16.posterior(x_test[:4]).loc.dtype == tf.float32
    # The float32 copy has the same weights and gives the bf16 model's outputs to bf16 rounding.
    copy = precision.as_float32(bf16)
    assert (
        copy.dtype_policy.name == "float32" and copy.decoder.layers[-1].compute_dtype == "float32"
    )
    np.testing.assert_allclose(
        copy.reconstruct(x_test[:8]), np.asarray(bf16.reconstruct(x_test[:8]), "float32"), atol=0.03
    )
    assert precision.as_float32(f32) is f32


@pytest.mark.slow
def test_a_bf16_run_resumes_after_sigkill_and_exports_float32(tmp_path, capsys):
    quick = ["--data", "digits", "--limit", "256", "--epochs", "3", "--latent-dim", "2",
             "--iwae-samples", "4", "--precision", "bfloat16", "--verbose", "0"]  # fmt: skip
    whole = str(tmp_path / "whole")
    assert cli.main([*quick, "--run-dir", whole]) == 0
    report = json.load(open(os.path.join(whole, "metrics.json")))
    assert report["precision"]["policy"] == "mixed_bfloat16"

    split = str(tmp_path / "split")
    command = [sys.executable, os.path.join(ROOT, "tests", "sigkill_after_epoch.py"), "0",
               *quick, "--run-dir", split, "--no-export"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT}
    crashed = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert cli.main([*quick, "--run-dir", split, "--no-export"]) == 0
    a = keras.models.load_model(os.path.join(whole, "model.keras"))
    b = keras.models.load_model(os.path.join(split, "model.keras"))
    assert a.dtype_policy.name == b.dtype_policy.name == "mixed_bfloat16"
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-5)

    # The export is float32: TensorFlow and LiteRT give the float32 model's decode.
    reference = precision.as_float32(a)
    z = np.random.default_rng(0).standard_normal((5, 2)).astype("float32")
    expected = reference.decode(z).numpy()
    decode = tf.saved_model.load(os.path.join(whole, "export", "vae", "1")).signatures["decode"]
    assert decode.structured_outputs["x"].dtype == tf.float32
    np.testing.assert_allclose(decode(z=z)["x"], expected, atol=1e-5)
    from ai_edge_litert.interpreter import Interpreter

    tflite = os.path.join(whole, "export", "tflite", "vae-v1-float32.tflite")
    runner = Interpreter(model_path=tflite).get_signature_runner("decode")
    np.testing.assert_allclose(runner(z=z)["x"], expected, atol=1e-5)
