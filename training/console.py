"""What the command lines print: TensorFlow's native start-up logging kept off the console.

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
printed as well, and the Python exception and traceback reach stderr as always. Outside these
moments nothing is redirected: `TF_CPP_MIN_LOG_LEVEL` (2 unless set) hides TensorFlow's later
info and warnings, and its errors still show. A hard crash inside a quiet moment loses its
native message: rerun with `KERAS_VAE_TF_LOGS=1`.

`KERAS_VAE_TF_LOGS=1` shows everything TensorFlow prints: nothing is redirected and
`TF_CPP_MIN_LOG_LEVEL` is left as the user set it.

Keras' progress bar redraws itself with carriage returns and escape codes even when stdout is a
file (it treats every POSIX process as a terminal); `fit_verbosity` turns the default bar into
Keras' one line per epoch when stdout is not a terminal.

Example:
>>> from training import console
>>> console.start_tensorflow()  # before anything imports TensorFlow
>>> with console.quiet_native_logs():
...     tflite_bytes = converter.convert()
"""

import contextlib
import os
import re
import sys
import tempfile

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


def one_line(error):
    """An error's message on one line (some libraries' messages span lines, e.g. h5py on a full
    disk); every command promises one."""
    return " ".join(str(error).split())


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


def fit_verbosity(verbose, stream=None):
    """The `verbose` for `Model.fit`: the progress bar (1) only on a terminal, else one line per
    epoch (2). 0 and 2 are returned as they are.

    Args:
        verbose: int. 0 silent, 1 progress bar, 2 one line per epoch.
        stream: file or None. Where Keras prints (default sys.stdout).

    Example:
    >>> model.fit(x, epochs=5, verbose=fit_verbosity(1))
    """
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if verbose == 1 and not (isatty is not None and isatty()):
        return 2
    return verbose
