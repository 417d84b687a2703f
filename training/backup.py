"""The run's backup: weights, optimizer state and noise stream after each finished epoch.

backup/ holds `epoch_NNNN.weights.npz` (every variable of the model and of its optimizer, in
their fixed order, with their paths for reading, in one NumPy archive) and `state.json` (the finished epochs, that file's name, the seed
generator's state), each replaced atomically; state.json names a weights file only once that
file is complete, so the two always describe the same epoch.

The epoch's values are copied in the training thread (~1 ms for the 784-400-20 MLP and its
Adam state, 7.5 MB) and written by a background thread while the next epoch trains: written in
the training thread, Keras' `save_weights` took 24-35 ms an epoch, 7-10% of a 0.35 s MNIST
epoch. A write still in flight is waited for before the next one and when training ends, and
its error (a full disk) is raised then, in the training thread. Backups written by earlier
versions (`epoch_NNNN.weights.h5`, Keras' `save_weights`) still restore.
"""

import json
import os
import threading

import numpy as np

from keras_vae.training.files import atomic_write, atomic_write_text
from keras_vae.training.run_folder import BACKUP_WEIGHTS, RunFolderError

BACKUP_STATE = "state.json"


def _variables(model):
    """Every variable a resumed run needs, in a fixed order: the model's (weights, the latent
    frame, the seed generator) and its optimizer's (step count, moments, loss scale)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return list(model.weights) + list(model.optimizer.variables)


def snapshot(model, epochs):
    """A copy of the training state after `epochs` finished epochs: `(epochs, paths, values,
    seed_state)`, safe to write while training goes on."""
    variables = _variables(model)
    values = [np.array(v, copy=True) for v in variables]
    seed_state = np.asarray(model.seed_generator.state).tolist()
    return epochs, [v.path for v in variables], values, seed_state


def write(backup_dir, snap):
    """Writes `snap`'s weights file, then the state.json that names it, then removes older
    weights files."""
    epochs, paths, values, seed_state = snap
    name = BACKUP_WEIGHTS.format(epochs)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(paths), **{f"v{i}": v for i, v in enumerate(values)})

    atomic_write(os.path.join(backup_dir, name), save, suffix=".weights.npz")
    state = {"epoch": epochs, "weights": name, "seed_state": seed_state}
    atomic_write_text(os.path.join(backup_dir, BACKUP_STATE), json.dumps(state))
    for other in os.listdir(backup_dir):
        if other.endswith((".weights.npz", ".weights.h5")) and other != name:
            os.remove(os.path.join(backup_dir, other))


class Writer:
    """Writes snapshots in a background thread, one at a time, in order.

    `submit` waits for the previous write first; `wait` blocks until the last one is on disk.
    Both raise, in the caller's thread, the error a write met.
    """

    def __init__(self, backup_dir):
        self.backup_dir = backup_dir
        self._thread = None
        self._error = None

    def submit(self, snap):
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(snap,), name="keras-vae-backup")
        self._thread.start()

    def _write(self, snap):
        try:
            write(self.backup_dir, snap)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = e

    def wait(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def restore(model, backup_dir):
    """Loads the backed-up training state into `model` (built, compiled) and returns the number
    of finished epochs (0 when there is no backup)."""
    state_path = os.path.join(backup_dir, BACKUP_STATE)
    if not os.path.exists(state_path):
        return 0
    # training.run_folder checked state.json when the run folder was opened (check_state).
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    weights_path = os.path.join(backup_dir, state["weights"])
    try:
        if weights_path.endswith(".npz"):
            _load_npz(model, weights_path)
        else:  # an earlier version's backup
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(weights_path)
        if "seed_state" in state:
            # The model's noise stream: a resumed run draws the same posterior samples an
            # uninterrupted one would.
            generator = model.seed_generator.state
            generator.assign(np.asarray(state["seed_state"], dtype=generator.dtype))
    except Exception as e:  # noqa: BLE001 - NumPy, zip, h5py and Keras each fail their own way
        raise RunFolderError(
            f"Cannot restore the backup {weights_path} with {state_path} "
            f"({' '.join(str(e).split())[:300]}); the backup is damaged or from another model. "
            "Move the run folder away (or choose another --run-dir) to start afresh."
        ) from None
    return int(state["epoch"])


def _load_npz(model, path):
    # By position: the order of a model's and its optimizer's variables is fixed by its
    # architecture, while their paths carry per-process name counters (dense_4, adam_1).
    variables = _variables(model)
    with np.load(path, allow_pickle=False) as archive:
        count = len(archive["paths"])
        if count != len(variables):
            raise ValueError(f"it holds {count} variables, the model {len(variables)}")
        values = [archive[f"v{i}"] for i in range(count)]
    for variable, value in zip(variables, values, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{variable.path} has shape {value.shape}, expected {variable.shape}")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value.astype(variable.dtype))
