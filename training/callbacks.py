"""Callbacks that make a run resumable, honest about divergence, and visible epoch by epoch.

`RunState` replaces `keras.callbacks.BackupAndRestore` + `CSVLogger` + `ModelCheckpoint` with
one callback, because their order and atomicity matter for a run killed at any instant:
at the end of each epoch it (1) appends the epoch's row to history.csv, (2) backs up weights,
optimizer and seed state to backup/, (3) writes model.keras, each file replaced atomically and
only when the loss and every weight are finite. On resumption, rows at or after the restored
epoch are dropped, so history.csv never holds a missing or doubled epoch.
"""

import csv
import io
import json
import math
import os
import time

import keras
import numpy as np

from keras_vae.training import plots
from keras_vae.training.files import atomic_write, atomic_write_text
from keras_vae.training.run_folder import BACKUP_WEIGHTS, RunFolderError

# loss_curve.png is redrawn during training at most this often (and always at the end).
LOSS_CURVE_SECONDS = 10.0
BACKUP_STATE = "state.json"


def weights_are_finite(model):
    return all(np.isfinite(np.asarray(v)).all() for v in model.weights)


def save_model(model, path):
    """Saves `model` to `path` (.keras) atomically; returns False (and writes nothing) when a
    weight is NaN or inf."""
    if not weights_are_finite(model):
        return False
    atomic_write(path, model.save, suffix=".keras")
    return True


def restore(model, backup_dir):
    """Loads the backed-up training state into `model` (built, compiled) and returns the number
    of finished epochs (0 when there is no backup)."""
    state_path = os.path.join(backup_dir, BACKUP_STATE)
    if not os.path.exists(state_path):
        return 0
    # training.run_folder checked state.json when the run folder was opened (check_state).
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    weights_path = os.path.join(backup_dir, state["weights"])
    try:
        model.load_weights(weights_path)
        if "seed_state" in state:
            # The model's noise stream is not among its weights; restoring it makes a resumed
            # run draw the same posterior samples an uninterrupted one would.
            generator = model.seed_generator.state
            generator.assign(np.asarray(state["seed_state"], dtype=generator.dtype))
    except Exception as e:  # noqa: BLE001 - h5py, Keras and NumPy each fail their own way
        raise RunFolderError(
            f"Cannot restore the backup {weights_path} with {state_path} "
            f"({' '.join(str(e).split())[:300]}); the backup is damaged or from another model. "
            "Move the run folder away (or choose another --run-dir) to start afresh."
        ) from None
    return int(state["epoch"])


def save_weights(model, path):
    """`model.save_weights(path)` that leaves no HDF5 file open when it fails.

    On a full disk h5py raises from a write, but Keras' store keeps the file open; when the
    object is collected h5py's `__dealloc__` flushes again, fails again, and then crashed the
    process (SIGSEGV, exit status 139) after the error had been reported. So a failed write's
    files are closed here, at once, with their descriptor pointed at /dev/null: the flush that
    a close always does then succeeds, and the caller removes the half-written file.
    """
    try:
        model.save_weights(path)
    except BaseException:
        _close_hdf5_files(path)
        raise


def _close_hdf5_files(path):
    import h5py

    target = os.path.realpath(path)
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        name = file_id.name
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        if not file_id.valid or os.path.realpath(name) != target:
            continue
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, file_id.get_vfd_handle())
        finally:
            os.close(devnull)
        h5py.File(file_id).close()


def read_history(path):
    """history.csv as a list of dicts (strings), or [] when there is none."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class RunState(keras.callbacks.Callback):
    """Writes history.csv, the backup and model.keras at the end of every finished epoch.

    Args:
        run_dir: str. Where history.csv and model.keras go.
        backup_dir: str. Where the training state goes.
        initial_epoch: int. The epoch training resumes at; history rows from it on are dropped.
    """

    def __init__(self, run_dir, backup_dir, initial_epoch=0):
        super().__init__()
        self.history_path = os.path.join(run_dir, "history.csv")
        self.model_path = os.path.join(run_dir, "model.keras")
        self.backup_dir = backup_dir
        self.rows = [r for r in read_history(self.history_path) if int(r["epoch"]) < initial_epoch]
        self.last_good_epoch = initial_epoch - 1 if initial_epoch else None

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
        # A new weights file per epoch, named in state.json only once it is complete: a crash
        # between the two writes leaves state.json pointing at the previous epoch's weights, so
        # the backup never pairs epoch k's count with epoch k's end weights (k trained twice).
        weights_name = BACKUP_WEIGHTS.format(epoch + 1)
        atomic_write(
            os.path.join(self.backup_dir, weights_name),
            lambda tmp: save_weights(self.model, tmp),
            suffix=".weights.h5",
        )
        atomic_write_text(
            os.path.join(self.backup_dir, BACKUP_STATE),
            json.dumps(
                {
                    "epoch": epoch + 1,
                    "weights": weights_name,
                    "seed_state": np.asarray(self.model.seed_generator.state).tolist(),
                }
            ),
        )
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name != weights_name:
                os.remove(os.path.join(self.backup_dir, name))
        save_model(self.model, self.model_path)
        self.last_good_epoch = epoch


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
    """Writes samples/epoch_XXX.png after each epoch from one fixed draw of z ~ P(z), so the
    pictures show the same latents improving, and redraws loss_curve.png from history.csv
    (after the first epoch, then at most every `LOSS_CURVE_SECONDS`).

    Runs after `RunState`, so history.csv already holds the epoch. The loss curve rides along
    here because this is the chief's per-epoch picture hook.

    Args:
        folder: str. Where the epoch_XXX.png files go (the run folder's samples/).
        seed: int. Seeds the one draw of z.
        reference: array or None. Training vectors the samples are drawn over (vector data).
        run_dir: str or None. Where history.csv is read and loss_curve.png written; by default
            the folder above `folder`.
    """

    def __init__(self, folder, seed, reference=None, run_dir=None):
        super().__init__()
        self.folder = folder
        self.seed = seed
        self.reference = reference
        self.run_dir = run_dir or os.path.dirname(os.path.abspath(folder))
        self.z = None
        self._last_curve = None

    def on_epoch_end(self, epoch, logs=None):
        if not weights_are_finite(self.model):
            return
        if self.z is None:
            n = plots.SAMPLE_GRID**2 if len(self.model.data_shape) == 3 else 500
            self.z = self.model.sample_prior(n, seed=self.seed)
        figure = plots.samples_figure(self.model, self.seed, self.reference, z=self.z, epoch=epoch)
        plots.save_figure(figure, os.path.join(self.folder, f"epoch_{epoch:03d}.png"))
        # The curve costs ~0.2 s to draw (measured), more than a small model's epoch: redrawn at
        # most every LOSS_CURVE_SECONDS while training, and always at the end of the run.
        now = time.monotonic()
        if self._last_curve is None or now - self._last_curve >= LOSS_CURVE_SECONDS:
            self._last_curve = now
            write_loss_curve(
                os.path.join(self.run_dir, "history.csv"),
                os.path.join(self.run_dir, "loss_curve.png"),
            )
