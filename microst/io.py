"""Reading and writing images (Pillow).

Images are float32 arrays (3, H, W), RGB in [0, 255], the range VGG-16 expects. Any file Pillow
reads is accepted: EXIF orientation is applied, grayscale/palette/CMYK are converted to RGB, and
transparent pixels are composited onto white.
"""
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def load_image(path, size=None):
    """(3, H, W) float32 RGB in [0, 255]; with `size`, resized so that the longest side is `size`."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.new("RGB", rgba.size, (255, 255, 255))
                im.paste(rgba, mask=rgba.getchannel("A"))
            else:
                im = im.convert("RGB")
            if size is not None and max(im.size) != size:
                scale = size / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
            array = np.asarray(im, dtype=np.float32)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot read this image ({e.__class__.__name__}: {e}); "
                        f"give a JPEG, PNG or WebP file") from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def save_image(path, image):
    """Write a (3, H, W) RGB array in [0, 255] (clipped); the format follows the file's extension."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image: expected a (3, H, W) array, got shape {image.shape}")
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        Image.fromarray(pixels).save(path)
    except (ValueError, KeyError) as e:  # Pillow: unknown extension
        raise UserError(f"{path}: cannot write this format ({e}); use .jpg, .png or .webp") from None


def find_images(folder):
    """Every image file under `folder` (recursively), sorted."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)
