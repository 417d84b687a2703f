"""The frames the pictures are drawn in: padded image grids sized in whole screen pixels per
image pixel, square scatter plots, and the atomic PNG writer (`keras_vae.training.plots`)."""

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_vae.training.files import atomic_write

DPI = 100
PAD = 2  # image pixels of grey between the cells of a grid and around it
GAP_GREY = 0.5
GRID_PIXELS = 500  # a grid's mosaic is magnified to at least this many pixels across
# Room around a grid's mosaic, in pixels: row labels on the left, the title above, column tick
# labels and the axis name below.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 130, 30, 50, 60
SCATTER_SIZE = 600  # a scatter plot is 6 x 6 inches at 100 dpi ...
LEGEND_WIDTH = 120  # ... plus this on the right when a class legend or colour bar goes there


def cell_scale(rows, cols, height, width, pad=PAD):
    """Screen pixels per image pixel in a grid: the mosaic magnified by a whole number to at
    least `GRID_PIXELS` across (1 when it is wider already)."""
    del rows, height
    return max(1, math.ceil(GRID_PIXELS / (cols * width + (cols + 1) * pad)))


def grid_size(rows, cols, height, width, pad=PAD):
    """The `(width, height)` in pixels of the picture of a grid of `rows x cols` images of
    `height x width`: the magnified mosaic plus the margins for labels and title."""
    scale = cell_scale(rows, cols, height, width, pad)
    mosaic_w = (cols * width + (cols + 1) * pad) * scale
    mosaic_h = (rows * height + (rows + 1) * pad) * scale
    return (
        mosaic_w + MARGIN_LEFT + MARGIN_RIGHT,
        mosaic_h + MARGIN_TOP + MARGIN_BOTTOM,
    )


def image_grid(images, cols, pad=PAD):
    """Tiles images `[N, H, W, C]` with values in [0, 1] into one padded mosaic, row by row.

    Returns a float32 array `[rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, C]` with
    `GAP_GREY` between and around the cells (and in cells past N).
    """
    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    n, height, width, channels = images.shape
    rows = math.ceil(n / cols)
    mosaic = np.full(
        (rows * height + (rows + 1) * pad, cols * width + (cols + 1) * pad, channels),
        GAP_GREY,
        dtype="float32",
    )
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        mosaic[top : top + height, left : left + width] = image
    return mosaic


def blank_figure(width_px, height_px, layout=None):
    """An empty `Figure` of `width_px x height_px` pixels on its own Agg canvas (no pyplot)."""
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def grid_figure(images, cols, title, row_labels=None, col_ticks=None, row_ticks=None):
    """A padded grid of images: grey levels with cmap gray in [0, 1], colour images as RGB.

    Args:
        images: array `[N, H, W, C]`, values in [0, 1], C = 1 or 3.
        cols: int. Images per row.
        title: str. What the grid shows and when.
        row_labels: list of str or None. One name per row, on the left.
        col_ticks: `(name, values)` or None: the axis name and one tick label per column.
        row_ticks: `(name, values)` or None: the same per row (ignored with `row_labels`).
    """
    images = np.asarray(images)
    n, height, width, channels = images.shape
    rows = math.ceil(n / cols)
    mosaic = image_grid(images, cols)
    fig_w, fig_h = grid_size(rows, cols, height, width)
    figure = blank_figure(fig_w, fig_h)
    ax = figure.add_axes(
        [
            MARGIN_LEFT / fig_w,
            MARGIN_BOTTOM / fig_h,
            (fig_w - MARGIN_LEFT - MARGIN_RIGHT) / fig_w,
            (fig_h - MARGIN_TOP - MARGIN_BOTTOM) / fig_h,
        ]
    )
    if channels == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_title(title)
    centres_x = [PAD + c * (width + PAD) + (width - 1) / 2 for c in range(cols)]
    centres_y = [PAD + r * (height + PAD) + (height - 1) / 2 for r in range(rows)]
    ax.set_xticks([])
    ax.set_yticks([])
    if col_ticks is not None:
        name, values = col_ticks
        ax.set_xticks(centres_x, [f"{v:.2g}" for v in values], fontsize=7)
        ax.set_xlabel(name)
    if row_labels is not None:
        ax.set_yticks(centres_y, list(row_labels))
    elif row_ticks is not None:
        name, values = row_ticks
        ax.set_yticks(centres_y, [f"{v:.2g}" for v in values], fontsize=7)
        ax.set_ylabel(name)
    for side in ax.spines.values():
        side.set_visible(False)
    return figure


def scatter_figure(title, xlabel, ylabel, side_panel=False):
    """A square scatter plot (with room on the right for a legend or colour bar)."""
    width = SCATTER_SIZE + (LEGEND_WIDTH if side_panel else 0)
    figure = blank_figure(width, SCATTER_SIZE)
    left, bottom, size = 80, 60, SCATTER_SIZE - 80 - 50
    ax = figure.add_axes([left / width, bottom / SCATTER_SIZE, size / width, size / SCATTER_SIZE])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.92")
    ax.set_axisbelow(True)
    return figure, ax


def save_figure(figure, path):
    """Writes `figure` to `path` as PNG atomically (a temporary file, then `os.replace`) and
    releases what it drew; returns `path`."""
    try:
        return atomic_write(
            path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI), suffix=".png"
        )
    finally:
        figure.clear()
