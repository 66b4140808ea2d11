"""conv2d's passes on the cpu as GEMMs on a flat padded layout (the "gemm" path of ops/conv_cpu.py).

The zero-padded input (N, C, Hp, Wp) is read as (N, C, Hp * Wp), and the output is computed over
Ho rows of the full padded width Wp (the columns past Wo are thrown away). Then kernel tap (i, j)
of a stride-1 conv reads one contiguous window, starting at i * Wp + j, of every channel's flat
row: a shifted view, which BLAS takes as it is, or copies as one block per channel. Against the
reference's im2col (strided 2-D copies, then a tensordot that copies again when batch > 1):

    forward, Cin <= Cout      im2col of contiguous windows, one GEMM (K = Cin * kh * kw)
    forward, Cin > Cout       one GEMM for every tap's output at once (M = kh * kw * Cout), then
                              kh * kw shifted adds of Cout channels: cheaper than copying Cin
                              channels kh * kw times when Cout is small (the 9x9 conv to RGB)
    backward_weight           per tap, dy (extended to width Wp with zeros) times the shifted input
                              view: no copy at all; with a side of under 8 channels, im2col of that
                              side instead (one wide GEMM rather than kh * kw thin ones)

The work is done in bands of output rows (`band`: the elements a band's temporary matrices may
hold, ops/conv_cpu.py's BAND_ELEMENTS), and the temporaries come from the workspace
(ops/workspace.py): they are never returned and never saved for backward.
"""
import numpy as np

from .workspace import scratch

THIN = 8  # a side with fewer channels than this is expanded by im2col for the weight gradient


def row_bands(ho, elements_per_row, band):
    """[(r0, r1), ...]: output rows in bands whose temporaries hold at most `band` elements."""
    rows = max(1, band // max(1, elements_per_row))
    return [(r, min(ho, r + rows)) for r in range(0, ho, rows)]


def padded_flat(x, padding, name="padded"):
    """x zero-padded, as (N, C, (Hp + 1) * Wp) (a workspace array), and Wp. The extra row of zeros
    lets the last tap's window run kw - 1 elements past the last padded row."""
    (ph, pw), (n, c, h, w) = padding, x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    out = scratch(name, (n, c, hp + 1, wp), x.dtype)
    out[:, :, :ph] = 0
    out[:, :, ph + h:] = 0
    out[:, :, ph:ph + h, :pw] = 0
    out[:, :, ph:ph + h, pw + w:] = 0
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out.reshape(n, c, (hp + 1) * wp), wp


def _store(band, y, rows, wp, b):
    """y[:, :, r0:r1] = the band computed over the padded width (N, Cout, rows * Wp), cropped, + bias."""
    (r0, r1), (n, cout, _, wo) = rows, y.shape
    band = band.reshape(n, cout, r1 - r0, wp)[..., :wo]
    if b is None:
        y[:, :, r0:r1] = band
    else:
        np.add(band, b.reshape(-1, 1, 1), out=y[:, :, r0:r1])


def _im2col(xf, kh, kw, wp, rows, name="cols"):
    """(N, C * kh * kw, (r1 - r0) * Wp): for each channel and tap, the window of the flat padded input
    that the tap reads for output rows [r0, r1) (one block copy each)."""
    n, c, _ = xf.shape
    (r0, r1) = rows
    length = (r1 - r0) * wp
    cols = scratch(name, (n, c, kh, kw, length), xf.dtype)
    for i in range(kh):
        for j in range(kw):
            start = (r0 + i) * wp + j
            cols[:, :, i, j] = xf[:, :, start:start + length]
    return cols.reshape(n, c * kh * kw, length)


def forward(x, w, b, padding, band):
    """A stride-1 conv (N, Cin, H, W) * (Cout, Cin, kh, kw) (+ b), zero padding (ph, pw)."""
    cout, cin, kh, kw = w.shape
    n, _, h, wd = x.shape
    ho, wo = h + 2 * padding[0] - kh + 1, wd + 2 * padding[1] - kw + 1
    xf, wp = padded_flat(x, padding)
    y = np.empty((n, cout, ho, wo), x.dtype)
    if cin <= cout:
        w2 = w.reshape(cout, cin * kh * kw)
        for rows in row_bands(ho, n * (cin * kh * kw + cout) * wp, band):
            cols = _im2col(xf, kh, kw, wp, rows)
            _store(np.matmul(w2, cols, out=scratch("gemm", (n, cout, cols.shape[2]), x.dtype)), y, rows, wp, b)
        return y
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw * cout, cin)  # rows (i, j, o)
    reach = (kh - 1) * wp + kw - 1  # how far past its own position the last tap reads
    for r0, r1 in row_bands(ho, n * (kh * kw + 1) * cout * wp, band):
        length = (r1 - r0) * wp
        window = xf[:, :, r0 * wp:r0 * wp + length + reach]
        z = np.matmul(taps, window, out=scratch("gemm", (n, kh * kw * cout, length + reach), x.dtype))
        z = z.reshape(n, kh, kw, cout, length + reach)
        acc = scratch("sum", (n, cout, length), x.dtype)
        acc[...] = z[:, 0, 0, :, :length]
        for t in range(1, kh * kw):
            i, j = divmod(t, kw)
            acc += z[:, i, j, :, i * wp + j:i * wp + j + length]
        _store(acc, y, (r0, r1), wp, b)
    return y


