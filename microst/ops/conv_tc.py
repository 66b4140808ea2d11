"""conv v3: v2's GEMMs on tensor cores (kernels/conv_v3.cu, kernels/gemm_tc.cuh), TF32 or BF16.

Each pass is v2's GEMM over the same offset tables, on a tensor-core tile (128x64, 64x128 or
32x256: the one that wastes least) when its M (output channels; input channels for
backward-data) is at least MIN_M = 16, a fragment's height, else on v2's SIMT kernel: below
that a 16-row fragment computes mostly padding (a 3-channel layer, the 9x9 output conv or VGG's
first backward-data, would waste 5x on 16 rows and 10.7x on our 32-row tiles), and such a pass is
bound by loading B, which tensor cores do not speed up. The bias gradient is summed from dy in
FP32 (arith's channel sums), not from dy rounded to the tensor cores' precision.

`tensor_cores(pass_, g, precision)` says which passes run on tensor cores; the cpu reference
(microst/ops/precision.py, rounded_like) rounds exactly those passes' operands.
"""
from . import precision as precisions
from . import versions
from .arith import sum_axes
from .base import blocks, empty, i32, launch
from .conv_kernels import ConvV2, _up, parity_classes

TC_TILES = ((128, 64), (64, 128), (32, 256))  # (BM, BN), in order of preference on ties
BK = {"tf32": 16, "bf16": 32}                 # gemm_tc.cuh's K step per precision
MIN_M = 16
SIMT_TILE = (4, 256)  # v2's tile for the passes with M < MIN_M


def tc_tile(m, n):
    return min(TC_TILES, key=lambda t: _up(m, t[0]) * _up(n, t[1]))


class ConvV3(ConvV2):
    """v2 with each pass's GEMM on tensor cores where that is faster (see the module docstring)."""

    def precision(self, device):
        return precisions.current(device)

    def tile(self, m, n):
        """The SIMT tile of a pass that stays off the tensor cores (M < 16): 4 x 256 wastes least there."""
        return SIMT_TILE

    def on_tensor_cores(self, m, k, precision):
        """Whether a GEMM with M = m and a reduction of k runs on tensor cores at `precision`."""
        return precision != "fp32" and m >= MIN_M and k > 0

    def tensor_cores(self, pass_, g, precision):
        """Whether the pass of geometry g runs on tensor cores (its every GEMM: M is the pass's)."""
        m, _, k = g.gemm(pass_)
        return self.on_tensor_cores(m, k, precision)

    def _classes(self, g):
        """(M, N, K) of each of backward-data's parity-class GEMMs."""
        return [(g.Cin, g.N * len(range(ph, g.H, g.SH)) * len(range(pw, g.W, g.SW)), g.Cout * len(th) * len(tw))
                for ph, pw, th, tw in parity_classes(g)]

    def _gemm(self, device, version, a, a_stride, src, rows, cols, ct, kt, bias, out, out_stride, m, n, k,
              splits=1, chunk=None):
        p = self.precision(device)
        if not self.on_tensor_cores(m, k, p):
            return super()._gemm(device, version, a, a_stride, src, rows, cols, ct, kt, bias, out, out_stride, m, n,
                                 k, splits, chunk)
        bm, bn = tc_tile(m, n)
        launch(device, version.kernel(f"tc_{p}_{bm}x{bn}"), (-(-n // bn), -(-m // bm), splits),
               (a, i32(a_stride), src, i32(rows), i32(cols), ct, kt, a if bias is None else bias,
                i32(bias is not None), out, i32(out_stride), i32(m), i32(n), i32(k), i32(chunk or max(k, 1))))

    def tc_splits(self, g, precision):
        """(splits, chunk) of a tensor-core backward-weight: v2's rule, chunks a multiple of BK."""
        m, n, rows = g.Cout, g.Cin * g.KH * g.KW, g.N * g.HO * g.WO
        bm, bn = tc_tile(m, n)
        base = -(-m // bm) * -(-n // bn)
        splits = max(1, min(-(-rows // self.SPLIT_ROWS), self.SPLIT_BLOCKS // base))
        chunk = _up(-(-rows // splits), BK[precision])
        return -(-rows // chunk), chunk

    def backward_weight(self, device, version, dy, x, g, want_db=False):
        p = self.precision(device)
        if not self.tensor_cores("backward_weight", g, p):
            return super().backward_weight(device, version, dy, x, g, want_db)
        ct, kt = self.tables(device, ("backward_weight", g), lambda: self._backward_weight_tables(g))
        k_cols = g.Cin * g.KH * g.KW  # the tables' last column, the ones of v2's bias gradient, is left out
        splits, chunk = self.tc_splits(g, p)
        dw = empty(device, (g.Cout, g.Cin, g.KH, g.KW))
        partial = dw if splits == 1 else empty(device, (splits, g.Cout, k_cols))
        self._gemm(device, version, dy, g.HO * g.WO, x, g.H, g.W, ct, kt, None, partial, k_cols, g.Cout, k_cols,
                   len(kt), splits, chunk)
        if splits > 1:
            launch(device, version.kernel("sum_splits"), blocks(dw.size), (partial, dw, i32(splits), i32(dw.size)))
        return dw, sum_axes(device, dy, (0, 2, 3)) if want_db else None

    def precision_of(self, pass_, g):
        """The precision the pass computes in on cuda (fp32: on v2's SIMT kernel)."""
        p = precisions.current("cuda")
        return p if self.tensor_cores(pass_, g, p) else "fp32"

    def issued_flops(self, pass_, g, precision=None):
        """FLOPs issued at `precision` (default: cuda's, pins included)."""
        p = precision or precisions.current("cuda")
        if not self.tensor_cores(pass_, g, p):
            return super().issued_flops(pass_, g)

        def gemm(m, n, k):
            bm, bn = tc_tile(m, n)
            return 2 * _up(m, bm) * _up(n, bn) * _up(k, BK[p])
        if pass_ == "forward":
            return gemm(*g.gemm("forward"))
        if pass_ == "backward_data":
            return sum(gemm(m, n, k) for m, n, k in self._classes(g) if k)
        splits, chunk = self.tc_splits(g, p)
        bm, bn = tc_tile(g.Cout, g.Cin * g.KH * g.KW)
        return 2 * _up(g.Cout, bm) * _up(g.Cin * g.KH * g.KW, bn) * splits * chunk


VERSIONS = versions.declare(versions.Version(
    "conv", "v3", "v2's GEMMs on tensor cores (WMMA, TF32 or BF16, FP32 accumulate), 128x64/64x128/32x256 tiles, "
    "cp.async double buffering; SIMT v2 where M is too small for 16-row fragments",
    {"gemm_4x256": ("conv_v2.cu", "conv2d_gemm_4x256_v2"),
     "sum_split_columns": ("conv_v2.cu", "sum_split_columns_v2"),
     "sum_splits": ("conv_v1.cu", "sum_splits_v1"),
     **{f"tc_{p}_{bm}x{bn}": ("conv_v3.cu", f"conv2d_tc_{p}_{bm}x{bn}_v3") for p in BK for bm, bn in TC_TILES}},
    ConvV3(), ("tf32", "bf16")))
