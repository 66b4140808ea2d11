"""A style sheet: one photo stylized with several styles, side by side, each labelled.

    python -m microst.stylize photo.jpg --model all --sheet sheet.png   # every bundled style

The photo comes first (labelled "photo"), then one panel per style in the order given ("all": the
bundled styles by name), in rows of up to COLUMNS panels; each style's name is written under its
panel. The photo is scaled to --size on its longest side (SIZE when not given).
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io import save_pillow

COLUMNS = 4
SIZE = 384
GAP = 8  # pixels between panels and around the sheet
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def _font(height):
    try:
        return ImageFont.load_default(size=height)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError):
        return ImageFont.load_default()


def compose_sheet(panels, labels, columns=COLUMNS):
    """A Pillow image of the (3, H, W) arrays `panels` in rows of `columns`, each with its label
    underneath, in cells the size of the largest panel."""
    h, w = max(p.shape[1] for p in panels), max(p.shape[2] for p in panels)
    font = _font(max(12, h // 18))
    label_height = font.getbbox("Ag")[3] + GAP
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    sheet = Image.new("RGB", (GAP + columns * (w + GAP), GAP + rows * (h + label_height + GAP)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for k, (panel, label) in enumerate(zip(panels, labels)):
        x = GAP + (k % columns) * (w + GAP)
        y = GAP + (k // columns) * (h + label_height + GAP)
        sheet.paste(Image.fromarray(np.clip(np.rint(panel), 0, 255).astype(np.uint8).transpose(1, 2, 0)), (x, y))
        text_width = draw.textlength(label, font=font)
        draw.text((x + max(0, (w - text_width) / 2), y + h + GAP // 2), label, fill=INK, font=font)
    return sheet


def write_sheet(path, photo, stylizations):
    """Save the sheet of `photo` ((3, H, W)) and the (name, stylized image) pairs to `path`."""
    names = [name for name, _ in stylizations]
    save_pillow(path, compose_sheet([photo] + [y for _, y in stylizations], ["photo"] + names))
