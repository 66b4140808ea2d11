"""conv2d and conv_transpose2d, both built from three primitives:

    conv2d_forward(x, w, b)          y  = w * x (+ b)            (N, Cout, Ho, Wo)
    conv2d_backward_data(dy, w)      dx = w^T * dy               (N, Cin, H, W)
    conv2d_backward_weight(dy, x)    dw = dy * x                 (Cout, Cin, kh, kw)

On `cpu` they are im2col + one matrix multiply (BLAS); on `emu`/`cuda` hand-written kernels.
conv_transpose2d is the same three with the roles swapped: its forward is conv's backward-data,
its backward-data is conv's forward, and its weight gradient is conv's with x and dy exchanged.
Weights: conv (Cout, Cin, kh, kw); transposed conv (Cin, Cout, kh, kw), as in PyTorch.
"""
import numpy as np

from .arith import OP_ADD, binary, sum_axes
from .base import Op, blocks, check_rank, empty, i32, launch, pair


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


# -- cpu primitives: im2col + matmul, a band of output rows at a time ---------------------------
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


def conv2d_forward_cpu(x, w, b, stride, padding):
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


def conv2d_backward_data_cpu(dy, w, x_shape, stride, padding):
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


def conv2d_backward_weight_cpu(dy, x, w_shape, stride, padding):
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


# -- emu/cuda: kernels/conv.cu, three implicit GEMMs (64x64 tiles) ----------------------------
TILE = 64
SPLIT_ROWS = 256       # backward-weight: at least this many reduction rows per split
SPLIT_BLOCKS = 1024    # ... and at most about this many blocks in all


def _geometry(x_shape, w_shape, stride, padding):
    n, cin, h, w = x_shape
    cout, _, kh, kw = w_shape
    ho, wo = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(w, kw, stride[1], padding[1])
    return (n, cin, h, w, cout, kh, kw, stride[0], stride[1], padding[0], padding[1], ho, wo)


def _tiles(n):
    return -(-n // TILE)


def conv2d_forward(device, x, w, b, stride, padding):
    if device == "cpu":
        return conv2d_forward_cpu(x, w, b, stride, padding)
    geo = _geometry(x.shape, w.shape, stride, padding)
    n, cout, ho, wo = geo[0], geo[4], geo[11], geo[12]
    y = empty(device, (n, cout, ho, wo))
    launch(device, "conv.cu", "conv2d_forward", (_tiles(n * ho * wo), _tiles(cout)),
           (x, w, w if b is None else b, y, i32(b is not None), *map(i32, geo)))
    return y


def conv2d_backward_data(device, dy, w, x_shape, stride, padding):
    if device == "cpu":
        return conv2d_backward_data_cpu(dy, w, x_shape, stride, padding)
    n, cin, h, wd = x_shape
    dx = empty(device, x_shape)
    launch(device, "conv.cu", "conv2d_backward_data", (_tiles(n * h * wd), _tiles(cin)),
           (dy, w, dx, *map(i32, _geometry(x_shape, w.shape, stride, padding))))
    return dx


def conv2d_backward_weight(device, dy, x, w_shape, stride, padding):
    if device == "cpu":
        return conv2d_backward_weight_cpu(dy, x, w_shape, stride, padding)
    geo = _geometry(x.shape, w_shape, stride, padding)
    cout, cin, kh, kw = w_shape
    rows = geo[0] * geo[11] * geo[12]
    base = _tiles(cin * kh * kw) * _tiles(cout)
    splits = max(1, min(-(-rows // SPLIT_ROWS), SPLIT_BLOCKS // base))
    chunk = -(-rows // splits)
    splits = -(-rows // chunk)
    dw = empty(device, w_shape)
    partial = dw if splits == 1 else empty(device, (splits,) + tuple(w_shape))
    launch(device, "conv.cu", "conv2d_backward_weight", (_tiles(cin * kh * kw), _tiles(cout), splits),
           (dy, x, partial, i32(chunk), *map(i32, geo)))
    if splits > 1:
        launch(device, "conv.cu", "sum_splits", blocks(dw.size), (partial, dw, i32(splits), i32(dw.size)))
    return dw


# -- the ops ---------------------------------------------------------------------------------
def _check(op, x, w, b, bias_size, channels_axis, stride, padding):
    check_rank(op, "input", x, 4)
    check_rank(op, "weight", w, 4)
    if x.shape[1] != w.shape[channels_axis]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight {tuple(w.shape)} expects "
                         f"{w.shape[channels_axis]}")
    if b is not None and tuple(b.shape) != (bias_size,):
        raise ValueError(f"{op}: bias must have shape ({bias_size},), got {tuple(b.shape)}")
    stride, padding = pair(stride, "stride", op), pair(padding, "padding", op)
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got stride={stride} padding={padding}")
    return stride, padding


class Conv2d(Op):
    name = "conv2d"  # params: stride, padding

    def forward(self, x, w, b):
        self.stride, self.padding = _check(self.name, x, w, b, w.shape[0], 1, self.stride, self.padding)
        kh, kw = w.shape[2:]
        hp, wp = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if kh > hp or kw > wp:
            raise ValueError(f"conv2d: kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
                             f"(input {tuple(x.shape)}, padding {self.padding})")
        self.x, self.w, self.has_bias = x, w, b is not None
        return conv2d_forward(self.device, x, w, b, self.stride, self.padding)

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        dx = conv2d_backward_data(self.device, dy, self.w, self.x.shape, self.stride, self.padding) if need_x else None
        dw = conv2d_backward_weight(self.device, dy, self.x, self.w.shape, self.stride, self.padding) if need_w else None
        db = sum_axes(self.device, dy, (0, 2, 3)) if need_b else None
        return dx, dw, db


class ConvTranspose2d(Op):
    name = "conv_transpose2d"  # params: stride, padding, output_padding

    def forward(self, x, w, b):
        self.stride, self.padding = _check(self.name, x, w, b, w.shape[1], 0, self.stride, self.padding)
        op_ = pair(self.output_padding, "output_padding", self.name)
        if not all(0 <= o < s for o, s in zip(op_, self.stride)):
            raise ValueError(f"conv_transpose2d: output_padding {op_} must be >= 0 and smaller than stride {self.stride}")
        n, _, h, wd = x.shape
        cin, cout, kh, kw = w.shape
        out_shape = (n, cout) + tuple((size - 1) * s - 2 * p + k + o for size, s, p, k, o in
                                      zip((h, wd), self.stride, self.padding, (kh, kw), op_))
        if min(out_shape[2:]) < 1:
            raise ValueError(f"conv_transpose2d: output size {out_shape[2:]} is empty for input {tuple(x.shape)}, "
                             f"kernel {kh}x{kw}, stride {self.stride}, padding {self.padding}")
        self.x, self.w = x, w
        y = conv2d_backward_data(self.device, x, w, out_shape, self.stride, self.padding)
        return y if b is None else binary(self.device, OP_ADD, y, b.reshape(1, -1, 1, 1))

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        dx = conv2d_forward(self.device, dy, self.w, None, self.stride, self.padding) if need_x else None
        dw = conv2d_backward_weight(self.device, self.x, dy, self.w.shape, self.stride, self.padding) if need_w else None
        db = sum_axes(self.device, dy, (0, 2, 3)) if need_b else None
        return dx, dw, db
