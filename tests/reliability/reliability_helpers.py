"""Shared by the reliability tests: a tiny trained VAE, its exports, subprocess and disk helpers.

Everything is built once per process and cached, so each test file pays for the model, the
SavedModel and the TFLite conversion at most once.
"""

import atexit
import contextlib
import functools
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[2]
LATENT_DIM = 2
DATA_SHAPE = (8, 8, 1)
MAX_SAMPLES = 64


@functools.cache
def digits():
    """Digits as (N, 8, 8, 1) float32 in [0, 1]."""
    from keras_vae.training.data import LOADERS

    return LOADERS["digits"]()["x"]


@functools.cache
def tiny_vae():
    """An MLP VAE (latent 2, one hidden layer of 16) fitted for one epoch on 256 digits."""
    import keras

    import keras_vae

    keras.utils.set_random_seed(0)
    model = keras_vae.build_vae(DATA_SHAPE, latent_dim=LATENT_DIM, hidden_units=(16,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(digits()[:256], epochs=1, batch_size=64, verbose=0)
    return model


def temp_dir(prefix):
    """A temporary folder removed when the process exits."""
    path = tempfile.mkdtemp(prefix=f"keras_vae_rel_{prefix}_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def saved_model_dir():
    """The tiny VAE exported as `BASE/vae/1` with `max_samples=MAX_SAMPLES`."""
    from keras_vae import export

    base = temp_dir("export")
    return export.export_saved_model(
        tiny_vae(), base, name="vae", version=1, max_samples=MAX_SAMPLES, iw_samples=8
    )


@functools.cache
def loaded_saved_model():
    """The export loaded with plain TensorFlow, as TF Serving would load it."""
    import tensorflow as tf

    return tf.saved_model.load(saved_model_dir())


@functools.cache
def tflite_path():
    """The float32 `.tflite` (decode and sample) converted from the SavedModel."""
    from keras_vae import export

    out = os.path.join(temp_dir("tflite"), "vae.tflite")
    return export.export_tflite(saved_model_dir(), out, quantize="float32")


# ------------------------------------------------------------------------------------------------
# Subprocesses.


def sigkill_when(process, predicate, timeout, interval=0.01):
    """SIGKILLs `process` as soon as `predicate()` holds (or at `timeout`).

    Returns `(reached, alive, output)`: whether the predicate held, whether the process was
    still running when the signal went out, and its combined output. Never leaves it running.
    """
    try:
        reached = wait_for(predicate, timeout, process, interval=interval)
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return reached, alive, output


def python_env():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_python(args, timeout=240, **kwargs):
    """Runs `python ARGS` in the repository root; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_python(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def wait_for(predicate, timeout, process=None, interval=0.01):
    """Polls `predicate()` until true; False on timeout or when `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and process.poll() is not None:
            return bool(predicate())
        time.sleep(interval)
    return False


# ------------------------------------------------------------------------------------------------
# Storage.


@functools.cache
def _can_mount():
    probe = tempfile.mkdtemp(prefix="keras_vae_rel_probe_")
    try:
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                capture_output=True,
                timeout=10,
            ).returncode
            == 0
        )
        if ok:
            subprocess.run(["umount", "-l", probe], capture_output=True, timeout=10)
        return ok
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def can_mount():
    """Whether this process may mount a tmpfs (root in a sandbox that allows it).

    KERAS_VAE_TEST_NO_MOUNT=1 pretends it may not, to run the fallbacks.
    """
    if os.environ.get("KERAS_VAE_TEST_NO_MOUNT") == "1":
        return False
    return _can_mount()


@contextlib.contextmanager
def small_tmpfs(size):
    """A freshly mounted tmpfs of `size` (e.g. "8m"): a real disk that can fill up."""
    mount_point = tempfile.mkdtemp(prefix="keras_vae_rel_tmpfs_")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount_point],
        check=True,
        capture_output=True,
        timeout=10,
    )
    try:
        yield pathlib.Path(mount_point)
    finally:
        # Lazy: a writer (e.g. TensorBoard's) may still hold a file open.
        subprocess.run(["umount", "-l", mount_point], capture_output=True, timeout=10)
        shutil.rmtree(mount_point, ignore_errors=True)


def tree_snapshot(folder):
    """{relative path: bytes} of every file under `folder` (small folders only)."""
    folder = pathlib.Path(folder)
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@contextlib.contextmanager
def nearly_full_disk(folder, free_bytes):
    """Leaves about `free_bytes` writable under `folder`: a filled tmpfs where mounting is
    allowed, otherwise a file size limit (RLIMIT_FSIZE, EFBIG instead of ENOSPC)."""
    if can_mount():
        st = os.statvfs(folder)
        filler = os.path.join(folder, "filler.bin")
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_bytes))
        try:
            yield
        finally:
            os.remove(filler)
    else:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (free_bytes, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)


@contextlib.contextmanager
def scratch_disk(tmp_path):
    """A folder on a small tmpfs where mounting is allowed, else `tmp_path` (see
    `nearly_full_disk`)."""
    if can_mount():
        with small_tmpfs("32m") as disk:
            yield disk
    else:
        yield tmp_path
