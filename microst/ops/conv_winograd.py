"""Winograd's minimal filtering F(2x2, 3x3) for the stride-1 3x3 convs on the cpu (Lavin & Gray 2016),
the "winograd" path of ops/conv_cpu.py.

Every 2x2 block of outputs is computed from the 4x4 tile of inputs under it (tiles overlap by 2):

    y_tile = A^T [ U  (.)  B^T d B ] A,    U = G g G^T (the 3x3 kernel g, per output and input channel)

and the product (.) of the 16 transformed values is, summed over input channels, one GEMM for each
of the 16 positions: M[xi] (Cout, tiles) = U[xi] (Cout, Cin) @ V[xi] (Cin, tiles). That is 16
multiply-adds per 4 outputs where im2col has 36: 2.25x fewer. B and A hold only 0 and +-1, G
only 1 and 1/2, so the transforms add and subtract (and halve, exactly) and the result is as
accurate as im2col's (tests/test_conv_cpu.py checks both against float64). The transforms are
vectorized over whole bands of tiles: the padded input is split into its four phases (even and
odd rows and columns) once, so that every tap of every tile is a unit-stride slice and every
transform step one long contiguous loop.

The GEMMs run in bands of tile rows (`band` bounds the elements of a band's transformed arrays,
which then stay in cache) with workspace arrays that are never returned nor saved for backward.

    forward(x, w, b, padding, band)      y (N, Cout, Ho, Wo), padding (ph, pw) each at most 2
"""
import numpy as np

from .conv_gemm import row_bands
from .workspace import channel_blocks, scratch


def applies(w_shape, stride, padding):
    """Winograd F(2x2, 3x3) runs a 3x3 stride-1 conv padded by at most 2 (the full correlation of a
    backward-data pass of an unpadded conv is padded by 2)."""
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2


def _g_rows(g0, g1, g2, out):
    """G along one kernel axis: 3 taps -> 4 values, into out[0..3] (exact halving)."""
    np.copyto(out[0], g0)
    np.add(g0, g1, out=out[1])
    out[1] += g2
    np.subtract(g0, g1, out=out[2])
    out[2] += g2
    out[1] *= 0.5
    out[2] *= 0.5
    np.copyto(out[3], g2)


def transform_weights(w):
    """U = G g G^T for every (Cout, Cin) kernel: (16, Cout, Cin), position xi = 4 * a + b, into
    workspace arrays: for 512 channels U is as large as a 16x16 layer's input, and fresh arrays for
    each step cost more than its GEMMs (30 ms against 11; 8.5 ms here)."""
    cout, cin = w.shape[:2]
    taps = scratch("winograd_taps", (3, 3, cout, cin), w.dtype)
    np.copyto(taps, w.transpose(2, 3, 0, 1))  # every tap a contiguous plane
    rows = scratch("winograd_g_rows", (4, 3, cout, cin), w.dtype)
    _g_rows(taps[0], taps[1], taps[2], rows)
    u = scratch("winograd_u", (4, 4, cout, cin), w.dtype)
    for a in range(4):
        _g_rows(rows[a, 0], rows[a, 1], rows[a, 2], u[a])
    return u.reshape(16, cout, cin)


