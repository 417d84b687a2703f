"""The training run's configuration: flat, typed, validated once, written to RUN_DIR/config.json.

Every field is a plain value so the JSON file repeats a run exactly:
`keras-vae-train --config RUN_DIR/config.json` or `train(json.load(...), run_dir)`. Each field
also carries its command-line flag (`option`): `keras-vae-train` builds its parser from them, so
a new setting is one line here.
"""

import argparse
import dataclasses
import json
import math
import os

# The names training.data.LOADERS knows (tests/test_training_data.py checks they agree).
NAMED_DATA = ("digits", "digits28", "photos64", "ring", "mnist", "fashion_mnist")
# The keys of keras_vae.networks.ARCHITECTURES and keras_vae.likelihoods.LIKELIHOODS, named
# again because importing keras_vae loads Keras and TensorFlow (seconds) and `--help` and bad
# flags answer without them; tests/test_training_config_plots.py checks they agree.
ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
STRATEGIES = ("default", "mirrored", "multi-worker")
VERBOSITY = (0, 1, 2)
# The flag groups of `keras-vae-train --help`, in order.
GROUPS = ("data", "model", "training", "output")
LOCAL_SUFFIXES = (".npz", ".npy", ".csv", "-idx3-ubyte", "-idx3-ubyte.gz")

# Fields that may change between a run and its resumption without making the saved training
# state meaningless: more epochs continue the run; export and evaluation only touch the end;
# the strategy does not change the step (N replicas match one device), so a run started on
# several GPUs can finish on one.
RESUMABLE_CHANGES = (
    "epochs",
    "export",
    "iwae_samples",
    "eval_examples",
    "verbose",
    "strategy",
    "devices",
)


class ConfigError(ValueError):
    """A flag or config value is invalid; the message is one line that says how to fix it."""


def option(default, group, help, **flag):
    """A config field with its `keras-vae-train` flag (`--latent-dim` for `latent_dim`).

    Args:
        default: the field's default.
        group: str. One of `GROUPS`, where `--help` lists the flag.
        help: str. The flag's help; "{default}" in it shows the default (on/off for a bool).
        **flag: further `add_argument` arguments, e.g. `choices`, or a `type` that the field's
            annotation does not imply (int and float do; a bool is `--x/--no-x`).
    """
    return dataclasses.field(default=default, metadata={"group": group, "help": help, "flag": flag})


