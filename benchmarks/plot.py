"""A small line chart with error bars, drawn with Pillow (no plotting library needed)."""

import math

from PIL import Image, ImageDraw, ImageFont

from benchmarks import common
from keras_vae.training.files import atomic_write

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only.
        return ImageFont.load_default()


def _nice_ticks(lo, hi, count=6):
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= count:
            step *= mult
            break
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * span:
        if t >= lo - 1e-9 * span:
            ticks.append(round(t, 10))
        t += step
    return ticks


def line_plot(path, series, title, x_label, y_label, log_x=True, size=(900, 560)):
    """Draws `series` (dicts with name, xs, ys, errs) as lines with error bars; writes a PNG.

    Args:
        path: str. Output `.png`, written atomically.
        series: list of dict. `xs`, `ys` and optional `errs` (half-heights of the bars).
        title, x_label, y_label: str.
        log_x: bool. Logarithmic x axis (base 10).
    """
    width, height = size
    left, right, top, bottom = 90, 30, 50, 70
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)

    def tx(x):
        return math.log10(x) if log_x else x

    xs = [tx(x) for s in series for x in s["xs"]]
    bars = [
        (y, e)
        for s in series
        for y, e in zip(s["ys"], s.get("errs") or [0] * len(s["ys"]), strict=True)
    ]
    ys_lo = [y - e for y, e in bars]
    ys_hi = [y + e for y, e in bars]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys_lo), max(ys_hi)
    pad = 0.05 * ((y1 - y0) or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    x_pad = 0.03 * ((x1 - x0) or 1.0)
    x0, x1 = x0 - x_pad, x1 + x_pad

    def px(x):
        return left + (tx(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    # Axes, grid and ticks.
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for t in _nice_ticks(y0, y1):
        y = py(t)
        draw.line([left, y, width - right, y], fill="#e6e6e6")
        draw.text((left - 8, y), common.fmt(t), fill="black", font=small, anchor="rm")
    x_ticks = (
        [10**k for k in range(math.ceil(x0), math.floor(x1) + 1)] if log_x else _nice_ticks(x0, x1)
    )
    for t in x_ticks:
        x = px(t)
        draw.line([x, top, x, height - bottom], fill="#e6e6e6")
        draw.text((x, height - bottom + 8), f"{t:g}", fill="black", font=small, anchor="mt")
    draw.text((width / 2, 18), title, fill="black", font=font, anchor="mm")
    draw.text((width / 2, height - 22), x_label, fill="black", font=font, anchor="mm")
    label = Image.new("RGB", (height - top - bottom, 24), "white")
    ImageDraw.Draw(label).text((label.width / 2, 12), y_label, fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (8, top))

    # Series: lines, markers, error bars, legend.
    for i, s in enumerate(series):
        color = s.get("color", COLORS[i % len(COLORS)])
        points = [(px(x), py(y)) for x, y in zip(s["xs"], s["ys"], strict=True)]
        if len(points) > 1:
            draw.line(points, fill=color, width=3)
        errs = s.get("errs") or [0] * len(points)
        for (x, y), e, yv in zip(points, errs, s["ys"], strict=True):
            if e:
                draw.line([x, py(yv - e), x, py(yv + e)], fill=color, width=2)
                draw.line([x - 5, py(yv - e), x + 5, py(yv - e)], fill=color, width=2)
                draw.line([x - 5, py(yv + e), x + 5, py(yv + e)], fill=color, width=2)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        # Legend in the lower right corner, where these curves (rising with K) leave room.
        ly = height - bottom - 14 - 22 * (len(series) - 1 - i)
        draw.line([width - right - 260, ly, width - right - 230, ly], fill=color, width=3)
        draw.text((width - right - 222, ly), s["name"], fill="black", font=small, anchor="lm")

    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), suffix=".png")
