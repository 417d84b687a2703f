"""Pictures of what a VAE learned, drawn with matplotlib (Agg) and written atomically as PNG.

One function per picture, each returning a `matplotlib.figure.Figure` whose axes, labels and
title can be read before `save_figure` writes it. Figures are made with `Figure()` and an Agg
canvas, never through pyplot: no global figure list to leak into over the epochs, and the
backend of a notebook that imports this module is left alone.

Images `(H, W, C)` are tiled into one padded mosaic (grey gaps) drawn at a whole number of screen
pixels per image pixel, so `grid_size` knows the picture's size in pixels; vectors (the ring,
tables) are drawn as scatter plots of their first two coordinates.
"""

import numpy as np
from matplotlib.collections import LineCollection

# The frames (and the names other modules read here: grid_size, image_grid, save_figure, the
# sizes) live in figures.py.
from keras_vae.training.figures import (  # noqa: F401
    GAP_GREY,
    LEGEND_WIDTH,
    PAD,
    SCATTER_SIZE,
    blank_figure,
    grid_figure,
    grid_size,
    image_grid,
    save_figure,
    scatter_figure,
)

SAMPLE_GRID = 10  # samples.png and samples/epoch_*.png: 10 x 10 prior samples
RECONSTRUCTIONS = 10  # reconstructions.png: 10 inputs above, their reconstructions below
MANIFOLD_GRID = 15  # latent_manifold.png: 15 x 15 decoded points of z-space
MANIFOLD_LIMIT = 2.5  # ... spread over [-2.5, 2.5]^2, where N(0, I) keeps ~98% of its mass
MAX_LEGEND_CLASSES = 20  # more classes than this get a colour bar instead of a legend
DATA_GREY = "0.7"


def _is_image(model):
    return len(model.data_shape) == 3


def _when(epoch):
    """The 'when' of a title: after which epoch (0-based, as history.csv and the file names)."""
    return "final" if epoch is None else f"after epoch {epoch}"


def first_two_coordinates(points):
    """The first two coordinates of vectors (or index and value for 1-D data)."""
    points = np.asarray(points, "float32").reshape(len(points), -1)
    if points.shape[1] == 1:
        return np.concatenate([np.arange(len(points))[:, None], points], axis=1)
    return points[:, :2]


def _xy_names(model):
    return ("index", "x1") if int(np.prod(model.data_shape)) == 1 else ("x1", "x2")


def samples_figure(model, seed, reference=None, z=None, epoch=None, final_epoch=None):
    """Decoded prior samples: a 10 x 10 grid for images, a scatter over `reference` data for
    vectors. `z` fixes the latents (the per-epoch pictures reuse one draw).

    Args:
        epoch: int or None. The epoch just finished (per-epoch pictures); None for the final.
        final_epoch: int or None. For the final picture, the last epoch trained (in the title).
    """
    if z is None:
        n = SAMPLE_GRID**2 if _is_image(model) else 500
        z = model.sample_prior(n, seed=seed)
    samples = np.asarray(model.decode(z))
    when = _when(epoch)
    if epoch is None and final_epoch is not None:
        when += f" (epoch {final_epoch})"
    title = f"prior samples, {when}" if epoch is None else f"prior samples {when}"
    if _is_image(model):
        return grid_figure(samples, SAMPLE_GRID, title)
    xlabel, ylabel = _xy_names(model)
    figure, ax = scatter_figure(title, xlabel, ylabel)
    if reference is not None:
        data = first_two_coordinates(reference[:1000])
        ax.scatter(data[:, 0], data[:, 1], s=6, c=DATA_GREY, label="data", linewidths=0)
    points = first_two_coordinates(samples)
    ax.scatter(points[:, 0], points[:, 1], s=6, c="tab:blue", label="prior samples")
    ax.legend(loc="best", framealpha=0.9)
    return figure


def reconstructions_figure(model, x, final_epoch=None):
    """Inputs above, reconstructions below (images); inputs and reconstructions joined by lines
    (vectors)."""
    title = "held-out inputs and reconstructions, final"
    if final_epoch is not None:
        title += f" (epoch {final_epoch})"
    if _is_image(model):
        x = x[:RECONSTRUCTIONS]
        recon = np.asarray(model.reconstruct(x))
        return grid_figure(
            np.concatenate([x, recon]), len(x), title, row_labels=["input", "reconstruction"]
        )
    x = x[:300]
    inputs, recon = (
        first_two_coordinates(x),
        first_two_coordinates(np.asarray(model.reconstruct(x))),
    )
    xlabel, ylabel = _xy_names(model)
    figure, ax = scatter_figure(title, xlabel, ylabel)
    ax.add_collection(
        LineCollection(
            np.stack([inputs, recon], axis=1),
            colors="0.6",
            linewidths=0.6,
            label="input to reconstruction",
        )  # fmt: skip
    )
    ax.scatter(inputs[:, 0], inputs[:, 1], s=8, c="0.45", label="input", linewidths=0)
    ax.scatter(recon[:, 0], recon[:, 1], s=8, c="tab:red", label="reconstruction")
    ax.autoscale_view()
    ax.legend(loc="best", framealpha=0.9)
    return figure


