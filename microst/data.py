"""Training images: every image file under a folder, served as random square crops.

A crop is taken at a random scale and position, flipped left-right with probability 1/2 and
resized to image_size x image_size. Each photo is first reduced so that its shorter side is at
most 2 x image_size (kept in memory while the cache budget lasts); the crop's side is then
uniform between image_size (or the shorter side, if smaller) and the shorter side, so that a
crop shows between half and all of the photo's shorter side, reduced 1x to 2x.

Every random choice is drawn from microst.random's data stream, so that a run is repeatable from
its seed and a resumed run continues exactly; Batches draws them on the caller's thread, in order,
and decodes on a background thread while the device works on the batch before. Files that cannot
be read are skipped and counted (`skipped`): at start when their header is not an image, later
when decoding fails.
"""
import concurrent.futures

import os

import numpy as np
from PIL import Image

from .errors import UserError
from .io import find_images, open_image
from .random import rng


class ImageFolder:
    """Random crops of the images under `folder`; up to `hold_out` images (evenly spread over the
    sorted list) are kept apart for previews and never trained on: at most 10% of the photos
    (rounded down), so that a small folder keeps its photos for training (`previews_from_training`
    then says the previews show training photos)."""

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
        self.requested_previews = hold_out
        hold_out = min(hold_out, len(files) // 10)
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

    def plan(self, batch, r=None):
        """The random choices of a batch, drawn from `r` (default microst.random's data stream): per
        crop, a photo and four uniform numbers (the crop's side, its position, the flip)."""
        r = r or rng("data")
        return [(int(r.integers(len(self.files))), *r.random(4).tolist()) for _ in range(batch)]

    def load(self, plan):
        """(batch, 3, S, S) float32 RGB in [0, 255]: the crops of plan(). A photo that cannot be
        decoded stands aside for the next one that can (in file order: the same choice whenever
        it is found out)."""
        out = np.empty((len(plan), 3, self.image_size, self.image_size), np.float32)
        for b, (index, u_side, u_x, u_y, u_flip) in enumerate(plan):
            im = self._decodable(index)
            s, short = self.image_size, min(im.size)
            low = min(s, short)
            side = low + min(int(u_side * (short - low + 1)), short - low)
            x0 = min(int(u_x * (im.width - side + 1)), im.width - side)
            y0 = min(int(u_y * (im.height - side + 1)), im.height - side)
            crop = im.resize((s, s), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
            if u_flip < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            out[b] = np.asarray(crop, np.float32).transpose(2, 0, 1)
        return out

    def sample(self, batch):
        """plan() and load() in one go: a batch of random crops."""
        return self.load(self.plan(batch))

    def _decodable(self, index):
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            im = None if path in self.bad else self._reduced(path)
            if im is not None:
                return im
        raise UserError(f"none of the {len(self.files)} training images can be decoded "
                        f"(e.g. {self.files[0]}); give --data a folder of readable photos")

    @property
    def previews_from_training(self):
        """True when previews were asked for but the folder is too small to hold any out."""
        return self.requested_previews > 0 and not self.held_out

    def previews(self, size):
        """The held-out images (or, when none is held out, as many training images as were asked for,
        at least one), each centre-cropped to a square and resized to size x size: (n, 3, size, size)."""
        return _squares(self.held_out or self.files[:max(1, self.requested_previews)], size)


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


class Batches:
    """The training batches of an ImageFolder, decoded one ahead on a background thread.

    next() returns the batch planned last time (waiting for its decoding) and plans the one after,
    drawing its random choices here, on the caller's thread. resume_state() is the data stream's
    state before that pending plan: a checkpoint stores it, so that the resumed run plans the same
    batch again."""

    def __init__(self, folder, batch):
        self.folder, self.batch = folder, batch
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="microst-data")
        self.pending = self.state = None

    def _plan_next(self):
        r = rng("data")
        self.state = r.bit_generator.state
        self.pending = self.pool.submit(self.folder.load, self.folder.plan(self.batch, r))

    def next(self):
        if self.pending is None:
            self._plan_next()
        images = self.pending.result()
        self._plan_next()
        return images

    def resume_state(self):
        """The data stream's state from which the next batch is planned."""
        return self.state if self.pending is not None else rng("data").bit_generator.state

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending = None

