"""`keras-vae-train` (also `python -m keras_vae.training`): train a VAE from the command line.

Every flag is checked before any work starts; a bad one exits with status 2 and one line that
says what was wrong. Status 1 means training or export failed (e.g. the loss became NaN).
"""

import argparse
import dataclasses
import os
import sys
import traceback
import typing

from keras_vae.training.checks import parse_int, read_json_file
from keras_vae.training.config import GROUPS, ConfigError, TrainConfig
from keras_vae.training.console import OneLineParser

PROG = "keras-vae-train"
EPILOG = """examples:
  keras-vae-train                                   # digits (embedded), MLP, 2-D latent, 30 epochs
  keras-vae-train --data digits --arch conv --epochs 50 --run-dir runs/conv
  keras-vae-train --data mnist.npz --epochs 20 --binarize      # a local copy of Keras' mnist.npz
  keras-vae-train --data ./mnist_idx/ --arch conv     # folder with train-/t10k-images-idx3-ubyte.gz
  keras-vae-train --data ./faces/                     # a folder of PNG/JPEG images, one size
  keras-vae-train --data sensors.csv --latent-dim 4   # a table: MLP, Gaussian likelihood
  keras-vae-train --data ring --likelihood gaussian --sigma 0.1 --epochs 50
  keras-vae-train --strategy mirrored               # all local GPUs
  keras-vae-train --strategy mirrored --devices /cpu:0,/cpu:1  # two logical CPUs
  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
              "task": {"type": "worker", "index": 0}}' keras-vae-train --strategy multi-worker
  keras-vae-train --config runs/digits/config.json --run-dir runs/again   # repeat a run

Rerunning the same command after a crash resumes from the last finished epoch.
Outputs (in --run-dir): model.keras, history.csv, logs/ (TensorBoard), samples/epoch_XXX.png,
samples.png, reconstructions.png, loss_curve.png, kl_per_dimension.png, latent_scatter.png and
latent_manifold.png (2-D latent), metrics.json, export/ (SavedModel and TFLite; --no-export skips it).
"""


def build_parser():
    """The flags: `--config`, `--run-dir`, and one per `TrainConfig` field, in its group."""
    p = OneLineParser(
        prog=PROG,
        description="Train a variational autoencoder on images or tables, with pictures, "
        "held-out numbers, resumption and tf.distribute.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="start from a config.json written by an earlier run")
    fields = dataclasses.fields(TrainConfig)
    for name in GROUPS:
        group = p.add_argument_group(name)
        if name == "output":
            group.add_argument("--run-dir", help="output folder (default runs/<data name>)")
        for field in fields:
            if field.metadata["group"] == name:
                group.add_argument("--" + field.name.replace("_", "-"), **_flag(field))
    return p


def _flag(field):
    # Every flag defaults to None, "not given", so that flags override --config field by field.
    default = field.default
    if isinstance(default, bool):
        default = "on" if default else "off"
    types = [t for t in typing.get_args(field.type) or (field.type,) if t is not type(None)]
    implied = {}
    if types == [bool]:
        implied = {"action": argparse.BooleanOptionalAction}
    elif types == [int]:
        implied = {"type": parse_int}
    elif types == [float]:
        implied = {"type": float}
    return {
        "help": field.metadata["help"].format(default=default),
        **implied,
        **field.metadata["flag"],
    }


def config_from_args(args):
    """Merges the flags over --config (if any) over the defaults; the result is validated."""
    values = {}
    if args.config:
        what = f"--config {args.config!r}"
        values = read_json_file(args.config, what)
        if not isinstance(values, dict):
            raise ConfigError(
                f"{what} holds a JSON {type(values).__name__}; expected an object of settings "
                'such as a run\'s config.json ({"data": "digits", ...}).'
            )
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return TrainConfig.from_dict(values)


def default_run_dir(data):
    name = os.path.basename(os.path.normpath(data))
    for suffix in (".gz", ".npz", ".npy", ".csv"):
        name = name.removesuffix(suffix)
    return os.path.join("runs", name or "data")


def run_dir_of(args, config):
    """`--run-dir`, or runs/<data name> when it is not given; an empty one is refused (it would
    otherwise mean the default, or the current folder)."""
    if args.run_dir is None:
        return default_run_dir(config.data)
    if not args.run_dir.strip():
        raise ConfigError(
            f"--run-dir must name a folder; received {args.run_dir!r}. Pass a path such as "
            "runs/digits, or leave the flag out for runs/<data name>."
        )
    return args.run_dir


def main(argv=None):
    """The command; its exit status. A multi-worker run forks its trainer (training.cluster):
    that process ends here, with the status, whatever happens, so that a caller of `main` in
    Python (a test, a notebook) carries on once, in the supervisor, not twice."""
    from keras_vae.training import cluster

    code = 1
    try:
        code = _interruptible(argv)
    except SystemExit as e:
        if not cluster.is_trainer():
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        if not cluster.is_trainer():
            raise
        traceback.print_exc()
    if cluster.is_trainer():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _interruptible(argv):
    # Ctrl-C may come at any moment, also while TensorFlow starts (seconds): every phase of the
    # command answers it the same way, on one line.
    started = []
    try:
        return _main(argv, started)
    except KeyboardInterrupt:
        if started:
            message = "interrupted; rerun the same command to resume from the last epoch."
        else:
            message = "interrupted before training started; nothing was trained."
        sys.stderr.write(f"\n{PROG}: {message}\n")
        return 130


def _main(argv, started):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        run_dir = run_dir_of(args, config)
    except ConfigError as e:
        parser.exit(2, f"{PROG}: error: {e}\n")

    from keras_vae.training import cluster, console

    console.start_tensorflow()
    from keras_vae.training.data import DataError
    from keras_vae.training.trainer import train

    try:
        started.append(True)
        if config.strategy == "multi-worker":
            from keras_vae.training.distribute import read_tf_config

            read_tf_config()  # a bad TF_CONFIG is refused here, before the fork
            # From here this process trains; its parent bounds the waits for peers and answers
            # signals (training.cluster).
            code = cluster.supervise(config.cluster_timeout)
            if code is not None:  # the supervisor: the trainer has ended
                return code
        train(config, run_dir)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"{PROG}: error: {console.one_line(e)}\n")
    except (RuntimeError, OSError) as e:  # TrainingDiverged, full disk, export failures
        parser.exit(1, f"{PROG}: error: {console.one_line(e)}\n")
    except Exception as e:
        lost = cluster.lost_peer(e)
        if lost is None:
            raise
        parser.exit(cluster.EXIT_PEER_LOST, f"{PROG}: error: {lost}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
