"""`python tests/sigkill_after_epoch.py K ARGS...`: `keras-vae-train ARGS`, SIGKILLed right after
epoch K is fully recorded (history.csv, backup/, model.keras).

Fault injection for the resumption tests, through `train`'s public `callbacks=` argument: extra
callbacks run after the run's own at the end of each epoch. Needs the repository on PYTHONPATH.
"""

import functools
import os
import signal
import sys

import keras


class SigkillAfterEpoch(keras.callbacks.Callback):
    """Kills its own process with SIGKILL (no cleanup, as a crash would) at the end of `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv):
    from keras_vae.training import cli, trainer

    epoch, args = int(argv[0]), argv[1:]
    # cli.main imports train from training.trainer when it runs: it gets this one.
    trainer.train = functools.partial(trainer.train, callbacks=[SigkillAfterEpoch(epoch)])
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
