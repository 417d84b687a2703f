"""The benchmark's own machinery: the reference recipe trains, and the FLOP counter counts right.

No timings are asserted anywhere; these only check that the figures the benchmarks print are
computed from a working reference and a correct count.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_vae
from benchmarks import common, reference


def test_forward_flops_of_a_tiny_dense_model_match_the_hand_count():
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(2)(keras.layers.Dense(3, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    # 2 * (5 * 3) + 2 * (3 * 2): biases and activations are not counted.
    assert common.forward_flops(model) == 42
    assert common.training_flops(model) == 3 * 42


def test_conv_flops_count_output_pixels_for_conv_and_input_pixels_for_transpose():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # -> 4x4x4
    outputs = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(h)  # -> 8x8x2
    model = keras.Model(inputs, outputs)
    conv = 2 * (4 * 4) * (3 * 3) * 1 * 4
    transpose = 2 * (4 * 4) * (3 * 3) * 4 * 2
    assert common.forward_flops(model) == conv + transpose


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (8, 8, 1)), ("conv", (28, 28, 1))])
def test_reference_has_the_same_layer_work_as_keras_vae(arch, shape):
    ours = keras_vae.build_vae(shape, latent_dim=2, arch=arch, seed=0)
    ref = reference.build_reference(shape, 2, arch=arch, seed=0)
    assert common.forward_flops(ref.encoder, ref.decoder) == common.forward_flops(
        ours.encoder, ours.decoder
    )
    count = lambda m: m.encoder.count_params() + m.decoder.count_params()  # noqa: E731
    assert count(ref) == count(ours)


@pytest.mark.slow
def test_reference_recipe_trains_with_a_finite_falling_loss():
    x_train, x_test = common.load_digits()
    keras.utils.set_random_seed(0)
    model = reference.build_reference((8, 8, 1), 2, arch="mlp", hidden_units=(32,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x_train[:256], epochs=4, batch_size=64, verbose=0).history["total_loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < history[0]
    # The held-out estimates are finite, and the IWAE bound sits above the one-sample ELBO.
    elbo = np.mean([reference.reference_elbo(model, x_test[:32], seed=s) for s in range(5)])
    iwae = np.mean(reference.reference_log_likelihood(model, x_test[:32], 50, seed=0))
    assert np.isfinite(elbo) and np.isfinite(iwae)
    assert iwae > elbo


@pytest.mark.slow
def test_tflite_file_parts_split_constants_from_the_graph():
    from export_helpers import tflite, vae

    from benchmarks import latency

    for quantize, bytes_per_weight in (("float32", 4), ("int8", 1)):
        path = tflite(quantize)
        constants, rest = latency.file_parts(path)
        assert constants + rest == os.path.getsize(path)
        # Every decoder weight is stored (int8 biases are int32, hence >=), and nothing else
        # big: the rest is the graph, a few KiB.
        assert constants >= bytes_per_weight * vae().decoder.count_params()
        assert constants <= 4 * vae().decoder.count_params() + 4096
        assert 1024 < rest < 64 * 1024


def _in_this_process(jobs):
    """Runs real_size's memory jobs here instead of in fresh processes (a smoke run)."""
    import argparse

    from benchmarks import memory, real_size

    peaks = []
    for job, kwargs in jobs:
        args = {"data": None, "likelihood": None, "epochs": 1, "examples": 1, "k": 1}
        real_size.JOBS[job](argparse.Namespace(**{**args, **kwargs}))
        peaks.append(memory.peak_rss_mib())
    return peaks


def _positive(value):
    return isinstance(value, (int, float)) and np.isfinite(value) and value > 0


