"""`keras-vae-train` (also `python -m training`): train a VAE from the command line.

Every flag is checked before any work starts; a bad one exits with status 2 and one line that
says what was wrong. Status 1 means training or export failed (e.g. the loss became NaN).
"""

import argparse
import dataclasses
import json
import os
import sys

from training.config import ARCHS, LIKELIHOODS, STRATEGIES, ConfigError, TrainConfig

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
samples.png, reconstructions.png, latent_scatter.png and latent_manifold.png (2-D latent),
metrics.json, export/ (SavedModel and TFLite; --no-export skips it).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage block: the reason, then where to look.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sigma(text):
    if text == "learned":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'learned'; received {text!r}"
        ) from None


def build_parser():
    d = TrainConfig()
    p = _Parser(
        prog=PROG,
        description="Train a variational autoencoder on images or tables, with pictures, "
        "held-out numbers, resumption and tf.distribute.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="start from a config.json written by an earlier run")
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        help="offline: digits (8x8), digits28 (the same digits at 28x28), photos64 (64x64 "
        "colour photo patches, Gaussian likelihood), ring; downloaded: mnist, fashion_mnist; or "
        "a path to .npz, .npy, .csv, an IDX file or a folder of IDX files or PNG/JPEG images "
        f"(default {d.data})",
    )
    data.add_argument(
        "--test-split", type=float, help=f"held-out fraction (default {d.test_split})"
    )
    data.add_argument("--limit", type=int, help="use at most this many examples per split")
    data.add_argument(
        "--binarize", action=argparse.BooleanOptionalAction, default=None,
        help="dynamic binarization of pixels for the Bernoulli likelihood (default off)",
    )  # fmt: skip
    model = p.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHS, help=f"network (default {d.arch})")
    model.add_argument("--latent-dim", type=int, help=f"size of z (default {d.latent_dim})")
    model.add_argument(
        "--likelihood", choices=LIKELIHOODS,
        help="P(X|z) (default: bernoulli for images, gaussian for vectors)",
    )  # fmt: skip
    model.add_argument(
        "--sigma", type=_sigma, help=f"gaussian std, a number or 'learned' (default {d.sigma})"
    )
    model.add_argument("--beta", type=float, help=f"KL weight (default {d.beta})")
    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=int, help=f"passes over the data (default {d.epochs})")
    fit.add_argument("--batch-size", type=int, help=f"global batch (default {d.batch_size})")
    fit.add_argument(
        "--learning-rate", type=float, help=f"Adam step size (default {d.learning_rate:g})"
    )
    fit.add_argument("--seed", type=int, help=f"seed for weights, split, noise (default {d.seed})")
    fit.add_argument(
        "--strategy", choices=STRATEGIES, help="tf.distribute strategy (default one device)"
    )
    fit.add_argument("--devices", help="mirrored devices, comma-separated, e.g. /gpu:0,/gpu:1")
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", help="output folder (default runs/<data name>)")
    out.add_argument(
        "--export", action=argparse.BooleanOptionalAction, default=None,
        help="write SavedModel and TFLite files to RUN_DIR/export (default on)",
    )  # fmt: skip
    out.add_argument(
        "--iwae-samples",
        type=int,
        help="K for the held-out log-likelihood (default: up to 1000, so that the evaluation "
        "decodes no more latents than training saw examples)",
    )
    out.add_argument(
        "--eval-examples",
        type=int,
        help="held-out examples for the log-likelihood (default: in proportion to the training, "
        "at least 500 or all)",
    )
    out.add_argument(
        "--verbose", type=int, choices=(0, 1, 2),
        help="0 silent, 1 progress bar (default), 2 one line per epoch",
    )  # fmt: skip
    return p


def config_from_args(args):
    """Merges the flags over --config (if any) over the defaults; validates the result."""
    values = {}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"Cannot read --config {args.config!r}: {e}.") from None
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return TrainConfig.from_dict(values).validate()


def default_run_dir(data):
    name = os.path.basename(os.path.normpath(data))
    for suffix in (".gz", ".npz", ".npy", ".csv"):
        name = name.removesuffix(suffix)
    return os.path.join("runs", name or "data")


def _one_line(error):
    # Some libraries' messages span lines (h5py on a full disk); the CLI promises one.
    return " ".join(str(error).split())


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.exit(2, f"{PROG}: error: {e}\n")
    run_dir = args.run_dir or default_run_dir(config.data)

    from training.data import DataError
    from training.trainer import train

    try:
        train(config, run_dir)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"{PROG}: error: {_one_line(e)}\n")
    except (RuntimeError, OSError) as e:  # TrainingDiverged, full disk, export failures
        parser.exit(1, f"{PROG}: error: {_one_line(e)}\n")
    except KeyboardInterrupt:
        parser.exit(
            130, f"\n{PROG}: interrupted; rerun the same command to resume from the last epoch.\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
