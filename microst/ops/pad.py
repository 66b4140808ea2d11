"""pad(input, (left, right, top, bottom), mode): reflect, replicate or constant, on H and W.

Backward folds the border gradients back onto the pixels they were copied from: for reflect,
border column k came from column k+1 counted inward (the edge is not repeated); for replicate,
every border column came from the edge column.
cpu: NumPy. emu/cuda: kernels/pad.cu (backward as a gather, no atomics).
"""
from .base import Op, blocks, check_rank, empty, f32, i32, launch

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
        n, c, h, w = x.shape
        if self.mode == "reflect" and (max(left, right) >= w or max(top, bottom) >= h):
            raise ValueError(f"pad: reflect padding {self.pad} must be smaller than the input size {h}x{w}")
        self.x_shape = x.shape
        if self.on_cpu:
            widths = ((0, 0), (0, 0), (top, bottom), (left, right))
            if self.mode == "constant":
                return self.xp.pad(x, widths, mode="constant", constant_values=self.value)
            return self.xp.pad(x, widths, mode="reflect" if self.mode == "reflect" else "edge")
        y = empty(self.device, (n, c, h + top + bottom, w + left + right))
        launch(self.device, "pad.cu", "pad_forward", blocks(y.size),
               (x, y, i32(n * c), i32(h), i32(w), i32(top), i32(bottom), i32(left), i32(right),
                i32(MODES.index(self.mode)), f32(self.value)))
        return y

    def backward(self, dy):
        left, right, top, bottom = self.pad
        n, c, h, w = self.x_shape
        if self.on_cpu:
            dx = _fold(self.xp, dy, left, right, w, self.mode, 3)
            return (self.xp.ascontiguousarray(_fold(self.xp, dx, top, bottom, h, self.mode, 2)),)
        dx = empty(self.device, self.x_shape)
        launch(self.device, "pad.cu", "pad_backward", blocks(dx.size),
               (dy, dx, i32(n * c), i32(h), i32(w), i32(top), i32(bottom), i32(left), i32(right),
                i32(MODES.index(self.mode))))
        return (dx,)
