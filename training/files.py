"""Atomic file writes for the run folder: a reader (or a resumed run) never sees half a file.

Shared by training and export. A path that names something other than a regular file is
honoured, not replaced: a symlink is written through (atomically, at its target), and a
device or FIFO (`--json /dev/stdout`, `/dev/null`) is written to directly, since renaming a
temporary file onto `/dev/full` would turn the device into a regular file.
"""

import os
import stat
import tempfile


def _default_mode():
    # mkstemp creates files 0600; the run's files should get the usual umask-based mode, so
    # that another user (a TF Serving account, a teammate) can read model.keras.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _resolved(path):
    """`path` with symlinks followed (also a dangling one: its target is what gets written)."""
    path = os.path.abspath(os.fspath(path))
    return os.path.realpath(path) if os.path.islink(path) else path


def _named(error, path):
    # A failed write() or close() raises without a file name ("[Errno 28] No space left on
    # device"): the message should say which file.
    if isinstance(error, OSError) and error.errno is not None and error.filename is None:
        return type(error)(error.errno, error.strerror, os.fspath(path))
    return error


def atomic_write(path, write, suffix=""):
    """Calls `write(tmp_path)` then renames the file onto `path`, so readers never see half.

    A symlink `path` is written through: its target is replaced atomically, the link kept. If
    `path` is a device or a FIFO, `write(path)` writes to it directly (no rename can be atomic
    there). A directory is refused with IsADirectoryError. Errors are OSErrors naming the file.

    Returns `path`.
    """
    target = _resolved(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(
            f"{os.fspath(path)!r} is a folder; expected a file path. Choose a file name."
        )
    if mode is not None and not stat.S_ISREG(mode):
        try:
            write(target)
        except OSError as e:
            raise _named(e, path) from e
        return path
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, target)
    except OSError as e:
        _remove(tmp)
        raise _named(e, path) from e
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp):
    if os.path.exists(tmp):
        os.remove(tmp)


def atomic_write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically and durably (fsync before the rename)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            # Only a regular file can be synced (fsync on a pipe or a terminal is EINVAL).
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                os.fsync(f.fileno())

    return atomic_write(path, write)
