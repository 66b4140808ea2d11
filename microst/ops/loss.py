"""The reductions of the perceptual losses: gram, mse_loss, tv_loss.

cpu: NumPy. emu/cuda: kernels/loss_v1.cu: gram as an implicit GEMM per image (64x64 tiles of
gemm.cuh); mse and tv summed in two deterministic passes (per-block partial sums, then one block
adds them). The upstream gradient of a loss stays on the device: backward kernels read dy[0].
"""
import numpy as np

from . import precision, record, versions
from .base import Case, Op, blocks, check_rank, empty, f32, i32, launch

ROLES = ("gram_forward", "gram_backward", "mse_partial", "mse_backward", "tv_partial", "tv_backward", "sum_partials")


def _up(v, b):
    return -(-v // b) * b


class GramV1:
    """Gram GEMMs on 64x64 output tiles, K in steps of 16, every tile of the C x C matrix."""
    TILE, BK = 64, 16

    def forward(self, device, version, x, scale):
        n, c, h, w = x.shape
        g = empty(device, (n, c, c))
        t = -(-c // self.TILE)
        launch(device, version.kernel("gram_forward"), (t, t, n), (x, g, i32(c), i32(h * w), f32(scale)))
        return g

    def backward(self, device, version, dg, x, scale):
        n, c, h, w = x.shape
        dx = empty(device, x.shape)
        launch(device, version.kernel("gram_backward"), (-(-h * w // self.TILE), -(-c // self.TILE), n),
               (dg, x, dx, i32(c), i32(h * w), f32(scale)))
        return dx

    def issued_flops(self, pass_, geometry):
        """forward M = N = C, K = P; backward M = C, N = P, K = C."""
        n, c, p = geometry
        if pass_ == "gram_forward":
            return 2 * n * _up(c, self.TILE) * _up(c, self.TILE) * _up(p, self.BK)
        return 2 * n * _up(c, self.TILE) * _up(p, self.TILE) * _up(c, self.BK)


class GramV2(GramV1):
    """Forward: the tiles on and above the diagonal only, the positions split into chunks (more
    blocks), the chunks summed in order and mirrored by gram_reduce; backward on gemm_v2's core."""
    SPLIT_ROWS, SPLIT_BLOCKS = 256, 1024  # at least this many positions per chunk; about this many blocks

    def splits(self, geometry):
        n, c, p = geometry
        t = -(-c // self.TILE)
        tiles = t * (t + 1) // 2
        splits = max(1, min(-(-p // self.SPLIT_ROWS), -(-self.SPLIT_BLOCKS // (tiles * n))))
        chunk = _up(-(-p // splits), self.BK)
        return tiles, -(-p // chunk), chunk

    def forward(self, device, version, x, scale):
        n, c, h, w = x.shape
        tiles, splits, chunk = self.splits((n, c, h * w))
        partial = empty(device, (n, splits, c, c))
        launch(device, version.kernel("gram_forward"), (tiles, splits, n), (x, partial, i32(c), i32(h * w), i32(chunk)))
        g = empty(device, (n, c, c))
        launch(device, version.kernel("gram_reduce"), blocks(g.size), (partial, g, i32(n), i32(c), i32(splits),
                                                                      f32(scale)))
        return g

    def issued_flops(self, pass_, geometry):
        if pass_ != "gram_forward":
            return super().issued_flops(pass_, geometry)
        n, c, p = geometry
        tiles, splits, chunk = self.splits(geometry)
        return 2 * n * tiles * self.TILE * self.TILE * splits * chunk


class GramV3(GramV2):
    """v2's plan on tensor cores (TF32 or BF16) for C >= 16 (a fragment's height; below, v2's SIMT):
    forward on 64x64 tiles of the upper triangle, split over positions; backward the symmetric sum
    dG + dG^T formed once, then one GEMM on 64x128 tiles."""
    MIN_C = 16
    TC_BK = {"tf32": 16, "bf16": 32}  # gemm_tc.cuh's K step per precision
    BACKWARD_TILE = (64, 128)

    def tensor_cores(self, c, precision_):
        return precision_ != "fp32" and c >= self.MIN_C

    def splits(self, geometry, precision_="fp32"):
        tiles, splits, chunk = super().splits(geometry)
        if precision_ == "fp32":
            return tiles, splits, chunk
        chunk = _up(chunk, self.TC_BK[precision_])
        return tiles, -(-geometry[2] // chunk), chunk

    def forward(self, device, version, x, scale):
        n, c, h, w = x.shape
        p = precision.current(device)
        if not self.tensor_cores(c, p):
            return super().forward(device, version, x, scale)
        tiles, splits, chunk = self.splits((n, c, h * w), p)
        partial = empty(device, (n, splits, c, c))
        launch(device, version.kernel(f"gram_forward_tc_{p}"), (tiles, splits, n),
               (x, partial, i32(c), i32(h * w), i32(chunk)))
        g = empty(device, (n, c, c))
        launch(device, version.kernel("gram_reduce"), blocks(g.size), (partial, g, i32(n), i32(c), i32(splits),
                                                                      f32(scale)))
        return g

    def backward(self, device, version, dg, x, scale):
        n, c, h, w = x.shape
        p = precision.current(device)
        if not self.tensor_cores(c, p):
            return super().backward(device, version, dg, x, scale)
        sym = empty(device, (n, c, c))
        launch(device, version.kernel("gram_symmetrize"), blocks(sym.size), (dg, sym, i32(n), i32(c)))
        dx = empty(device, x.shape)
        bm, bn = self.BACKWARD_TILE
        launch(device, version.kernel(f"gram_backward_tc_{p}"), (-(-h * w // bn), -(-c // bm), n),
               (sym, x, dx, i32(c), i32(h * w), f32(scale)))
        return dx

    def precision_of(self, pass_, geometry):
        """The precision the pass computes in on cuda (fp32: on v2's SIMT kernels)."""
        p = precision.current("cuda")
        return p if self.tensor_cores(geometry[1], p) else "fp32"

    def issued_flops(self, pass_, geometry, precision_=None):
        p = precision_ or precision.current("cuda")
        n, c, positions = geometry
        if not self.tensor_cores(c, p):
            return super().issued_flops(pass_, geometry)
        if pass_ == "gram_forward":
            tiles, splits, chunk = self.splits(geometry, p)
            return 2 * n * tiles * self.TILE * self.TILE * splits * chunk
        bm, bn = self.BACKWARD_TILE
        return 2 * n * _up(c, bm) * _up(positions, bn) * _up(c, self.TC_BK[p])


VERSIONS = versions.declare(
    versions.Version("loss", "v1", "Gram as a 64x64-tile implicit GEMM per image; two-pass mse and tv sums",
                     versions.kernels_of("loss_v1.cu", ROLES, "v1"), GramV1(), ("fp32",)),
    versions.Version("loss", "v2", "Gram: the symmetric half, split over positions (deterministic sum), "
                     "coalesced loads; mse and tv as v1",
                     {**versions.kernels_of("loss_v1.cu", ROLES, "v1"),
                      **versions.kernels_of("loss_v2.cu", ("gram_forward", "gram_reduce", "gram_backward"), "v2")},
                     GramV2(), ("fp32",)),
    versions.Version("loss", "v3", "Gram on tensor cores (WMMA, TF32 or BF16, FP32 accumulate): 64x64 tiles of the "
                     "upper triangle split over positions, backward on 64x128 tiles; mse and tv as v1",
                     {**versions.kernels_of("loss_v1.cu", ROLES, "v1"),
                      **versions.kernels_of("loss_v2.cu", ("gram_forward", "gram_reduce", "gram_backward"), "v2"),
                      "gram_symmetrize": ("loss_v3.cu", "gram_symmetrize_v3"),
                      **{f"gram_{pass_}_tc_{p}": ("loss_v3.cu", f"gram_{pass_}_tc_{p}_v3")
                         for pass_ in ("forward", "backward") for p in ("tf32", "bf16")}},
                     GramV3(), ("tf32", "bf16")))


def useful_flops(pass_, geometry):
    """Of one Gram pass (forward or backward), geometry (batch, C, P = H * W): 2 per multiply-add
    of N GEMMs of C x C x P (forward computes F F^T, backward (dG + dG^T) F)."""
    n, c, p = geometry
    return 2 * n * c * c * p


def _reference(c, *operands):
    """The cpu Gram's GEMM operands, rounded as v3's tensor cores would round them (precision.rounded_like)."""
    p = precision.reference()
    if not VERSIONS["v3"].launcher.tensor_cores(c, p):
        return operands
    return tuple(precision.rounded(a, p) for a in operands)


def gram_forward(device, x):
    """G = F F^T / (C H W) per image, F the (C, H*W) feature matrix: (N, C, H, W) -> (N, C, C)."""
    n, c, h, w = x.shape
    scale = 1.0 / (c * h * w)
    recorded = record.note("loss", "gram_forward", (n, c, h * w), (n, c, c), device)
    if recorded is not None:
        return recorded
    if device == "cpu":
        f = _reference(c, x.reshape(n, c, h * w))[0]
        return np.matmul(f, f.transpose(0, 2, 1)) * x.dtype.type(scale)
    version = versions.selected("loss", device)
    return version.launcher.forward(device, version, x, scale)


def gram_backward(device, dg, x):
    """dF = (dG + dG^T) F / (C H W)."""
    n, c, h, w = x.shape
    scale = 1.0 / (c * h * w)
    recorded = record.note("loss", "gram_backward", (n, c, h * w), x.shape, device)
    if recorded is not None:
        return recorded
    if device == "cpu":
        dsym, f = _reference(c, dg + dg.transpose(0, 2, 1), x.reshape(n, c, h * w))
        return (np.matmul(dsym, f) * dg.dtype.type(scale)).reshape(x.shape)
    version = versions.selected("loss", device)
    return version.launcher.backward(device, version, dg, x, scale)


def _total(device, role, n, args, scale=1.0):
    """Run a *_partial kernel over n elements, then sum its partials into a 0-d array."""
    version = versions.selected("loss", device)
    grid = blocks(n, cap=1024)
    partial = empty(device, (grid,))
    launch(device, version.kernel(role), grid, (*args[:-1], partial, *args[-1]))
    out = empty(device, (1,))
    launch(device, version.kernel("sum_partials"), 1, (partial, out, i32(grid), f32(scale)))
    return out.reshape(())


def mse_forward(device, a, b):
    if device == "cpu":
        d = a - b
        return np.asarray((d * d).mean())
    return _total(device, "mse_partial", a.size, (a, b, (i32(a.size),)), 1.0 / a.size)


def mse_backward(device, dy, a, b, needs):
    """(da, db) of mean((a - b)^2), each None unless asked for."""
    want_a, want_b = needs
    if device == "cpu":
        g = (a - b) * (dy * (2.0 / a.size)).astype(a.dtype)
        return (g if want_a else None), (-g if want_b else None)
    if not (want_a or want_b):
        return None, None
    da = empty(device, a.shape) if want_a else None
    db = empty(device, b.shape) if want_b else None
    # an unused output still needs a valid pointer: the other one (not written to)
    launch(device, versions.selected("loss", device).kernel("mse_backward"), blocks(a.size),
           (a, b, dy, da if want_a else db, db if want_b else da, i32(a.size), f32(2.0 / a.size), i32(want_a),
            i32(want_b)))
    return (da if want_a else None), (db if want_b else None)


def tv_weights(shape):
    n, c, h, w = shape
    return 1.0 / (n * c * (h - 1) * w), 1.0 / (n * c * h * (w - 1))


def tv_forward(device, x):
    wh, ww = tv_weights(x.shape)
    if device == "cpu":
        dh, dw = np.diff(x, axis=2), np.diff(x, axis=3)
        return np.asarray((dh * dh).sum() * wh + (dw * dw).sum() * ww)
    n, c, h, w = x.shape
    return _total(device, "tv_partial", x.size, (x, (i32(n * c), i32(h), i32(w), f32(wh), f32(ww))))


def tv_backward(device, dy, x):
    wh, ww = tv_weights(x.shape)
    if device == "cpu":
        dh, dw = np.diff(x, axis=2) * (2 * wh * dy), np.diff(x, axis=3) * (2 * ww * dy)
        dx = np.zeros(x.shape, x.dtype)
        dx[:, :, 1:, :] += dh
        dx[:, :, :-1, :] -= dh
        dx[:, :, :, 1:] += dw
        dx[:, :, :, :-1] -= dw
        return dx
    n, c, h, w = x.shape
    dx = empty(device, x.shape)
    launch(device, versions.selected("loss", device).kernel("tv_backward"), blocks(x.size),
           (x, dy, dx, i32(n * c), i32(h), i32(w), f32(wh), f32(ww)))
    return dx


# -- the ops ---------------------------------------------------------------------------------
class Gram(Op):
    """G = F F^T / (C H W) per image, F the (C, H*W) feature matrix: (N, C, H, W) -> (N, C, C)."""
    name = "gram"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        self.x = x
        return gram_forward(self.device, x)

    def backward(self, dy):
        return (gram_backward(self.device, dy, self.x),)


class MseLoss(Op):
    name = "mse_loss"

    def forward(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"mse_loss: input {tuple(a.shape)} and target {tuple(b.shape)} differ in shape")
        self.a, self.b = a, b
        return mse_forward(self.device, a, b)

    def backward(self, dy):
        return mse_backward(self.device, dy, self.a, self.b, self.needs_grad)


class TvLoss(Op):
    """mean over (n, c, i, j) of (x[i+1, j] - x[i, j])^2  +  mean of (x[i, j+1] - x[i, j])^2."""
    name = "tv_loss"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        if min(x.shape[2:]) < 2:
            raise ValueError(f"tv_loss: needs H, W >= 2, got input {tuple(x.shape)}")
        self.x = x
        return tv_forward(self.device, x)

    def backward(self, dy):
        return (tv_backward(self.device, dy, self.x),)


def _gram_case_flops(shapes):
    n, c, h, w = shapes[0]
    return 2 * useful_flops("gram_forward", (n, c, h * w))


def cases():
    big = (4, 64, 256, 256)
    return [
        Case("gram", lambda F, x: F.gram(x), ((2, 37, 9, 11),), full=(big,), op=Gram, flops=_gram_case_flops),
        Case("gram wide", lambda F, x: F.gram(x), ((1, 70, 5, 3),), full=((4, 512, 32, 32),), op=Gram, flops=_gram_case_flops),
        Case("gram small", lambda F, x: F.gram(x), ((2, 5, 4, 3),), op=Gram, flops=_gram_case_flops),
        Case("gram split positions", lambda F, x: F.gram(x), ((2, 70, 20, 30),), op=Gram, flops=_gram_case_flops),
        Case("mse_loss", lambda F, a, b: F.mse_loss(a, b), ((2, 3, 17, 19), (2, 3, 17, 19)), full=(big, big), op=MseLoss),
        Case("mse_loss b", lambda F, a, b: F.mse_loss(a, b), ((2, 3, 4, 5), (2, 3, 4, 5)), op=MseLoss),
        Case("tv_loss", lambda F, x: F.tv_loss(x), ((2, 3, 9, 13),), full=((4, 3, 256, 256),), op=TvLoss),
        Case("tv_loss b", lambda F, x: F.tv_loss(x), ((2, 3, 5, 6),), op=TvLoss),
    ]
