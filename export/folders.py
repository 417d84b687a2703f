"""The folders an export writes through: temporary names beside the target, which TF Serving
ignores and a later export sweeps, and the swap of a staged folder into place."""

import ctypes
import errno
import os
import re
import shutil
import socket
import uuid

# Temporary folders start with a dot and are not numbers: TF Serving ignores them. They name their
# host and process, so a later export can remove those left by a killed one.
_TEMP_PREFIX = ".tmp-"
_TEMP_PATTERN = re.compile(r"^\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}-")


def _exchange(a, b):
    """Swaps the folders `a` and `b` in one step (Linux renameat2 with RENAME_EXCHANGE).

    Returns False where the system or file system cannot (other OSes, old kernels, some network
    file systems), so the caller falls back to two renames.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _move_into_place(temp, target, overwrite):
    if not os.path.exists(target):
        os.rename(temp, target)
        return
    if not overwrite:
        raise FileExistsError(
            f"{target!r} appeared while exporting; not replacing it without overwrite=True."
        )
    if _exchange(temp, target):
        # The version folder was never absent; `temp` now holds the old version, which the
        # caller deletes.
        return
    # A directory cannot be atomically replaced by another: move the old one aside first (under
    # a non-numeric name TF Serving ignores), then delete it once the new one is in place.
    old = (
        f"{os.path.dirname(target)}/{_TEMP_PREFIX}old-{os.path.basename(target)}-{uuid.uuid4().hex}"
    )
    os.rename(target, old)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _temp_name(model_dir, suffix):
    host = socket.gethostname() or "host"
    return os.path.join(
        model_dir, f"{_TEMP_PREFIX}{host}-{os.getpid()}-{uuid.uuid4().hex}-{suffix}"
    )


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(model_dir):
    """Deletes temporary folders left in `model_dir` by exports on this host that were killed.

    Returns the removed paths. Folders of live processes, or of other hosts sharing the
    folder, are left alone.
    """
    removed = []
    host = socket.gethostname() or "host"
    for entry in sorted(os.listdir(model_dir)):
        match = _TEMP_PATTERN.match(entry)
        if not match or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = os.path.join(model_dir, entry)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
