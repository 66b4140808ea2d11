"""pad(input, (left, right, top, bottom), mode): reflect, replicate or constant, on H and W.

Backward folds the border gradients back onto the pixels they were copied from: for reflect,
border column k came from column k+1 counted inward (the edge is not repeated); for replicate,
every border column came from the edge column.
"""
from .base import Op, check_rank

MODES = ("reflect", "replicate", "constant")


def _fold(xp, g, before, after, size, mode, axis):
    """The gradient of padding one axis: g has size before+size+after along `axis`."""
    g = xp.moveaxis(g, axis, -1)
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
    return xp.moveaxis(dx, -1, axis)


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
        self.hw = h, w
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        if self.mode == "constant":
            return self.xp.pad(x, widths, mode="constant", constant_values=self.value)
        return self.xp.pad(x, widths, mode="reflect" if self.mode == "reflect" else "edge")

    def backward(self, dy):
        left, right, top, bottom = self.pad
        h, w = self.hw
        dx = _fold(self.xp, dy, left, right, w, self.mode, 3)
        dx = _fold(self.xp, dx, top, bottom, h, self.mode, 2)
        return (self.xp.ascontiguousarray(dx),)