def _posterior_moments(model, x):
    """Posterior means and standard deviations `[N, latent_dim]` of `x`, in batches sized by
    the memory budget, not a count: 1024 photographs at 64x64x3 would hold ~0.7 GB of encoder
    activations."""
    from keras_vae import estimators

    batch_size = max(1, min(1024, estimators.pairs_per_chunk(model, 1)))
    means, stds = [], []
    for i in range(0, len(x), batch_size):
        posterior = model.posterior(x[i : i + batch_size])
        means.append(np.asarray(posterior.mean()))
        stds.append(np.asarray(posterior.stddev()))
    return np.concatenate(means), np.concatenate(stds)


def latent_scatter_figure(model, x, labels=None, classes=None, final_epoch=None):
    """Posterior means of `x` in a 2-D latent space, coloured by label: a legend of class names
    (`classes[label]`, else the integer labels) for up to `MAX_LEGEND_CLASSES` classes, a colour
    bar beyond that."""
    means, _ = _posterior_moments(model, x)
    when = "final" if final_epoch is None else f"final (epoch {final_epoch})"
    if labels is None:
        title = f"held-out posterior means, {when}"
        figure, ax = scatter_figure(title, "z1", "z2")
        ax.scatter(means[:, 0], means[:, 1], s=5, c="tab:blue", linewidths=0)
        return figure
    labels = np.asarray(labels)
    integer = np.issubdtype(labels.dtype, np.integer) or np.all(labels == np.round(labels))
    values = sorted(set(labels.tolist()))
    figure, ax = scatter_figure(
        f"held-out posterior means by label, {when}", "z1", "z2", side_panel=True
    )
    if integer and len(values) <= MAX_LEGEND_CLASSES:
        colours = [f"C{i % 10}" if len(values) <= 10 else None for i in range(len(values))]
        cmap = None if len(values) <= 10 else _cmap("tab20")
        for i, value in enumerate(values):
            name = classes[int(value)] if classes and 0 <= int(value) < len(classes) else None
            name = str(name) if name is not None else str(int(value))
            name = name if len(name) <= 16 else name[:15] + "\N{HORIZONTAL ELLIPSIS}"  # fits
            keep = labels == value
            colour = colours[i] if cmap is None else cmap(i % 20)
            ax.scatter(means[keep, 0], means[keep, 1], s=5, color=colour, label=name, linewidths=0)
        legend = ax.legend(
            title="label", loc="upper left", bbox_to_anchor=(1.02, 1.0), markerscale=2.5,
            fontsize=8, title_fontsize=8, borderaxespad=0.0,
        )  # fmt: skip
        legend.set_in_layout(False)
    else:
        points = ax.scatter(means[:, 0], means[:, 1], s=5, c=labels, cmap="viridis")
        box = ax.get_position()
        bar_ax = figure.add_axes([box.x1 + 0.03, box.y0, 0.025, box.height])
        figure.colorbar(points, cax=bar_ax, label="label")
    return figure


def _cmap(name):
    from matplotlib import colormaps

    return colormaps[name]


