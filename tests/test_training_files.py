import errno
import os
import stat
import threading

import numpy as np
import pytest

from keras_vae.training.files import atomic_write, atomic_write_text


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "metrics.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert (tmp_path / "metrics.json").read_text() == "{}\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch\n0\n")

    def half_write(tmp):
        with open(tmp, "w") as f:
            f.write("epo")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_write)
    assert path.read_text() == "epoch\n0\n"
    assert os.listdir(tmp_path) == ["history.csv"]


def _device(folder, name, minor):
    """A character device node in `folder` (1, 7 is /dev/full's; 1, 3 /dev/null's): the real
    /dev/full would be lost if a writer replaced it, this copy only costs the test."""
    path = folder / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (root)")
    return path


def test_a_full_device_is_written_to_not_replaced_and_fails_naming_it(tmp_path):
    # keras-vae-evaluate --json /dev/full (as root) turned the device into a regular file.
    full = _device(tmp_path, "full", 7)
    with pytest.raises(OSError, match=r"No space left on device: '.*full'") as info:
        atomic_write_text(full, '{"elbo": 1.0}\n')
    assert info.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.lstat(full).st_mode), "the device was replaced"
    null = _device(tmp_path, "null", 3)
    assert atomic_write_text(null, "{}\n") == null and stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["full", "null"]  # no temporary file left


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo).read()))
    reader.start()
    atomic_write_text(fifo, "metrics\n")
    reader.join(timeout=10)
    assert received == ["metrics\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_is_written_through_atomically(tmp_path):
    real = tmp_path / "store" / "metrics.json"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "metrics.json"
    link.symlink_to(os.path.join("store", "metrics.json"))  # relative, as ln -s makes it
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert sorted(os.listdir(real.parent)) == ["metrics.json"]
    dangling = tmp_path / "later.json"
    dangling.symlink_to(tmp_path / "store" / "later.json")
    atomic_write(dangling, lambda tmp: open(tmp, "w").write("made\n"))
    assert dangling.is_symlink() and (tmp_path / "store" / "later.json").read_text() == "made\n"


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; expected a file path"):
        atomic_write_text(tmp_path, "x")


def test_extras_on_a_cadence_stay_within_their_share_and_always_run_last(monkeypatch):
    from keras_vae.training import callbacks

    clock = [0.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    cadence, ran = callbacks.Cadence(share=0.1), []

    def extra(epoch):
        clock[0] += 1.0  # each run costs 1 s: at most one per 10 s of training
        ran.append(epoch)

    for epoch in range(40):
        clock[0] += 0.5  # a 0.5 s epoch
        if cadence.due(final=epoch == 39):
            cadence.run(lambda e=epoch: extra(e))
    assert ran[0] == 0 and ran[-1] == 39
    gaps = np.diff(ran[:-1])
    assert gaps.min() >= 20, ran  # 10 s / 0.5 s per epoch
    assert sum(1.0 for _ in ran) / clock[0] <= 0.1 + 1 / clock[0]
    # A share of None runs every epoch; at_first=False waits from start() on.
    every = callbacks.Cadence(share=None)
    assert all(every.due() for _ in range(3))
    later = callbacks.Cadence(share=0.1, at_first=False, cost=1.0)
    later.start()
    assert not later.due()
    clock[0] += 10.0
    assert later.due()
