"""The run folder: locked, cleaned, checked against the run it resumes, config.json written first.

Each worker of a multi-worker run gets its own folder, so workers sharing a file system never
write the same file. One trainer at a time owns a folder: an `fcntl.flock` on
`.keras-vae-train.lock` in it, held for the whole run (two trainers on one folder replaced each
other's files; one died when the other removed its temporary file). Holding it, the trainer
removes temporary files a killed run left behind, and, on resumption, checks every file it will
read back (config.json, history.csv, backup/state.json, backup/untrained.json) once, here, so
that a corrupt or foreign one is a one-line error naming the file instead of a traceback later.
"""

import csv
import io
import json
import math
import os
import re
import stat
import typing

from keras_vae.training import distribute
from keras_vae.training.checks import read_json_file
from keras_vae.training.config import ConfigError, TrainConfig, check_resumable
from keras_vae.training.files import atomic_write_text

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

LOCK_NAME = ".keras-vae-train.lock"
# training.files.atomic_write's temporary names (tempfile.mkstemp, prefix ".tmp-", eight
# characters of [a-z0-9_]) with the suffixes the trainer writes: only these are ever removed.
TEMP_FILE = re.compile(r"\.tmp-[a-z0-9_]{8}(\.keras|\.weights\.(npz|h5)|\.png|\.npy)?")
# The folders the trainer writes temporary files into (export/ cleans its own; logs/ is
# TensorBoard's).
TEMP_FOLDERS = ("", "backup", "samples")
# The folders a run writes in its run folder (training.trainer and training.outputs).
WRITTEN_FOLDERS = ("backup", "samples", "logs")
# history.csv holds one short row per epoch; anything near this is not one of ours.
MAX_HISTORY_BYTES = 64 << 20
# The backup's weights file of epoch N (training.backup), and the name earlier versions wrote
# (Keras' save_weights), which still restores.
BACKUP_WEIGHTS = "epoch_{:04d}.weights.npz"
LEGACY_BACKUP_WEIGHTS = "epoch_{:04d}.weights.h5"


class RunFolderError(ConfigError):
    """A file of the run folder is corrupt, foreign or missing; the message names it and says
    what to do. Exit status 2, like a bad flag: nothing was changed."""


class RunFolderBusy(ConfigError):
    """Another trainer holds the run folder's lock."""


class RunFolder(typing.NamedTuple):
    """Where this worker writes: `out_dir` (RUN_DIR on the chief), its `backup_dir`, and the
    folder's `lock` (release it when the run ends)."""

    out_dir: str
    backup_dir: str
    is_chief: bool
    lock: "RunLock"


class RunLock:
    """An exclusive `fcntl.flock` on `folder/.keras-vae-train.lock`, taken at once or refused.

    The kernel releases it when the holder exits, killed or not. The file holds the holder's
    pid for the refusal's message, and is removed on `release` while still locked: a trainer
    that opened it just before then finds, once it has the lock, that the name points at
    another file (or none) and tries again, so two trainers never hold two different files.
    """

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderBusy(
                    f"Another keras-vae-train (pid {holder}) is training in the run folder "
                    f"{folder!r}; wait for it to finish, or choose another --run-dir."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # a released (removed) lock file: lock the current one instead
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self):
        if self.fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass  # a read-only or vanished folder: the lock still goes with the descriptor
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def remove_stale_temporary_files(run_dir):
    """Removes the temporary files (`TEMP_FILE`) a killed trainer left in the run folder's own
    folders; call it only while holding the lock, when no other writer can own one. Returns
    the paths removed."""
    removed = []
    for sub in TEMP_FOLDERS:
        folder = os.path.join(run_dir, sub)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            path = os.path.join(folder, name)
            if TEMP_FILE.fullmatch(name) and stat.S_ISREG(os.lstat(path).st_mode):
                os.remove(path)
                removed.append(path)
    return removed


def _refuse(path, problem, fix):
    raise RunFolderError(f"{path} {problem}; {fix}")


_START_AFRESH = "move the run folder away (or choose another --run-dir) to start afresh"


