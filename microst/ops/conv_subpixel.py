"""Sub-pixel forms on the cpu (Shi et al. 2016): a conv at the high resolution of a strided map as one
stride-1 conv at the low resolution whose output channels interleave.

    backward_data             strided backward-data (the "gemm" path of ops/conv_cpu.py)
    upsample_conv_forward     upsample_conv2d: nearest x2 then a 3 x 3 conv with zero padding 1
    upsample_conv_backward

1. Strided backward-data.

Backward-data of a conv with stride s scatters every dy value through the kernel onto the input
(the reference's col2im: k * k strided adds at the full resolution). Split dx by its stride phase
instead: the inputs h = s * u + a of phase a meet only the taps i = a + p (mod s), and tap i joins
input u to output o = u + d, d = (a + p - i) / s. Along each axis d runs over T = dmax - dmin + 1
values, so every phase is a T x T correlation of dy, and all s * s phases are one stride-1 conv of
dy (Cout channels) to s * s * Cin channels, weights w[o, c, i, j] moved to their phase and offset
(zeros where a phase has no tap). Its output rows interleave into dx:

    dx[:, :, a::s, b::s] = Z[:, phase (a, b)][:, :, u0:, v0:],     u0 = dmin + padding of that conv

The transposed conv 3 x 3, stride 2 (the generator's upsampling: its forward is this pass) has
T = 2: 16 multiply-adds per input pixel and channel pair against the 9 of col2im's GEMM, but one
GEMM at the low resolution and one strided copy, where col2im writes 9 strided adds at the full one
(64 -> 32 channels, 512² -> 1024²: 206 ms against 242).

2. Nearest x2, then a 3 x 3 conv (padding 1). Output row 2u + a reads upsampled rows 2u + a - 1 ..
2u + a + 1, which are input rows u - 1, u, u (a = 0) or u, u, u + 1 (a = 1): each phase is a 2 x 2
conv of x with taps summed (ROWS_OF_TAP), all four phases one conv of x padded by 1 to 4 * Cout
channels: 16 multiply-adds per input pixel and channel pair where the upsampled map's conv has 36,
and no upsampled map.
"""
import numpy as np

from . import conv_gemm
from .workspace import channel_blocks


