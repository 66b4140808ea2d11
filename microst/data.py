"""Training images: every image file under a folder, served as random square crops.

A crop is taken at a random scale and position, flipped left-right with probability 1/2 and
resized to image_size x image_size. Each photo is first reduced so that its shorter side is at
most 2 x image_size (kept in memory while the cache budget lasts); the crop's side is then
uniform between image_size (or the shorter side, if smaller) and the shorter side, so that a
crop shows between half and all of the photo's shorter side, reduced 1x to 2x.

Every random choice is drawn from microst.random.rng(), so that a run is repeatable from its
seed and a resumed run continues exactly. Files that cannot be read are skipped and counted
(`skipped`): at start when their header is not an image, later when decoding fails.
"""
import os

import numpy as np
from PIL import Image

from .errors import UserError
from .io import find_images, open_image
from .random import rng


class ImageFolder:
    """Random crops of the images under `folder`; `hold_out` images (evenly spread over the
    sorted list) are kept apart for previews and never trained on."""

    def __init__(self, folder, image_size, hold_out=0, cache_bytes=1 << 30):
        if not os.path.exists(folder):
            raise UserError(f"{folder}: no such folder; give --data a folder of training images")
        if not os.path.isdir(folder):
            raise UserError(f"{folder}: is a file; give --data a folder of training images")
        self.image_size = int(image_size)
        self.skipped = []
        files = []
        for path in find_images(folder):
            try:
                with Image.open(path):
                    pass
                files.append(path)
            except Exception:  # anything Pillow cannot identify
                self.skipped.append(path)
        if not files:
            what = f"none of its {len(self.skipped)} image files can be read" if self.skipped else "no images in it"
            raise UserError(f"{folder}: {what}; give --data a folder with .jpg, .png or .webp photos")
        hold_out = min(hold_out, len(files) - 1)
        held = sorted({int(i * len(files) / hold_out) for i in range(hold_out)}) if hold_out > 0 else []
        self.held_out = [files[i] for i in held]
        self.files = [f for i, f in enumerate(files) if i not in set(held)]
        self.bad = set()
        self.cache, self.cache_left = {}, cache_bytes

    def __len__(self):
        return len(self.files)

    def _reduced(self, path):
        """The photo with its shorter side at most 2 * image_size (cached), or None if unreadable."""
        if path in self.cache:
            return self.cache[path]
        limit = 2 * self.image_size
        try:
            im = open_image(path, draft=limit)
        except Exception:
            self.bad.add(path)
            self.skipped.append(path)
            return None
        if min(im.size) > limit:
            scale = limit / min(im.size)
            im = im.resize((max(limit, round(im.width * scale)), max(limit, round(im.height * scale))),
                           Image.BILINEAR)
        nbytes = im.width * im.height * 3
        if nbytes <= self.cache_left:
            self.cache[path], self.cache_left = im, self.cache_left - nbytes
        return im

    def sample(self, batch):
        """(batch, 3, S, S) float32 RGB in [0, 255]."""
        r = rng()
        out = np.empty((batch, 3, self.image_size, self.image_size), np.float32)
        for b in range(batch):
            while True:
                if len(self.bad) == len(self.files):
                    raise UserError(f"none of the {len(self.files)} training images can be decoded "
                                    f"(e.g. {self.files[0]}); give --data a folder of readable photos")
                path = self.files[int(r.integers(len(self.files)))]
                im = None if path in self.bad else self._reduced(path)
                if im is not None:
                    break
            out[b] = self.crop(im, r)
        return out

    def crop(self, im, r):
        s = self.image_size
        short = min(im.size)
        side = int(r.integers(min(s, short), short + 1))
        x0 = int(r.integers(0, im.width - side + 1))
        y0 = int(r.integers(0, im.height - side + 1))
        flip = bool(r.random() < 0.5)
        crop = im.resize((s, s), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
        if flip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(crop, np.float32).transpose(2, 0, 1)

    def previews(self, size):
        """The held-out images (or the first training image when none is held out), each
        centre-cropped to a square and resized to size x size: (n, 3, size, size)."""
        return _squares(self.held_out or self.files[:1], size)


def load_preview_folder(folder, size):
    """Centre-cropped size x size squares of every image in a folder (for --preview-images DIR)."""
    return _squares(find_images(folder), size)


def _squares(paths, size):
    out = []
    for path in paths:
        try:
            im = open_image(path, draft=size)
        except Exception:
            continue
        short = min(im.size)
        x0, y0 = (im.width - short) // 2, (im.height - short) // 2
        crop = im.resize((size, size), Image.LANCZOS, box=(x0, y0, x0 + short, y0 + short))
        out.append(np.asarray(crop, np.float32).transpose(2, 0, 1))
    return np.stack(out) if out else np.zeros((0, 3, size, size), np.float32)
