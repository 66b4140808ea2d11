"""Resampling: max_pool2d, avg_pool2d (no padding, floor mode) and nearest upsampling."""
from .base import Op, check_rank, pair


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


class MaxPool2d(Op):
    name = "max_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.k, self.s, self.out = _pool_geometry(self.name, x, self.kernel_size, self.stride)
        self.x_shape, self.dtype = x.shape, x.dtype
        y = self.argmax = None
        for t, window in _taps(self.k, self.s, self.out):
            v = x[window]
            if y is None:
                y, self.argmax = v.copy(), self.xp.zeros(v.shape, self.xp.int32)
            else:  # strictly greater: the first maximum wins, as in PyTorch
                better = v > y
                y = self.xp.where(better, v, y)
                self.argmax[better] = t
        return y

    def backward(self, dy):
        dx = self.xp.zeros(self.x_shape, self.dtype)
        for t, window in _taps(self.k, self.s, self.out):
            dx[window] += dy * (self.argmax == t)
        return (dx,)


class AvgPool2d(Op):
    name = "avg_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.k, self.s, self.out = _pool_geometry(self.name, x, self.kernel_size, self.stride)
        self.x_shape = x.shape
        y = sum(x[window] for _, window in _taps(self.k, self.s, self.out))
        return y / x.dtype.type(self.k[0] * self.k[1])

    def backward(self, dy):
        dx = self.xp.zeros(self.x_shape, dy.dtype)
        share = dy / dy.dtype.type(self.k[0] * self.k[1])
        for _, window in _taps(self.k, self.s, self.out):
            dx[window] += share
        return (dx,)


class UpsampleNearest(Op):
    name = "interpolate"  # params: scale (an int >= 1)

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        s = self.scale
        return x.repeat(s, axis=2).repeat(s, axis=3)

    def backward(self, dy):
        n, c, h, w = dy.shape
        s = self.scale
        return (dy.reshape(n, c, h // s, s, w // s, s).sum(axis=(3, 5)),)
