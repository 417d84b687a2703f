"""training.distribute: mirrored replicas match one device; two workers train as one.

Each distributed run happens in its own process: logical CPU devices and cluster membership
must be set before TensorFlow starts, and must not leak into other tests.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vae.training.config import ConfigError
from keras_vae.training.distribute import make_strategy, parse_devices, worker_role

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
ENV.pop("TF_CONFIG", None)
# 192 examples in batches of 64: three steps, each split across two replicas or workers.
TINY = ["--limit", "192", "--epochs", "1", "--batch-size", "64", "--seed", "3"]
QUICK = ["--no-export", "--iwae-samples", "1", "--verbose", "0"]


def _max_difference(path_a, path_b):
    a, b = keras.models.load_model(path_a), keras.models.load_model(path_b)
    assert len(a.weights) == len(b.weights)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(a.weights, b.weights, strict=True)
    )


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from keras_vae.training.trainer import train
    config = dict(data="digits", limit=192, epochs=1, batch_size=64, seed=3, export=False,
                  iwae_samples=1, verbose=0)
    # Mirrored first: it splits the CPU into two logical devices before TensorFlow starts.
    mirrored = train({**config, "strategy": "mirrored", "devices": "/cpu:0,/cpu:1"}, sys.argv[1])
    single = train(config, sys.argv[2])
    print(json.dumps([mirrored["replicas"], single["replicas"]]))
    """
)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    mirrored, single = str(tmp_path / "mirrored"), str(tmp_path / "single")
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, mirrored, single],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 1]
    # Same data, seed and steps: the update of 2 replicas on halves of each batch equals one
    # device's on the whole batch (loss / num_replicas, global-batch noise sliced per replica).
    assert _max_difference(f"{mirrored}/model.keras", f"{single}/model.keras") < 1e-5
    # ... and training did move the weights, so the agreement is not trivial.
    keras.utils.set_random_seed(3)
    import keras_vae

    untrained = keras_vae.build_vae((8, 8, 1), latent_dim=2, seed=3)
    fresh = str(tmp_path / "untrained.keras")
    untrained.save(fresh)
    assert _max_difference(fresh, f"{single}/model.keras") > 1e-3


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _two_workers(run_dir, *flags):
    """Runs `python -m keras_vae.training` as two MultiWorkerMirroredStrategy workers on localhost."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "keras_vae.training", "--strategy", "multi-worker", *TINY, *QUICK,
                 *flags, "--run-dir", run_dir],
                env={**ENV, "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )  # fmt: skip
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_workers_train_together_to_identical_weights(tmp_path):
    run_dir = str(tmp_path / "run")
    _two_workers(run_dir)
    chief, other = f"{run_dir}/model.keras", f"{run_dir}/workers/worker_1/model.keras"
    assert _max_difference(chief, other) == 0.0
    # The chief writes the run's pictures and numbers; the other worker only its own state.
    assert os.path.exists(f"{run_dir}/metrics.json")
    assert not os.path.exists(f"{run_dir}/workers/worker_1/metrics.json")
    with open(f"{run_dir}/workers/worker_1/history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 1  # header and one epoch


def test_default_strategy_is_one_chief_device():
    strategy = make_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert worker_role(strategy) == (True, None)
    assert parse_devices(" /gpu:0, /gpu:1 ") == ["/gpu:0", "/gpu:1"]


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                                "task": {"type": "worker", "index": 3}}))  # fmt: skip
    with pytest.raises(ConfigError, match="not in cluster.worker"):
        make_strategy("multi-worker")


def test_mirrored_on_a_missing_device_fails_clearly():
    with pytest.raises(ConfigError, match="does not exist here"):
        make_strategy("mirrored", "/gpu:7")


@pytest.mark.slow
def test_two_workers_resume_a_stopped_run_as_if_never_stopped(tmp_path):
    # One epoch, then the same command with --epochs 2 (what a restarted cluster runs), against
    # two epochs in one go: each worker restores its own backup and the data stream its epoch.
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    _two_workers(resumed)
    after_one = str(tmp_path / "after_one.keras")
    shutil.copy(f"{resumed}/model.keras", after_one)
    _two_workers(resumed, "--epochs", "2")
    _two_workers(straight, "--epochs", "2")
    assert _max_difference(f"{resumed}/model.keras", f"{straight}/model.keras") < 1e-5
    # ... and the second epoch did train, so the agreement is not trivial.
    assert _max_difference(after_one, f"{resumed}/model.keras") > 1e-4
    other = "workers/worker_1/model.keras"
    assert _max_difference(f"{resumed}/{other}", f"{resumed}/model.keras") == 0.0
    for run_dir in (resumed, f"{resumed}/workers/worker_1"):
        with open(f"{run_dir}/history.csv") as f:
            assert len(f.read().strip().splitlines()) == 1 + 2  # header and two epochs
