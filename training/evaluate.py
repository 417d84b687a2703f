"""Held-out numbers for a VAE, and the `keras-vae-evaluate` command.

`evaluate(model, x)` returns, averaged over the examples of `x` and in nats: the negative ELBO
(-log P(X|z) + KL with z ~ Q(z|X), beta ignored), its reconstruction and KL parts, and the
importance-weighted (IWAE) estimate of log P(X) with K samples; both also in bits per data
dimension. Every random draw is seeded, so the same model and data give the same numbers.
"""

import argparse
import json
import os
import sys

EPILOG = """examples:
  keras-vae-evaluate runs/digits/model.keras          # data and split from runs/digits/config.json
  keras-vae-evaluate runs/mnist --iwae-samples 5000 --examples all   # K=5000 on every example
  keras-vae-evaluate model.keras --data mnist.npz --iwae-samples 5000
  keras-vae-evaluate model.keras --data digits --json metrics.json
"""


# The IWAE evaluation after training decodes at most this many latents per training example
# processed (epochs x training examples), so it cannot dwarf the training: a decode is a forward
# pass of the decoder alone, a training example a forward and backward pass of both networks in
# small batches (measured: docs/training.md, "Held-out numbers").
DECODES_PER_TRAINING_EXAMPLE = 1.0
DEFAULT_IWAE_SAMPLES = 1000
# Burda et al. (2015)'s criterion: a latent unit is active when its posterior mean varies across
# the data by more than this (Cov_X E_Q[z_u|X] > 0.01).
ACTIVE_UNIT_THRESHOLD = 0.01
# The plan keeps at least this many held-out examples (or all there are) and lowers K instead:
# the mean over too few examples would vary more than a smaller K biases it.
MIN_EVAL_EXAMPLES = 500


