"""Resampling: max_pool2d, avg_pool2d (no padding, floor mode) and nearest upsampling.

cpu: NumPy, a loop over the kernel taps (each a strided view of the whole image).
emu/cuda: kernels/pool.cu; backward passes gather from the windows that contain each input pixel.
"""
import numpy as np

from .base import Op, blocks, check_rank, empty, i32, launch, pair


def _pool_geometry(op, x, kernel_size, stride):
    check_rank(op, "input", x, 4)
    k = pair(kernel_size, "kernel_size", op)
    s = pair(stride if stride is not None else k, "stride", op)
    if min(k) < 1 or min(s) < 1:
        raise ValueError(f"{op}: kernel_size and stride must be >= 1, got {k} and {s}")
    h, w = x.shape[2:]
    if k[0] > h or k[1] > w:
        raise ValueError(f"{op}: kernel {k[0]}x{k[1]} is larger than the input {h}x{w}")
    return k, s, ((h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)


def _taps(k, s, out):
    """For each kernel tap (i, j): the slices of the input it reads for every output pixel."""
    for i in range(k[0]):
        for j in range(k[1]):
            yield i * k[1] + j, (slice(None), slice(None), slice(i, i + s[0] * out[0], s[0]),
                                 slice(j, j + s[1] * out[1], s[1]))


class _Pool(Op):
    def geometry(self, x):
        self.k, self.s, self.out = _pool_geometry(self.name, x, self.kernel_size, self.stride)
        self.x_shape = x.shape
        n, c, h, w = x.shape
        return tuple(i32(v) for v in (n * c, h, w, *self.out, *self.k, *self.s))

    def launch(self, kernel, shape, *arrays, dtype=np.float32):
        out = empty(self.device, shape, dtype)
        launch(self.device, "pool.cu", kernel, blocks(out.size), (*arrays, out, *self.params))
        return out


class MaxPool2d(_Pool):
    name = "max_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.params = self.geometry(x)
        y_shape = x.shape[:2] + self.out
        if not self.on_cpu:  # y and the tap index of each maximum, written together
            y = empty(self.device, y_shape)
            self.argmax = empty(self.device, y_shape, np.int32)
            launch(self.device, "pool.cu", "max_pool_forward", blocks(y.size), (x, y, self.argmax, *self.params))
            return y
        y = None
        for t, window in _taps(self.k, self.s, self.out):
            v = x[window]
            if y is None:
                y, self.argmax = v.copy(), np.zeros(v.shape, np.int32)
            else:  # strictly greater: the first maximum wins, as in PyTorch
                better = v > y
                y = np.where(better, v, y)
                self.argmax[better] = t
        return y

    def backward(self, dy):
        if not self.on_cpu:
            return (self.launch("max_pool_backward", self.x_shape, dy, self.argmax),)
        dx = np.zeros(self.x_shape, dy.dtype)
        for t, window in _taps(self.k, self.s, self.out):
            dx[window] += dy * (self.argmax == t)
        return (dx,)


class AvgPool2d(_Pool):
    name = "avg_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.params = self.geometry(x)
        if not self.on_cpu:
            return self.launch("avg_pool_forward", x.shape[:2] + self.out, x)
        y = sum(x[window] for _, window in _taps(self.k, self.s, self.out))
        return y / x.dtype.type(self.k[0] * self.k[1])

    def backward(self, dy):
        if not self.on_cpu:
            return (self.launch("avg_pool_backward", self.x_shape, dy),)
        dx = np.zeros(self.x_shape, dy.dtype)
        share = dy / dy.dtype.type(self.k[0] * self.k[1])
        for _, window in _taps(self.k, self.s, self.out):
            dx[window] += share
        return (dx,)


class UpsampleNearest(Op):
    name = "interpolate"  # params: scale (an int >= 1)

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        s = self.scale
        self.x_shape = x.shape
        if self.on_cpu:
            return x.repeat(s, axis=2).repeat(s, axis=3)
        n, c, h, w = x.shape
        y = empty(self.device, (n, c, h * s, w * s))
        launch(self.device, "pool.cu", "upsample_nearest_forward", blocks(y.size), (x, y, i32(n * c), i32(h), i32(w), i32(s)))
        return y

    def backward(self, dy):
        n, c, h, w = self.x_shape
        s = self.scale
        if self.on_cpu:
            return (dy.reshape(n, c, h, s, w, s).sum(axis=(3, 5)),)
        dx = empty(self.device, self.x_shape)
        launch(self.device, "pool.cu", "upsample_nearest_backward", blocks(dx.size), (dy, dx, i32(n * c), i32(h), i32(w), i32(s)))
        return (dx,)
