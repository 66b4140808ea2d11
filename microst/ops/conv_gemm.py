"""conv2d's passes on the cpu as GEMMs on a flat padded layout (the "gemm" path of ops/conv_cpu.py).

The zero-padded input is split into its stride phases (stride 1: one phase, the padded input
itself): phase (a, b) holds the padded rows a, a + sh, ... and columns b, b + sw, ..., Hq x Wq of
them, read as one flat row per channel. Output (r, q) of tap (i, j) is then element (r + i // sh,
q + j // sw) of phase (i % sh, j % sw), and when the outputs are computed over the full phase
width Wq (the columns past Wo are thrown away), the outputs of a band of rows read, for every tap,
one contiguous window of every channel's flat row: a shifted view, which BLAS takes as it is, or
copies as one block per channel. Against the reference's im2col (strided 2-D copies, then a
tensordot that copies again when batch > 1):

    forward, kh * Cin >= ROWS_K, stride 1
                              by output rows (_forward_by_rows): the input laid out row by row with
                              its channels inside each row (N, H, Cin, W), so that the kh * Cin input
                              rows an output row reads are one matrix with a uniform stride; one GEMM
                              per output row (M = kw * Cout: every column tap's share), no im2col,
                              then kw shifted adds: 0.75-1.09x the time of the im2col below
                              (0.95x for the great_wave net's forward, bench/RESULTS.md)
    forward, kh >= WIDE, Cin <= Cout, stride 1
                              by column taps (_forward_by_column_taps): a band's input rows laid out
                              with kw shifted copies of each row, so that an output row reads one
                              matrix in place: one GEMM per output row straight into y
    forward, Cin <= Cout      im2col of contiguous windows, one GEMM (K = Cin * kh * kw)
    forward, Cin > Cout       (stride 1, kh * Cin < ROWS_K) one GEMM for every tap's output at every
                              input position (M = kh * kw * Cout), then kh * kw shifted adds of Cout
                              channels: cheaper than copying Cin channels kh * kw times when Cout is small
    backward_weight           per tap, dy (extended to width Wq with zeros) times the shifted input
                              view: no copy at all; with a side of under 8 channels, im2col of that
                              side instead (one wide GEMM rather than kh * kw thin ones)

The work is done in bands of output rows (`band`: the elements a band's temporary matrices may
hold, ops/conv_cpu.py's BAND_ELEMENTS), and the temporaries come from the workspace
(ops/workspace.py): they are never returned and never saved for backward.
"""
import numpy as np

from .workspace import channel_blocks, scratch

THIN = 8  # a side with fewer channels than this is expanded by im2col for the weight gradient
ROWS_K = 96  # the forward by output rows needs kh * Cin at least this (below, its GEMMs are too thin)
WIDE = 5  # a kernel at least this tall on few input channels runs by column taps (_forward_by_column_taps)


def row_bands(ho, elements_per_row, band):
    """[(r0, r1), ...]: output rows in bands whose temporaries hold at most `band` elements."""
    rows = max(1, band // max(1, elements_per_row))
    return [(r, min(ho, r + rows)) for r in range(0, ho, rows)]


def copy_planes(dst, src, axis):
    """dst[...] = src, a block of the source's channels (its `axis`) at a time."""
    plane_bytes = src.itemsize * src.size // max(1, src.shape[axis])
    for block in channel_blocks(src.shape[axis], plane_bytes):
        index = (slice(None),) * axis + (block,)
        dst[index] = src[index]


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
        spans = [(a, b, self._span(a, sh, ph, h, self.hq), self._span(b, sw, pw, w, self.wq))
                 for a in range(sh) for b in range(sw)]
        for a, b, (r0, rows), (q0, cols) in spans:
            phase = out[a, b]
            phase[:, :, :r0] = 0
            phase[:, :, r0 + rows:] = 0
            phase[:, :, r0:r0 + rows, :q0] = 0
            phase[:, :, r0:r0 + rows, q0 + cols:] = 0
        for block in channel_blocks(c, x[:, 0].nbytes):  # every phase of a block of channels, in the cache
            for a, b, (r0, rows), (q0, cols) in spans:
                first_row, first_col = sh * r0 + a - ph, sw * q0 + b - pw
                out[a, b, :, block, r0:r0 + rows, q0:q0 + cols] = \
                    x[:, block, first_row:first_row + sh * rows:sh, first_col:first_col + sw * cols:sw]
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
    if stride == (1, 1) and kh * cin >= ROWS_K:
        return _forward_by_rows(x, w, b, padding, band)
    if stride == (1, 1) and kh >= WIDE and cin <= cout:
        return _forward_by_column_taps(x, w, b, padding, band)
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
    # every tap's output at every input position, a band of input rows at a time, each tap's share
    # added into the outputs it belongs to: output q takes tap (i, j) from input position q + i * Wq + j
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw * cout, cin)  # rows (i, j, o)
    length = ho * wq
    acc = scratch("sum", (n, cout, length), x.dtype)
    acc.fill(0)
    for p0, p1 in row_bands(xs.hq, n * kh * kw * cout * wq, band):
        z = np.matmul(taps, xs.window(0, 0, p0, (p1 - p0) * wq),
                      out=scratch("gemm", (n, kh * kw * cout, (p1 - p0) * wq), x.dtype))
        z = z.reshape(n, kh, kw, cout, -1)
        for i in range(kh):
            for j in range(kw):
                first = p0 * wq - (i * wq + j)  # the output the band's first position feeds through this tap
                q0, q1 = max(first, 0), min(first + z.shape[4], length)
                if q0 < q1:
                    acc[:, :, q0:q1] += z[:, i, j, :, q0 - first:q1 - first]
    _store(acc, y, (0, ho), wq, b)
    return y


