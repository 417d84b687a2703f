"""The run folder: created, checked against the run it resumes, config.json written first.

Each worker of a multi-worker run gets its own folder, so workers sharing a file system never
write the same file.
"""

import json
import os
import typing

from keras_vae.training import distribute
from keras_vae.training.config import ConfigError, check_resumable, read_config
from keras_vae.training.files import atomic_write_text


class RunFolder(typing.NamedTuple):
    """Where this worker writes: `out_dir` (RUN_DIR on the chief) and its `backup_dir`."""

    out_dir: str
    backup_dir: str
    is_chief: bool


def _check_not_past(state_path, run_dir, epochs):
    """Refuses --epochs below what the run has trained: only the last epoch's weights are kept,
    so the run cannot give an earlier epoch's model, and must not pass the later one off as it."""
    try:
        with open(state_path, encoding="utf-8") as f:
            done = int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable state is restore()'s to report
    if done > epochs:
        raise ConfigError(
            f"The run in {run_dir!r} has already trained {done} epochs; --epochs {epochs} asks "
            f"for fewer, and earlier epochs' weights are not kept. Pass --epochs {done} or more "
            "to continue it, or choose a new --run-dir."
        )


def prepare_run_dir(run_dir, config):
    """Creates `run_dir`, checks a run to resume agrees with `config`, writes config.json;
    returns the backup folder. Raises ConfigError or an OSError that names the folder."""
    backup_dir = os.path.join(run_dir, "backup")
    config_path = os.path.join(run_dir, "config.json")
    try:
        os.makedirs(run_dir, exist_ok=True)
        state_path = os.path.join(backup_dir, "state.json")
        if os.path.exists(state_path) and os.path.exists(config_path):
            check_resumable(read_config(config_path), config)
            _check_not_past(state_path, run_dir, config.epochs)
        atomic_write_text(config_path, json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as e:
        raise OSError(
            f"Cannot write to the run folder {run_dir!r} ({e.strerror or e}); choose a writable "
            "--run-dir with free space."
        ) from e
    return backup_dir


def open_run_folder(run_dir, strategy, config):
    """This worker's folder, prepared (`prepare_run_dir`): RUN_DIR on the chief,
    RUN_DIR/workers/<task> on the others, so workers sharing a file system never write the
    same file (every worker computes the same thing)."""
    is_chief, task = distribute.worker_role(strategy)
    out_dir = run_dir if is_chief else os.path.join(run_dir, "workers", task)
    return RunFolder(out_dir, prepare_run_dir(out_dir, config), is_chief)
