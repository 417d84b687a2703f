"""Callbacks that make a run resumable, honest about divergence, and visible epoch by epoch.

`RunState` replaces `keras.callbacks.BackupAndRestore` + `CSVLogger` + `ModelCheckpoint` with
one callback, because their order and atomicity matter for a run killed at any instant:
at the end of each epoch it (1) appends the epoch's row to history.csv, (2) backs up weights,
optimizer and seed state to backup/ (in the background: `training.backup`), (3) writes
model.keras on a `Cadence`, each file replaced
atomically and only when the loss and every weight are finite. On resumption, rows at or after
the restored epoch are dropped, so history.csv never holds a missing or doubled epoch.

The per-epoch extras that only show progress (model.keras, the epoch's samples picture, the
loss curve) run on a `Cadence`: at the first and the last epoch, and in between only while
they take at most `EXTRAS_SHARE` of the run's time. Measured on MNIST (MLP 784-400-20, 8,000
digits, 0.4 s epochs), they took 25% of the training time when run after every epoch.
"""

import csv
import io
import math
import os
import time

import keras
import numpy as np

from keras_vae.training import backup, plots
from keras_vae.training.backup import restore  # noqa: F401 - the trainer's and tests' name
from keras_vae.training.files import atomic_write, atomic_write_text

# Each progress extra (model.keras, an epoch's picture, the loss curve) takes at most this
# share of the time between two of its runs.
EXTRAS_SHARE = 0.02


class Cadence:
    """When a per-epoch extra is due: at the last epoch, at the first unless `at_first=False`,
    and otherwise once the time since it last ended (or since `start`) is at least its last
    cost / `share`, so it takes at most `share` of the run; `share=None`: after every epoch.

    Example:
    >>> cadence = Cadence(0.02)
    >>> if cadence.due(final=epoch == last):
    ...     cadence.run(lambda: draw(epoch))
    """

    def __init__(self, share=EXTRAS_SHARE, at_first=True, cost=0.0):
        self.share = share
        self.at_first = at_first
        self.cost = cost  # until measured: the expected cost
        self.ended = None

    def start(self):
        """At the start of training: the clock of an extra not run at the first epoch."""
        self.ended = None if self.at_first else time.monotonic()

    def due(self, final=False):
        if final or self.share is None or self.ended is None:
            return True
        return time.monotonic() - self.ended >= self.cost / self.share

    def run(self, action):
        began = time.monotonic()
        result = action()
        self.ended = time.monotonic()
        self.cost = self.ended - began
        return result


def _is_last_epoch(callback, epoch):
    return epoch + 1 >= int((callback.params or {}).get("epochs") or 0)


def weights_are_finite(model):
    return all(np.isfinite(np.asarray(v)).all() for v in model.weights)


def save_model(model, path):
    """Saves `model` to `path` (.keras) atomically; returns False (and writes nothing) when a
    weight is NaN or inf."""
    if not weights_are_finite(model):
        return False
    atomic_write(path, model.save, suffix=".keras")
    return True