def backward_weight(dy, x, w_shape, padding, band):
    """dw of a stride-1 conv: dw[o, c, i, j] = sum over images and positions of dy[o] * x[c] shifted by (i, j)."""
    cout, cin, kh, kw = w_shape
    n, _, ho, wo = dy.shape
    xf, wp = padded_flat(x, padding)
    dyx = scratch("dy_wide", (n, cout, ho, wp), dy.dtype)  # dy over the padded width, zeros past Wo
    dyx[..., :wo] = dy
    dyx[..., wo:] = 0
    dyx = dyx.reshape(n, cout, ho * wp)
    length = ho * wp
    if min(cin, cout) >= THIN:
        dw = np.zeros((kh, kw, cout, cin), dy.dtype)
        part = scratch("gemm", (cout, cin), dy.dtype)
        for i in range(kh):
            for j in range(kw):
                start = i * wp + j
                for image in range(n):
                    dw[i, j] += np.matmul(dyx[image], xf[image, :, start:start + length].T, out=part)
        return np.ascontiguousarray(dw.transpose(2, 3, 0, 1))
    if cin <= cout:  # im2col of the input: dw (Cout, Cin * kh * kw) = dy (Cout, L) @ cols^T
        dw = np.zeros((cout, cin * kh * kw), dy.dtype)
        part = scratch("gemm", dw.shape, dy.dtype)
        for r0, r1 in row_bands(ho, n * cin * kh * kw * wp, band):
            cols = _im2col(xf, kh, kw, wp, (r0, r1))
            for image in range(n):
                dw += np.matmul(dyx[image, :, r0 * wp:r1 * wp], cols[image].T, out=part)
        return dw.reshape(w_shape)
    # im2col of dy, shifted the other way: dw^T (Cin, kh * kw * Cout) = x (Cin, L') @ D^T, where row
    # (i, j, o) of D is dy[o] moved right by tap (i, j)'s offset, so that it lines up with x
    reach = (kh - 1) * wp + kw - 1
    dwt = np.zeros((cin, kh * kw * cout), dy.dtype)
    part = scratch("gemm", dwt.shape, dy.dtype)
    for r0, r1 in row_bands(ho, n * (kh * kw + 1) * cout * wp, band):
        length = (r1 - r0) * wp
        span = length + reach
        front = scratch("dy_front", (n, cout, reach + span), dy.dtype)  # the band of dy, `reach` zeros in front
        front[:, :, :reach] = 0
        front[:, :, reach:reach + length] = dyx[:, :, r0 * wp:r1 * wp]
        front[:, :, reach + length:] = 0
        shifted = scratch("cols", (n, kh, kw, cout, span), dy.dtype)
        for i in range(kh):
            for j in range(kw):
                start = reach - (i * wp + j)
                shifted[:, i, j] = front[:, :, start:start + span]
        shifted = shifted.reshape(n, kh * kw * cout, span)
        for image in range(n):
            dwt += np.matmul(xf[image, :, r0 * wp:r0 * wp + span], shifted[image].T, out=part)
    return np.ascontiguousarray(dwt.reshape(cin, kh, kw, cout).transpose(3, 0, 1, 2))
