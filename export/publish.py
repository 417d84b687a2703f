"""One version, one model: the SavedModel and its TFLite files are published together.

`OUT/<name>/<version>/` and `OUT/tflite/<name>-v<version>-*.tflite` (with their sidecar JSON)
are separate paths, and no file system renames several paths in one step. So an export:

1. takes a lock on `OUT` (`OUT/.keras-vae-export.lock`): one export at a time per folder;
2. finishes what an earlier, killed export had committed (`repair`, below);
3. stages everything under temporary names TF Serving and the TFLite file names ignore: the
   SavedModel in `OUT/<name>/.tmp-...`, the TFLite files in `OUT/tflite/.tmp-...-staging/`,
   and records in the SavedModel's metadata (`tflite`) each TFLite file's name, SHA-256 and
   staged path;
4. commits by moving the SavedModel into place: the one step that decides which model the
   version is;
5. publishes: renames each staged TFLite file onto its name and removes the version's TFLite
   files that the new metadata does not list (they belong to the model it replaced).

Killed before 4, the version and its files are as they were, and the next export removes the
temporaries. Killed between 4 and 5 (a few renames), the new SavedModel names its staged
files, and the next export to `OUT` (whatever its model and version) moves them into place
before anything else. `verify` says whether a version and its TFLite files belong together.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

from keras_vae.export import METADATA_PATH, QUANTIZATION_NAMES, TFLITE_DIR

LOCK_NAME = ".keras-vae-export.lock"


class ExportLockedError(BlockingIOError):
    """Another process is exporting to the same folder."""


@contextlib.contextmanager
def locked(out_dir):
    """Holds an exclusive lock on the export folder `out_dir` (created if missing).

    Two exports to one folder would otherwise swap versions and TFLite files under each other
    (one failed converting a SavedModel the other had just replaced). The lock is an
    `fcntl.flock` on `out_dir/.keras-vae-export.lock`, which the kernel releases when the
    holder exits, killed or not; the file holds the holder's pid, for the error message.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = os.path.join(out_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ExportLockedError(
                f"another keras-vae-export is writing {out_dir!r} (pid {holder}); wait for it "
                "to finish, or export to another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def interrupts_deferred():
    """Delays Ctrl-C (SIGINT) until the block is done: the commit and the renames that follow
    it are one step for the user. Only the main thread can set handlers; elsewhere a signal
    cannot interrupt this thread anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler set outside Python: it could not be restored
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)
        elif received and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(model, options, representative_data=None):
    """SHA-256 of what an export is made of: the model's class, config and weights, the export
    options and the representative data. Equal fingerprints make the same export, so rerunning
    an export that completed (or that a killed run had committed) is a no-op, not a refusal."""
    import keras
    import numpy as np

    import keras_vae

    digest = hashlib.sha256()
    described = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": model.get_config(),
        "options": options,
        "keras_vae_version": keras_vae.__version__,
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    if representative_data is not None:
        data = np.ascontiguousarray(representative_data)
        digest.update(f"data:{data.dtype}:{data.shape}".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()


def tflite_names(name, version):
    """The TFLite file names a version may own: `<name>-v<version>-<quantization>.tflite|json`."""
    return [
        f"{name}-v{version}-{q}{ext}" for q in QUANTIZATION_NAMES for ext in (".tflite", ".json")
    ]


def _metadata(version_dir):
    try:
        with open(os.path.join(version_dir, METADATA_PATH), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_metadata(version_dir, payload):
    """Writes the metadata of a staged (not yet served) SavedModel."""
    path = os.path.join(version_dir, METADATA_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(temp, path)


def publish(out_dir, name, version):
    """Step 5 for `out_dir/<name>/<version>`: moves the staged TFLite files its metadata lists
    onto their names and removes the version's other TFLite files. Returns the moved paths.

    Idempotent; a version without a `tflite` record (exported before keras-vae kept one) is
    left alone.
    """
    meta = _metadata(os.path.join(out_dir, name, str(version)))
    if meta is None or meta.get("tflite") is None:
        return []
    tflite_dir = os.path.join(out_dir, TFLITE_DIR)
    files, moved, staging = meta["tflite"], [], set()
    for base, info in sorted(files.items()):
        staged = os.path.join(tflite_dir, info["staged"])
        staging.add(os.path.dirname(staged))
        # A staged file whose bytes are not the recorded ones is not this version's: never
        # published (verify then reports the version as incomplete).
        if os.path.isfile(staged) and sha256(staged) == info["sha256"]:
            os.replace(staged, os.path.join(tflite_dir, base))
            moved.append(os.path.join(tflite_dir, base))
    for base in tflite_names(name, version):
        path = os.path.join(tflite_dir, base)
        if base not in files and os.path.lexists(path):
            os.remove(path)
    for folder in staging:
        shutil.rmtree(folder, ignore_errors=True)
    return moved


def repair(out_dir, name=None):
    """Step 2: publishes every version (of model `name`, or of every model in `out_dir`) whose
    TFLite files are still staged: its export was killed after the commit. Returns the
    `(name, version)` pairs repaired.

    Every model's, by default: the staging folders of all models share `out_dir/tflite`, and
    the cleanup that follows would otherwise delete files another model's version needs.
    """
    out_dir = os.fspath(out_dir)
    tflite_dir = os.path.join(out_dir, TFLITE_DIR)
    if name is None:
        entries = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
        names = [e for e in entries if e != TFLITE_DIR and not e.startswith(".")]
    else:
        names = [name]
    repaired = []
    for model in names:
        model_dir = os.path.join(out_dir, model)
        if not os.path.isdir(model_dir):
            continue
        for entry in sorted(os.listdir(model_dir)):
            if not entry.isdigit():
                continue
            meta = _metadata(os.path.join(model_dir, entry))
            files = (meta or {}).get("tflite") or {}
            staged = (os.path.join(tflite_dir, i["staged"]) for i in files.values())
            if any(os.path.lexists(p) for p in staged):
                publish(out_dir, model, int(entry))
                repaired.append((model, int(entry)))
    return repaired


def verify(out_dir, name="vae", version=1):
    """The metadata of `out_dir/<name>/<version>` if its TFLite files are the ones exported with
    it (names and SHA-256 as recorded, no other TFLite file of that version), else ValueError.

    Example:
    >>> verify("serving", "vae", 2)["tflite"]  # {"vae-v2-float32.tflite": {"sha256": ...}, ...}
    """
    from keras_vae.export.saved_model import read_metadata

    target = os.path.join(os.fspath(out_dir), name, str(version))
    meta = read_metadata(target)
    files = meta.get("tflite")
    if files is None:
        return meta  # exported before keras-vae recorded its TFLite files: nothing to compare
    tflite_dir = os.path.join(os.fspath(out_dir), TFLITE_DIR)
    problems = []
    for base, info in sorted(files.items()):
        path = os.path.join(tflite_dir, base)
        if not os.path.isfile(path):
            problems.append(f"{base} is missing")
        elif sha256(path) != info["sha256"]:
            problems.append(f"{base} is not the file exported with it")
    for base in tflite_names(name, version):
        if base not in files and os.path.lexists(os.path.join(tflite_dir, base)):
            problems.append(f"{base} belongs to another export")
    if problems:
        raise ValueError(
            f"{target!r} and its TFLite files do not match: {'; '.join(problems)}. Run the same "
            "keras-vae-export command again (it finishes an interrupted export), or export "
            "again with --overwrite."
        )
    return meta