def evaluation_plan(num_test, trained_examples=None, iwae_samples=None, examples=None):
    """How many importance samples K and held-out examples the IWAE evaluation uses.

    Explicit values are kept (examples capped at `num_test`). Left to None, K is up to
    `DEFAULT_IWAE_SAMPLES` and the examples up to all, such that K x examples <=
    `DECODES_PER_TRAINING_EXAMPLE` x `trained_examples`, keeping at least
    `MIN_EVAL_EXAMPLES` examples (or all) and lowering K rather than going below them.

    Args:
        num_test: int. Held-out examples available.
        trained_examples: int or None. Examples processed in training (epochs x training
            examples); None puts no bound on the automatic choice.
        iwae_samples: int or None. K; 0 skips the IWAE estimate.
        examples: int or None. Held-out examples to use.

    Returns:
        `(iwae_samples, examples)`.

    Example:
    >>> evaluation_plan(3000, trained_examples=30 * 16000)
    (1000, 480)
    """
    n = num_test if examples is None else min(int(examples), num_test)
    if iwae_samples == 0 or trained_examples is None:
        return (DEFAULT_IWAE_SAMPLES if iwae_samples is None else int(iwae_samples)), n
    decodes = max(1, int(DECODES_PER_TRAINING_EXAMPLE * trained_examples))
    k = DEFAULT_IWAE_SAMPLES if iwae_samples is None else int(iwae_samples)
    if examples is None:
        n = min(num_test, max(decodes // k, MIN_EVAL_EXAMPLES))
    if iwae_samples is None:
        k = max(1, min(k, decodes // max(n, 1)))
    return k, n


def evaluate(
    model, x, iwae_samples=1000, iwae_examples=None, seed=0, memory_budget=None, progress=True
):
    """Held-out metrics of `model` on `x`, in memory bounded by `memory_budget` bytes.

    The negative ELBO and its parts are averaged over all of `x` (one decode per example); the
    importance-weighted log-likelihood, K decodes per example, over the first `iwae_examples`
    (`evaluation_plan` chooses both in proportion to the training).

    Args:
        model: keras_vae.VAE.
        x: float32 array `[N, *model.data_shape]`.
        iwae_samples: int. K for the importance-weighted log-likelihood; 0 skips it.
        iwae_examples: int or None. Examples of `x` for it (default all).
        seed: int. Seeds the posterior samples.
        memory_budget: int or None. Bytes of activations at once (default
            `keras_vae.estimators.DEFAULT_MEMORY_BUDGET`).
        progress: bool. Report the IWAE evaluation's progress on stdout.

    Returns:
        dict with `negative_elbo`, `reconstruction`, `kl`, `negative_elbo_bits_per_dim`,
        `kl_per_dimension`, `active_units` (of `latent_dim`; Burda et al.'s criterion on
        `posterior_mean_variance`), and when `iwae_samples` > 0 `iwae_log_likelihood`,
        `iwae_bits_per_dim` (the negative log-likelihood in bits per dimension),
        `inference_gap` (log P(X) - ELBO on the IWAE's examples, an estimate of
        KL(Q(z|X) || P(z|X))), `iwae_samples`, `iwae_examples`, `iwae_seconds`; plus
        `num_examples`.

    Example:
    >>> metrics = evaluate(vae, x_test, iwae_samples=100)
    >>> metrics["negative_elbo"] >= -metrics["iwae_log_likelihood"]
    True
    """
    import numpy as np

    from keras_vae import estimators, objectives

    budget = memory_budget or estimators.DEFAULT_MEMORY_BUDGET
    dims = int(np.prod(model.data_shape))
    x = np.asarray(x, dtype="float32")
    terms = _elbo_pass(model, x, seed, budget)
    negative_elbos = terms["reconstruction"] + terms["kl"]
    negative_elbo = float(np.mean(negative_elbos))
    active, variances = objectives.active_units(terms["mean"], ACTIVE_UNIT_THRESHOLD)
    metrics = {
        "negative_elbo": negative_elbo,
        "reconstruction": float(np.mean(terms["reconstruction"])),
        "kl": float(np.mean(terms["kl"])),
        "negative_elbo_bits_per_dim": objectives.nats_to_bits_per_dim(negative_elbo, dims),
        "num_examples": int(len(x)),
        "kl_per_dimension": [float(v) for v in np.mean(terms["kl_per_dimension"], axis=0)],
        "active_units": active,
        "latent_dim": int(model.latent_dim),
        "posterior_mean_variance": [float(v) for v in np.asarray(variances)],
    }
    if iwae_samples:
        x = x[: len(x) if iwae_examples is None else int(iwae_examples)]
        log_likelihood, seconds = _iwae_pass(model, x, int(iwae_samples), seed, budget, progress)
        ll = float(np.mean(log_likelihood))
        metrics.update(
            iwae_log_likelihood=ll,
            # log P(X) - ELBO on the same examples: estimates KL(Q(z|X) || P(z|X)), the error
            # term of the VAE's central equation (biased low by the IWAE bound's own gap).
            inference_gap=ll + float(np.mean(negative_elbos[: len(x)])),
            iwae_bits_per_dim=objectives.nats_to_bits_per_dim(-ll, dims),
            iwae_samples=int(iwae_samples),
            iwae_examples=int(len(x)),
            iwae_seconds=round(seconds, 3),
        )
    return metrics


def _elbo_pass(model, x, seed, budget):
    """`_elbo_terms` of all of `x`, concatenated: a batch is as many examples as one chunk of the
    budget holds (one decode each)."""
    import numpy as np

    from keras_vae import estimators

    batch = min(256, estimators.pairs_per_chunk(model, 1, budget))
    parts = [
        _elbo_terms(model, x[start : start + batch], seed, step)
        for step, start in enumerate(range(0, len(x), batch))
    ]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _iwae_pass(model, x, k, seed, budget, progress):
    """The IWAE log-likelihood of each example of `x` with K = `k`, with progress; returns
    `(log_likelihoods, seconds)`."""
    import numpy as np

    from keras_vae import estimators
    from keras_vae.training.progress import Progress

    # A few chunks per call: progress stays fine-grained and every call runs full chunks.
    step_examples = max(1, min(256, 4 * estimators.pairs_per_chunk(model, k, budget) // k))
    bar = Progress(len(x), f"IWAE evaluation (K={k})", enabled=progress)
    log_likelihood = []
    for start in range(0, len(x), step_examples):
        ll = model.log_likelihood(
            x[start : start + step_examples], num_samples=k, seed=seed, memory_budget=budget
        )
        log_likelihood.append(np.asarray(ll))
        bar.update(start + len(log_likelihood[-1]))
    return np.concatenate(log_likelihood), bar.close()


def _elbo_terms(model, batch, seed, step):
    """`VAE.elbo_terms` of `batch` as NumPy arrays, with noise from a stateless seed per batch,
    so the numbers repeat."""
    import tensorflow as tf

    eps = tf.random.stateless_normal(
        (len(batch), model.latent_dim), tf.constant([seed, step]), dtype="float32"
    )
    return {name: value.numpy() for name, value in model.elbo_terms(batch, eps).items()}


def _examples(text):
    from keras_vae.training.checks import parse_int

    if text == "all":
        return "all"
    try:
        value = parse_int(text)
    except argparse.ArgumentTypeError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'all'; received {text!r}")
    return value


def _plan(args, run_config, dataset):
    """K and examples: the flags where given, else the run's own plan (as in its metrics.json)."""
    num_test = len(dataset.x_test)
    iwae_samples = (
        args.iwae_samples if args.iwae_samples is not None else run_config.get("iwae_samples")
    )
    examples = args.examples if args.examples is not None else run_config.get("eval_examples")
    if examples == "all":
        examples = num_test
    trained = None
    if run_config.get("epochs"):
        trained = int(run_config["epochs"]) * len(dataset.x_train)
    return evaluation_plan(num_test, trained, iwae_samples, examples)


def _parser():
    from keras_vae.training.checks import parse_int
    from keras_vae.training.console import OneLineParser

    parser = OneLineParser(
        prog="keras-vae-evaluate",
        description="Held-out negative ELBO, reconstruction, KL and importance-weighted "
        "log-likelihood (nats and bits/dim) of a saved keras-vae model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a .keras file written by keras-vae-train (or its run dir)")
    parser.add_argument("--data", help="data name or path (default: the run's config.json)")
    parser.add_argument("--test-split", type=float, help="held-out fraction (default: the run's)")
    parser.add_argument(
        "--seed", type=parse_int, help="split and sampling seed (default: the run's)"
    )
    parser.add_argument("--limit", type=parse_int, help="at most this many examples")
    parser.add_argument(
        "--iwae-samples",
        type=parse_int,
        help="K (default: the run's plan: up to 1000, in proportion to its training; 1000 "
        "without a run); 0 skips the IWAE estimate",
    )
    parser.add_argument(
        "--examples",
        type=_examples,
        help="held-out examples for the IWAE estimate, a number or 'all' (default: the run's plan)",
    )
    parser.add_argument("--binarize", action="store_true", help="binarize the held-out pixels")
    parser.add_argument("--json", help="also write the metrics to this file")
    return parser


class _Refused(Exception):
    """A bad argument or file: one line on stderr and exit status 2."""


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except _Refused as e:
        print(f"keras-vae-evaluate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nkeras-vae-evaluate: interrupted.", file=sys.stderr)
        return 130


def _settings(args):
    """The model path, the run's config.json (if any) and the data, split and seed to use, all
    checked before TensorFlow starts; raises `_Refused`."""
    # An empty value (an unset shell variable) would otherwise mean the run's data, or no file.
    if args.data is not None and not args.data.strip():
        raise _Refused(
            f"--data must name data or a path; received {args.data!r}. Leave the flag out for "
            "the run's own data (its config.json)."
        )
    if args.json is not None and not args.json.strip():
        raise _Refused(
            f"--json must name a file; received {args.json!r}. Leave the flag out to print the "
            "metrics only."
        )
    path = args.model
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        raise _Refused(f"no model file at {args.model!r}.")
    run_config = {}
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.exists(config_path):
        from keras_vae.training.checks import ConfigError, read_json_file

        try:  # bounded and non-blocking: a FIFO or a link to /dev/zero there is one line too
            run_config = read_json_file(config_path, f"the run's config {config_path!r}")
        except ConfigError as e:
            raise _Refused(str(e)[0].lower() + str(e)[1:]) from None
        if not isinstance(run_config, dict):
            raise _Refused(f"{config_path} must hold a JSON object of the run's settings.")
    data = args.data or run_config.get("data")
    if data is None:
        raise _Refused("pass --data (no config.json next to the model).")
    test_split = args.test_split if args.test_split is not None else run_config.get("test_split")
    seed = args.seed if args.seed is not None else run_config.get("seed", 0)
    limit = args.limit if args.limit is not None else run_config.get("limit")
    if not (isinstance(test_split, (int, float)) and 0 < test_split < 1) and test_split is not None:
        raise _Refused(f"--test-split must be a fraction in (0, 1); received {test_split!r}.")
    from keras_vae.training.config import MAX_SEED

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise _Refused(f"--seed must be an integer in [0, 2**31); received {seed!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise _Refused(f"--limit must be an integer >= 2; received {limit!r}.")
    from keras_vae.training.config import MAX_IWAE_SAMPLES

    if args.iwae_samples is not None and not 0 <= args.iwae_samples <= MAX_IWAE_SAMPLES:
        raise _Refused(
            f"--iwae-samples must be from 0 to {MAX_IWAE_SAMPLES}; received {args.iwae_samples}."
        )
    return path, run_config, data, 0.2 if test_split is None else test_split, seed, limit


def _command(args):
    path, run_config, data, test_split, seed, limit = _settings(args)

    from keras_vae.training import console

    console.start_tensorflow()
    import keras

    import keras_vae  # noqa: F401 - registers the VAE for loading
    from keras_vae.training.data import DataError, binarize_once, load_dataset

    try:
        dataset = load_dataset(data, test_split=test_split, seed=seed, limit=limit)
    except DataError as e:
        raise _Refused(str(e)) from None
    from keras_vae.training import model_size

    try:
        # From the file's own config.json, before Keras builds anything: a small tampered file
        # must not allocate gigabytes.
        model_size.check_keras_file(path)
    except model_size.ModelTooLarge as e:
        raise _Refused(console.one_line(e)) from None
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
        raise _Refused(f"could not load {path!r}: {console.one_line(e)}") from None
    x = dataset.x_test
    if tuple(x.shape[1:]) != tuple(model.data_shape):
        raise _Refused(
            f"the model takes examples of shape {model.data_shape} but {data!r} holds "
            f"{tuple(x.shape[1:])}."
        )
    if args.binarize or run_config.get("binarize"):
        x = binarize_once(x, seed)
    k, n = _plan(args, run_config, dataset)
    if k == 0:
        # Said, not silent: the JSON on stdout then has no iwae_* keys.
        source = "--iwae-samples 0" if args.iwae_samples == 0 else "the run's iwae_samples 0"
        print(
            f"keras-vae-evaluate: {source}: the IWAE log-likelihood is skipped (ELBO terms "
            "only); pass --iwae-samples 1 or more for it (1 is the cheapest).",
            file=sys.stderr,
        )
    metrics = evaluate(model, x, iwae_samples=k, iwae_examples=n, seed=seed)
    metrics["data"] = data
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        from keras_vae.training.files import atomic_write_text

        try:
            atomic_write_text(args.json, text + "\n")
        except OSError as e:  # a full disk, a folder: the writer names the file
            print(f"keras-vae-evaluate: error: {console.one_line(e)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