def latent_manifold_grid():
    """The `[MANIFOLD_GRID ** 2, 2]` latents of the manifold, row by row, top row z2 largest."""
    values = np.linspace(-MANIFOLD_LIMIT, MANIFOLD_LIMIT, MANIFOLD_GRID, dtype="float32")
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def latent_manifold_figure(model, final_epoch=None):
    """Decodes an evenly spaced grid over z in [-2.5, 2.5]^2 (latent_dim 2 only): a grid of
    images with z1 and z2 tick labels, or for vectors the decoded points coloured by z."""
    z = latent_manifold_grid()
    decoded = np.asarray(model.decode(z))
    title = f"decoded grid over z in [-{MANIFOLD_LIMIT}, {MANIFOLD_LIMIT}]^2, final"
    if final_epoch is not None:
        title += f" (epoch {final_epoch})"
    values = np.linspace(-MANIFOLD_LIMIT, MANIFOLD_LIMIT, MANIFOLD_GRID)
    if _is_image(model):
        return grid_figure(
            decoded, MANIFOLD_GRID, title, col_ticks=("z1", values),
            row_ticks=("z2", values[::-1]),
        )  # fmt: skip
    # Colour each decoded point by where its z lies, so the map from z to x shows.
    t = (z + MANIFOLD_LIMIT) / (2 * MANIFOLD_LIMIT)
    colours = np.stack([t[:, 0], 0.3 + 0 * t[:, 0], t[:, 1]], axis=1)
    xlabel, ylabel = _xy_names(model)
    figure, ax = scatter_figure(title, xlabel, ylabel)
    points = first_two_coordinates(decoded)
    ax.scatter(points[:, 0], points[:, 1], s=14, c=colours, linewidths=0)
    ax.text(
        0.02, 0.98, "colour: red = z1, blue = z2", transform=ax.transAxes, va="top",
        fontsize=8,
    )  # fmt: skip
    return figure


def loss_curve_figure(rows):
    """Training (solid) and held-out (dashed) negative ELBO and reconstruction (left) and KL
    (right) per epoch, from history.csv's rows (dicts of strings, as `read_history` gives).

    The negative ELBO is reconstruction + KL, which the `loss` column holds only when beta is 1.
    """
    epochs = [int(r["epoch"]) for r in rows]
    # Constrained layout: the tick labels' width (-4900 or 130000 nats) decides the margins.
    figure = blank_figure(1000, 420, layout="constrained")
    left, right = figure.subplots(1, 2)
    figure.suptitle(f"loss per epoch, {_when(epochs[-1] if epochs else None)}")
    for prefix, split, line in (("", "training", "-"), ("val_", "held-out", "--")):
        keys = (prefix + "reconstruction_loss", prefix + "kl_loss")
        if not rows or not all(k in rows[0] for k in keys):
            continue  # no held-out split (too few examples for one batch)
        recon = np.array([float(r[keys[0]]) for r in rows])
        kl = np.array([float(r[keys[1]]) for r in rows])
        style = {"marker": "o", "markersize": 3}
        left.plot(
            epochs, recon + kl, line, color="tab:blue", label=f"{split} negative ELBO", **style
        )
        left.plot(epochs, recon, line, color="tab:orange", label=f"{split} reconstruction", **style)
        right.plot(epochs, kl, line, color="tab:green", label=f"{split} KL", **style)
    left.set_title("negative ELBO and reconstruction")
    right.set_title("KL(Q(z|x) || P(z))")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(True, color="0.92")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=8)
    return figure


def kl_per_dimension(model, x):
    """The mean over `x` of each latent dimension's KL term (`keras_vae.objectives.
    kl_per_dimension`), in nats: `[latent_dim]`, summing to the mean KL."""
    return latent_diagnostics(model, x)[0]


def latent_diagnostics(model, x):
    """Each latent dimension's mean KL over `x` and the variance of its posterior mean across
    `x` (Burda et al.'s activity): two arrays `[latent_dim]`."""
    import tensorflow_probability as tfp

    from keras_vae import objectives

    mu, s = _posterior_moments(model, x)
    posterior = tfp.distributions.MultivariateNormalDiag(loc=mu, scale_diag=s)
    kl = np.asarray(objectives.kl_per_dimension(posterior)).astype("float64")
    return kl.mean(axis=0), mu.astype("float64").var(axis=0)


def kl_per_dimension_figure(model, x, final_epoch=None, active_threshold=0.01):
    """A bar chart of the held-out mean KL per latent dimension, active units in green and
    inactive ones (posterior mean varying by at most `active_threshold` across `x`) in grey:
    those carry nothing about X (their posterior is the prior)."""
    kl, variance = latent_diagnostics(model, x)
    active = variance > active_threshold
    d = len(kl)
    figure = blank_figure(max(600, 160 + 30 * d), 420, layout="constrained")
    ax = figure.add_subplot()
    colours = ["tab:green" if a else "0.6" for a in active]
    ax.bar(np.arange(1, d + 1), kl, color=colours)
    ax.set_xticks(np.arange(1, d + 1), [f"z{j}" for j in range(1, d + 1)], fontsize=8)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("mean KL, nats per example")
    ax.grid(True, axis="y", color="0.92")
    ax.set_axisbelow(True)
    when = "final" if final_epoch is None else f"final (epoch {final_epoch})"
    ax.set_title(
        f"held-out KL per latent dimension, {when}\n(total {kl.sum():.2f} nats; "
        f"{int(active.sum())} of {d} units active, grey: inactive)"
    )
    return figure