def _regular_file(path):
    """Whether `path` is a regular file (a FIFO would block the reader forever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # missing, a link in a loop, a file where a folder should be on the way
        return False


def _read_json(path):
    if not _regular_file(path):
        _refuse(path, "is not a regular file", _START_AFRESH)
    try:
        return read_json_file(path, path)
    except ConfigError as e:
        raise RunFolderError(f"{e} {_START_AFRESH[0].upper()}{_START_AFRESH[1:]}.") from None


def check_state(backup_dir):
    """The finished epochs that backup/state.json records, after checking it: a JSON object
    with `epoch` >= 1, `weights` naming that epoch's file in this backup folder (never another
    run's), which exists, and `seed_state` (if any) a list of integers. RunFolderError else."""
    path = os.path.join(backup_dir, "state.json")
    state = _read_json(path)
    fix = f"it is not a keras-vae backup state; {_START_AFRESH}"
    if not isinstance(state, dict):
        _refuse(path, f"holds a JSON {type(state).__name__}", fix)
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        _refuse(path, f"has epoch {epoch!r}, expected an integer >= 1", fix)
    weights = state.get("weights")
    expected = BACKUP_WEIGHTS.format(epoch)
    if weights == LEGACY_BACKUP_WEIGHTS.format(epoch):
        expected = weights
    if weights != expected:
        # A path elsewhere would load another run's weights as this run's.
        _refuse(path, f"names the weights {weights!r}; expected {expected!r} in this folder", fix)
    weights_path = os.path.join(backup_dir, expected)
    inside = os.path.dirname(os.path.realpath(weights_path)) == os.path.realpath(backup_dir)
    if not (_regular_file(weights_path) and inside):
        _refuse(
            weights_path,
            "is missing (or not a file of this backup folder), though state.json names it",
            _START_AFRESH,
        )
    seed_state = state.get("seed_state", [])
    ints = isinstance(seed_state, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in seed_state
    )
    if not ints:
        _refuse(path, f"has seed_state {str(seed_state)[:80]}, expected a list of integers", fix)
    return epoch


def check_history(path, done):
    """history.csv, checked for a run with `done` finished epochs: an `epoch` column of integers,
    numbers in every other column, and rows 0..done-1 each once, in order (later rows are the
    interrupted epoch's, which resumption drops). RunFolderError else."""
    fix = "restore it from a copy, or " + _START_AFRESH
    if not _regular_file(path):
        _refuse(path, f"is missing, though the backup has {done} finished epochs", fix)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_HISTORY_BYTES + 1)
        if len(raw) > MAX_HISTORY_BYTES:
            _refuse(path, f"is over {MAX_HISTORY_BYTES} bytes", fix)
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
        rows = list(reader)
        columns = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        _refuse(path, f"is not a readable CSV ({' '.join(str(e).split())})", fix)
    if "epoch" not in columns:
        _refuse(path, f"has no epoch column (columns {columns[:8]})", fix)
    epochs = []
    for number, row in enumerate(rows, start=2):
        values = list(row.values())
        if None in row or None in values:
            _refuse(path, f"line {number} has {len(values)} fields, not {len(columns)}", fix)
        try:
            epoch = int(row["epoch"])
            for key, value in row.items():
                # Empty: a column this epoch did not log (e.g. no held-out batch with several
                # replicas, before a resumption on one device).
                if key != "epoch" and value != "":
                    float(value)
        except ValueError:
            _refuse(path, f"line {number} holds a value that is not a number: {row}", fix)
        epochs.append(epoch)
    kept = [e for e in epochs if e < done]
    if kept != list(range(done)):
        _refuse(
            path,
            f"has rows for epochs {kept[:10]}{'...' if len(kept) > 10 else ''}; the backup has "
            f"epochs 0..{done - 1}, one row each",
            fix,
        )


def check_untrained(path):
    """backup/untrained.json (the held-out numbers before training), when there is one: an
    object with finite `negative_elbo`, `reconstruction` and `kl`. RunFolderError else."""
    if not os.path.lexists(path):
        return
    metrics = _read_json(path)
    for key in ("negative_elbo", "reconstruction", "kl"):
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            _refuse(
                path,
                f"has {key} {value!r}, expected a finite number",
                f"it is not the run's untrained metrics; {_START_AFRESH}",
            )


