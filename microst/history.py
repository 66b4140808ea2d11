"""The loss history of a training run: one row per iteration, written as history.json and loss.png.

A row is (iteration, total, then one value per loss term, weighted as summed into the total). The
columns are named by columns(terms), the terms by the loss (PerceptualLoss.terms), so a new loss
term gets its column, its JSON list and its curve without a change here.
"""
import json
from pathlib import Path

import numpy as np

from .files import atomic_write
from .io import save_pillow

# curve colours in column order: total black, then the terms (content blue, style red, tv green, ...)
COLOURS = ((0, 0, 0), (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (227, 119, 194))


def columns(terms):
    """The column names of a history whose loss has these terms."""
    return ("iteration", "total") + tuple(terms)


def reorder(rows, have, want):
    """Rows whose columns are `have` as rows of columns `want` (by name; a column not in `have`, e.g. a
    term newer than the checkpoint, is NaN)."""
    if tuple(have) == tuple(want):
        return [list(r) for r in rows]
    index = [list(have).index(c) if c in have else None for c in want]
    return [[float("nan") if i is None else r[i] for i in index] for r in rows]


def write(out, history, names):
    """history.json (one list per column) and loss.png (the curves) in folder `out`."""
    out = Path(out)
    table = {name: [row[i] for row in history] for i, name in enumerate(names)}
    table["iteration"] = [int(i) for i in table["iteration"]]
    with atomic_write(out / "history.json") as tmp:
        tmp.write_text(json.dumps(table))
    plot(out / "loss.png", history, names)


def plot(path, history, names, width=720, height=420):
    """Loss curves (log scale; moving average over ~1/50 of the run) as a PNG, drawn with Pillow."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    left, right, top, bottom = 70, width - 20, 20, height - 40
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names[1:])}
    rows = np.asarray(history, np.float64).reshape(-1, len(names))
    if len(rows):
        its = rows[:, 0]
        window = max(1, len(rows) // 50)
        kernel = np.ones(window) / window
        curves = {}
        for name in colours:
            values = rows[:, names.index(name)]
            values = np.convolve(values, kernel, mode="valid") if len(values) >= window else values
            positive = values > 0
            if positive.any():
                curves[name] = (its[window - 1:][:len(values)][positive], np.log10(values[positive]))
        if curves:
            lo = min(c[1].min() for c in curves.values())
            hi = max(c[1].max() for c in curves.values())
            lo, hi = np.floor(lo), max(np.ceil(hi), np.floor(lo) + 1)
            x0, x1 = its[0], max(its[-1], its[0] + 1)

            def xy(x, y):
                return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - lo) / (hi - lo) * (bottom - top))

            for decade in range(int(lo), int(hi) + 1):
                y = xy(x0, decade)[1]
                draw.line([(left, y), (right, y)], fill=(225, 225, 225))
                draw.text((5, y - 6), f"1e{decade}", fill="black")
            for name, (x, y) in curves.items():
                points = [xy(a, b) for a, b in zip(x, y)]
                if len(points) > 1:
                    draw.line(points, fill=colours[name], width=2)
            for i, name in enumerate(curves):
                draw.text((right - 80, top + 5 + 14 * i), name, fill=colours[name])
            draw.text((left, 4), f"loss terms as weighted (log scale), moving average of {window}", fill="black")
            draw.text((left, bottom + 8), f"iteration {int(x0)}", fill="black")
            draw.text((right - 110, bottom + 8), f"iteration {int(x1)}", fill="black")
    draw.rectangle([left, top, right, bottom], outline="black")
    save_pillow(path, im)
