"""What the two generators (Johnson's TransformerNet, Ulyanov's TextureNet) share.

Pixel scaling, the same for both: the input image in [0, 255] is mapped to [-1, 1]
(x / 127.5 - 1) before the first layer, and the last layer's output y is mapped back to pixels
by 127.5 * (tanh(y) + 1), so that every output lies in (0, 255) whatever the weights.

A forward pass is split in three so that stylize can run the expensive middle part on
overlapping tiles of an image too large for memory (microst.transfer.stylize_tiled):

    inputs, geometry = model.prepare(x, seed)   # cheap: scale, pad, draw noise (full size)
    y = model.core(*inputs)                      # the convolutions
    out = model.finish(y, geometry)              # crop the padding back off

`prepare` returns a list of (Tensor, factor) pairs: an input and its downsampling factor
relative to the padded image. `core` is translation-equivariant on a grid of `align` pixels;
its output is the padded input shrunk by `margin` pixels per side, and an output pixel depends
only on inputs within `halo` pixels of it (plus the margin), apart from instance-norm statistics,
which tiling freezes (see `frozen_norm_statistics`).
"""
import contextlib

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor

NORMS = ("instance", "batch", "none")


class InstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm whose statistics can be captured on one pass and reused on another.

    mode None: ordinary instance norm (per-image statistics). mode "capture": ordinary, and the
    per-channel mean and variance of this input are kept. mode "frozen": normalize with the kept
    statistics instead of the input's own (used to stylize tiles consistently). mode "smoothed":
    normalize with an exponential moving average of the statistics of the inputs seen so far, the
    newest weighted `momentum` (used to stylize video frames without flicker)."""

    mode = None
    stats = None
    momentum = None

    def forward(self, x, relu=False):
        if self.mode in ("capture", "smoothed"):
            data = x.numpy().astype(np.float64)
            new = (data.mean(axis=(2, 3), keepdims=True).mean(axis=0, keepdims=True),
                   data.var(axis=(2, 3), keepdims=True).mean(axis=0, keepdims=True))
            if self.mode == "capture" or self.stats is None:
                self.stats = new
            else:
                self.stats = tuple((1 - self.momentum) * old + self.momentum * s for old, s in zip(self.stats, new))
        if self.mode in ("frozen", "smoothed"):
            return self._normalized_with_stats(x, relu)
        return super().forward(x, relu)

    def _normalized_with_stats(self, x, relu):
        mean, var = self.stats
        scale = 1.0 / np.sqrt(var + self.eps)
        shift = -mean * scale
        if self.weight is not None:
            w, b = self.weight.numpy().reshape(1, -1, 1, 1), self.bias.numpy().reshape(1, -1, 1, 1)
            scale, shift = scale * w, shift * w + b
        y = x * Tensor(_like(x, scale), device=x.device) + Tensor(_like(x, shift), device=x.device)
        return F.relu(y) if relu else y


def _like(x, array):
    from .. import device as devices
    return devices.move(np.asarray(array, dtype=x.dtype), x.device)


@contextlib.contextmanager
def frozen_norm_statistics(model, x, seed=None):
    """Within this block every instance norm of `model` uses the statistics of model(x, seed)
    (x: a whole image, usually downscaled) instead of those of its own input."""
    norms = [m for _, m in model.named_modules() if isinstance(m, InstanceNorm2d)]
    try:
        for m in norms:
            m.mode = "capture"
        model(x, seed=seed)
        for m in norms:
            m.mode = "frozen"
        yield
    finally:
        for m in norms:
            m.mode, m.stats = None, None


@contextlib.contextmanager
def smoothed_norm_statistics(model, momentum):
    """Within this block every instance norm of `model` normalizes with an exponential moving average
    of the statistics of the inputs it has seen in the block (the newest weighted `momentum`; the
    first input's own), so that consecutive video frames are normalized alike."""
    norms = [m for _, m in model.named_modules() if isinstance(m, InstanceNorm2d)]
    try:
        for m in norms:
            m.mode, m.stats, m.momentum = "smoothed", None, momentum
        yield
    finally:
        for m in norms:
            m.mode, m.stats, m.momentum = None, None, None


def make_norm(kind, channels):
    """A normalization layer by name: instance, batch, or none (identity)."""
    if kind == "instance":
        return InstanceNorm2d(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class Identity(nn.Module):
    """No normalization (norm="none"); relu as the norms' forward takes it."""

    def forward(self, x, relu=False):
        return F.relu(x) if relu else x


def reflect_pad(x, left, right, top, bottom):
    """Reflection padding by any amount: reflects repeatedly where a pad is as large as the image
    (a side of one pixel is replicated)."""
    for before, after, axis in ((left, right, 3), (top, bottom, 2)):
        while before or after:
            size = x.shape[axis]
            if size == 1:
                step, mode = (before, after), "replicate"
            else:
                step, mode = (min(before, size - 1), min(after, size - 1)), "reflect"
            x = F.pad(x, step + (0, 0) if axis == 3 else (0, 0) + step, mode=mode)
            before, after = before - step[0], after - step[1]
    return x


def to_unit(x):
    """Pixels [0, 255] -> [-1, 1]."""
    return x * (1.0 / 127.5) - 1.0


def to_pixels(y):
    """Unbounded activations -> pixels in (0, 255): 127.5 * (tanh(y) + 1)."""
    return F.tanh(y) * 127.5 + 127.5


def aligned_padding(size, align, minimum=0):
    """(before, after) that pad `size` up to a multiple of `align` that is at least `minimum`,
    split evenly."""
    extra = max(-(-size // align) * align, -(-minimum // align) * align) - size
    return extra // 2, extra - extra // 2


class Generator(nn.Module):
    """Base class: config (JSON-serializable, enough to rebuild the net), forward, tiling protocol."""

    kind = None    # "johnson" or "texture": the name stored in checkpoints
    align = 1      # core works on grids of this many pixels
    margin = 0     # core output = padded input minus this many pixels per side
    halo = 0       # receptive radius of the core (pixels) that tiling must add around a tile

    def forward(self, x, seed=None):
        inputs, geometry = self.prepare(x, seed)
        return self.finish(self.core(*[t for t, _ in inputs]), geometry)

    def finish(self, y, geometry):
        top, left, h, w = geometry
        if (top, left, h, w) == (0, 0) + tuple(y.shape[2:]):
            return y
        return y[:, :, top:top + h, left:left + w]