def _forward_by_rows(x, w, b, padding, band):
    """A stride-1 conv a band of output rows at a time. In the padded input laid out (N, Hp, Cin, Wp),
    output row r reads the kh * Cin rows of length Wp from row r * Cin on: a (kh * Cin, Wp) matrix
    whose rows are Wp apart, which BLAS reads in place, and so is every output row's, one stride
    (Cin * Wp) further. One batched GEMM then gives, for every output row, z (kw * Cout, Wp): each
    column tap j's share at every input column, and y[r, :, q] = sum over j of z[j, :, q + j]."""
    cout, cin, kh, kw = w.shape
    (ph, pw), (n, _, h, wd) = padding, x.shape
    hp, wp = h + 2 * ph, wd + 2 * pw
    ho, wo = hp - kh + 1, wp - kw + 1
    rows = scratch("rows_input", (n, hp, cin, wp), x.dtype)
    rows[:, :ph] = 0
    rows[:, ph + h:] = 0
    rows[:, ph:ph + h, :, :pw] = 0
    rows[:, ph:ph + h, :, pw + wd:] = 0
    copy_planes(rows[:, ph:ph + h, :, pw:pw + wd], x.transpose(0, 2, 1, 3), axis=2)
    taps = np.ascontiguousarray(w.transpose(3, 0, 2, 1)).reshape(kw * cout, kh * cin)  # rows (j, o), columns (i, c)
    y = np.empty((n, cout, ho, wo), x.dtype)
    item = x.itemsize
    for image in range(n):
        flat = rows[image].reshape(hp * cin, wp)
        for r0, r1 in row_bands(ho, kw * cout * wp, band // 4):  # z of a band: a few MB, in the cache
            reads = np.lib.stride_tricks.as_strided(flat[r0 * cin:], (r1 - r0, kh * cin, wp),
                                                    (cin * wp * item, wp * item, item), writeable=False)
            z = np.matmul(taps, reads, out=scratch("gemm", (r1 - r0, kw * cout, wp), x.dtype))
            z = z.reshape(r1 - r0, kw, cout, wp)
            out = y[image, :, r0:r1].transpose(1, 0, 2)  # (rows, Cout, Wo)
            if kw == 1:
                np.copyto(out, z[:, 0, :, :wo])
            else:
                np.add(z[:, 0, :, :wo], z[:, 1, :, 1:1 + wo], out=out)
            for j in range(2, kw):
                out += z[:, j, :, j:j + wo]
            if b is not None:
                out += b[:, None]
    return y


def _forward_by_column_taps(x, w, b, padding, band):
    """A stride-1 conv with a large kernel on few input channels (the 9x9 conv from RGB), a band of
    output rows at a time. The band's input rows are laid out (rows, Cin, kw, Wo), copy j of a row
    shifted by j columns: the kh * Cin * kw values output row r reads are then rows r .. r + kh - 1,
    one (kh * Cin * kw, Wo) matrix in place, and one GEMM per output row (M = Cout, K = kh * Cin * kw)
    writes y's row. kw copies of the input, where im2col makes kh * kw; every multiply-add useful.
    Against stacking row groups into im2col (before): 3 -> 16 channels at 256², batch 4, 0.72x the
    time; 3 -> 32 at 592², 0.75-0.92x."""
    cout, cin, kh, kw = w.shape
    (ph, pw), (n, _, h, wd) = padding, x.shape
    ho, wo = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    taps = np.ascontiguousarray(w.transpose(0, 2, 1, 3)).reshape(cout, kh * cin * kw)  # columns (i, c, j)
    y = np.empty((n, cout, ho, wo), x.dtype)
    item = x.itemsize

    for r0, r1 in row_bands(ho, cin * kw * wo, band):
        span = r1 - r0 + kh - 1  # the padded input rows [r0, r0 + span) the band reads
        lay = scratch("rows_input", (n, span, cin, kw, wo), x.dtype)
        first, last = max(r0, ph), min(r0 + span, ph + h)  # padded rows that hold input rows
        lay[:, :first - r0] = 0
        lay[:, last - r0:] = 0
        for j in range(kw):  # copy j, column q: padded column q + j, input column q + j - pw
            q0, q1 = max(0, pw - j), min(wo, wd + pw - j)
            part = lay[:, first - r0:last - r0, :, j]
            part[..., :q0] = 0
            part[..., q1:] = 0
            copy_planes(part[..., q0:q1], x[:, :, first - ph:last - ph, q0 + j - pw:q1 + j - pw].transpose(0, 2, 1, 3), 2)
        for image in range(n):
            reads = np.lib.stride_tricks.as_strided(lay[image], (r1 - r0, kh * cin * kw, wo),
                                                    (cin * kw * wo * item, wo * item, item), writeable=False)
            out = y[image, :, r0:r1].transpose(1, 0, 2)  # (rows, Cout, Wo): each row a matrix BLAS writes
            np.matmul(taps, reads, out=out)
            if b is not None:
                out += b[:, None]
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