def _phase_taps(k, s, p):
    """(dmin, T, taps): taps[a][t] = the kernel tap joining phase a's input u to output u + dmin + t
    (None: no tap)."""
    offsets = {a: {(a + p - i) // s: i for i in range(k) if (a + p - i) % s == 0} for a in range(s)}
    ds = [d for by_d in offsets.values() for d in by_d] or [0]
    dmin, dmax = min(ds), max(ds)
    return dmin, dmax - dmin + 1, [[offsets[a].get(dmin + t) for t in range(dmax - dmin + 1)] for a in range(s)]


def _phase_weights(w, stride, padding):
    """The stride-1 conv's weights (sh * sw * Cin, Cout, Th, Tw), rows ordered (a, b, c), and per axis
    (dmin, T)."""
    cout, cin, kh, kw = w.shape
    (dmin_h, th, taps_h), (dmin_w, tw, taps_w) = (_phase_taps(k, s, p) for k, s, p in
                                                  zip((kh, kw), stride, padding))
    sh, sw = stride
    out = np.zeros((sh, sw, cin, cout, th, tw), w.dtype)
    for a in range(sh):
        for b in range(sw):
            for t, i in enumerate(taps_h[a]):
                for r, j in enumerate(taps_w[b]):
                    if i is not None and j is not None:
                        out[a, b, :, :, t, r] = w[:, :, i, j].T
    return out.reshape(sh * sw * cin, cout, th, tw), (dmin_h, th), (dmin_w, tw)


def backward_data(dy, w, x_shape, stride, padding, band):
    """dx (N, Cin, H, W) of a strided conv: one stride-1 conv of dy, its phases interleaved."""
    cout, cin = w.shape[:2]
    n, _, ho, wo = dy.shape
    (sh, sw), (h, wd) = stride, x_shape[2:]
    weights, (dmin_h, th), (dmin_w, tw) = _phase_weights(w, stride, padding)
    # the zero padding that lets every phase's first and last input read all its offsets
    rows_h, rows_w = -(-h // sh), -(-wd // sw)  # the most inputs a phase has (phase 0)
    pad_h = max(0, -dmin_h, rows_h + dmin_h + th - 1 - ho)
    pad_w = max(0, -dmin_w, rows_w + dmin_w + tw - 1 - wo)
    z = conv_gemm.forward(dy, weights, None, (1, 1), (pad_h, pad_w), band)
    z = z.reshape(n, sh, sw, cin, z.shape[2], z.shape[3])
    u0, v0 = dmin_h + pad_h, dmin_w + pad_w
    dx = np.empty((n, cin, h, wd), dy.dtype)
    phases = [(a, b, -(-(h - a) // sh), -(-(wd - b) // sw)) for a in range(min(sh, h)) for b in range(min(sw, wd))]
    for block in channel_blocks(cin, dx[:, 0].nbytes):  # in the cache while its phases interleave
        for a, b, rows, cols in phases:
            dx[:, block, a::sh, b::sw] = z[:, a, b, block, u0:u0 + rows, v0:v0 + cols]
    return dx


# ROWS_OF_TAP[a][d][i] = 1 when phase a's 2 x 2 tap d (input row u - 1 + a + d) sums kernel row i
ROWS_OF_TAP = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])


def upsample_conv_weights(w):
    """(4 * Cout, Cin, 2, 2), rows ordered (a, b, o): the four phases' 2 x 2 kernels."""
    cout, cin = w.shape[:2]
    a = ROWS_OF_TAP.astype(w.dtype)
    return np.einsum("xdi,yej,ocij->xyocde", a, a, w).reshape(4 * cout, cin, 2, 2)


def upsample_conv_forward(conv, x, w, b):
    """y (N, Cout, 2H, 2W) = conv3x3(nearest x2 of x) + b; conv: ops/conv_cpu.forward."""
    n, _, h, wd = x.shape
    cout = w.shape[0]
    z = conv(x, upsample_conv_weights(w), None, (1, 1), (1, 1)).reshape(n, 2, 2, cout, h + 1, wd + 1)
    y = np.empty((n, cout, 2 * h, 2 * wd), x.dtype)
    for block in channel_blocks(cout, y[:, 0].nbytes):  # in the cache while its phases interleave
        for a in range(2):
            for b_ in range(2):
                phase = z[:, a, b_, block, a:a + h, b_:b_ + wd]
                if b is None:
                    y[:, block, a::2, b_::2] = phase
                else:
                    np.add(phase, b[block].reshape(-1, 1, 1), out=y[:, block, a::2, b_::2])
    return y


def upsample_conv_backward(passes, dy, x, w, needs):
    """(dx, dw, db), each None unless asked for in needs; passes: ops/conv_cpu's (backward_data,
    backward_weight). The output gradient in the phases' layout, dz, is the 2 x 2 conv's."""
    need_x, need_w, need_b = needs
    backward_data, backward_weight = passes
    n, _, h, wd = x.shape
    cout = w.shape[0]
    dz = np.zeros((n, 2, 2, cout, h + 1, wd + 1), dy.dtype)
    for block in channel_blocks(cout, dy[:, 0].nbytes):  # in the cache while its phases are copied out
        for a in range(2):
            for b in range(2):
                dz[:, a, b, block, a:a + h, b:b + wd] = dy[:, block, a::2, b::2]
    dz = dz.reshape(n, 4 * cout, h + 1, wd + 1)
    dx = backward_data(dz, upsample_conv_weights(w), x.shape, (1, 1), (1, 1)) if need_x else None
    dw = None
    if need_w:
        dw2 = backward_weight(dz, x, (4 * cout,) + w.shape[1:2] + (2, 2), (1, 1), (1, 1))
        rows = ROWS_OF_TAP.astype(dy.dtype)
        dw = np.einsum("xdi,yej,xyocde->ocij", rows, rows, dw2.reshape(2, 2, cout, w.shape[1], 2, 2))
    db = dy.sum(axis=(0, 2, 3)) if need_b else None
    return dx, dw, db
