"""conv's kernel versions: the Python half of each, what it launches and the FLOPs it issues.

    v0  kernels/conv_v0.cu  plain loops, one thread per output element
    v1  kernels/conv_v1.cu  three implicit GEMMs on 64x64 tiles (kernels/gemm.cuh)
    v2  kernels/conv_v2.cu  one GEMM over precomputed offset tables, a tile shape per problem,
                            sub-pixel backward-data (kernels/gemm_v2.cuh)

Each launcher has forward, backward_data, backward_weight (which also returns the bias gradient
when asked) and issued_flops(pass, geometry) for microst.lab flops.
"""
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import device as devices
from . import versions
from .arith import sum_axes
from .base import blocks, empty, i32, launch
from .conv_cpu import conv_output_size

PASSES = ("forward", "backward_data", "backward_weight")


class ConvGeometry(NamedTuple):
    """The geometry of one conv2d, as kernels/conv_v1.cu's ConvGeometry (the kernels take it in this order)."""
    N: int
    Cin: int
    H: int
    W: int
    Cout: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    HO: int
    WO: int

    def gemm(self, pass_):
        """(M, N, K) of the pass's GEMM."""
        g = self
        return {"forward": (g.Cout, g.N * g.HO * g.WO, g.Cin * g.KH * g.KW),
                "backward_data": (g.Cin, g.N * g.H * g.W, g.Cout * g.KH * g.KW),
                "backward_weight": (g.Cout, g.Cin * g.KH * g.KW, g.N * g.HO * g.WO)}[pass_]

    def args(self):
        return tuple(i32(v) for v in self)


def conv_geometry(x_shape, w_shape, stride, padding):
    n, cin, h, w = x_shape
    cout, _, kh, kw = w_shape
    ho, wo = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(w, kw, stride[1], padding[1])
    return ConvGeometry(n, cin, h, w, cout, kh, kw, stride[0], stride[1], padding[0], padding[1], ho, wo)