def check_saved_config(config_path, config):
    """The run's config.json: a valid config that `config` may resume (`check_resumable`)."""
    values = _read_json(config_path)
    try:
        saved = TrainConfig.from_dict(values)
    except ConfigError as e:
        raise RunFolderError(
            f"{config_path} is not a valid run config ({e}) Restore it, or {_START_AFRESH}."
        ) from None
    check_resumable(saved, config)


def _check_not_past(done, run_dir, epochs):
    """Refuses --epochs below what the run has trained: only the last epoch's weights are kept,
    so the run cannot give an earlier epoch's model, and must not pass the later one off as it."""
    if done > epochs:
        raise ConfigError(
            f"The run in {run_dir!r} has already trained {done} epochs; --epochs {epochs} asks "
            f"for fewer, and earlier epochs' weights are not kept. Pass --epochs {done} or more "
            "to continue it, or choose a new --run-dir."
        )


def check_resume(run_dir, backup_dir, config):
    """Checks a run folder's own files before a run resumes from them (nothing to check for a
    new run): config.json agrees with `config`, backup/state.json, history.csv and
    backup/untrained.json are sound. Raises RunFolderError or ConfigError."""
    state_path = os.path.join(backup_dir, "state.json")
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.lexists(state_path):
        if os.path.lexists(config_path) and not _regular_file(config_path):
            _refuse(config_path, "is not a regular file", _START_AFRESH)
        return
    if not os.path.lexists(config_path):
        # Without it any settings would resume the backup: config.json is written before it.
        _refuse(config_path, "is missing, though backup/state.json records a run", _START_AFRESH)
    check_saved_config(config_path, config)
    done = check_state(backup_dir)
    _check_not_past(done, run_dir, config.epochs)
    check_history(os.path.join(run_dir, "history.csv"), done)
    check_untrained(os.path.join(backup_dir, "untrained.json"))


def check_folders(run_dir):
    """Refuses (RunFolderError) a file, or anything but a folder, where the trainer writes a
    folder of its own: the run would otherwise fail at its first epoch's end, an epoch later."""
    for name in WRITTEN_FOLDERS:
        path = os.path.join(run_dir, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            _refuse(path, f"is not a folder, and the trainer writes {name}/ there", _START_AFRESH)


def _check_run_dir(run_dir):
    if not isinstance(run_dir, (str, os.PathLike)) or not os.fspath(run_dir).strip():
        raise ConfigError(
            f"run_dir must name a folder; received {run_dir!r}. Pass a path such as 'runs/digits'."
        )


def prepare_run_dir(run_dir, config):
    """Creates `run_dir`, locks it, removes a killed run's temporary files, checks a run to
    resume (`check_resume`), writes config.json; returns `(backup_dir, lock)`. Raises
    ConfigError (RunFolderBusy, RunFolderError) or an OSError that names the folder; the lock
    is released when it raises."""
    backup_dir = os.path.join(run_dir, "backup")
    config_path = os.path.join(run_dir, "config.json")
    lock = None
    try:
        os.makedirs(run_dir, exist_ok=True)
        lock = RunLock(run_dir)
        check_folders(run_dir)
        remove_stale_temporary_files(run_dir)
        check_resume(run_dir, backup_dir, config)
        atomic_write_text(config_path, json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as e:
        if lock is not None:
            lock.release()
        raise OSError(
            f"Cannot write to the run folder {run_dir!r} ({e.strerror or e}); choose a writable "
            "--run-dir with free space."
        ) from e
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return backup_dir, lock


def open_run_folder(run_dir, strategy, config):
    """This worker's folder, locked and prepared (`prepare_run_dir`): RUN_DIR on the chief,
    RUN_DIR/workers/<task> on the others, so workers sharing a file system never write the
    same file (every worker computes the same thing)."""
    _check_run_dir(run_dir)
    run_dir = os.path.abspath(run_dir)
    is_chief, task = distribute.worker_role(strategy)
    out_dir = run_dir if is_chief else os.path.join(run_dir, "workers", task)
    backup_dir, lock = prepare_run_dir(out_dir, config)
    return RunFolder(out_dir, backup_dir, is_chief, lock)