@pytest.mark.slow
def test_real_size_quick_run_computes_every_figure(monkeypatch, tmp_path):
    from benchmarks import real_size

    monkeypatch.setattr(real_size, "_measure_all", _in_this_process)
    # The conv model only (the MLP runs the same code); the memory part's processes are the
    # slow test below.
    parts = ("throughput", "quality", "evaluation", "budget")
    result = real_size.run(quick=True, parts=parts, archs=("conv",))
    assert [(r["data"], r["arch"]) for r in result["throughput"]] == [("digits28", "conv")]
    assert [(r["data"], r["arch"]) for r in result["quality"]] == [("digits28", "conv")]
    for row in result["throughput"]:
        assert all(_positive(row[k]) for k in ("keras_vae", "reference", "ratio", "cpu_ratio"))
    for row in result["quality"]:
        for kind in ("keras_vae", "reference"):
            assert all(_positive(row[kind][k]) for k in ("negative_elbo", "iwae_nll"))
    for row in result["evaluation"]:
        assert all(_positive(row[k]) for k in ("train_seconds", "iwae_seconds", "eval_share"))
    assert {r["budget_mib"] for r in result["budget"]} == {16, 256}
    for row in result["budget"]:
        assert all(_positive(row[k]) for k in ("decodes_per_s", "vs_256", "peak_rss_mib"))
    real_size.write(result, str(tmp_path), echo=False)
    text = (tmp_path / "real_size.md").read_text()
    assert "keras-vae IWAE NLL" in text and "vs 256 MiB" in text


@pytest.mark.slow
def test_real_size_memory_jobs_report_a_peak_from_fresh_processes(monkeypatch):
    from benchmarks import real_size

    # One case: three fresh processes prove the measurement; the 64x64x3 jobs' peaks are
    # bounded by tests/test_real_size.py and tests/test_estimators.py.
    monkeypatch.setattr(real_size, "MEMORY_CASES", {"28x28 conv": (None, "bernoulli")})
    rows = real_size.memory_part("digits28", "digits28", quick=True)
    assert {r["job"] for r in rows} == {"train", "evaluate", "export"}
    assert {r["case"] for r in rows} == {"digits28 28x28 conv"}
    assert all(_positive(r["mib"]) for r in rows)


@pytest.mark.slow
def test_recipe_quick_run_computes_every_figure(monkeypatch, tmp_path):
    from benchmarks import recipe

    # The levels the other parts read (IWAE, warm-up) and the time-based cosine schedule; the
    # other levels only change the numbers BASE is built with.
    monkeypatch.setattr(recipe, "QUICK_LEVELS", ("iwae k=5", "5 epochs", "3e-3 cosine to 1e-4"))
    result = recipe.run("digits28", quick=True, report=lambda r: recipe.write(r, str(tmp_path)))
    assert result["complete"]
    rows = result["sweep"]["rows"]
    assert [r["factor"] for r in rows[:4]] == ["base", "objective", "KL warm-up", "learning rate"]
    for row in rows:
        assert all(_positive(row[k]) for k in ("nll", "negative_elbo", "train_s", "steps"))
    ie = result["iwae_vs_elbo"]
    assert ie["elbo_equal_steps"]["steps"] == ie["iwae"]["steps"]
    for name in ("iwae", "elbo_equal_steps", "elbo_equal_time"):
        assert all(_positive(ie[name][k]) for k in ("nll", "negative_elbo", "epochs"))
        assert 0 <= ie[name]["active_units"] <= 20
    au = result["active_units"]
    assert 0 <= au["without_warmup"] <= 20 and 0 <= au["with_warmup"] <= 20
    assert _positive(au["without_warmup_nll"]) and _positive(au["with_warmup_nll"])
    for run in result["long"]["runs"].values():
        assert [e["minutes"] for e in run["evaluations"]] == [1, 2]
        assert all(_positive(e["nll"]) and _positive(e["trained_s"]) for e in run["evaluations"])
    assert result["command"].startswith("keras-vae-train --data digits28 --binarize")
    text = (tmp_path / "recipe.md").read_text()
    assert "NLL at 2 s" in text and not re.search(r"\b(nan|inf)\b", text.lower())
    assert json.loads((tmp_path / "recipe.json").read_text())["complete"]