def parse_sigma(text):
    """`--sigma`: a number (checked by `TrainConfig.validate`) or "learned"."""
    if text == "learned":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'learned'; received {text!r}"
        ) from None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What to train and how; checked when made (`validate`), so every instance is valid.

    Args:
        data: str. A name: "digits" (8x8), "digits28" (the same digits at 28x28), "photos64"
            (64x64 RGB photo patches, Gaussian likelihood), "ring" (all four offline),
            "mnist", "fashion_mnist" (downloaded); or a local path: `.npz`, `.npy`, `.csv`, an
            IDX file (`*-idx3-ubyte[.gz]`), or a folder of PNG/JPEG images or of IDX files.
        arch: str. "mlp" or "conv" (images only).
        latent_dim: int. Size of z; 2 also draws the latent scatter and manifold.
        likelihood: str or None. "bernoulli" or "gaussian"; None picks bernoulli for images and
            gaussian for vectors.
        sigma: float or "learned". The Gaussian likelihood's standard deviation.
        beta: float. Weight of the KL term.
        epochs: int. Number of passes over the training split.
        batch_size: int. Global batch size (split over replicas).
        learning_rate: float. Adam's step size.
        seed: int. Seeds the weights, the split, the shuffling and the model's noise.
        strategy: str. "default" (one device), "mirrored" or "multi-worker".
        devices: str or None. Comma-separated devices for "mirrored", e.g. "/gpu:0,/gpu:1" or
            "/cpu:0,/cpu:1" (a CPU is split into that many logical devices).
        test_split: float. Held-out fraction when the data has no test split of its own.
        limit: int or None. Use at most this many training examples (quick runs).
        binarize: bool. Dynamic binarization: each epoch sees pixels drawn from Bernoulli(x).
        export: bool. Write RUN_DIR/export/ (SavedModel and TFLite) at the end.
        iwae_samples: int or None. Importance samples K for the held-out log-likelihood; None
            chooses up to 1000 in proportion to the training (`training.evaluate.evaluation_plan`).
        eval_examples: int or None. Held-out examples for the log-likelihood; None chooses in
            proportion to the training (at least 500 or all).
        verbose: int. Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.
    """

    data: str = option(
        "digits",
        "data",
        "offline: digits (8x8), digits28 (the same digits at 28x28), photos64 (64x64 colour photo "
        "patches, Gaussian likelihood), ring; downloaded: mnist, fashion_mnist; or a path to "
        ".npz, .npy, .csv, an IDX file or a folder of IDX files or PNG/JPEG images "
        "(default {default})",
    )
    arch: str = option("mlp", "model", "network (default {default})", choices=ARCHS)
    latent_dim: int = option(2, "model", "size of z (default {default})")
    likelihood: str | None = option(
        None,
        "model",
        "P(X|z) (default: bernoulli for images, gaussian for vectors)",
        choices=LIKELIHOODS,
    )
    sigma: float | str = option(
        "learned",
        "model",
        "gaussian std, a number or 'learned' (default {default})",
        type=parse_sigma,
    )
    beta: float = option(1.0, "model", "KL weight (default {default})")
    epochs: int = option(30, "training", "passes over the data (default {default})")
    batch_size: int = option(64, "training", "global batch (default {default})")
    learning_rate: float = option(1e-3, "training", "Adam step size (default {default:g})")
    seed: int = option(0, "training", "seed for weights, split, noise (default {default})")
    strategy: str = option(
        "default", "training", "tf.distribute strategy (default one device)", choices=STRATEGIES
    )
    devices: str | None = option(
        None, "training", "mirrored devices, comma-separated, e.g. /gpu:0,/gpu:1"
    )
    test_split: float = option(0.2, "data", "held-out fraction (default {default})")
    limit: int | None = option(None, "data", "use at most this many examples per split")
    binarize: bool = option(
        False,
        "data",
        "dynamic binarization of pixels for the Bernoulli likelihood (default {default})",
    )
    export: bool = option(
        True, "output", "write SavedModel and TFLite files to RUN_DIR/export (default {default})"
    )
    iwae_samples: int | None = option(
        None,
        "output",
        "K for the held-out log-likelihood (default: up to 1000, so that the evaluation decodes "
        "no more latents than training saw examples)",
    )
    eval_examples: int | None = option(
        None,
        "output",
        "held-out examples for the log-likelihood (default: in proportion to the training, at "
        "least 500 or all)",
    )
    verbose: int = option(
        1,
        "output",
        "0 silent, 1 progress bar (default), 2 one line per epoch",
        choices=VERBOSITY,
    )

    def __post_init__(self):
        self.validate()

    @classmethod
    def from_dict(cls, values):
        """Builds a validated config from a dict (e.g. a loaded config.json); unknown keys are an
        error. A `TrainConfig` is returned as it is: it was validated when made."""
        if isinstance(values, cls):
            return values
        if not isinstance(values, dict):
            raise ConfigError(
                f"config must be a TrainConfig or a dict; received {type(values).__name__}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"Unknown config keys {unknown}; expected some of {sorted(names)}.")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)

    def sigma_value(self):
        """sigma for `keras_vae.build_vae`: a float, or None for a learned one."""
        return None if self.sigma == "learned" else float(self.sigma)

    def validate(self):
        """Checks every field; raises `ConfigError` with a one-line reason. Returns self."""
        _check_data(self.data)
        _check_choice("arch", self.arch, ARCHS)
        _check_int("latent_dim", self.latent_dim, 1)
        if self.likelihood is not None:
            _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.sigma != "learned":
            _check_float("sigma", self.sigma, 0.0, strict=True, hint="or 'learned'")
        _check_float("beta", self.beta, 0.0)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("learning_rate", self.learning_rate, 0.0, strict=True)
        _check_int("seed", self.seed, 0)
        _check_choice("strategy", self.strategy, STRATEGIES)
        if self.devices is not None:
            if self.strategy != "mirrored":
                raise ConfigError(
                    f"--devices applies to --strategy mirrored; received --strategy "
                    f"{self.strategy} with --devices {self.devices}."
                )
            devices = [d.strip() for d in str(self.devices).split(",") if d.strip()]
            if not devices:
                raise ConfigError("--devices must list devices, e.g. /gpu:0,/gpu:1.")
        if not (isinstance(self.test_split, (int, float)) and 0 < self.test_split < 1):
            raise ConfigError(
                f"test_split must be a fraction in (0, 1); received {self.test_split!r}."
            )
        if self.limit is not None:
            _check_int("limit", self.limit, 2)
        if self.iwae_samples is not None:
            _check_int("iwae_samples", self.iwae_samples, 1)
        if self.eval_examples is not None:
            _check_int("eval_examples", self.eval_examples, 1)
        if self.binarize and self.likelihood == "gaussian":
            raise ConfigError(
                "--binarize draws binary pixels for a Bernoulli likelihood; "
                "drop it or use --likelihood bernoulli."
            )
        if self.arch == "conv" and self.data == "ring":
            raise ConfigError(
                "--arch conv needs images; the ring data are 2-D points. Use --arch mlp."
            )
        if self.arch == "conv" and str(self.data).lower().endswith(".csv"):
            raise ConfigError(
                "--arch conv needs images; a .csv table holds vectors. Use --arch mlp."
            )
        if self.verbose not in VERBOSITY:
            raise ConfigError(f"verbose must be 0, 1 or 2; received {self.verbose!r}.")
        return self


def _check_data(data):
    if not isinstance(data, str) or not data:
        raise ConfigError(f"data must be a name or a path; received {data!r}.")
    if data in NAMED_DATA:
        return
    looks_like_path = os.sep in data or "." in os.path.basename(data) or data.endswith("ubyte")
    if not looks_like_path and not os.path.exists(data):
        raise ConfigError(
            f"Unknown data {data!r}; expected one of {', '.join(NAMED_DATA)} or a path to "
            ".npz, .npy, .csv, IDX files or a folder of images."
        )
    if not os.path.exists(data):
        raise ConfigError(f"Data path {data!r} does not exist.")
    if os.path.isfile(data) and not data.lower().endswith(LOCAL_SUFFIXES):
        raise ConfigError(
            f"Unsupported data file {data!r}; expected .npz, .npy, .csv or an IDX file "
            "(*-idx3-ubyte or *-idx3-ubyte.gz), or a folder of PNG/JPEG images."
        )


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; expected one of {', '.join(choices)}.")


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; received {value!r}.")


def _check_float(name, value, minimum, strict=False, hint=""):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = ">" if strict else ">="
        hint = f" {hint}" if hint else ""
        raise ConfigError(f"{name} must be a number {bound} {minimum}{hint}; received {value!r}.")


def read_config(path):
    """Loads a config.json written by a run."""
    with open(path, encoding="utf-8") as f:
        return TrainConfig.from_dict(json.load(f))


def check_resumable(saved, config):
    """Raises `ConfigError` when `config` would continue `saved` with different settings."""
    ours, theirs = config.to_dict(), saved.to_dict()
    changed = [k for k in ours if k not in RESUMABLE_CHANGES and ours[k] != theirs.get(k)]
    if changed:
        diffs = ", ".join(f"{k}: {theirs.get(k)!r} -> {ours[k]!r}" for k in changed)
        raise ConfigError(
            f"The run folder holds a run with a different config ({diffs}); rerun with the same "
            "flags to resume it, or choose a new --run-dir."
        )
