"""Stylizing one image array with a trained generator: whole, or in tiles; keeping its colours.

    y = stylize(model, image, seed=None, tile=None, preserve_color=False)   # (3, H, W) in [0, 255] -> same

--tile N stylizes images too large for memory in tiles of N x N output pixels. Each tile is run
with a margin of context around it (the network's receptive reach), neighbouring tiles overlap by
`overlap` pixels and are cross-faded there, and instance normalization uses statistics measured
once on the whole image (downscaled to `stats_size` pixels on its longest side when larger), so
that tiles agree: there are no seams, and for an image no larger than `stats_size` the result
equals the untiled one up to float rounding.

preserve_color keeps the input's colours and takes only the stylization's luminance (the
"luminance-only transfer" of Gatys et al.): Y of the output in YCbCr (BT.601), Cb and Cr of the input.
strength (0..1), applied after it, blends the stylization with the photo.
Files, folders and the job loop over them are microst.jobs'.
"""
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

from .autograd import Tensor, no_grad, tensor
from .models.generator import frozen_norm_statistics


def stylize(model, image, device=None, seed=None, tile=None, overlap=None, stats_size=1024, preserve_color=False,
            strength=1.0, progress=False):
    """Stylize one (3, H, W) float32 RGB image in [0, 255]; returns the same shape and range.
    progress: a progress bar over the tiles."""
    device = device or model.device
    with no_grad():
        if tile:
            y = stylize_tiled(model, image, tile, seed=seed, overlap=overlap, stats_size=stats_size, device=device,
                              progress=progress)
        else:
            y = model(tensor(image[None], device=device), seed=seed).numpy()[0]
    return adjusted(image, y, preserve_color, strength)


def adjusted(image, stylized, preserve_color=False, strength=1.0):
    """The stylization as asked: its luminance only on the image's colours (preserve_color), then
    blended with the image, `strength` of the stylization (0: the photo, 1: the stylization)."""
    y = preserve_colors(image, stylized) if preserve_color else stylized
    return y if strength == 1 else (strength * y + (1 - strength) * image).astype(np.float32)


def tiling_overlap(model, tile, overlap=None):
    """(tile, overlap) as stylize_tiled uses them: multiples of the model's alignment."""
    tile = max(model.align, tile // model.align * model.align)
    return tile, _round_up(max(model.align, tile // 8) if overlap is None else overlap, model.align)


def stylize_tiled(model, image, tile, seed=None, overlap=None, stats_size=1024, device=None, progress=False):
    """model(image) computed tile by tile (see the module docstring); image (3, H, W) -> (3, H, W)."""
    device = device or model.device
    align, margin, halo = model.align, model.margin, model.halo
    tile, overlap = tiling_overlap(model, tile, overlap)
    small = _downscale(image, stats_size)
    with no_grad(), frozen_norm_statistics(model, tensor(small[None], device=device), seed):
        inputs, geometry = model.prepare(tensor(image[None], device=device), seed)
        hp, wp = (s - 2 * margin for s in inputs[0][0].shape[2:])
        out = np.zeros((3, hp, wp), np.float32)
        total = np.zeros((hp, wp), np.float32)
        corners = [(y0, x0) for y0 in range(0, hp, tile) for x0 in range(0, wp, tile)]
        for y0, x0 in tqdm(corners, desc="tiles", unit="tile", disable=not progress or len(corners) < 2,
                           leave=False, file=sys.stderr):
            ky0, ky1 = max(0, y0 - overlap), min(hp, y0 + tile + overlap)
            kx0, kx1 = max(0, x0 - overlap), min(wp, x0 + tile + overlap)
            wy0, wy1 = max(0, (ky0 - halo) // align * align), min(hp, _round_up(ky1 + halo, align))
            wx0, wx1 = max(0, (kx0 - halo) // align * align), min(wp, _round_up(kx1 + halo, align))
            windows = [t[:, :, wy0 // f:(wy1 + 2 * margin) // f, wx0 // f:(wx1 + 2 * margin) // f]
                       for t, f in inputs]
            y = model.core(*windows).numpy()[0, :, ky0 - wy0:ky1 - wy0, kx0 - wx0:kx1 - wx0]
            weight = np.outer(_ramp(ky0, ky1, hp, overlap), _ramp(kx0, kx1, wp, overlap))
            out[:, ky0:ky1, kx0:kx1] += y * weight
            total[ky0:ky1, kx0:kx1] += weight
        out /= total
        return model.finish(Tensor(out[None]), geometry).numpy()[0]


def _round_up(n, align):
    return -(-n // align) * align


def _ramp(k0, k1, size, overlap):
    """Cross-fade weights over [k0, k1): rising over the first 2*overlap pixels unless k0 is the
    image's edge, falling over the last 2*overlap unless k1 is; neighbours' ramps sum to 1."""
    p = np.arange(k0, k1) + 0.5
    w = np.ones(k1 - k0, np.float32)
    if k0 > 0:
        w = np.minimum(w, (p - k0) / (2 * overlap))
    if k1 < size:
        w = np.minimum(w, (k1 - p) / (2 * overlap))
    return w


def _downscale(image, size):
    """The image with its longest side at most `size` (Lanczos)."""
    h, w = image.shape[1:]
    if max(h, w) <= size:
        return image
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(shape, Image.LANCZOS))
                     for c in image]).astype(np.float32)


def preserve_colors(content, stylized):
    """Luminance of `stylized`, chrominance of `content` (both (3, H, W) RGB [0, 255]; YCbCr, BT.601)."""
    r, g, b = stylized.astype(np.float64)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    r, g, b = content.astype(np.float64)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
    return np.clip(rgb, 0, 255).astype(np.float32)
