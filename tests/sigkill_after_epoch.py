"""`python tests/sigkill_after_epoch.py K ARGS...`: `keras-vae-train ARGS`, SIGKILLed right after
epoch K is fully recorded (history.csv, backup/, model.keras).

Fault injection for the resumption tests, through `train`'s public `callbacks=` argument: extra
callbacks run after the run's own at the end of each epoch. Needs the repository on PYTHONPATH.
"""

import functools
import json
import os
import signal
import sys
import time

import keras


class SigkillAfterEpoch(keras.callbacks.Callback):
    """Kills its own process with SIGKILL (no cleanup, as a crash would) at the end of `epoch`,
    once `backup_dir`/state.json records it: the backup is written in the background
    (training.backup), a few milliseconds after the epoch ends."""

    def __init__(self, epoch, backup_dir):
        super().__init__()
        self.epoch = epoch
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _recorded(self.backup_dir) <= epoch:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)


def _recorded(backup_dir):
    try:
        with open(os.path.join(backup_dir, "state.json"), encoding="utf-8") as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def main(argv):
    from keras_vae.training import cli, trainer

    epoch, args = int(argv[0]), argv[1:]
    backup_dir = os.path.join(args[args.index("--run-dir") + 1], "backup")
    # cli.main imports train from training.trainer when it runs: it gets this one.
    killer = SigkillAfterEpoch(epoch, backup_dir)
    trainer.train = functools.partial(trainer.train, callbacks=[killer])
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
