"""KL warm-up (Sønderby et al. 2016): the KL weight ramps up from a floor to the model's beta.

Early in training the KL term pulls every posterior onto the prior faster than the decoder learns
to use the codes, and units that collapse then rarely come back. Weighting the KL by a value that
grows linearly from `start` to beta over the first epochs or steps lets the codes carry
information first. The weight is the model's `kl_weight` variable, which the compiled step reads.
"""

import keras

UNITS = ("epoch", "step")


def warmup_weight(position, duration, beta, start=0.0):
    """The KL weight at `position` (epochs or steps done): linear from `start` * beta at 0 to beta
    at `duration`, then beta.

    Example:
    >>> warmup_weight(5, 10, beta=1.0)
    0.5
    """
    if duration <= 0 or position >= duration:
        return float(beta)
    fraction = start + (1.0 - start) * position / duration
    return float(beta) * fraction


@keras.saving.register_keras_serializable(package="keras_vae")
class KLWarmup(keras.callbacks.Callback):
    """Ramps a `keras_vae.VAE`'s `kl_weight` linearly from `start` * beta to beta.

    The weight is a function of where training is (the epoch, or the optimizer's step count), so
    a run restored from a backup (weights and optimizer) continues the ramp exactly where it was:
    the callback keeps no state of its own.

    Args:
        duration: int. Epochs (or steps) the ramp lasts; at and after it the weight is beta.
        unit: str. "epoch" (the weight is set at each epoch's start) or "step" (at each batch
            from `model.optimizer.iterations`; with `steps_per_execution` > 1 Keras calls batch
            hooks once per call, so the weight moves every that many steps).
        start: float in [0, 1]. The ramp's floor as a fraction of beta (0 starts without KL).

    Example:
    >>> vae.fit(x, epochs=30, callbacks=[keras_vae.KLWarmup(10)])
    """

    def __init__(self, duration, unit="epoch", start=0.0):
        super().__init__()
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise ValueError(f"duration must be an integer >= 0; received {duration!r}.")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}; received {unit!r}.")
        if not (isinstance(start, (int, float)) and 0.0 <= start <= 1.0):
            raise ValueError(f"start must be a fraction in [0, 1]; received {start!r}.")
        self.duration, self.unit, self.start = duration, unit, float(start)

    def _set(self, position):
        weight = warmup_weight(position, self.duration, self.model.beta, self.start)
        self.model.kl_weight.assign(weight)

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._set(int(self.model.optimizer.iterations.numpy()))

    def on_train_end(self, logs=None):
        # A model handed back mid-ramp evaluates and serves with its beta, as a loaded one does.
        self.model.kl_weight.assign(self.model.beta)

    def get_config(self):
        return {"duration": self.duration, "unit": self.unit, "start": self.start}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
