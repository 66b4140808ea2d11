"""conv2d's three passes on the cpu: im2col + one matrix multiply (BLAS), a band of output rows at
a time. This is the NumPy reference for every kernel version (microst.ops.conv).

    forward(x, w, b)              y  = w * x (+ b)     (N, Cout, Ho, Wo)
    backward_data(dy, w)          dx = w^T * dy        (N, Cin, H, W)
    backward_weight(dy, x)        dw = dy * x          (Cout, Cin, kh, kw)
"""
import numpy as np


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


def forward(x, w, b, stride, padding):
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


def backward_data(dy, w, x_shape, stride, padding):
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


def backward_weight(dy, x, w_shape, stride, padding):
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
