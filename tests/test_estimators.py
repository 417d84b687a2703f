"""keras_vae.estimators: log P(X) in chunks bounded by bytes, equal to the estimate done at once."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_probability as tfp

import keras_vae
from keras_vae import estimators

CEILING_MB = 3 * 1024  # the real-size ceiling on a process's peak RSS


def _conv28(seed=0):
    return keras_vae.build_vae((28, 28, 1), latent_dim=8, arch="conv", seed=seed)


def _binary(x, seed=0):
    return (np.random.default_rng(seed).random(x.shape) < x).astype("float32")


def test_activation_bytes_follow_the_networks_and_the_image_size():
    small = keras_vae.build_vae((8, 8, 1), latent_dim=8, arch="conv", seed=0)
    mnist = _conv28()
    photo = keras_vae.build_vae((64, 64, 3), latent_dim=8, arch="conv", seed=0)
    sizes = [estimators.activation_bytes(m)[1] for m in (small, mnist, photo)]
    assert sizes[0] < sizes[1] < sizes[2]
    # At least the decoder's last two feature maps (28x28x32 and 28x28x1 floats) per latent.
    assert sizes[1] >= (28 * 28 * 32 + 28 * 28) * 4
    # Wider layers cost more bytes for the same image size.
    wide = keras_vae.build_vae((28, 28, 1), latent_dim=8, arch="conv", filters=(64, 128), seed=0)
    assert estimators.activation_bytes(wide)[1] > 1.5 * sizes[1]


def test_chunks_fit_the_budget_and_never_vanish():
    model = _conv28()
    encode, decode = estimators.activation_bytes(model)
    budget = 64 * 2**20
    n = estimators.pairs_per_chunk(model, 1000, budget)
    assert n * decode <= budget < (n + 1) * decode + 2 * encode + encode * n / 1000 + decode
    assert estimators.pairs_per_chunk(model, 1000, 1) == 1
    with pytest.raises(ValueError, match="memory_budget must be a number of bytes >= 1"):
        estimators.pairs_per_chunk(model, 10, 0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1; received 0"):
        model.log_likelihood(np.zeros((2, 28, 28, 1), "float32"), num_samples=0)


@pytest.mark.parametrize("method", ["log_likelihood", "naive_log_likelihood"])
def test_chunked_estimate_equals_the_one_done_at_once(digits28, method):
    images, _ = digits28
    x = _binary(images[:6])
    model = _conv28()
    _, decode = estimators.activation_bytes(model)
    estimate = getattr(model, method)
    at_once = estimate(x, 40, seed=5, memory_budget=2**40).numpy()
    # Budgets: below one decode (one pair per chunk), a few pairs, part of one example's K,
    # several examples per chunk.
    for budget in (1, 3 * decode, 25 * decode, 130 * decode):
        chunked = estimate(x, 40, seed=5, memory_budget=budget).numpy()
        np.testing.assert_allclose(chunked, at_once, rtol=2e-6, atol=1e-3)
    assert np.all(np.isfinite(at_once))


def test_log_weights_are_the_estimate_before_the_mean(digits28):
    images, _ = digits28
    x = _binary(images[:4])
    model = _conv28()
    weights = model.iw_log_weights(x, 30, seed=2, memory_budget=7 * 2**20).numpy()
    assert weights.shape == (30, 4)
    np.testing.assert_allclose(
        tfp.math.reduce_logmeanexp(weights, axis=0).numpy(),
        model.log_likelihood(x, 30, seed=2).numpy(),
        rtol=2e-6,
    )
    # The K samples differ (a fresh draw each), and the weights of one example spread.
    assert np.all(weights.std(axis=0) > 0)


def test_each_example_keeps_its_noise_whatever_the_batch(digits28):
    images, _ = digits28
    x = _binary(images[:8])
    model = _conv28()
    whole = model.log_likelihood(x, 25, seed=9).numpy()
    np.testing.assert_allclose(
        model.log_likelihood(x[:3], 25, seed=9).numpy(), whole[:3], rtol=1e-6
    )
    # Its place in the batch does not matter either (a served batch mixes clients' requests):
    # reversed, shifted behind others, or alone, an example scores the same.
    np.testing.assert_allclose(
        model.log_likelihood(x[::-1], 25, seed=9).numpy(), whole[::-1], rtol=1e-6
    )
    shifted = model.log_likelihood(np.concatenate([x[5:], x[:5]]), 25, seed=9).numpy()
    np.testing.assert_allclose(shifted, np.concatenate([whole[5:], whole[:5]]), rtol=1e-6)
    np.testing.assert_allclose(
        model.log_likelihood(x[6:7], 25, seed=9).numpy(), whole[6:7], rtol=1e-6
    )
    # Different examples still get different noise: two equal copies score equally, but the
    # same digit's score is not every digit's.
    twice = model.log_likelihood(np.concatenate([x[:1], x[:1]]), 25, seed=9).numpy()
    assert twice[0] == twice[1]
    other_seed = model.log_likelihood(x, 25, seed=10).numpy()
    assert not np.allclose(other_seed, whole)
    # Unseeded calls draw fresh noise from the model's own generator.
    assert not np.allclose(model.log_likelihood(x, 25).numpy(), model.log_likelihood(x, 25).numpy())


_PEAK = """
import json, sys, time
from benchmarks.memory import peak_rss_mib
import numpy as np
import keras_vae
shape, filters = tuple(json.loads(sys.argv[1])), tuple(json.loads(sys.argv[2]))
likelihood = "gaussian" if shape[-1] == 3 else "bernoulli"
model = keras_vae.build_vae(shape, latent_dim=16, arch="conv", likelihood=likelihood,
                            filters=filters, seed=0)
x = np.random.default_rng(0).random((16, *shape)).astype("float32")
start = time.time()
ll = model.log_likelihood(x, num_samples=5000, seed=0).numpy()
print(json.dumps({"peak_mb": peak_rss_mib(),
                  "finite": bool(np.isfinite(ll).all()), "seconds": time.time() - start}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape, filters",
    [
        ((28, 28, 1), (32, 64)),  # the default conv network
        # Narrower than the default (whose 80,000 decodes take ~2 minutes on 2 cores; README);
        # the activations of its decodes at once would still sum to ~80 GB.
        ((64, 64, 3), (8, 16)),
    ],
)
def test_5000_samples_for_16_real_size_images_stay_under_the_ceiling(shape, filters):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK), json.dumps(shape), json.dumps(filters)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(shape, result)
    assert result["finite"]
    assert result["peak_mb"] < CEILING_MB, result


@pytest.mark.parametrize("value", [1e20, 3e38, -3e38])
def test_huge_finite_inputs_score_minus_infinity_never_nan(value):
    # A NaN score is never below an anomaly threshold: the worst outliers would pass.
    vae = keras_vae.build_vae((6,), latent_dim=2, likelihood="gaussian", sigma=0.5, seed=0)
    x = np.zeros((3, 6), "float32")
    x[1] = value
    for estimate in (vae.log_likelihood, vae.naive_log_likelihood):
        scores = estimate(x, num_samples=8, seed=0).numpy()
        assert scores[1] == -np.inf, scores
        assert np.all(np.isfinite(scores[[0, 2]]))
