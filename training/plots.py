"""Pictures of what a VAE learned, drawn with Pillow and written atomically as PNG.

Images `(H, W, C)` are tiled into grids; vectors (the ring, tables) are drawn as scatter plots of
their first two coordinates. Every grid cell is the example scaled up by `cell_scale(H)` pixels
per pixel, with `PAD` pixels between cells and around the grid.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.files import atomic_write

PAD = 2
SAMPLE_GRID = 10  # samples.png and samples/epoch_*.png: 10 x 10 prior samples
RECONSTRUCTIONS = 10  # reconstructions.png: 10 inputs above, their reconstructions below
MANIFOLD_GRID = 15  # latent_manifold.png: 15 x 15 decoded points of z-space
MANIFOLD_LIMIT = 2.5  # ... spread over [-2.5, 2.5]^2, where N(0, I) keeps ~98% of its mass
SCATTER_SIZE = 480
LEGEND_WIDTH = 60  # added to the right of a scatter plot that has a legend
BACKGROUND = (255, 255, 255)
GRID_BACKGROUND = (128, 128, 128)
# Ten distinguishable colours (Tableau 10), one per class label.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def cell_scale(height):
    """Pixels per image pixel in a grid: small images are magnified to about 64 pixels."""
    return max(1, 64 // int(height))


def grid_size(rows, cols, height, width, scale=None, pad=PAD):
    """The `(width, height)` in pixels of a grid of `rows x cols` images of `height x width`."""
    scale = cell_scale(height) if scale is None else scale
    return (cols * width * scale + (cols + 1) * pad, rows * height * scale + (rows + 1) * pad)


def image_grid(images, cols, scale=None, pad=PAD):
    """Tiles images `[N, H, W, C]` with values in [0, 1] into a `PIL.Image`, row by row."""
    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    n, height, width, channels = images.shape
    rows = math.ceil(n / cols)
    scale = cell_scale(height) if scale is None else scale
    mode = "L" if channels == 1 else "RGB"
    grey = 128 if mode == "L" else (128, 128, 128)  # a bare 128 is dark red in RGB
    canvas = Image.new(mode, grid_size(rows, cols, height, width, scale, pad), grey)
    for i, image in enumerate(images):
        pixels = (image * 255).round().astype("uint8")
        tile = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
        tile = tile.resize((width * scale, height * scale), Image.NEAREST)
        r, c = divmod(i, cols)
        canvas.paste(tile, (pad + c * (width * scale + pad), pad + r * (height * scale + pad)))
    return canvas


def scatter(layers, size=SCATTER_SIZE, title=None, legend=None, bounds=None):
    """Draws 2-D point sets on a white canvas.

    Args:
        layers: list of `(points [N, 2], colours, radius)`; colours is one RGB tuple or one per
            point. Later layers are drawn on top.
        legend: list of `(label, colour)` or None.
        bounds: `(xmin, xmax, ymin, ymax)` or None (fit all points).
    """
    margin = 36
    width = size + (LEGEND_WIDTH if legend else 0)
    image = Image.new("RGB", (width, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    if bounds is None:
        every = np.concatenate([np.asarray(p, "float64").reshape(-1, 2) for p, _, _ in layers])
        every = every[np.isfinite(every).all(axis=1)]
        if len(every) == 0:
            every = np.zeros((1, 2))
        lo, hi = every.min(axis=0), every.max(axis=0)
        span = np.maximum(hi - lo, 1e-6)
        lo, hi = lo - 0.05 * span, hi + 0.05 * span
        bounds = (lo[0], hi[0], lo[1], hi[1])
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    inner = size - 2 * margin

    def to_pixels(points):
        points = np.asarray(points, "float64").reshape(-1, 2)
        px = margin + (points[:, 0] - xmin) / max(xmax - xmin, 1e-12) * inner
        py = size - margin - (points[:, 1] - ymin) / max(ymax - ymin, 1e-12) * inner
        return np.stack([px, py], axis=1)

    draw.rectangle([margin, margin, size - margin, size - margin], outline=(0, 0, 0))
    draw.text((margin, size - margin + 4), f"{xmin:.2g}", fill=(0, 0, 0), font=font)
    draw.text((size - margin - 24, size - margin + 4), f"{xmax:.2g}", fill=(0, 0, 0), font=font)
    draw.text((2, size - margin - 10), f"{ymin:.2g}", fill=(0, 0, 0), font=font)
    draw.text((2, margin), f"{ymax:.2g}", fill=(0, 0, 0), font=font)
    if title:
        draw.text((margin, 10), title, fill=(0, 0, 0), font=font)
    for points, colours, radius in layers:
        pixels = to_pixels(points)
        single = isinstance(colours, tuple)
        for i, (x, y) in enumerate(pixels):
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            colour = colours if single else tuple(int(v) for v in colours[i])
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    for i, (label, colour) in enumerate(legend or []):
        y = margin + 14 * i
        x = size - margin + 12
        draw.rectangle([x, y, x + 8, y + 8], fill=colour)
        draw.text((x + 12, y - 2), str(label), fill=(0, 0, 0), font=font)
    return image


def save_png(image, path):
    """Writes `image` to `path` atomically (a temporary file, then `os.replace`)."""
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), suffix=".png")


def _is_image(model):
    return len(model.data_shape) == 3


def _xy(points):
    """The first two coordinates of vectors (or index and value for 1-D data)."""
    points = np.asarray(points, "float32").reshape(len(points), -1)
    if points.shape[1] == 1:
        return np.concatenate([np.arange(len(points))[:, None], points], axis=1)
    return points[:, :2]


def samples_image(model, seed, reference=None, z=None):
    """Decoded prior samples: a 10 x 10 grid for images, a scatter over `reference` data for
    vectors. `z` fixes the latents (the per-epoch grids reuse one draw)."""
    if z is None:
        n = SAMPLE_GRID**2 if _is_image(model) else 500
        z = model.sample_prior(n, seed=seed)
    samples = np.asarray(model.decode(z))
    if _is_image(model):
        return image_grid(samples, SAMPLE_GRID)
    layers = []
    if reference is not None:
        layers.append((_xy(reference[:1000]), (190, 190, 190), 2))
    layers.append((_xy(samples), PALETTE[0], 2))
    return scatter(layers, title="prior samples (blue) over data (grey)")


def reconstructions_image(model, x):
    """Inputs above, reconstructions below (images); inputs and reconstructions joined by lines
    (vectors)."""
    if _is_image(model):
        x = x[:RECONSTRUCTIONS]
        recon = np.asarray(model.reconstruct(x))
        return image_grid(np.concatenate([x, recon]), len(x))
    x = x[:300]
    recon = np.asarray(model.reconstruct(x))
    image = scatter(
        [(_xy(x), (150, 150, 150), 2), (_xy(recon), PALETTE[3], 2)],
        title="inputs (grey) and reconstructions (red)",
    )
    return image


def latent_scatter_image(model, x, labels=None):
    """Posterior means of `x` in a 2-D latent space, coloured by integer label."""
    from keras_vae import estimators

    # Batches sized by the memory budget, not a count: 1024 photographs at 64x64x3 would hold
    # ~0.7 GB of encoder activations.
    batch_size = min(1024, estimators.pairs_per_chunk(model, 1))
    means = np.concatenate(
        [np.asarray(model.encode(x[i : i + batch_size])[0]) for i in range(0, len(x), batch_size)]
    )
    if labels is None:
        return scatter([(means[:, :2], PALETTE[0], 2)], title="posterior means")
    labels = np.asarray(labels).astype("int64")
    colours = np.array([PALETTE[int(c) % len(PALETTE)] for c in labels])
    classes = sorted(set(labels.tolist()))
    legend = [(c, PALETTE[c % len(PALETTE)]) for c in classes][: 2 * len(PALETTE)]
    return scatter([(means[:, :2], colours, 2)], title="posterior means by label", legend=legend)


def latent_manifold_grid():
    """The `[MANIFOLD_GRID ** 2, 2]` latents of the manifold, row by row, top row z2 largest."""
    values = np.linspace(-MANIFOLD_LIMIT, MANIFOLD_LIMIT, MANIFOLD_GRID, dtype="float32")
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def latent_manifold_image(model):
    """Decodes an evenly spaced grid over z in [-2.5, 2.5]^2 (latent_dim 2 only)."""
    z = latent_manifold_grid()
    decoded = np.asarray(model.decode(z))
    if _is_image(model):
        return image_grid(decoded, MANIFOLD_GRID)
    # Colour each decoded point by where its z lies, so the map from z to x shows.
    t = (z + MANIFOLD_LIMIT) / (2 * MANIFOLD_LIMIT)
    colours = np.stack([t[:, 0] * 255, 80 + 0 * t[:, 0], t[:, 1] * 255], axis=1).astype(int)
    return scatter([(_xy(decoded), colours, 3)], title="decoded z grid, coloured by z")
