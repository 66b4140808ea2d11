"""Resampling: max_pool2d, avg_pool2d (no padding, floor mode) and nearest upsampling.

cpu: NumPy, a loop over the kernel taps (each a strided view of the whole image); max pooling
records its argmax only when a gradient is wanted, by arithmetic on the taps' comparisons.
emu/cuda: kernels/pool_v1.cu; backward passes gather from the windows that contain each input
pixel (deterministic, no atomics).
"""
import numpy as np

from . import versions
from .base import Case, Op, blocks, check_rank, empty, i32, launch, pair
from .workspace import channel_blocks, scratch

ROLES = ("max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
         "upsample_nearest_forward", "upsample_nearest_backward")
VERSIONS = versions.declare(
    versions.Version("pool", "v1", "one thread per output (forward) or input pixel (backward, a gather)",
                     versions.kernels_of("pool_v1.cu", ROLES, "v1")))


def pool_geometry(op, x_shape, kernel_size, stride):
    """(kernel, stride, output size), each an (h, w) pair."""
    k = pair(kernel_size, "kernel_size", op)
    s = pair(stride if stride is not None else k, "stride", op)
    if min(k) < 1 or min(s) < 1:
        raise ValueError(f"{op}: kernel_size and stride must be >= 1, got {k} and {s}")
    h, w = x_shape[2:]
    if k[0] > h or k[1] > w:
        raise ValueError(f"{op}: kernel {k[0]}x{k[1]} is larger than the input {h}x{w}")
    return k, s, ((h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)


def _taps(k, s, out):
    """For each kernel tap (i, j): the slices of the input it reads for every output pixel."""
    for i in range(k[0]):
        for j in range(k[1]):
            yield i * k[1] + j, (slice(None), slice(None), slice(i, i + s[0] * out[0], s[0]),
                                 slice(j, j + s[1] * out[1], s[1]))


def _run(device, role, out_shape, arrays, x_shape, k, s, out, dtype=np.float32):
    n, c, h, w = x_shape
    y = empty(device, out_shape, dtype)
    launch(device, versions.selected("pool", device).kernel(role), blocks(y.size),
           (*arrays, y, *map(i32, (n * c, h, w, *out, *k, *s))))
    return y


def max_pool_forward(device, x, k, s, out, keep_argmax=True):
    """(y, argmax): argmax holds the kernel tap i * KW + j of each first maximum (as in PyTorch); on cpu
    it is None unless keep_argmax (backward needs it, inference does not)."""
    if device != "cpu":
        y = empty(device, x.shape[:2] + out)
        argmax = _run(device, "max_pool_forward", x.shape[:2] + out, (x, y), x.shape, k, s, out, np.int32)
        return y, argmax
    n, c = x.shape[:2]
    y = np.empty((n, c) + out, x.dtype)
    argmax = np.empty((n, c) + out, _tap_dtype(k)) if keep_argmax else None
    for part in _cache_blocks(x):  # (2x2 pooling of 64 x 256 x 256, batch 4: 11 ms against 21.5 whole)
        _max_of_windows(x[part], k, s, out, y[part])
        if keep_argmax:
            _first_maximum_tap([x[part][window] for _, window in _taps(k, s, out)], y[part], argmax[part])
    if not np.isfinite(y.sum()):  # NaN or inf somewhere: np.maximum propagates NaN where the first-maximum
        return _max_pool_first_maximum([x[window] for _, window in _taps(k, s, out)])  # rule does not
    return y, argmax


def _cache_blocks(x):
    """Index tuples (image, block of channels) of x that fit in the cache together."""
    blocks = channel_blocks(x.shape[1], x[0, 0].nbytes)
    return [(slice(i, i + 1), block) for i in range(x.shape[0]) for block in blocks]


def _tap_dtype(k):
    return np.int8 if k[0] * k[1] <= 127 else np.int32


def _max_of_windows(x, k, s, out, y):
    """y = the maximum of each window: over the kernel rows first, whose views are contiguous along the
    rows, then over the columns of the result (half the strided reads of the taps one by one)."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    rows = [x[:, :, i:i + sh * (ho - 1) + 1:sh] for i in range(kh)]
    if kh > 1:
        top = scratch("pool_rows", rows[0].shape, x.dtype)
        np.maximum(rows[0], rows[1], out=top)
        for r in rows[2:]:
            np.maximum(top, r, out=top)
        rows = top
    else:
        rows = rows[0]
    cols = [rows[..., j:j + sw * (wo - 1) + 1:sw] for j in range(kw)]
    if kw == 1:
        np.copyto(y, cols[0])
    else:
        np.maximum(cols[0], cols[1], out=y)
    for v in cols[2:]:
        np.maximum(y, v, out=y)


def _first_maximum_tap(windows, y, argmax):
    """argmax = the first tap t whose window equals y, by arithmetic from the last tap back, where masked
    writes cost twice the rest of the forward (2x2 pooling of 64 x 256 x 256, batch 4: 45 ms against 92):
    r_t, the first maximum among taps t, t + 1, ... minus t, is (w_t != y) * (1 + r_t+1); r_last = 0."""
    argmax[...] = 0
    differs = scratch("pool_differs", y.shape, bool)
    for window in windows[-2::-1]:
        np.not_equal(window, y, out=differs)
        argmax += 1
        argmax *= differs


def _max_pool_first_maximum(windows):
    """(y, argmax) by the rule itself: a later tap replaces the maximum only when strictly greater."""
    y, argmax = windows[0].copy(), np.zeros(windows[0].shape, np.int32)
    for t, v in enumerate(windows[1:], start=1):
        better = v > y
        y = np.where(better, v, y)
        argmax[better] = t
    return y, argmax


def max_pool_backward(device, dy, argmax, x_shape, k, s, out):
    if device != "cpu":
        return _run(device, "max_pool_backward", x_shape, (dy, argmax), x_shape, k, s, out)
    dx = np.zeros(x_shape, dy.dtype)
    for part in _cache_blocks(dx):  # dx a block at a time, in the cache while its taps are written
        dx_part, dy_part, arg_part = dx[part], dy[part], argmax[part]
        taken = scratch("pool_taken", arg_part.shape, bool)
        for t, window in _taps(k, s, out):
            np.equal(arg_part, t, out=taken)
            if k == s:  # the windows do not overlap: each input pixel has one tap, written once
                np.multiply(dy_part, taken, out=dx_part[window])
            else:
                dx_part[window] += dy_part * taken
    return dx


def avg_pool_forward(device, x, k, s, out):
    if device != "cpu":
        return _run(device, "avg_pool_forward", x.shape[:2] + out, (x,), x.shape, k, s, out)
    return sum(x[window] for _, window in _taps(k, s, out)) / x.dtype.type(k[0] * k[1])


def avg_pool_backward(device, dy, x_shape, k, s, out):
    if device != "cpu":
        return _run(device, "avg_pool_backward", x_shape, (dy,), x_shape, k, s, out)
    dx = np.zeros(x_shape, dy.dtype)
    share = dy / dy.dtype.type(k[0] * k[1])
    for _, window in _taps(k, s, out):
        dx[window] += share
    return dx


def upsample_nearest_forward(device, x, scale):
    if device == "cpu":
        return x.repeat(scale, axis=2).repeat(scale, axis=3)
    n, c, h, w = x.shape
    y = empty(device, (n, c, h * scale, w * scale))
    launch(device, versions.selected("pool", device).kernel("upsample_nearest_forward"), blocks(y.size),
           (x, y, i32(n * c), i32(h), i32(w), i32(scale)))
    return y


def upsample_nearest_backward(device, dy, x_shape, scale):
    n, c, h, w = x_shape
    if device == "cpu":  # the copies of each row added first (long contiguous rows), then those of each pixel
        copies = dy.reshape(n, c, h, scale, w * scale)
        rows = copies[:, :, :, 0].copy()
        for i in range(1, scale):
            rows += copies[:, :, :, i]
        pixels = rows.reshape(n, c, h, w, scale)
        dx = pixels[..., 0].copy()
        for j in range(1, scale):
            dx += pixels[..., j]
        return dx
    dx = empty(device, x_shape)
    launch(device, versions.selected("pool", device).kernel("upsample_nearest_backward"), blocks(dx.size),
           (dy, dx, i32(n * c), i32(h), i32(w), i32(scale)))
    return dx


# -- the ops ---------------------------------------------------------------------------------
class _Pool(Op):
    def geometry(self, x):
        check_rank(self.name, "input", x, 4)
        self.k, self.s, self.out = pool_geometry(self.name, x.shape, self.kernel_size, self.stride)
        self.x_shape = x.shape


class MaxPool2d(_Pool):
    name = "max_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.geometry(x)
        y, argmax = max_pool_forward(self.device, x, self.k, self.s, self.out, keep_argmax=any(self.needs_grad))
        if any(self.needs_grad):
            self.argmax = argmax
        return y

    def backward(self, dy):
        return (max_pool_backward(self.device, dy, self.argmax, self.x_shape, self.k, self.s, self.out),)


class AvgPool2d(_Pool):
    name = "avg_pool2d"  # params: kernel_size, stride

    def forward(self, x):
        self.geometry(x)
        return avg_pool_forward(self.device, x, self.k, self.s, self.out)

    def backward(self, dy):
        return (avg_pool_backward(self.device, dy, self.x_shape, self.k, self.s, self.out),)


class UpsampleNearest(Op):
    name = "interpolate"  # params: scale (an int >= 1)

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        self.x_shape = x.shape
        return upsample_nearest_forward(self.device, x, self.scale)

    def backward(self, dy):
        return (upsample_nearest_backward(self.device, dy, self.x_shape, self.scale),)


def cases():
    return [
        Case("max_pool2d 2", lambda F, x: F.max_pool2d(x, 2), ((2, 3, 9, 8),), full=((4, 64, 256, 256),), op=MaxPool2d),
        Case("max_pool2d 2 odd", lambda F, x: F.max_pool2d(x, 2), ((2, 3, 7, 8),), op=MaxPool2d),
        Case("max_pool2d 3 s2", lambda F, x: F.max_pool2d(x, 3, 2), ((1, 3, 11, 9),), op=MaxPool2d),
        Case("max_pool2d 3 s2 b", lambda F, x: F.max_pool2d(x, 3, 2), ((1, 2, 9, 7),), op=MaxPool2d),
        Case("avg_pool2d 2", lambda F, x: F.avg_pool2d(x, 2), ((2, 3, 9, 8),), op=AvgPool2d),
        Case("avg_pool2d 2 odd", lambda F, x: F.avg_pool2d(x, 2), ((2, 3, 7, 8),), op=AvgPool2d),
        Case("avg_pool2d 3 s1", lambda F, x: F.avg_pool2d(x, 3, 1), ((1, 2, 7, 6),), op=AvgPool2d),
        Case("avg_pool2d 3 s1 b", lambda F, x: F.avg_pool2d(x, 3, 1), ((1, 2, 5, 6),), op=AvgPool2d),
        Case("interpolate x2", lambda F, x: F.interpolate(x, scale_factor=2), ((2, 3, 5, 7),),
             full=((4, 128, 64, 64),), op=UpsampleNearest),
        Case("interpolate x2 b", lambda F, x: F.interpolate(x, scale_factor=2), ((2, 3, 3, 5),), op=UpsampleNearest),
        Case("interpolate x3", lambda F, x: F.interpolate(x, scale_factor=3), ((1, 2, 2, 3),), op=UpsampleNearest),
    ]
