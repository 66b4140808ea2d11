"""conv2d's three passes on the cpu, the NumPy reference for every kernel version (microst.ops.conv).

    forward(x, w, b)              y  = w * x (+ b)     (N, Cout, Ho, Wo)
    backward_data(dy, w)          dx = w^T * dy        (N, Cin, H, W)
    backward_weight(dy, x)        dw = dy * x          (Cout, Cin, kh, kw)

Each pass runs on one of three paths (PATHS), chosen per call from the shapes:

    reference   im2col (strided copies of the receptive fields, a band of output rows at a time) +
                one matrix multiply; backward-data scatters the columns back (col2im). The plain
                path: the others are tested against it on every conv case (tests/test_conv_cpu.py).
    gemm        stride 1: GEMMs on the flat padded layout (ops/conv_gemm.py): one GEMM per output
                row on the input laid out row by row (no im2col) where kh * Cin is large enough, else
                contiguous im2col, or one GEMM for all taps and shifted adds when the output is
                narrow; weight gradient from shifted views without a copy. Backward-data of a
                stride-1 conv is the forward conv of dy with the flipped kernel ("full"
                correlation), so it needs no scatter.
                Strided convs read their input split into stride phases, each as flat; their
                backward-data is one stride-1 conv at the low resolution whose output channels
                interleave into dx (ops/conv_subpixel.py), where the reference scatters.
    winograd    F(2x2, 3x3) for the stride-1 3x3 convs (ops/conv_winograd.py): 2.25x fewer multiplies;
                chosen when both channel counts are at least winograd_channels(): below, its
                transforms (NumPy passes that stream memory) cost more than the multiplies saved.

use_path(name) pins one ("winograd" runs wherever it applies, "gemm" never runs Winograd,
"reference" runs the plain path everywhere, upsample_conv2d as interpolate then conv2d); tests and
benchmarks use it.
"""
import contextlib

import numpy as np

from . import blas_kernels, conv_gemm, conv_subpixel, conv_winograd
from .workspace import scratch

PATHS = ("reference", "gemm", "winograd")
_pinned = None


def winograd_channels():
    """The fewest input and output channels a conv needs to run Winograd by default: 256 with AVX-512
    GEMM kernels, 128 with AVX2 ones. Below, the gemm path (its forward by output rows) is faster:
    forward + backward-data of 128-channel convs 0.84-0.98x Winograd's time with AVX-512 kernels,
    of 64-channel ones 0.87-0.94x with AVX2 kernels (bench/RESULTS.md, 2026-12-03)."""
    return 256 if blas_kernels.avx512_gemm() else 128


@contextlib.contextmanager
def use_path(path):
    """Within this block every cpu conv pass takes `path` where it applies (see the module docstring)."""
    global _pinned
    if path not in PATHS:
        raise ValueError(f"unknown conv path {path!r}; choose one of {', '.join(PATHS)}")
    previous, _pinned = _pinned, path
    try:
        yield
    finally:
        _pinned = previous


def reference_pinned():
    """Whether use_path("reference") holds now (a fused op then runs the plain passes it fuses)."""
    return _pinned == "reference"


def _path(w_shape, stride, padding):
    """The path a stride-1 or strided conv of this kernel takes now."""
    if _pinned == "reference":
        return "reference"
    if conv_winograd.applies(w_shape, stride, padding) and (
            _pinned == "winograd" or (_pinned is None and min(w_shape[:2]) >= winograd_channels())):
        return "winograd"
    return "gemm"


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


BAND_ELEMENTS = 1 << 22  # the im2col matrix is built in bands of at most this many elements (16 MB
                         # in float32): a 9x9 conv's whole matrix at 1024x1024 would take 10 GB


