"""What the command lines print: one-line errors, a progress bar only on a terminal, and
TensorFlow's native start-up logging off the console (`keras_vae.quiet`, which the library's
`__init__` runs first in a keras-vae command; re-exported here).

Keras' progress bar redraws itself with carriage returns and escape codes even when stdout is a
file (it treats every POSIX process as a terminal); `fit_verbosity` turns the default bar into
Keras' one line per epoch when stdout is not a terminal.

Example:
>>> from keras_vae.training import console
>>> console.start_tensorflow()  # before anything imports TensorFlow
>>> with console.quiet_native_logs():
...     tflite_bytes = converter.convert()
"""

import argparse
import sys

from keras_vae.quiet import ENV, quiet_native_logs, start_tensorflow, tf_logs_wanted  # noqa: F401


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line and exit status 2, as every other
    error of the commands is, instead of argparse's usage block:
    `keras-vae-sample: error: argument --seed: invalid int value: 'nan' (see keras-vae-sample
    sample --help)`. A subcommand's parser (`add_subparsers`) is one too."""

    def error(self, message):
        command = self.prog.split()[0]  # "keras-vae-sample sample": the command is the first word
        self.exit(2, f"{command}: error: {message} (see {self.prog} --help)\n")


def one_line(error):
    """An error's message on one line (some libraries' messages span lines, e.g. h5py on a full
    disk); every command promises one."""
    return " ".join(str(error).split())


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
