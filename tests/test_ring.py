"""The ring toy with the Gaussian likelihood's learned sigma: samples on the ring, not collapsed.

Started at sigma = 1 the learned sigma let the posterior collapse to the prior (held-out KL
~0.005 nats, every sample at the ring's centre); see `keras_vae.likelihoods.INITIAL_SIGMA`.
The samples are the decoder means of z ~ N(0, I).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vae
from keras_vae.training.data import load_dataset
from tests.conftest import ring_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def assert_on_the_ring(samples, x):
    radius = np.linalg.norm(samples, axis=1)
    data_radius = np.median(np.linalg.norm(x, axis=1))  # ~1.12: 1 + E||z||/10
    assert abs(np.median(radius) / data_radius - 1) < 0.1, (np.median(radius), data_radius)
    near = np.mean(np.abs(radius - data_radius) < 0.25)
    assert near >= 0.85, near


@pytest.mark.slow
def test_cli_ring_with_default_flags_samples_the_ring(tmp_path):
    run_dir = str(tmp_path / "ring")
    command = [sys.executable, "-m", "keras_vae.training", "--data", "ring", "--run-dir", run_dir]
    done = subprocess.run(
        # Training flags all default; export and the IWAE estimate only cost time here.
        [*command, "--no-export", "--iwae-samples", "20", "--verbose", "0"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["sigma"] == "learned"
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["held_out"]["kl"] > 1.0  # nats; the collapsed model had ~0.005
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert_on_the_ring(model.sample(2000, seed=0).numpy(), load_dataset("ring").x_train)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_learned_sigma_gaussian_vae_samples_the_ring(seed):
    x = ring_points(4000, seed=seed)
    vae = keras_vae.build_vae((2,), latent_dim=2, likelihood="gaussian", sigma=None, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x, epochs=30, batch_size=64, verbose=0)
    kl = vae.evaluate(ring_points(1000, seed=seed + 100), verbose=0, return_dict=True)["kl_loss"]
    assert kl > 1.0, kl
    # Not collapsed to the data's spread (0.8 per axis): the latents explain the ring.
    assert np.all(vae.likelihood.scale().numpy() < 0.4), vae.likelihood.scale().numpy()
    assert_on_the_ring(vae.sample(2000, seed=0).numpy(), x)
