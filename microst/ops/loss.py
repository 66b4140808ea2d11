"""The reductions of the perceptual losses: gram, mse_loss, tv_loss.

cpu: NumPy. emu/cuda: kernels/loss.cu: gram as an implicit GEMM per image; mse and tv summed in
two deterministic passes (per-block partial sums, then one block adds them). The upstream
gradient of a loss stays on the device: backward kernels read dy[0].
"""
import numpy as np

from .base import Op, THREADS, blocks, check_rank, empty, f32, i32, launch

TILE = 64


def _total(device, kernel, n, args, scale=1.0):
    """Run a *_partial kernel over n elements, then sum its partials into a 0-d array."""
    grid = blocks(n, cap=1024)
    partial = empty(device, (grid,))
    launch(device, "loss.cu", kernel, grid, (*args[:-1], partial, *args[-1]))
    out = empty(device, (1,))
    launch(device, "loss.cu", "sum_partials", 1, (partial, out, i32(grid), f32(scale)))
    return out.reshape(())


class Gram(Op):
    """G = F F^T / (C H W) per image, F the (C, H*W) feature matrix: (N, C, H, W) -> (N, C, C)."""
    name = "gram"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        n, c, h, w = x.shape
        self.f, self.x_shape = x.reshape(n, c, h * w), x.shape
        self.scale = 1.0 / (c * h * w)
        if self.on_cpu:
            return np.matmul(self.f, self.f.transpose(0, 2, 1)) * x.dtype.type(self.scale)
        g = empty(self.device, (n, c, c))
        tiles = -(-c // TILE)
        launch(self.device, "loss.cu", "gram_forward", (tiles, tiles, n), (x, g, i32(c), i32(h * w), f32(self.scale)))
        return g

    def backward(self, dy):  # dF = (dG + dG^T) F / (C H W)
        n, c, h, w = self.x_shape
        if self.on_cpu:
            dsym = dy + dy.transpose(0, 2, 1)
            return ((np.matmul(dsym, self.f) * dy.dtype.type(self.scale)).reshape(self.x_shape),)
        dx = empty(self.device, self.x_shape)
        launch(self.device, "loss.cu", "gram_backward", (-(-h * w // TILE), -(-c // TILE), n),
               (dy, self.f, dx, i32(c), i32(h * w), f32(self.scale)))
        return (dx,)


class MseLoss(Op):
    name = "mse_loss"

    def forward(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"mse_loss: input {tuple(a.shape)} and target {tuple(b.shape)} differ in shape")
        if self.on_cpu:
            self.diff = a - b
            return np.asarray((self.diff * self.diff).mean())
        self.a, self.b = a, b
        return _total(self.device, "mse_partial", a.size, (a, b, (i32(a.size),)), 1.0 / a.size)

    def backward(self, dy):
        want_a, want_b = self.needs_grad
        if self.on_cpu:
            g = self.diff * (dy * (2.0 / self.diff.size)).astype(self.diff.dtype)
            return (g if want_a else None), (-g if want_b else None)
        a, b = self.a, self.b
        da = empty(self.device, a.shape) if want_a else a  # an unused output still needs a valid pointer
        db = empty(self.device, b.shape) if want_b else b
        launch(self.device, "loss.cu", "mse_backward", blocks(a.size),
               (a, b, dy, da, db, i32(a.size), f32(2.0 / a.size), i32(want_a), i32(want_b)))
        return (da if want_a else None), (db if want_b else None)


class TvLoss(Op):
    """mean over (n, c, i, j) of (x[i+1, j] - x[i, j])^2  +  mean of (x[i, j+1] - x[i, j])^2."""
    name = "tv_loss"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        n, c, h, w = x.shape
        if min(h, w) < 2:
            raise ValueError(f"tv_loss: needs H, W >= 2, got input {tuple(x.shape)}")
        self.x = x
        self.weights = 1.0 / (n * c * (h - 1) * w), 1.0 / (n * c * h * (w - 1))
        if self.on_cpu:
            dh, dw = np.diff(x, axis=2), np.diff(x, axis=3)
            return np.asarray((dh * dh).sum() * self.weights[0] + (dw * dw).sum() * self.weights[1])
        return _total(self.device, "tv_partial", x.size, (x, (i32(n * c), i32(h), i32(w), *map(f32, self.weights))))

    def backward(self, dy):
        x, (wh, ww) = self.x, self.weights
        if self.on_cpu:
            dh, dw = np.diff(x, axis=2) * (2 * wh * dy), np.diff(x, axis=3) * (2 * ww * dy)
            dx = np.zeros(x.shape, x.dtype)
            dx[:, :, 1:, :] += dh
            dx[:, :, :-1, :] -= dh
            dx[:, :, :, 1:] += dw
            dx[:, :, :, :-1] -= dw
            return (dx,)
        n, c, h, w = x.shape
        dx = empty(self.device, x.shape)
        launch(self.device, "loss.cu", "tv_backward", blocks(x.size), (x, dy, dx, i32(n * c), i32(h), i32(w), f32(wh), f32(ww)))
        return (dx,)