def _split_phases(x, padding, tiles):
    """The zero-padded input in its four phases (row parity, column parity): (2, 2, C, N, th + 1, tw + 1),
    channels first. Tap k of tile row t is row 2t + k, that is row t + k // 2 of phase k % 2 (and the
    same for columns): every tap of every tile is then a unit-stride slice of a phase."""
    (ph, pw), (n, c), (th, tw) = padding, x.shape[:2], tiles
    out = scratch("winograd_input", (2, 2, c, n, th + 1, tw + 1), x.dtype)
    out.fill(0)
    firsts = [(rp, cp, (ph - rp + 1) // 2, (pw - cp + 1) // 2)  # the first row and column of a phase
              for rp in (0, 1) for cp in (0, 1)]                # that hold an input element
    for block in channel_blocks(c, x[:, 0].nbytes):  # a block of channels' four phases, in the cache
        for rp, cp, r_first, c_first in firsts:
            part = x[:, block, 2 * r_first + rp - ph::2, 2 * c_first + cp - pw::2].transpose(1, 0, 2, 3)
            out[rp, cp, block, :, r_first:r_first + part.shape[2], c_first:c_first + part.shape[3]] = part
    return out


def _b_transform(d0, d1, d2, d3, out):
    """B^T along one axis: the 4 values of a tile row (or column) -> its 4 transformed values."""
    np.subtract(d0, d2, out=out[0])
    np.add(d1, d2, out=out[1])
    np.subtract(d2, d1, out=out[2])
    np.subtract(d1, d3, out=out[3])


def _transform_input(phases, band, v):
    """V[4a + b] = B^T d B for tile rows [t0, t1), as (16, C * N * tb * (tw + 1)).

    Each tile row is laid out over tw + 1 tile columns: tile column tx's taps are then elements
    tx and tx + 1 of the even and odd columns, so that the whole band is one flat array shifted by
    one. Tile column tw is garbage (it reads the next row's first), and the GEMM and the output
    transform carry it along, never into y."""
    t0, t1 = band
    c, n, _, q = phases.shape[2:]
    size = c * n * (t1 - t0) * q
    rows = scratch("winograd_rows", (2, 4, size + 1), phases.dtype)  # + 1: the shifted view's last read
    rows[:, :, size] = 0  # (finite: stale workspace could hold anything)
    for cp in (0, 1):
        taps = [phases[k % 2, cp, :, :, t0 + k // 2:t1 + k // 2] for k in range(4)]
        _b_transform(*taps, [rows[cp, a, :size].reshape(taps[0].shape) for a in range(4)])
    for a in range(4):
        even, odd = rows[0, a], rows[1, a]  # tile tx reads columns 2tx .. 2tx + 3: even, odd, even + 1, odd + 1
        _b_transform(even[:size], odd[:size], even[1:], odd[1:], v[4 * a:4 * a + 4])


def _transform_output(m, y, band, tw):
    """y rows [2 t0, 2 t1) = A^T M A, from M (16, Cout, N, tb, tw + 1)."""
    (t0, t1), (ho, wo) = band, y.shape[2:]
    cout, size = m.shape[1], m[0].size
    m = m.reshape(16, size)
    rows = scratch("winograd_out_rows", (2, 4, size), m.dtype)
    for b in range(4):  # A^T along the tile rows: output row 0 = m0 + m1 + m2, row 1 = m1 - m2 - m3
        np.add(m[b], m[4 + b], out=rows[0, b])
        rows[0, b] += m[8 + b]
        np.subtract(m[4 + b], m[8 + b], out=rows[1, b])
        rows[1, b] -= m[12 + b]
    partial = scratch("winograd_partial", (size,), m.dtype)
    pairs = scratch("winograd_pairs", (size, 2), m.dtype)  # a tile row's two outputs side by side: y's order
    for i in range(2):
        r = rows[i]  # and the same along the tile columns
        np.add(r[0], r[1], out=partial)
        np.add(partial, r[2], out=pairs[:, 0])
        np.subtract(r[1], r[2], out=partial)
        np.subtract(partial, r[3], out=pairs[:, 1])
        count = len(range(2 * t0 + i, min(ho, 2 * t1), 2))
        if count:  # into y, without the garbage tile column
            y[:, :, 2 * t0 + i:min(ho, 2 * t1):2] = \
                pairs.reshape(cout, -1, t1 - t0, 2 * (tw + 1))[:, :, :count, :wo].transpose(1, 0, 2, 3)


def forward(x, w, b, padding, band):
    cout, cin = w.shape[:2]
    n, _, h, wd = x.shape
    ho, wo = h + 2 * padding[0] - 2, wd + 2 * padding[1] - 2
    th, tw = -(-ho // 2), -(-wo // 2)
    phases = _split_phases(x, padding, (th, tw))
    u = transform_weights(w)
    y = np.empty((n, cout, ho, wo), x.dtype)
    per_tile_row = n * (tw + 1) * (24 * (cin + cout))
    for t0, t1 in row_bands(th, per_tile_row, band):
        tiles = n * (t1 - t0) * (tw + 1)
        v = scratch("winograd_v", (16, cin * tiles), x.dtype)
        _transform_input(phases, (t0, t1), v)
        m = np.matmul(u, v.reshape(16, cin, tiles), out=scratch("winograd_m", (16, cout, tiles), x.dtype))
        if b is not None:  # A^T e5 e5^T A is all ones: the bias added at position (1, 1) reaches every output
            m[5] += b[:, None]
        _transform_output(m.reshape(16, cout, n, t1 - t0, tw + 1), y, (t0, t1), tw)
    return y