def _up(v, b):
    return -(-v // b) * b


# -- version 0: plain loops ------------------------------------------------------------------
class ConvV0:
    """One thread per output element, every tap of the reduction visited: issued = 2 M N K."""

    def forward(self, device, version, x, w, b, g):
        y = empty(device, (g.N, g.Cout, g.HO, g.WO))
        launch(device, version.kernel("forward"), blocks(y.size), (x, w, w if b is None else b, y, i32(b is not None),
                                                                  *g.args()))
        return y

    def backward_data(self, device, version, dy, w, g):
        dx = empty(device, (g.N, g.Cin, g.H, g.W))
        launch(device, version.kernel("backward_data"), blocks(dx.size), (dy, w, dx, *g.args()))
        return dx

    def backward_weight(self, device, version, dy, x, g, want_db=False):
        dw = empty(device, (g.Cout, g.Cin, g.KH, g.KW))
        launch(device, version.kernel("backward_weight"), blocks(dw.size), (dy, x, dw, *g.args()))
        return dw, sum_axes(device, dy, (0, 2, 3)) if want_db else None

    def issued_flops(self, pass_, g):
        m, n, k = g.gemm(pass_)
        return 2 * m * n * k


# -- version 1: implicit GEMMs on 64x64 tiles --------------------------------------------------
class ConvV1:
    """Blocks of 256 threads compute 64x64 tiles of the GEMM, K in steps of 16 (kernels/gemm.cuh).
    Backward-weight's long reduction is split over gridDim.z into partial sums, added in order."""
    TILE, BK = 64, 16
    SPLIT_ROWS = 256       # backward-weight: at least this many reduction rows per split
    SPLIT_BLOCKS = 1024    # ... and at most about this many blocks in all

    def _tiles(self, n):
        return -(-n // self.TILE)

    def forward(self, device, version, x, w, b, g):
        y = empty(device, (g.N, g.Cout, g.HO, g.WO))
        launch(device, version.kernel("forward"), (self._tiles(g.N * g.HO * g.WO), self._tiles(g.Cout)),
               (x, w, w if b is None else b, y, i32(b is not None), *g.args()))
        return y

    def backward_data(self, device, version, dy, w, g):
        dx = empty(device, (g.N, g.Cin, g.H, g.W))
        launch(device, version.kernel("backward_data"), (self._tiles(g.N * g.H * g.W), self._tiles(g.Cin)),
               (dy, w, dx, *g.args()))
        return dx

    def splits(self, g):
        """(splits, chunk): the reduction rows of backward-weight per split."""
        m, n, rows = g.gemm("backward_weight")
        base = self._tiles(n) * self._tiles(m)
        splits = max(1, min(-(-rows // self.SPLIT_ROWS), self.SPLIT_BLOCKS // base))
        chunk = -(-rows // splits)
        return -(-rows // chunk), chunk

    def backward_weight(self, device, version, dy, x, g, want_db=False):
        splits, chunk = self.splits(g)
        w_shape = (g.Cout, g.Cin, g.KH, g.KW)
        dw = empty(device, w_shape)
        partial = dw if splits == 1 else empty(device, (splits,) + w_shape)
        launch(device, version.kernel("backward_weight"), (self._tiles(g.Cin * g.KH * g.KW), self._tiles(g.Cout), splits),
               (dy, x, partial, i32(chunk), *g.args()))
        if splits > 1:
            launch(device, version.kernel("sum_splits"), blocks(dw.size), (partial, dw, i32(splits), i32(dw.size)))
        return dw, sum_axes(device, dy, (0, 2, 3)) if want_db else None

    def issued_flops(self, pass_, g):
        m, n, k = g.gemm(pass_)
        if pass_ == "backward_weight":
            splits, chunk = self.splits(g)
            return 2 * _up(m, self.TILE) * _up(n, self.TILE) * splits * _up(chunk, self.BK)
        return 2 * _up(m, self.TILE) * _up(n, self.TILE) * _up(k, self.BK)


# -- version 2: one GEMM over offset tables, a tile shape per problem ---------------------------
ONES = -(1 << 30)  # a column table row of ONES is the column of ones (kernels/conv_v2.cu)
TILE_SHAPES = ((64, 64), (32, 128), (16, 256), (4, 256))  # (BM, BN), in order of preference on ties


def tile_shape(m, n):
    """The (BM, BN) of TILE_SHAPES that wastes least on an m x n output."""
    return min(TILE_SHAPES, key=lambda t: _up(m, t[0]) * _up(n, t[1]))


def _grid(*axes):
    """Index arrays of the full grid over `axes` (sizes), flattened in C order."""
    return [a.reshape(-1) for a in np.meshgrid(*[np.arange(s) for s in axes], indexing="ij")]


def _table(*columns):
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(*columns), axis=-1).astype(np.int32))


def forward_tables(g):
    """(column table, k table) of the forward GEMM: columns (n, oh, ow), k = (ci, i, j)."""
    n, oh, ow = _grid(g.N, g.HO, g.WO)
    row, col = oh * g.SH - g.PH, ow * g.SW - g.PW
    ct = _table(n * g.Cin * g.H * g.W + row * g.W + col, row, col, n * g.Cout * g.HO * g.WO + oh * g.WO + ow)
    ci, i, j = _grid(g.Cin, g.KH, g.KW)
    kt = _table(ci * g.H * g.W + i * g.W + j, i, j, np.arange(g.Cin * g.KH * g.KW))
    return ct, kt


def parity_classes(g):
    """Backward-data's sub-pixel classes: [(ph, pw, taps_h, taps_w)] with taps [(i, d)]: kernel row i
    reaches input rows ih = ph (mod SH) from output row (ih + PH - i) / SH = a + d, ih = ph + SH * a."""
    def taps(p, pad, k, s):
        return [(t, (p + pad - t) // s) for t in range(k) if (p + pad - t) % s == 0]
    return [(ph, pw, taps(ph, g.PH, g.KH, g.SH), taps(pw, g.PW, g.KW, g.SW))
            for ph in range(min(g.SH, g.H)) for pw in range(min(g.SW, g.W))]


def backward_data_tables(g, ph, pw, taps_h, taps_w):
    """(column table, k table) of one parity class: columns (n, a, b), k = (co, tap_h, tap_w)."""
    ha, wa = len(range(ph, g.H, g.SH)), len(range(pw, g.W, g.SW))
    n, a, b = _grid(g.N, ha, wa)
    ct = _table(n * g.Cout * g.HO * g.WO + a * g.WO + b, a, b,
                n * g.Cin * g.H * g.W + (ph + g.SH * a) * g.W + (pw + g.SW * b))
    co, th, tw = _grid(g.Cout, len(taps_h), len(taps_w))
    i, di = np.array([t[0] for t in taps_h] or [0])[th], np.array([t[1] for t in taps_h] or [0])[th]
    j, dj = np.array([t[0] for t in taps_w] or [0])[tw], np.array([t[1] for t in taps_w] or [0])[tw]
    kt = _table(co * g.HO * g.WO + di * g.WO + dj, di, dj, co * g.Cin * g.KH * g.KW + i * g.KW + j)
    return ct, kt


class ConvV2:
    """Every pass one GEMM (two tables, a tile shape from the problem) per launch; strided
    backward-data one GEMM per parity class; the bias gradient a column of ones in backward-weight."""
    BK = 16
    SPLIT_ROWS, SPLIT_BLOCKS = 256, 1024  # backward-weight's split reduction, as v1
    CACHE_BYTES = 256 << 20  # the offset tables kept per device (least recently used go first)

    def __init__(self):
        self._tables, self._bytes = OrderedDict(), 0

    def tile(self, m, n):
        """The (BM, BN) of the m x n GEMM."""
        return tile_shape(m, n)

    def tables(self, device, key, build):
        """The device copies of build()'s tables, built once per (device, key)."""
        key = (device,) + key
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        tables = tuple(devices.move(t, device) for t in build())
        self._tables[key] = tables
        self._bytes += sum(t.nbytes for t in tables)
        while self._bytes > self.CACHE_BYTES and len(self._tables) > 1:
            _, old = self._tables.popitem(last=False)
            self._bytes -= sum(t.nbytes for t in old)
        return tables

    def _gemm(self, device, version, a, a_stride, src, rows, cols, ct, kt, bias, out, out_stride, m, n, k,
              splits=1, chunk=None):
        bm, bn = self.tile(m, n)
        launch(device, version.kernel(f"gemm_{bm}x{bn}"), (-(-n // bn), -(-m // bm), splits),
               (a, i32(a_stride), src, i32(rows), i32(cols), ct, kt, a if bias is None else bias,
                i32(bias is not None), out, i32(out_stride), i32(m), i32(n), i32(k), i32(chunk or max(k, 1))))

    def forward(self, device, version, x, w, b, g):
        ct, kt = self.tables(device, ("forward", g), lambda: forward_tables(g))
        y = empty(device, (g.N, g.Cout, g.HO, g.WO))
        self._gemm(device, version, w, len(kt), x, g.H, g.W, ct, kt, b, y, g.HO * g.WO, g.Cout, len(ct), len(kt))
        return y

    def backward_data(self, device, version, dy, w, g):
        dx = empty(device, (g.N, g.Cin, g.H, g.W))
        for ph, pw, taps_h, taps_w in parity_classes(g):
            ct, kt = self.tables(device, ("backward_data", g, ph, pw),
                                 lambda: backward_data_tables(g, ph, pw, taps_h, taps_w))
            k = g.Cout * len(taps_h) * len(taps_w)  # 0 when no tap reaches the class: its pixels get 0
            self._gemm(device, version, w, g.KH * g.KW, dy, g.HO, g.WO, ct, kt, None, dx, g.H * g.W, g.Cin, len(ct), k)
        return dx

    def splits(self, g):
        """(splits, chunk) of backward-weight's reduction over N * Ho * Wo; chunk a multiple of BK."""
        m, n, rows = g.Cout, g.Cin * g.KH * g.KW + 1, g.N * g.HO * g.WO
        bm, bn = self.tile(m, n)
        base = -(-m // bm) * -(-n // bn)
        splits = max(1, min(-(-rows // self.SPLIT_ROWS), self.SPLIT_BLOCKS // base))
        chunk = _up(-(-rows // splits), self.BK)
        return -(-rows // chunk), chunk

    def _backward_weight_tables(self, g):
        ct, kt = forward_tables(g)  # backward-weight's columns are forward's k, its k forward's columns
        return np.concatenate([kt, np.array([[0, ONES, 0, len(kt)]], np.int32)]), ct

    def backward_weight(self, device, version, dy, x, g, want_db=False):
        ct, kt = self.tables(device, ("backward_weight", g), lambda: self._backward_weight_tables(g))
        splits, chunk = self.splits(g)
        k_cols = g.Cin * g.KH * g.KW
        partial = empty(device, (splits, g.Cout, k_cols + 1))
        self._gemm(device, version, dy, g.HO * g.WO, x, g.H, g.W, ct, kt, None, partial, k_cols + 1, g.Cout, len(ct),
                   len(kt), splits, chunk)
        dw = empty(device, (g.Cout, g.Cin, g.KH, g.KW))
        db = empty(device, (g.Cout,)) if want_db else dw
        launch(device, version.kernel("sum_split_columns"), blocks(partial[0].size),
               (partial, dw, db, i32(splits), i32(g.Cout), i32(k_cols), i32(want_db)))
        return dw, db if want_db else None

    def issued_flops(self, pass_, g):
        def gemm(m, n, k):
            bm, bn = self.tile(m, n)
            return 2 * _up(m, bm) * _up(n, bn) * _up(k, self.BK)
        if pass_ == "forward":
            return gemm(g.Cout, g.N * g.HO * g.WO, g.Cin * g.KH * g.KW)
        if pass_ == "backward_data":
            return sum(gemm(g.Cin, g.N * len(range(ph, g.H, g.SH)) * len(range(pw, g.W, g.SW)),
                            g.Cout * len(th) * len(tw)) for ph, pw, th, tw in parity_classes(g))
        splits, chunk = self.splits(g)
        bm, bn = self.tile(g.Cout, g.Cin * g.KH * g.KW + 1)
        return 2 * _up(g.Cout, bm) * _up(g.Cin * g.KH * g.KW + 1, bn) * splits * chunk


FP32 = ("fp32",)  # the SIMT versions' precision (tensor cores: conv_tc.py)
VERSIONS = versions.declare(
    versions.Version("conv", "v0", "plain loops, one thread per output element (for reading)",
                     {p: ("conv_v0.cu", f"conv2d_{p}_v0") for p in PASSES}, ConvV0(), FP32),
    versions.Version("conv", "v1", "implicit GEMMs on 64x64 shared-memory tiles, split-K backward-weight",
                     {**{p: ("conv_v1.cu", f"conv2d_{p}_v1") for p in PASSES},
                      "sum_splits": ("conv_v1.cu", "sum_splits_v1")}, ConvV1(), FP32),
    versions.Version("conv", "v2", "one GEMM over im2col offset tables, a tile shape per problem, sub-pixel "
                     "backward-data, bias gradient fused",
                     {**{f"gemm_{bm}x{bn}": ("conv_v2.cu", f"conv2d_gemm_{bm}x{bn}_v2") for bm, bn in TILE_SHAPES},
                      "sum_split_columns": ("conv_v2.cu", "sum_split_columns_v2")}, ConvV2(), FP32))


