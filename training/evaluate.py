"""Held-out numbers for a VAE, and the `keras-vae-evaluate` command.

`evaluate(model, x)` returns, averaged over the examples of `x` and in nats: the negative ELBO
(-log P(X|z) + KL with z ~ Q(z|X), beta ignored), its reconstruction and KL parts, and the
importance-weighted (IWAE) estimate of log P(X) with K samples; both also in bits per data
dimension. Every random draw is seeded, so the same model and data give the same numbers.
"""

import argparse
import json
import math
import os
import sys

EPILOG = """examples:
  keras-vae-evaluate runs/digits/model.keras          # data and split from runs/digits/config.json
  keras-vae-evaluate model.keras --data mnist.npz --iwae-samples 5000
  keras-vae-evaluate model.keras --data digits --json metrics.json
"""


def _bits_per_dim(nats, dims):
    return nats / (dims * math.log(2.0))


def evaluate(model, x, iwae_samples=1000, seed=0, batch_size=256):
    """Held-out metrics of `model` on `x`.

    Args:
        model: keras_vae.VAE.
        x: float32 array `[N, *model.data_shape]`.
        iwae_samples: int. K for the importance-weighted log-likelihood; 0 skips it.
        seed: int. Seeds the posterior samples.
        batch_size: int. Examples per step.

    Returns:
        dict with `negative_elbo`, `reconstruction`, `kl`, `negative_elbo_bits_per_dim`, and
        when `iwae_samples` > 0 `iwae_log_likelihood`, `iwae_bits_per_dim` (the negative
        log-likelihood in bits per dimension), `iwae_samples`; plus `num_examples`.

    Example:
    >>> metrics = evaluate(vae, x_test, iwae_samples=100)
    >>> metrics["negative_elbo"] >= -metrics["iwae_log_likelihood"]
    True
    """
    import numpy as np
    import tensorflow as tf

    from keras_vae import objectives

    dims = int(np.prod(model.data_shape))

    # Eager on purpose: a held-out set is a few batches, and tracing would cost more than it saves.
    def elbo_terms(batch, step_seed):
        posterior = model.posterior(batch)
        eps = tf.random.stateless_normal(
            tf.shape(posterior.mean()), step_seed, dtype=posterior.mean().dtype
        )
        z = posterior.bijector.forward(eps)
        batch = tf.cast(batch, z.dtype)
        reconstruction = -model.likelihood.log_prob(batch, model.decoder(z))
        return reconstruction, objectives.kl_to_standard_normal(posterior)

    x = np.asarray(x, dtype="float32")
    reconstruction, kl, log_likelihood = [], [], []
    for step, start in enumerate(range(0, len(x), batch_size)):
        batch = x[start : start + batch_size]
        r, k = elbo_terms(tf.constant(batch), tf.constant([seed, step], dtype=tf.int32))
        reconstruction.append(r.numpy())
        kl.append(k.numpy())
        if iwae_samples:
            ll = model.log_likelihood(batch, num_samples=int(iwae_samples), seed=seed + step)
            log_likelihood.append(np.asarray(ll))
    reconstruction, kl = np.concatenate(reconstruction), np.concatenate(kl)
    negative_elbo = float(np.mean(reconstruction + kl))
    metrics = {
        "negative_elbo": negative_elbo,
        "reconstruction": float(np.mean(reconstruction)),
        "kl": float(np.mean(kl)),
        "negative_elbo_bits_per_dim": _bits_per_dim(negative_elbo, dims),
        "num_examples": int(len(x)),
    }
    if iwae_samples:
        ll = float(np.mean(np.concatenate(log_likelihood)))
        metrics.update(
            iwae_log_likelihood=ll,
            iwae_bits_per_dim=_bits_per_dim(-ll, dims),
            iwae_samples=int(iwae_samples),
        )
    return metrics


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-vae-evaluate",
        description="Held-out negative ELBO, reconstruction, KL and importance-weighted "
        "log-likelihood (nats and bits/dim) of a saved keras-vae model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a .keras file written by keras-vae-train (or its run dir)")
    parser.add_argument("--data", help="data name or path (default: the run's config.json)")
    parser.add_argument("--test-split", type=float, help="held-out fraction (default: the run's)")
    parser.add_argument("--seed", type=int, help="split and sampling seed (default: the run's)")
    parser.add_argument("--limit", type=int, help="at most this many examples")
    parser.add_argument("--iwae-samples", type=int, default=1000, help="K (default 1000)")
    parser.add_argument("--binarize", action="store_true", help="binarize the held-out pixels")
    parser.add_argument("--json", help="also write the metrics to this file")
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    path = args.model
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        print(f"keras-vae-evaluate: error: no model file at {args.model!r}.", file=sys.stderr)
        return 2
    run_config = {}
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            run_config = json.load(f)
    data = args.data or run_config.get("data")
    if data is None:
        print(
            "keras-vae-evaluate: error: pass --data (no config.json next to the model).",
            file=sys.stderr,
        )
        return 2
    test_split = (
        args.test_split if args.test_split is not None else run_config.get("test_split", 0.2)
    )
    seed = args.seed if args.seed is not None else run_config.get("seed", 0)
    if args.iwae_samples < 0:
        print("keras-vae-evaluate: error: --iwae-samples must be >= 0.", file=sys.stderr)
        return 2

    import keras

    import keras_vae  # noqa: F401 - registers the VAE for loading
    from training.data import DataError, binarize_once, load_dataset

    try:
        limit = args.limit if args.limit is not None else run_config.get("limit")
        dataset = load_dataset(data, test_split=test_split, seed=seed, limit=limit)
    except DataError as e:
        print(f"keras-vae-evaluate: error: {e}", file=sys.stderr)
        return 2
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
        print(f"keras-vae-evaluate: error: could not load {path!r}: {e}", file=sys.stderr)
        return 2
    x = dataset.x_test
    if tuple(x.shape[1:]) != tuple(model.data_shape):
        print(
            f"keras-vae-evaluate: error: the model takes examples of shape {model.data_shape} but "
            f"{data!r} holds {tuple(x.shape[1:])}.",
            file=sys.stderr,
        )
        return 2
    if args.binarize or run_config.get("binarize"):
        x = binarize_once(x, seed)
    metrics = evaluate(model, x, iwae_samples=args.iwae_samples, seed=seed)
    metrics["data"] = data
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        from training.files import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
