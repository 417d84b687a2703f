"""The training run's configuration: flat, typed, validated once, written to RUN_DIR/config.json.

Every field is a plain value so the JSON file repeats a run exactly:
`keras-vae-train --config RUN_DIR/config.json` or `train(json.load(...), run_dir)`. Each field
also carries its command-line flag (`option`): `keras-vae-train` builds its parser from them, so
a new setting is one line here.
"""

import dataclasses
import os

from keras_vae import precision
from keras_vae.likelihoods import LIKELIHOODS as LIKELIHOOD_CLASSES
from keras_vae.networks import ARCHITECTURES
from keras_vae.training.checks import (  # noqa: F401  (NAMED_DATA: named here too)
    LOCAL_SUFFIXES,
    NAMED_DATA,
    ConfigError,
    check_choice,
    check_data,
    check_float,
    check_int,
    check_types,
    check_units,
    parse_sigma,
    parse_units,
    read_json_file,
)
from keras_vae.vae import OBJECTIVES

# The library's registries: the flags' choices and the checks read them (importing the
# package loads Keras anyway: keras_vae/__init__.py).
ARCHS = tuple(ARCHITECTURES)
LIKELIHOODS = tuple(LIKELIHOOD_CLASSES)
PRECISIONS = precision.PRECISIONS
LR_SCHEDULES = ("constant", "cosine")
# Where a cosine schedule ends, as a fraction of --learning-rate (benchmarks/recipe.py: 3e-3 to
# 1e-4 beat a constant rate on MNIST at equal wall-clock).
COSINE_FINAL_FRACTION = 1 / 30
ACTIVATIONS = ("relu", "elu", "gelu", "silu", "tanh", "softplus")
STRATEGIES = ("default", "mirrored", "multi-worker")
VERBOSITY = (0, 1, 2)
MAX_SEED = 2**31 - 1
# The IWAE evaluation reports progress once per group of held-out examples, and one example
# costs K decodes: K = 10**9 was minutes of silence on one example. Up to 10**5 an example
# takes about a second (seconds for a 28x28 conv decoder), and the bound's gap, which shrinks
# like 1/K, is long negligible there (Burda et al. use 5000).
MAX_IWAE_SAMPLES = 100_000
# The flag groups of `keras-vae-train --help`, in order.
GROUPS = ("data", "model", "training", "output")

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
    "precision",
    "cluster_timeout",
)


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
        likelihood: str or None. "bernoulli", "continuous_bernoulli" (grey pixels) or
            "gaussian"; None picks bernoulli for images and gaussian for vectors.
        sigma: float, "learned" or "calibrated". The Gaussian likelihood's standard deviation.
        beta: float. Weight of the KL term.
        free_bits: float. Free bits, nats per latent dimension (0: off).
        objective: str. "elbo" or "iwae" (the importance-weighted bound with `k` samples).
        k: int. Importance samples per example for objective "iwae".
        hidden_units: tuple of ints. The MLP's layer widths (the decoder mirrors them).
        filters: tuple of ints. The conv network's channels per stride-2 convolution.
        dense_units: int. The conv encoder's dense width.
        activation: str. The hidden layers' activation.
        epochs: int. Number of passes over the training split.
        warmup_epochs: int. Epochs of KL warm-up, the KL weight rising linearly from 0 to beta
            (`keras_vae.KLWarmup`); 0 is none.
        batch_size: int. Global batch size (split over replicas).
        learning_rate: float. Adam's step size.
        lr_schedule: str. "constant", or "cosine": the step size decays along a half cosine to
            `learning_rate` / 30 over the run's epochs.
        seed: int. Seeds the weights, the split, the shuffling and the model's noise.
        precision: str. "float32", "bfloat16", "float16" or "auto" (`keras_vae.precision`):
            the Keras policy the networks train in. float32 by default, so that a run's numbers
            do not depend on the processor; exports and held-out numbers are float32 always.
        strategy: str. "default" (one device), "mirrored" or "multi-worker".
        devices: str or None. Comma-separated devices for "mirrored", e.g. "/gpu:0,/gpu:1" or
            "/cpu:0,/cpu:1" (a CPU is split into that many logical devices).
        cluster_timeout: float. Seconds a "multi-worker" run waits for its peers, to join the
            cluster and then to reach the handshake, before it exits naming the missing ones
            (`training.cluster`; `keras-vae-train` only).
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
        "gaussian std: a number, 'learned' (one per dimension) or 'calibrated' (sigma-VAE) "
        "(default {default})",
        type=parse_sigma,
    )
    beta: float = option(1.0, "model", "KL weight (default {default})")
    free_bits: float = option(0.0, "model", "free bits, nats per latent dimension (default 0: off)")
    objective: str = option(
        "elbo", "model", "elbo, or iwae with --k samples (default {default})", choices=OBJECTIVES
    )
    k: int = option(1, "model", "importance samples per example for --objective iwae (default 1)")
    hidden_units: tuple = option(
        (256, 128), "model", "MLP layer widths, comma-separated (default 256,128)", type=parse_units
    )
    filters: tuple = option(
        (32, 64), "model", "conv channels per stride-2 layer (default 32,64)", type=parse_units
    )
    dense_units: int = option(16, "model", "conv encoder's dense width (default {default})")
    activation: str = option(
        "relu", "model", "hidden activation (default {default})", choices=ACTIVATIONS
    )
    epochs: int = option(30, "training", "passes over the data (default {default})")
    warmup_epochs: int = option(
        0, "training", "epochs of KL warm-up from 0 to beta (default 0: none)"
    )
    batch_size: int = option(64, "training", "global batch (default {default})")
    learning_rate: float = option(1e-3, "training", "Adam step size (default {default:g})")
    lr_schedule: str = option(
        "constant",
        "training",
        "constant, or cosine: decay --learning-rate to 1/30 of it over --epochs (default constant)",
        choices=LR_SCHEDULES,
    )
    seed: int = option(0, "training", "seed for weights, split, noise (default {default})")
    precision: str = option(
        "float32",
        "training",
        "float32 (default), bfloat16, float16 (loss-scaled) or auto: mixed bfloat16 where the "
        "processor multiplies it natively, else float32",
        choices=PRECISIONS,
    )
    strategy: str = option(
        "default", "training", "tf.distribute strategy (default one device)", choices=STRATEGIES
    )
    devices: str | None = option(
        None, "training", "mirrored devices, comma-separated, e.g. /gpu:0,/gpu:1"
    )
    cluster_timeout: float = option(
        300.0,
        "training",
        "multi-worker: seconds to wait for the other workers before giving up (default {default:g})",
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
        # config.json holds lists; the config holds tuples (hashable, as frozen fields should be).
        for name in ("hidden_units", "filters"):
            object.__setattr__(self, name, check_units(name, getattr(self, name)))
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
        """The fields as JSON values (tuples as lists), as config.json holds them."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    def network_kwargs(self):
        """The network builder's arguments for `arch`."""
        if self.arch == "mlp":
            return {"hidden_units": self.hidden_units, "activation": self.activation}
        return {
            "filters": self.filters,
            "dense_units": self.dense_units,
            "activation": self.activation,
        }

    def sigma_value(self):
        """sigma for `keras_vae.build_vae`: a float, or None for a learned one."""
        if self.sigma in ("learned", "calibrated"):
            return None if self.sigma == "learned" else self.sigma
        return float(self.sigma)

    def validate(self):
        """Checks every field; raises `ConfigError` with a one-line reason. Returns self."""
        check_data(self.data)
        check_choice("arch", self.arch, ARCHS)
        check_int("latent_dim", self.latent_dim, 1)
        if self.likelihood is not None:
            check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.sigma not in ("learned", "calibrated"):
            check_float("sigma", self.sigma, 0.0, strict=True, hint="or 'learned' or 'calibrated'")
        check_float("beta", self.beta, 0.0)
        check_float("free_bits", self.free_bits, 0.0)
        check_choice("objective", self.objective, OBJECTIVES)
        check_int("k", self.k, 1)
        check_int("dense_units", self.dense_units, 1)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_int("warmup_epochs", self.warmup_epochs, 0)
        self._check_combinations()
        if self.verbose not in VERBOSITY:
            raise ConfigError(f"verbose must be 0, 1 or 2; received {self.verbose!r}.")
        # Last: the fields' own checks above say more (their range) for most wrong values; this
        # catches what they let through, e.g. "binarize": "false", which is true.
        check_types(self)
        return self

    def _check_combinations(self):
        """Settings that are fine alone but not together; raises `ConfigError`."""
        if self.objective == "elbo" and self.k != 1:
            raise ConfigError(
                f"--k {self.k} (importance samples) applies to --objective iwae; add it or drop --k."
            )
        if self.objective == "iwae" and (self.beta != 1 or self.free_bits):
            raise ConfigError(
                "--objective iwae is a bound on log P(X) only with --beta 1 and no --free-bits; "
                f"received --beta {self.beta:g} --free-bits {self.free_bits:g}."
            )
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("learning_rate", self.learning_rate, 0.0, strict=True)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        # Seeds go to keras.utils.set_random_seed (below 2**32) and into int32 stateless seeds
        # (the evaluation's noise, keras-vae-sample): int32's non-negative range fits both.
        check_int("seed", self.seed, 0, MAX_SEED)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("precision", self.precision, PRECISIONS)
        check_float("cluster_timeout", self.cluster_timeout, 0.0, strict=True)
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
            check_int("limit", self.limit, 2)
        if self.iwae_samples is not None:
            check_int("iwae_samples", self.iwae_samples, 1, MAX_IWAE_SAMPLES)
        if self.eval_examples is not None:
            check_int("eval_examples", self.eval_examples, 1)
        if self.binarize and self.likelihood not in (None, "bernoulli"):
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


def read_config(path):
    """Loads a config.json written by a run; `ConfigError` when it is unreadable, endless (e.g.
    /dev/zero), not JSON, nested too deeply or not a valid config."""
    return TrainConfig.from_dict(read_json_file(path, f"config file {os.fspath(path)!r}"))


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
