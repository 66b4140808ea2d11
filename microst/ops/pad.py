"""pad(input, (left, right, top, bottom), mode): reflect, replicate or constant, on H and W.

Backward folds the border gradients back onto the pixels they were copied from: for reflect,
border column k came from column k+1 counted inward (the edge is not repeated); for replicate,
every border column came from the edge column.
cpu: NumPy. emu/cuda: kernels/pad_v1.cu (backward as a gather, no atomics).
"""
import numpy as np

from . import versions
from .base import Case, Op, blocks, check_rank, empty, f32, i32, launch

MODES = ("reflect", "replicate", "constant")
VERSIONS = versions.declare(
    versions.Version("pad", "v1", "one thread per output (forward) or input pixel (backward, a gather)",
                     versions.kernels_of("pad_v1.cu", ("pad_forward", "pad_backward"), "v1")))


def _fold(g, before, after, size, mode, axis):
    """The gradient of padding one axis: g has size before+size+after along `axis`."""
    g = np.moveaxis(g, axis, -1)
    dx = g[..., before:before + size].copy()
    if mode == "reflect":
        if before:
            dx[..., 1:before + 1] += g[..., :before][..., ::-1]
        if after:
            dx[..., size - 1 - after:size - 1] += g[..., before + size:][..., ::-1]
    elif mode == "replicate":
        if before:
            dx[..., 0] += g[..., :before].sum(axis=-1)
        if after:
            dx[..., -1] += g[..., before + size:].sum(axis=-1)
    return np.moveaxis(dx, -1, axis)


def _geometry(shape, pad):
    left, right, top, bottom = pad
    n, c, h, w = shape
    return i32(n * c), i32(h), i32(w), i32(top), i32(bottom), i32(left), i32(right)


def pad_forward(device, x, pad, mode, value):
    left, right, top, bottom = pad
    if device == "cpu":
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        if mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=value)
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    n, c, h, w = x.shape
    y = empty(device, (n, c, h + top + bottom, w + left + right))
    launch(device, versions.selected("pad", device).kernel("pad_forward"), blocks(y.size),
           (x, y, *_geometry(x.shape, pad), i32(MODES.index(mode)), f32(value)))
    return y


def pad_backward(device, dy, x_shape, pad, mode):
    left, right, top, bottom = pad
    if device == "cpu":
        dx = _fold(dy, left, right, x_shape[3], mode, 3)
        return np.ascontiguousarray(_fold(dx, top, bottom, x_shape[2], mode, 2))
    dx = empty(device, x_shape)
    launch(device, versions.selected("pad", device).kernel("pad_backward"), blocks(dx.size),
           (dy, dx, *_geometry(x_shape, pad), i32(MODES.index(mode))))
    return dx


class Pad(Op):
    name = "pad"  # params: pad (left, right, top, bottom), mode, value

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        if self.mode not in MODES:
            raise ValueError(f"pad: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if len(self.pad) != 4 or min(self.pad) < 0:
            raise ValueError(f"pad: pad must be four non-negative ints (left, right, top, bottom), got {self.pad}")
        left, right, top, bottom = self.pad
        h, w = x.shape[2:]
        if self.mode == "reflect" and (max(left, right) >= w or max(top, bottom) >= h):
            raise ValueError(f"pad: reflect padding {self.pad} must be smaller than the input size {h}x{w}")
        self.x_shape = x.shape
        return pad_forward(self.device, x, self.pad, self.mode, self.value)

    def backward(self, dy):
        return (pad_backward(self.device, dy, self.x_shape, self.pad, self.mode),)


def cases():
    return [
        Case("pad reflect", lambda F, x: F.pad(x, (3, 2, 1, 4), "reflect"), ((2, 3, 7, 6),), op=Pad),
        Case("pad reflect 2", lambda F, x: F.pad(x, (2, 3, 1, 4), "reflect"), ((2, 3, 6, 5),), op=Pad),
        Case("pad reflect 40 (the generator's margin)", lambda F, x: F.pad(x, (40, 40, 40, 40), "reflect"),
             ((1, 3, 43, 45),), full=((4, 3, 256, 256),), op=Pad),
        Case("pad replicate", lambda F, x: F.pad(x, (2, 3, 4, 1), "replicate"), ((2, 3, 5, 6),), op=Pad),
        Case("pad replicate 2", lambda F, x: F.pad(x, (3, 1, 2, 2), "replicate"), ((1, 2, 4, 5),), op=Pad),
        Case("pad constant", lambda F, x: F.pad(x, (1, 2, 3, 0), "constant", 0.5), ((1, 2, 5, 6),), op=Pad),
        Case("pad constant 2", lambda F, x: F.pad(x, (1, 2, 0, 3), "constant", 1.5), ((2, 2, 3, 4),), op=Pad),
    ]