def _bands(n, c, kh, kw, ho, wo):
    rows = max(1, BAND_ELEMENTS // (n * c * kh * kw * wo))
    return [(r, min(ho, r + rows)) for r in range(0, ho, rows)]


def _is_pointwise(kh, kw, stride, padding):
    """A 1x1 conv with stride 1 and no padding: its im2col matrix is the input itself."""
    return kh == kw == 1 and stride == (1, 1) and padding == (0, 0)


def im2col(xpad, kh, kw, stride, rows, wo):
    """The receptive fields of output rows [r0, r1) as columns: (N, C*kh*kw, (r1-r0)*wo).
    xpad is the zero-padded input."""
    (sh, sw), (r0, r1) = stride, rows
    n, c = xpad.shape[:2]
    cols = np.empty((n, c, kh, kw, r1 - r0, wo), xpad.dtype)
    for i in range(kh):  # a loop over kernel taps, each a strided copy of the band
        for j in range(kw):
            cols[:, :, i, j] = xpad[:, :, i + sh * r0:i + sh * (r1 - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    return cols.reshape(n, c * kh * kw, (r1 - r0) * wo)


def col2im_add(cols, dxpad, kh, kw, stride, rows, wo):
    """The adjoint of im2col: add the columns of output rows [r0, r1) onto the pixels of the
    padded input they were read from."""
    (sh, sw), (r0, r1) = stride, rows
    n, c = dxpad.shape[:2]
    cols = cols.reshape(n, c, kh, kw, r1 - r0, wo)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i + sh * r0:i + sh * (r1 - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += cols[:, :, i, j]


def _zero_pad(x, padding):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x


# -- the reference: im2col of strided windows --------------------------------------------------
def reference_forward(x, w, b, stride, padding):
    cout, cin, kh, kw = w.shape
    n, _, h, wd = x.shape
    ho, wo = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(wd, kw, stride[1], padding[1])
    w2 = w.reshape(cout, -1)
    if _is_pointwise(kh, kw, stride, padding):
        y = np.matmul(w2, x.reshape(n, cin, -1))
    else:
        xpad = _zero_pad(x, padding)
        y = np.empty((n, cout, ho * wo), x.dtype)
        for r0, r1 in _bands(n, cin, kh, kw, ho, wo):
            y[:, :, r0 * wo:r1 * wo] = np.matmul(w2, im2col(xpad, kh, kw, stride, (r0, r1), wo))
    if b is not None:
        y += b[:, None]
    return y.reshape(n, cout, ho, wo)


def reference_backward_data(dy, w, x_shape, stride, padding):
    cout, cin, kh, kw = w.shape
    n, _, ho, wo = dy.shape
    w2t, dy2 = w.reshape(cout, -1).T, dy.reshape(n, cout, -1)
    if _is_pointwise(kh, kw, stride, padding):
        return np.matmul(w2t, dy2).reshape(x_shape)
    (ph, pw), (h, wd) = padding, x_shape[2:]
    dxpad = np.zeros((n, cin, h + 2 * ph, wd + 2 * pw), dy.dtype)
    for r0, r1 in _bands(n, cin, kh, kw, ho, wo):
        col2im_add(np.matmul(w2t, dy2[:, :, r0 * wo:r1 * wo]), dxpad, kh, kw, stride, (r0, r1), wo)
    return np.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + wd])


def reference_backward_weight(dy, x, w_shape, stride, padding):
    cout, cin, kh, kw = w_shape
    n, _, ho, wo = dy.shape
    dy2 = dy.reshape(n, cout, -1)
    if _is_pointwise(kh, kw, stride, padding):
        return np.tensordot(dy2, x.reshape(n, cin, -1), axes=([0, 2], [0, 2])).reshape(w_shape)
    xpad = _zero_pad(x, padding)
    dw = np.zeros((cout, cin * kh * kw), dy.dtype)
    for r0, r1 in _bands(n, cin, kh, kw, ho, wo):
        dw += np.tensordot(dy2[:, :, r0 * wo:r1 * wo], im2col(xpad, kh, kw, stride, (r0, r1), wo), axes=([0, 2], [0, 2]))
    return dw.reshape(w_shape)


# -- the entry points: the path the shapes (or use_path) choose ---------------------------------
def forward(x, w, b, stride, padding):
    path = _path(w.shape, stride, padding)
    if path == "reference" or _is_pointwise(*w.shape[2:], stride, padding):
        return reference_forward(x, w, b, stride, padding)
    if path == "winograd":  # bands 4x larger: its GEMMs need wide bands, and V is only 4x the input
        return conv_winograd.forward(x, w, b, padding, 4 * BAND_ELEMENTS)
    return conv_gemm.forward(x, w, b, stride, padding, BAND_ELEMENTS)


def backward_data(dy, w, x_shape, stride, padding):
    kh, kw = w.shape[2:]
    full = (kh - 1 - padding[0], kw - 1 - padding[1])  # the padding of the "full" correlation
    if _path(w.shape, stride, padding) == "reference" or min(full) < 0 or _is_pointwise(kh, kw, stride, padding):
        return reference_backward_data(dy, w, x_shape, stride, padding)
    if stride != (1, 1):
        return conv_subpixel.backward_data(dy, w, x_shape, stride, padding, BAND_ELEMENTS)
    # dx = dy correlated with the kernel turned by 180 degrees, Cin and Cout swapped, padded by k - 1 - p
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return forward(dy, flipped, None, (1, 1), full)


def backward_weight(dy, x, w_shape, stride, padding):
    cout, cin, kh, kw = w_shape
    if _path(w_shape, stride, padding) == "reference":
        return reference_backward_weight(dy, x, w_shape, stride, padding)
    if not _is_pointwise(kh, kw, stride, padding):
        return conv_gemm.backward_weight(dy, x, w_shape, stride, padding, BAND_ELEMENTS)
    # image by image (dy (Cout, P) @ x^T, a transposed operand BLAS reads in place), where a tensordot
    # over (batch, positions) would copy both
    n = dy.shape[0]
    dy2, x2 = dy.reshape(n, cout, -1), x.reshape(n, cin, -1)
    dw = np.zeros((cout, cin), dy.dtype)
    part = scratch("gemm", dw.shape, dy.dtype)
    for image in range(n):
        dw += np.matmul(dy2[image], x2[image].T, out=part)
    return dw.reshape(w_shape)
