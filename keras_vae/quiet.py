"""TensorFlow's native start-up logging kept off the console of keras-vae's commands.

TensorFlow 2.21 writes lines to stderr before it has read `TF_CPP_MIN_LOG_LEVEL`, so that
variable cannot hide them: absl's "WARNING: All log messages before absl::InitializeLog() is
called are written to STDERR", oneDNN and CUDA-stub notes (`port.cc`, `cudart_stub.cc`) and
the CPU-feature hint (`cpu_feature_guard.cc`), all during `import tensorflow`, then "failed call
to cuInit" (an `E` line, which level 2 still shows) when the devices are first listed on a
machine without a GPU. The TFLite converter adds MLIR and SavedModel-reader lines,
"fully_quantize: 0, ..." and "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.". These
come from C++, so Python's `logging` and `warnings` cannot reach them either.

So for those moments only (`start_tensorflow`, and `quiet_native_logs` around the TFLite
conversion), the process's stderr, file descriptor 2, points at a temporary file; afterwards it
is restored and what was caught is filtered back out: lines in absl/glog format
(`I0000 00:00:...  port.cc:153] ...`) and the few known ones above are dropped, anything else (a
Python warning, an unknown message) is still printed. If the work fails, its `E`/`F` lines are
printed as well. A hard crash inside a quiet moment loses its native message: rerun with
`KERAS_VAE_TF_LOGS=1`, which shows everything TensorFlow prints (nothing is redirected and
`TF_CPP_MIN_LOG_LEVEL` is left as the user set it).

This module imports nothing heavy: `keras_vae/__init__.py` uses it before Keras loads
TensorFlow, and only in keras-vae's own commands (`launched_as_command`); a program that
imports keras_vae sees TensorFlow's output as it always does.
"""

import contextlib
import os
import re
import sys
import tempfile

# The console scripts (setup.py); `python -m keras_vae...` is recognised from sys.orig_argv.
COMMANDS = ("keras-vae-train", "keras-vae-evaluate", "keras-vae-export", "keras-vae-sample")

ENV = "KERAS_VAE_TF_LOGS"

# absl/glog's prefix: severity, MMDD, time (before absl::InitializeLog "00:00:<epoch seconds>"),
# thread id, file:line].
_NATIVE = re.compile(rb"^[IWEF]\d{4} [\d:.]+ +\d+ [^\s\]]+:\d+\] ")
_NATIVE_INFO = re.compile(rb"^[IW]\d{4} [\d:.]+ +\d+ [^\s\]]+:\d+\] ")
_KNOWN = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    # The second line of cpu_feature_guard.cc's message.
    b"To enable the following instructions:",
    b"fully_quantize: ",
    b"INFO: Created TensorFlow Lite XNNPACK delegate",
)


def tf_logs_wanted():
    """True when the user asked for TensorFlow's own logging (`KERAS_VAE_TF_LOGS=1`)."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _known(line):
    return line.startswith(_KNOWN)


def _kept(captured, failed):
    """The captured lines a person should still see: on success none of the known noise; on
    failure the errors too (only info and warnings dropped)."""
    lines = captured.splitlines(keepends=True)
    if failed:
        return b"".join(x for x in lines if not (_NATIVE_INFO.match(x) or _known(x)))
    return b"".join(x for x in lines if not (_NATIVE.match(x) or _known(x)))


@contextlib.contextmanager
def quiet_native_logs():
    """Catches what native code writes to stderr inside the block; prints back what matters.

    Known TensorFlow, absl and TFLite chatter is dropped; any other line is written to stderr
    when the block ends, and on an exception the native error lines too. Does nothing when
    `KERAS_VAE_TF_LOGS=1` or stderr has no file descriptor.

    Example:
    >>> with quiet_native_logs():
    ...     import tensorflow as tf
    """
    if tf_logs_wanted():
        yield
        return
    _flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a closed or detached stderr): nothing to keep quiet
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            _flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = _kept(capture.read(), failed)
            while kept:
                kept = kept[os.write(2, kept) :]


def _flush():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def start_tensorflow():
    """Imports TensorFlow and lists its devices quietly: the start-up noise is not printed.

    Call it before anything else imports TensorFlow (the first import is the noisy one). It
    lists the physical devices, which loads CUDA (or fails to, on a machine without a GPU)
    without creating the logical devices, so `tf.distribute` and `set_logical_device_configuration`
    can still be set up afterwards. Sets `TF_CPP_MIN_LOG_LEVEL=2` unless the user set it or
    asked for `KERAS_VAE_TF_LOGS=1`.
    """
    if not tf_logs_wanted():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_logs():
        import tensorflow as tf

        tf.config.list_physical_devices()


def launched_as_command(argv=None, orig_argv=None):
    """True when this process is one of keras-vae's commands: a console script, or
    `python -m keras_vae...`."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in COMMANDS:
        return True
    if "-m" in orig_argv[:-1]:
        return orig_argv[orig_argv.index("-m") + 1].startswith("keras_vae")
    return False


def start_tensorflow_for_commands():
    """`start_tensorflow` if this process is a keras-vae command and TensorFlow is not loaded.

    Ctrl-C in those seconds (the import takes several) is one line and exit status 130, as at
    any other moment of the commands, not a traceback from inside TensorFlow's import."""
    if "tensorflow" in sys.modules or not launched_as_command():
        return
    import signal

    class Interrupted(BaseException):
        pass

    def interrupted(signum, frame):
        raise Interrupted

    try:
        previous = signal.signal(signal.SIGINT, interrupted)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        start_tensorflow()
        import keras  # noqa: F401  (the rest of the slow start, which keras_vae imports next)
    except Interrupted:
        # After quiet_native_logs gave stderr back; os._exit, as a half-imported TensorFlow
        # need not shut down cleanly.
        _flush()
        os.write(2, b"\nkeras-vae: interrupted while starting.\n")
        os._exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
