"""KL warm-up: the weight the compiled step reads, set exactly as configured, and resumed."""

import keras
import numpy as np
import pytest

import keras_vae
from keras_vae.warmup import warmup_weight
from tests.contracts import assert_config_round_trip


@pytest.mark.parametrize(
    "position, duration, beta, start, expected",
    [(0, 10, 2.0, 0.0, 0.0), (5, 10, 2.0, 0.0, 1.0), (10, 10, 2.0, 0.0, 2.0),
     (12, 10, 2.0, 0.0, 2.0), (0, 4, 1.0, 0.2, 0.2), (2, 4, 1.0, 0.2, 0.6), (3, 0, 0.5, 0.0, 0.5)],
)  # fmt: skip
def test_the_weight_is_linear_from_the_floor_to_beta(position, duration, beta, start, expected):
    assert warmup_weight(position, duration, beta, start) == pytest.approx(expected)


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(float(self.model.kl_weight.numpy()))

    def on_train_batch_begin(self, batch, logs=None):
        self.steps.append(float(self.model.kl_weight.numpy()))


def _vae(**kwargs):
    return keras_vae.build_vae((8, 8, 1), latent_dim=3, hidden_units=(16,), seed=0, **kwargs)


def test_epoch_warmup_sets_the_weight_the_step_uses(digits):
    x = digits[0][:128]
    vae = _vae(beta=2.0)
    vae.compile(optimizer="adam")
    record = _Record()
    history = vae.fit(
        x, epochs=4, batch_size=64, verbose=0, callbacks=[keras_vae.KLWarmup(2), record]
    )
    assert record.epochs == pytest.approx([0.0, 1.0, 2.0, 2.0])
    h = history.history
    # The loss is what the step minimized: reconstruction + weight * KL (true KL reported).
    for epoch, weight in enumerate(record.epochs):
        expected = h["reconstruction_loss"][epoch] + weight * h["kl_loss"][epoch]
        assert h["loss"][epoch] == pytest.approx(expected, rel=1e-4)
    assert h["kl_loss"][0] > 0
    assert float(vae.kl_weight.numpy()) == 2.0  # a model handed back after fit uses beta


def test_step_warmup_follows_the_optimizer_steps(digits):
    x = digits[0][:128]  # 2 steps an epoch
    vae = _vae()
    vae.compile(optimizer="adam", steps_per_execution=1)
    record = _Record()
    warmup = keras_vae.KLWarmup(4, unit="step", start=0.5)
    vae.fit(x, epochs=3, batch_size=64, verbose=0, callbacks=[warmup, record])
    assert record.steps == pytest.approx([0.5, 0.625, 0.75, 0.875, 1.0, 1.0])
    # Resumed from the optimizer's state, the ramp continues where it was.
    vae.optimizer.iterations.assign(2)
    record.steps.clear()
    vae.fit(x[:64], epochs=1, batch_size=64, verbose=0, callbacks=[warmup, record])
    assert record.steps == pytest.approx([0.75])


def test_the_callback_and_the_weight_survive_saving(tmp_path, digits):
    assert_config_round_trip(keras_vae.KLWarmup(7, unit="step", start=0.1), duration=7, start=0.1)
    vae = _vae(beta=0.5)
    vae.kl_weight.assign(0.1)  # mid-ramp
    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras")
    assert float(loaded.kl_weight.numpy()) == 0.5  # the weights file has no kl_weight: beta
    with pytest.raises(ValueError, match="duration"):
        keras_vae.KLWarmup(-1)
    with pytest.raises(ValueError, match="unit"):
        keras_vae.KLWarmup(3, unit="batch")


@pytest.mark.slow
def test_a_resumed_warmup_run_equals_an_uninterrupted_one(tmp_path):
    from keras_vae import training

    config = {"data": "digits", "limit": 200, "export": False, "iwae_samples": 2, "verbose": 0,
              "warmup_epochs": 3, "latent_dim": 3}  # fmt: skip
    whole = training.train({**config, "epochs": 4}, str(tmp_path / "whole"))
    training.train({**config, "epochs": 2}, str(tmp_path / "split"))
    resumed = training.train({**config, "epochs": 4}, str(tmp_path / "split"))
    assert resumed["initial_epoch"] == 2
    rows = [
        (tmp_path / name / "history.csv").read_text().splitlines() for name in ("whole", "split")
    ]
    assert rows[0] == rows[1]
    a = keras.models.load_model(tmp_path / "whole" / "model.keras").get_weights()
    b = keras.models.load_model(tmp_path / "split" / "model.keras").get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert whole["metrics"]["negative_elbo"] == pytest.approx(resumed["metrics"]["negative_elbo"])
