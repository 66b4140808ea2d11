"""Reading and writing images (Pillow); generator checkpoints are microst.checkpoint's.

Images are float32 arrays (3, H, W), RGB in [0, 255], the range VGG-16 expects. Any file Pillow
reads is accepted: EXIF orientation is applied, grayscale/palette/CMYK are converted to RGB, and
transparent pixels are composited onto white.

Images are written atomically (microst.files.atomic_write: a temporary file in the same folder,
flushed to disk and renamed over PATH), so a crash never leaves a half-written one.
"""
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError
from .files import atomic_write

# the image files microst reads (folders are searched for these) and writes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


# Pillow modes of more than 8 bits per value, and the factor that brings them to [0, 255]: 16-bit
# values (and 32-bit integers, read as 16-bit) / 257; floats are read as [0, 1] and times 255.
HIGH_DEPTH = {"I;16": 1 / 257, "I;16B": 1 / 257, "I;16L": 1 / 257, "I;16N": 1 / 257, "I": 1 / 257, "F": 255.0}


def open_image(path, draft=None):
    """A Pillow RGB image: EXIF orientation applied, alpha composited onto white, grayscale, palette,
    CMYK and YCbCr converted, 16-bit and float grayscale scaled to 8 bits (HIGH_DEPTH). With
    `draft` (a size), a JPEG may be decoded at a reduced scale that is still at least that large
    (fast). Raises Pillow's errors (see load_image for the user-facing ones)."""
    with Image.open(path) as im:
        if draft is not None and im.format == "JPEG":
            im.draft("RGB", (draft, draft))
        im = ImageOps.exif_transpose(im)
        if im.mode in HIGH_DEPTH:
            top = 65535 if im.mode != "F" else 1.0
            values = np.clip(np.asarray(im, np.float64), 0, top) * HIGH_DEPTH[im.mode]
            im = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # mode L
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        else:
            im = im.convert("RGB")
        im.load()
        return im


def resize_longest(im, size):
    """A Pillow image scaled (Lanczos) so that its longest side is `size`."""
    if size is None or max(im.size) == size:
        return im
    scale = size / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)


class UnreadableImage(UserError):
    """An input image that cannot be read (missing, damaged, too large to be safe): a folder of them
    goes on without it."""


def load_image(path, size=None):
    """(3, H, W) float32 RGB in [0, 255]; with `size`, resized so that the longest side is `size`.
    An UnreadableImage (one line) when it cannot be: missing, a folder, not an image, truncated, or a
    decompression bomb (more pixels than Pillow's safety limit)."""
    try:
        im = resize_longest(open_image(path), size)
        array = np.asarray(im, dtype=np.float32)
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UnreadableImage(f"{path}: is a directory, not an image") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImage(f"{path}: too many pixels to open safely ({e}); it may be a decompression bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(f"{path}: cannot read this image ({e.__class__.__name__}: {e}); "
                              f"give a JPEG, PNG or WebP file") from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def check_image_path(path):
    """A UserError unless `path` ends with one of IMAGE_SUFFIXES (check outputs before any work)."""
    if not str(path).lower().endswith(IMAGE_SUFFIXES):
        raise UserError(f"{path}: unknown image format {Path(path).suffix!r}; end the name with one of "
                        f"{', '.join(IMAGE_SUFFIXES)}")


def save_image(path, image, quality=95):
    """Write a (3, H, W) RGB array in [0, 255] (clipped), atomically; the format follows the file's
    extension, one of IMAGE_SUFFIXES (JPEG and WebP at `quality`)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image: expected a (3, H, W) array, got shape {image.shape}")
    check_image_path(path)
    save_pillow(path, Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)), quality)


def save_pillow(path, im, quality=95):
    """Write a Pillow image atomically, in the format its file's extension names."""
    fmt = Image.registered_extensions()[Path(path).suffix.lower()]
    extra = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_write(path) as tmp:
        encoded = io.BytesIO()  # not im.save(tmp): some encoders ignore a short write (see microst.files)
        im.save(encoded, format=fmt, **extra)
        tmp.write_bytes(encoded.getbuffer())


def find_images(folder):
    """Every image file under `folder` (recursively), sorted."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)
