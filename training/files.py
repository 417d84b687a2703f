"""Atomic file writes for the run folder: a reader (or a resumed run) never sees half a file."""

import os
import tempfile


def _default_mode():
    # mkstemp creates files 0600; the run's files should get the usual umask-based mode, so
    # that another user (a TF Serving account, a teammate) can read model.keras.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write, suffix=""):
    """Calls `write(tmp_path)` then renames the file onto `path`, so readers never see half."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically and durably (fsync before the rename)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)