def read_history(path):
    """history.csv as a list of dicts (strings), or [] when there is none."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class RunState(keras.callbacks.Callback):
    """Writes history.csv and the backup at the end of every finished epoch, and model.keras on
    a `Cadence` and when training ends (then holding the last good epoch, also after a
    divergence).

    Args:
        run_dir: str. Where history.csv and model.keras go.
        backup_dir: str. Where the training state goes.
        initial_epoch: int. The epoch training resumes at; history rows from it on are dropped.
        share: float or None. The `Cadence` share of model.keras (None: after every epoch).
    """

    def __init__(self, run_dir, backup_dir, initial_epoch=0, share=EXTRAS_SHARE):
        super().__init__()
        self.history_path = os.path.join(run_dir, "history.csv")
        self.model_path = os.path.join(run_dir, "model.keras")
        self.backup_dir = backup_dir
        self.rows = [r for r in read_history(self.history_path) if int(r["epoch"]) < initial_epoch]
        self.last_good_epoch = initial_epoch - 1 if initial_epoch else None
        self.model_epoch = self.last_good_epoch  # the epoch model.keras holds (a resumed run's)
        self.cadence = Cadence(share)
        self.writer = backup.Writer(backup_dir)

    def on_train_begin(self, logs=None):
        self._write_history()

    def _write_history(self):
        columns = ["epoch"]
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.history_path, buffer.getvalue())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        if not all(math.isfinite(v) for v in values.values()) or not weights_are_finite(self.model):
            return  # a diverged epoch: keep the last good files (FiniteGuard reports it)
        self.rows.append({"epoch": epoch, **{k: f"{v:.6g}" for k, v in sorted(values.items())}})
        self._write_history()
        # The values now, the file in the background (training.backup): a write still going
        # is waited for first, and its error raised here.
        self.writer.submit(backup.snapshot(self.model, epoch + 1))
        self.last_good_epoch = epoch
        if self.cadence.due(final=_is_last_epoch(self, epoch)):
            self.cadence.run(self._save_model)

    def _save_model(self):
        # The backup first: model.keras never holds an epoch the backup does not.
        self.writer.wait()
        if save_model(self.model, self.model_path):
            self.model_epoch = self.last_good_epoch

    def on_train_end(self, logs=None):
        self.writer.wait()  # the last epoch's backup is on disk when fit returns
        # Stopped early (a callback) or diverged: model.keras gets the last good epoch, from
        # the backup when the weights in memory went bad after it.
        if self.last_good_epoch is None or self.model_epoch == self.last_good_epoch:
            return
        if not weights_are_finite(self.model):
            restore(self.model, self.backup_dir)
        self._save_model()


class FiniteGuard(keras.callbacks.TerminateOnNaN):
    """`keras.callbacks.TerminateOnNaN` that remembers where: at the first batch whose loss is
    NaN or inf it stops training and sets `diverged_at` to `(epoch, batch)`.

    Quiet, unlike its parent, which prints a line of its own: the run reports the position in
    its one-line error (`training.trainer.TrainingDiverged`).
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.diverged_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.mean(loss))):
            self.diverged_at = (self.epoch, batch)
            self.model.stop_training = True


def write_loss_curve(history_path, path):
    """Draws history.csv's rows as loss_curve.png at `path` (nothing when there is no row yet);
    returns the path written or None."""
    rows = read_history(history_path)
    if not rows:
        return None
    return plots.save_figure(plots.loss_curve_figure(rows), path)


class EpochSamples(keras.callbacks.Callback):
    """Writes samples/epoch_XXX.png after epochs from one fixed draw of z ~ P(z), so the
    pictures show the same latents improving, each on a `Cadence` (the first and the last
    epoch, and in between within `share` of the time), and redraws loss_curve.png from
    history.csv within `share` too (not at the first epoch, whose curve is one point, nor the
    last: `keras-vae-train` draws it once training ends).

    Runs after `RunState`, so history.csv already holds the epoch. The loss curve rides along
    here because this is the chief's per-epoch picture hook.

    Args:
        folder: str. Where the epoch_XXX.png files go (the run folder's samples/).
        seed: int. Seeds the one draw of z.
        reference: array or None. Training vectors the samples are drawn over (vector data).
        run_dir: str or None. Where history.csv is read and loss_curve.png written; by default
            the folder above `folder`.
        share: float or None. The `Cadence` share of each picture (None: after every epoch).
    """

    def __init__(self, folder, seed, reference=None, run_dir=None, share=EXTRAS_SHARE):
        super().__init__()
        self.folder = folder
        self.seed = seed
        self.reference = reference
        self.run_dir = run_dir or os.path.dirname(os.path.abspath(folder))
        self.z = None
        # The curve costs ~0.2 s to draw (measured), more than a small model's epoch.
        self.samples, self.curve = Cadence(share), Cadence(share, at_first=False, cost=0.2)

    def on_train_begin(self, logs=None):
        self.samples.start()
        self.curve.start()

    def on_epoch_end(self, epoch, logs=None):
        due = self.samples.due(_is_last_epoch(self, epoch)), self.curve.due()
        if not any(due) or not weights_are_finite(self.model):
            return
        if due[0]:
            self.samples.run(lambda: self._draw(epoch))
        if due[1]:
            self.curve.run(
                lambda: write_loss_curve(
                    os.path.join(self.run_dir, "history.csv"),
                    os.path.join(self.run_dir, "loss_curve.png"),
                )
            )

    def _draw(self, epoch):
        if self.z is None:
            n = plots.SAMPLE_GRID**2 if len(self.model.data_shape) == 3 else 500
            self.z = self.model.sample_prior(n, seed=self.seed)
        figure = plots.samples_figure(self.model, self.seed, self.reference, z=self.z, epoch=epoch)
        plots.save_figure(figure, os.path.join(self.folder, f"epoch_{epoch:03d}.png"))
