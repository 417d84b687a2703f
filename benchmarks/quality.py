"""Model quality: held-out negative ELBO and IWAE log-likelihood, keras-vae against the reference
at equal epochs, and the naive against the importance-sampled estimate of log P(X) as K grows.

Both models train on the same examples in the same order (same seed), with the same layers,
batch size and optimizer. The negative ELBO is the mean over held-out examples of the one-sample
estimate, averaged over several posterior draws; the IWAE estimate uses K = 1000.

Run on its own: `python -m benchmarks.quality [--quick] [--mnist PATH/mnist.npz]`.
"""

import argparse

import keras
import numpy as np

import keras_vae
from benchmarks import common, plot, reference
from keras_vae import estimators

LATENT_DIM = {"mlp": 4, "conv": 2}
BATCH_SIZE = 128
ELBO_DRAWS = 10
IWAE_K = 1000
SWEEP_EXAMPLES = 32


def train_pair(arch, x_train, epochs, seed=0):
    """keras-vae and the reference, trained alike: `(keras_vae_model, reference_model)`."""
    shape, latent_dim = x_train.shape[1:], LATENT_DIM[arch]
    models = []
    for kind in ("keras-vae", "reference"):
        keras.utils.set_random_seed(seed)
        if kind == "keras-vae":
            model = keras_vae.build_vae(shape, latent_dim=latent_dim, arch=arch, seed=seed)
        else:
            model = reference.build_reference(shape, latent_dim, arch=arch, seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        # Reseed so both see the same shuffling.
        keras.utils.set_random_seed(seed)
        model.fit(x_train, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
        models.append(model)
    return tuple(models)


def held_out(model, x_test, is_reference, k=IWAE_K, max_decodes=65536):
    """Mean held-out negative ELBO and IWAE log-likelihood (nats per example).

    `max_decodes`: latents the reference decodes at once (keras-vae bounds its own by bytes).
    """
    if is_reference:
        elbos = [reference.reference_elbo(model, x_test, seed=s).numpy() for s in range(ELBO_DRAWS)]
        log_px = reference.reference_log_likelihood(
            model, x_test, k, seed=0, max_decodes=max_decodes
        ).numpy()
    else:
        elbos = [model.elbo(x_test, seed=s).numpy() for s in range(ELBO_DRAWS)]
        log_px = model.log_likelihood(x_test, num_samples=k, seed=0).numpy()
    return {
        "negative_elbo": float(-np.mean(elbos)),
        "iwae_log_likelihood": float(np.mean(log_px)),
    }


def compare_quality(dataset, arch, x_train, x_test, epochs):
    print(f"quality: {dataset}/{arch}: training both models for {epochs} epochs", flush=True)
    ours, ref = train_pair(arch, x_train, epochs)
    row = {
        "dataset": dataset,
        "arch": arch,
        "epochs": epochs,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "keras_vae": held_out(ours, x_test, is_reference=False),
        # As many decodes at once as keras-vae's default budget holds for the same networks:
        # the reference's own 65536 would take ~35 GB at 28x28 with the conv decoder.
        "reference": held_out(
            ref, x_test, is_reference=True, max_decodes=estimators.pairs_per_chunk(ours, IWAE_K)
        ),
    }
    row["elbo_gap_nats"] = row["keras_vae"]["negative_elbo"] - row["reference"]["negative_elbo"]
    return row, ours


def estimator_sweep(model, x, ks, repeats):
    """Naive and importance-sampled log P(X) for each K: mean and spread over repeats.

    `spread` is the standard deviation over repeats of the per-example estimate, averaged over
    the examples: how much one call's answer moves.
    """
    rows = []
    for k in ks:
        for name, fn in (
            ("importance", model.log_likelihood),
            ("naive", model.naive_log_likelihood),
        ):
            draws = np.stack(
                [fn(x, num_samples=k, seed=1000 * r + 1).numpy() for r in range(repeats)]
            )
            rows.append(
                {
                    "estimator": name,
                    "K": k,
                    "mean": float(draws.mean()),
                    "spread": float(draws.std(axis=0, ddof=1).mean()) if repeats > 1 else 0.0,
                    "repeats": repeats,
                    "examples": len(x),
                }
            )
    return rows


def run(quick=False, mnist=None, plot_path=None):
    """Runs the quality benchmarks; returns `comparisons`, `estimators` and the plot's path."""
    epochs = 3 if quick else 20
    if mnist:
        # Loaded (and checked) first, so a bad path fails before minutes of digits training.
        from keras_vae.training.data import load_dataset

        mnist_data = load_dataset(mnist)
    x_train, x_test = common.load_digits()
    comparisons = []
    sweep_model = None
    for arch in ("mlp", "conv"):
        row, model = compare_quality("digits", arch, x_train, x_test, epochs)
        comparisons.append(row)
        if arch == "mlp":
            sweep_model = model
    if mnist:
        # A subset keeps the run within minutes on a CPU: 10000 training images, and 200 held
        # out (K = 1000 decodes per held-out image).
        mx_train, mx_test = mnist_data.x_train, mnist_data.x_test
        n_train, n_test, mnist_epochs = (2048, 64, 1) if quick else (10000, 200, 5)
        for arch in ("mlp", "conv"):
            row, _ = compare_quality(
                "mnist", arch, mx_train[:n_train], mx_test[:n_test], epochs=mnist_epochs
            )
            comparisons.append(row)

    ks = (1, 10, 100, 1000) if quick else (1, 10, 100, 1000, 10000)
    repeats = 3 if quick else 4
    print(f"quality: naive vs importance sampling, K in {ks}, {repeats} repeats", flush=True)
    estimators = estimator_sweep(sweep_model, x_test[:SWEEP_EXAMPLES], ks, repeats)
    out = {"comparisons": comparisons, "estimators": estimators}
    if plot_path:
        series = []
        for name, label in (("importance", "importance sampled (IWAE)"), ("naive", "naive")):
            rows = [r for r in estimators if r["estimator"] == name]
            series.append(
                {
                    "name": label,
                    "xs": [r["K"] for r in rows],
                    "ys": [r["mean"] for r in rows],
                    "errs": [r["spread"] for r in rows],
                }
            )
        plot.line_plot(
            plot_path,
            series,
            title="Estimates of log P(X) on held-out digits (keras-vae MLP), mean +- spread",
            x_label="K (samples per example)",
            y_label="log P(X), nats",
        )
        out["plot"] = plot_path
    return out


def markdown(result):
    rows = [
        [
            r["dataset"],
            r["arch"],
            r["epochs"],
            common.fmt(r["keras_vae"]["negative_elbo"]),
            common.fmt(r["reference"]["negative_elbo"]),
            f"{r['elbo_gap_nats']:+.2f}",
            common.fmt(r["keras_vae"]["iwae_log_likelihood"]),
            common.fmt(r["reference"]["iwae_log_likelihood"]),
        ]
        for r in result["comparisons"]
    ]
    est = {(r["estimator"], r["K"]): r for r in result["estimators"]}
    ks = sorted({r["K"] for r in result["estimators"]})
    est_rows = [
        [
            k,
            common.fmt(est[("importance", k)]["mean"]),
            common.fmt(est[("importance", k)]["spread"]),
            common.fmt(est[("naive", k)]["mean"]),
            common.fmt(est[("naive", k)]["spread"]),
        ]
        for k in ks
    ]
    return "\n".join(
        [
            common.markdown_table(
                [
                    "data",
                    "model",
                    "epochs",
                    "keras-vae -ELBO",
                    "reference -ELBO",
                    "gap (nats)",
                    f"keras-vae IWAE K={IWAE_K}",
                    f"reference IWAE K={IWAE_K}",
                ],
                rows,
            ),
            "",
            f"log P(X) estimates (nats, mean over {SWEEP_EXAMPLES} held-out digits; spread = std "
            "over repeats of one example's estimate, averaged over the examples):",
            "",
            common.markdown_table(
                ["K", "importance mean", "importance spread", "naive mean", "naive spread"],
                est_rows,
            ),
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--mnist", help="path of a local mnist.npz (keras.datasets layout)")
    parser.add_argument("--plot", help="write the estimator plot to this PNG")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick, mnist=args.mnist, plot_path=args.plot)))


if __name__ == "__main__":
    main()
