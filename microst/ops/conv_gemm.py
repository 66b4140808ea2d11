"""conv2d's passes on the cpu as GEMMs on a flat padded layout (the "gemm" path of ops/conv_cpu.py).

The zero-padded input is split into its stride phases (stride 1: one phase, the padded input
itself): phase (a, b) holds the padded rows a, a + sh, ... and columns b, b + sw, ..., Hq x Wq of
them, read as one flat row per channel. Output (r, q) of tap (i, j) is then element (r + i // sh,
q + j // sw) of phase (i % sh, j % sw), and when the outputs are computed over the full phase
width Wq (the columns past Wo are thrown away), the outputs of a band of rows read, for every tap,
one contiguous window of every channel's flat row: a shifted view, which BLAS takes as it is, or
copies as one block per channel. Against the reference's im2col (strided 2-D copies, then a
tensordot that copies again when batch > 1):

    forward, Cin <= Cout      im2col of contiguous windows, one GEMM (K = Cin * kh * kw)
    forward, Cin > Cout       (stride 1) one GEMM for every tap's output at once (M = kh * kw *
                              Cout), then kh * kw shifted adds of Cout channels: cheaper than
                              copying Cin channels kh * kw times when Cout is small (the 9x9 conv
                              to RGB)
    backward_weight           per tap, dy (extended to width Wq with zeros) times the shifted input
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


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


class Phases:
    """x zero-padded and split into its stride phases: flat (sh, sw, N, C, (Hq + 1) * Wq), a workspace
    array. Hq, Wq: the output size plus the taps' reach in the phase; the extra row of zeros lets the
    last tap's window run past the last row."""

    def __init__(self, x, kernel, stride, padding):
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        n, c, h, w = x.shape
        self.ho, self.wo = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        self.hq, self.wq = self.ho + (kh - 1) // sh, self.wo + (kw - 1) // sw
        self.kernel, self.stride = kernel, stride
        out = scratch("phases", (sh, sw, n, c, self.hq + 1, self.wq), x.dtype)
        for a in range(sh):
            r0, rows = self._span(a, sh, ph, h, self.hq)
            for b in range(sw):
                q0, cols = self._span(b, sw, pw, w, self.wq)
                phase = out[a, b]
                phase[:, :, :r0] = 0
                phase[:, :, r0 + rows:] = 0
                phase[:, :, r0:r0 + rows, :q0] = 0
                phase[:, :, r0:r0 + rows, q0 + cols:] = 0
                first_row, first_col = sh * r0 + a - ph, sw * q0 + b - pw
                phase[:, :, r0:r0 + rows, q0:q0 + cols] = \
                    x[:, :, first_row:first_row + sh * rows:sh, first_col:first_col + sw * cols:sw]
        self.flat = out.reshape(sh, sw, n, c, (self.hq + 1) * self.wq)

    @staticmethod
    def _span(offset, stride, pad, size, limit):
        """(first phase index holding an input element, how many) along one axis."""
        first = max(0, -(-(pad - offset) // stride))
        count = max(0, min(limit - first, -(-(size + pad - offset - stride * first) // stride)))
        return first, count

    def window(self, i, j, r0, length):
        """Tap (i, j)'s view for the outputs from row r0 on: (N, C, length), contiguous in each channel."""
        sh, sw = self.stride
        start = (r0 + i // sh) * self.wq + j // sw
        return self.flat[i % sh, j % sw, :, :, start:start + length]

    def im2col(self, rows, name="cols"):
        """(N, C * kh * kw, (r1 - r0) * Wq): every tap's window for output rows [r0, r1), one block copy each."""
        (kh, kw), (r0, r1) = self.kernel, rows
        n, c = self.flat.shape[2:4]
        length = (r1 - r0) * self.wq
        cols = scratch(name, (n, c, kh, kw, length), self.flat.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = self.window(i, j, r0, length)
        return cols.reshape(n, c * kh * kw, length)


def _store(band, y, rows, wq, b):
    """y[:, :, r0:r1] = the band computed over the phase width (N, Cout, rows * Wq), cropped, + bias."""
    (r0, r1), (n, cout, _, wo) = rows, y.shape
    band = band.reshape(n, cout, r1 - r0, wq)[..., :wo]
    if b is None:
        y[:, :, r0:r1] = band
    else:
        np.add(band, b.reshape(-1, 1, 1), out=y[:, :, r0:r1])


def forward(x, w, b, stride, padding, band):
    """conv2d (N, Cin, H, W) * (Cout, Cin, kh, kw) (+ b), zero padding (ph, pw)."""
    cout, cin, kh, kw = w.shape
    n = x.shape[0]
    xs = Phases(x, (kh, kw), stride, padding)
    ho, wq = xs.ho, xs.wq
    y = np.empty((n, cout, ho, xs.wo), x.dtype)
    if cin <= cout or stride != (1, 1):
        w2 = w.reshape(cout, cin * kh * kw)
        for rows in row_bands(ho, n * (cin * kh * kw + cout) * wq, band):
            cols = xs.im2col(rows)
            _store(np.matmul(w2, cols, out=scratch("gemm", (n, cout, cols.shape[2]), x.dtype)), y, rows, wq, b)
        return y
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw * cout, cin)  # rows (i, j, o)
    reach = (kh - 1) * wq + kw - 1  # how far past its own position the last tap reads
    for r0, r1 in row_bands(ho, n * (kh * kw + 1) * cout * wq, band):
        length = (r1 - r0) * wq
        z = np.matmul(taps, xs.window(0, 0, r0, length + reach),
                      out=scratch("gemm", (n, kh * kw * cout, length + reach), x.dtype))
        z = z.reshape(n, kh, kw, cout, length + reach)
        acc = scratch("sum", (n, cout, length), x.dtype)
        acc[...] = z[:, 0, 0, :, :length]
        for t in range(1, kh * kw):
            i, j = divmod(t, kw)
            acc += z[:, i, j, :, i * wq + j:i * wq + j + length]
        _store(acc, y, (r0, r1), wq, b)
    return y


def backward_weight(dy, x, w_shape, stride, padding, band):
    """dw[o, c, i, j] = sum over images and outputs of dy[o] * the input tap (i, j) reads."""
    cout, cin, kh, kw = w_shape
    n, _, ho, wo = dy.shape
    xs = Phases(x, (kh, kw), stride, padding)
    wq = xs.wq
    dyx = scratch("dy_wide", (n, cout, ho, wq), dy.dtype)  # dy over the phase width, zeros past Wo
    dyx[..., :wo] = dy
    dyx[..., wo:] = 0
    dyx = dyx.reshape(n, cout, ho * wq)
    if min(cin, cout) >= THIN:
        dw = np.zeros((kh, kw, cout, cin), dy.dtype)
        part = scratch("gemm", (cout, cin), dy.dtype)
        for i in range(kh):
            for j in range(kw):
                window = xs.window(i, j, 0, ho * wq)
                for image in range(n):
                    dw[i, j] += np.matmul(dyx[image], window[image].T, out=part)
        return np.ascontiguousarray(dw.transpose(2, 3, 0, 1))
    if cin <= cout or stride != (1, 1):  # im2col of the input: dw (Cout, Cin * kh * kw) = dy (Cout, L) @ cols^T
        dw = np.zeros((cout, cin * kh * kw), dy.dtype)
        part = scratch("gemm", dw.shape, dy.dtype)
        for r0, r1 in row_bands(ho, n * cin * kh * kw * wq, band):
            cols = xs.im2col((r0, r1))
            for image in range(n):
                dw += np.matmul(dyx[image, :, r0 * wq:r1 * wq], cols[image].T, out=part)
        return dw.reshape(w_shape)
    return _backward_weight_by_dy_columns(dyx, xs, w_shape, band)


def _backward_weight_by_dy_columns(dyx, xs, w_shape, band):
    """dw of a stride-1 conv with few output channels, im2col of dy shifted the other way:
    dw^T (Cin, kh * kw * Cout) = x (Cin, L') @ D^T, where row (i, j, o) of D is dy[o] moved right by
    tap (i, j)'s offset, so that it lines up with the input it multiplies."""
    cout, cin, kh, kw = w_shape
    n, wq = dyx.shape[0], xs.wq
    reach = (kh - 1) * wq + kw - 1
    dwt = np.zeros((cin, kh * kw * cout), dyx.dtype)
    part = scratch("gemm", dwt.shape, dyx.dtype)
    for r0, r1 in row_bands(xs.ho, n * (kh * kw + 1) * cout * wq, band):
        length = (r1 - r0) * wq
        span = length + reach
        front = scratch("dy_front", (n, cout, reach + span), dyx.dtype)  # the band of dy, `reach` zeros in front
        front[:, :, :reach] = 0
        front[:, :, reach:reach + length] = dyx[:, :, r0 * wq:r1 * wq]
        front[:, :, reach + length:] = 0
        shifted = scratch("cols", (n, kh, kw, cout, span), dyx.dtype)
        for i in range(kh):
            for j in range(kw):
                start = reach - (i * wq + j)
                shifted[:, i, j] = front[:, :, start:start + span]
        shifted = shifted.reshape(n, kh * kw * cout, span)
        x_band = xs.window(0, 0, r0, span)
        for image in range(n):
            dwt += np.matmul(x_band[image], shifted[image].T, out=part)
    return np.ascontiguousarray(dwt.reshape(cin, kh, kw, cout).transpose(3, 0, 1, 2))
