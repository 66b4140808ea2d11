"""conv2d and conv_transpose2d, both built from three passes:

    conv2d_forward(x, w, b)          y  = w * x (+ b)            (N, Cout, Ho, Wo)
    conv2d_backward_data(dy, w)      dx = w^T * dy               (N, Cin, H, W)
    conv2d_backward_weight(dy, x)    dw = dy * x                 (Cout, Cin, kh, kw)

cpu: im2col + one matrix multiply (ops/conv_cpu.py, the NumPy reference). emu/cuda: the kernels
of the selected version (ops/conv_kernels.py: v0 plain loops, v1 implicit GEMMs on 64x64 tiles,
v2 one GEMM over offset tables; ops/conv_tc.py: v3, v2 on tensor cores in TF32 or BF16). Within
precision.rounded_like(p), the cpu path rounds the operands of the passes v3 runs on tensor
cores at p: the reference a tensor-core kernel is compared with.
conv_transpose2d is the same three with the roles swapped: its forward is conv's backward-data,
its backward-data is conv's forward, and its weight gradient is conv's with x and dy exchanged.
upsample_conv2d is nearest x2 upsampling, then a 3x3 conv with zero padding 1, as one op: on the
cpu one conv at the input's resolution (ops/conv_subpixel.py: 16 multiply-adds per pixel and
channel pair where the upsampled map's conv has 36), on emu/cuda interpolate's kernel and then
conv's (backward recomputes the upsampled map rather than keeping it).
Weights: conv (Cout, Cin, kh, kw); transposed conv (Cin, Cout, kh, kw), as in PyTorch.

FLOPs (microst.lab flops): each pass is a GEMM of M x N outputs over a reduction of K,
    forward          M = Cout, N = batch * Ho * Wo, K = Cin * kh * kw
    backward-data    M = Cin,  N = batch * H * W,   K = Cout * kh * kw
    backward-weight  M = Cout, N = Cin * kh * kw,   K = batch * Ho * Wo
useful = 2 * M * N * K (padding taps included, as the forward's im2col has them), except that a
strided backward-data (the forward of a strided transposed conv) counts only the taps whose
position is a multiple of the stride: the others multiply a zero the stride inserted.
"""
from . import conv_cpu, conv_subpixel, precision, record, versions
from .arith import OP_ADD, binary, sum_axes
from .base import Case, Op, check_rank, pair
from .conv_kernels import PASSES, ConvGeometry, conv_geometry  # noqa: F401
from .conv_kernels import VERSIONS as SIMT_VERSIONS
from .conv_tc import VERSIONS as TC_VERSIONS
from .pool import upsample_nearest_backward, upsample_nearest_forward

VERSIONS = {**SIMT_VERSIONS, **TC_VERSIONS}  # the family's versions


def _stride_taps(size, k, s, p):
    """Pairs (input position, kernel tap) along one axis whose position matches the stride."""
    return sum(1 for pos in range(size) for t in range(k) if (pos + p - t) % s == 0)


def useful_flops(pass_, g):
    m, n, k = g.gemm(pass_)
    if pass_ == "backward_data" and (g.SH > 1 or g.SW > 1):
        return 2 * g.Cin * g.Cout * g.N * _stride_taps(g.H, g.KH, g.SH, g.PH) * _stride_taps(g.W, g.KW, g.SW, g.PW)
    return 2 * m * n * k


def _reference(pass_, g, *operands):
    """The cpu pass's operands, rounded as v3's tensor cores would round them (precision.rounded_like)."""
    p = precision.reference()
    if p == "fp32" or not VERSIONS["v3"].launcher.tensor_cores(pass_, g, p):
        return operands
    return tuple(precision.rounded(a, p) for a in operands)


# -- the passes, on arrays -------------------------------------------------------------------
def conv2d_forward(device, x, w, b, stride, padding):
    g = conv_geometry(x.shape, w.shape, stride, padding)
    recorded = record.note("conv", "forward", g, (g.N, g.Cout, g.HO, g.WO), device)
    if recorded is not None:
        return recorded
    if device == "cpu":
        return conv_cpu.forward(*_reference("forward", g, x, w), b, stride, padding)
    version = versions.selected("conv", device)
    return version.launcher.forward(device, version, x, w, b, g)


def conv2d_backward_data(device, dy, w, x_shape, stride, padding):
    g = conv_geometry(x_shape, w.shape, stride, padding)
    recorded = record.note("conv", "backward_data", g, x_shape, device)
    if recorded is not None:
        return recorded
    if device == "cpu":
        return conv_cpu.backward_data(*_reference("backward_data", g, dy, w), x_shape, stride, padding)
    version = versions.selected("conv", device)
    return version.launcher.backward_data(device, version, dy, w, g)


def conv2d_backward_weight(device, dy, x, w_shape, stride, padding, want_db=False):
    """(dw, db): db = dy summed over (N, Ho, Wo), the bias gradient, when want_db (else None)."""
    g = conv_geometry(x.shape, w_shape, stride, padding)
    recorded = record.note("conv", "backward_weight", g, w_shape, device)
    if recorded is not None:
        return recorded, (sum_axes(device, dy, (0, 2, 3)) if want_db else None)
    if device == "cpu":
        return conv_cpu.backward_weight(*_reference("backward_weight", g, dy, x), w_shape, stride, padding), \
            (dy.sum(axis=(0, 2, 3)) if want_db else None)
    version = versions.selected("conv", device)
    return version.launcher.backward_weight(device, version, dy, x, g, want_db)


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


def transposed_output_shape(x_shape, w_shape, stride, padding, output_padding):
    n, _, h, wd = x_shape
    _, cout, kh, kw = w_shape
    return (n, cout) + tuple((size - 1) * s - 2 * p + k + o for size, s, p, k, o in
                             zip((h, wd), stride, padding, (kh, kw), output_padding))


class Conv2d(Op):
    name = "conv2d"  # params: stride, padding

    def forward(self, x, w, b):
        self.stride, self.padding = _check(self.name, x, w, b, w.shape[0], 1, self.stride, self.padding)
        kh, kw = w.shape[2:]
        hp, wp = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if kh > hp or kw > wp:
            raise ValueError(f"conv2d: kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
                             f"(input {tuple(x.shape)}, padding {self.padding})")
        self.x, self.w = x, w
        return conv2d_forward(self.device, x, w, b, self.stride, self.padding)

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        dx = conv2d_backward_data(self.device, dy, self.w, self.x.shape, self.stride, self.padding) if need_x else None
        dw = db = None
        if need_w:  # the kernels may compute the bias gradient with the weight's
            dw, db = conv2d_backward_weight(self.device, dy, self.x, self.w.shape, self.stride, self.padding, need_b)
        elif need_b:
            db = sum_axes(self.device, dy, (0, 2, 3))
        return dx, dw, db


class ConvTranspose2d(Op):
    name = "conv_transpose2d"  # params: stride, padding, output_padding

    def forward(self, x, w, b):
        self.stride, self.padding = _check(self.name, x, w, b, w.shape[1], 0, self.stride, self.padding)
        op_ = pair(self.output_padding, "output_padding", self.name)
        if not all(0 <= o < s for o, s in zip(op_, self.stride)):
            raise ValueError(f"conv_transpose2d: output_padding {op_} must be >= 0 and smaller than stride {self.stride}")
        out_shape = transposed_output_shape(x.shape, w.shape, self.stride, self.padding, op_)
        if min(out_shape[2:]) < 1:
            raise ValueError(f"conv_transpose2d: output size {out_shape[2:]} is empty for input {tuple(x.shape)}, "
                             f"kernel {w.shape[2]}x{w.shape[3]}, stride {self.stride}, padding {self.padding}")
        self.x, self.w = x, w
        y = conv2d_backward_data(self.device, x, w, out_shape, self.stride, self.padding)
        return y if b is None else binary(self.device, OP_ADD, y, b.reshape(1, -1, 1, 1))

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        dx = conv2d_forward(self.device, dy, self.w, None, self.stride, self.padding) if need_x else None
        dw = conv2d_backward_weight(self.device, self.x, dy, self.w.shape, self.stride, self.padding)[0] if need_w else None
        db = sum_axes(self.device, dy, (0, 2, 3)) if need_b else None
        return dx, dw, db


class UpsampleConv2d(Op):
    name = "upsample_conv2d"

    def forward(self, x, w, b):
        _check(self.name, x, w, b, w.shape[0], 1, 1, 1)
        if tuple(w.shape[2:]) != (3, 3):
            raise ValueError(f"upsample_conv2d: the kernel must be 3x3, got weight {tuple(w.shape)}; for another "
                             f"kernel use conv2d(interpolate(x, 2), weight, padding=...)")
        self.x, self.w = x, w
        if self._subpixel():
            return conv_subpixel.upsample_conv_forward(conv_cpu.forward, x, w, b)
        return conv2d_forward(self.device, upsample_nearest_forward(self.device, x, 2), w, b, (1, 1), (1, 1))

    def _subpixel(self):
        """The cpu's sub-pixel form; not on the cpu's plain path (conv_cpu.use_path("reference")), nor
        where the cpu is the reference of a tensor-core kernel, whose operands it rounds as that kernel
        would (the upsampled map and w, not the phases' sums), nor while the passes are recorded
        (microst.lab counts those of the kernel devices)."""
        return self.device == "cpu" and not conv_cpu.reference_pinned() and precision.reference() == "fp32" \
            and not record.active()

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        if self._subpixel():
            return conv_subpixel.upsample_conv_backward((conv_cpu.backward_data, conv_cpu.backward_weight), dy,
                                                        self.x, self.w, self.needs_grad)
        up = upsample_nearest_forward(self.device, self.x, 2)
        dx = dw = db = None
        if need_x:
            dup = conv2d_backward_data(self.device, dy, self.w, up.shape, (1, 1), (1, 1))
            dx = upsample_nearest_backward(self.device, dup, self.x.shape, 2)
        if need_w:
            dw, db = conv2d_backward_weight(self.device, dy, up, self.w.shape, (1, 1), (1, 1), need_b)
        elif need_b:
            db = sum_axes(self.device, dy, (0, 2, 3))
        return dx, dw, db


# -- cases -------------------------------------------------------------------------------------
def conv_case(name, x, w, bias=True, stride=1, padding=0, full=None):
    """A conv2d case: x (N, Cin, H, W), w (Cout, Cin, kh, kw); full: (x, w) at the network's size."""
    s, p = pair(stride, "stride", name), pair(padding, "padding", name)

    def flops(shapes):
        g = conv_geometry(shapes[0], shapes[1], s, p)
        return sum(useful_flops(pass_, g) for pass_ in PASSES)

    def with_bias(F, x, w, b):
        return F.conv2d(x, w, b, stride, padding)

    def without(F, x, w):
        return F.conv2d(x, w, None, stride, padding)

    extra = lambda shapes: shapes + ((shapes[1][0],),) if bias else shapes  # noqa: E731
    return Case(name, with_bias if bias else without, extra((x, w)), full=extra(full) if full else None,
                op=Conv2d, flops=flops)


def transposed_case(name, x, w, bias=True, stride=1, padding=0, output_padding=0, full=None):
    """A conv_transpose2d case: x (N, Cin, H, W), w (Cin, Cout, kh, kw); full: (x, w) at the network's size."""
    s, p, o = (pair(v, "", name) for v in (stride, padding, output_padding))

    def flops(shapes):
        out = transposed_output_shape(shapes[0], shapes[1], s, p, o)
        g = conv_geometry(out, shapes[1], s, p)  # the conv whose backward-data this forward is
        return sum(useful_flops(pass_, g) for pass_ in PASSES)

    def fn(F, x, w, *b):
        return F.conv_transpose2d(x, w, b[0] if b else None, stride, padding, output_padding)

    extra = lambda shapes: shapes + ((shapes[1][1],),) if bias else shapes  # noqa: E731
    return Case(name, fn, extra((x, w)), full=extra(full) if full else None, op=ConvTranspose2d, flops=flops)


def upsample_case(name, x, w, bias=True, full=None):
    """An upsample_conv2d case: x (N, Cin, H, W), w (Cout, Cin, 3, 3)."""
    def flops(shapes):  # those of the conv on the upsampled map, which the kernel devices run
        n, c, h, wd = shapes[0]
        g = conv_geometry((n, c, 2 * h, 2 * wd), shapes[1], (1, 1), (1, 1))
        return sum(useful_flops(pass_, g) for pass_ in PASSES)

    def fn(F, x, w, *b):
        return F.upsample_conv2d(x, w, b[0] if b else None)

    extra = lambda shapes: shapes + ((shapes[1][0],),) if bias else shapes  # noqa: E731
    return Case(name, fn, extra((x, w)), full=extra(full) if full else None, op=UpsampleConv2d, flops=flops)


def cases():
    return [
        conv_case("conv2d 3x3 pad1 odd", (2, 5, 9, 11), (7, 5, 3, 3), padding=1),
        conv_case("conv2d 3x3 pad1", (2, 3, 7, 9), (4, 3, 3, 3), padding=1),
        conv_case("conv2d wide channels", (2, 37, 5, 7), (70, 37, 3, 3), padding=1,
                  full=((4, 128, 84, 84), (128, 128, 3, 3))),
        conv_case("conv2d 3x3 stride2", (2, 3, 9, 8), (6, 3, 3, 3), stride=2, padding=1,
                  full=((4, 32, 336, 336), (64, 32, 3, 3))),
        conv_case("conv2d 3x3 stride2 b", (2, 3, 9, 8), (5, 3, 3, 3), stride=2, padding=1),
        conv_case("conv2d 3x3 stride2 pad0", (2, 2, 10, 7), (4, 2, 3, 3), stride=2),
        conv_case("conv2d 5x5 stride3 pad2", (1, 2, 11, 13), (4, 2, 5, 5), stride=3, padding=2),
        conv_case("conv2d 9x9 pad4", (1, 3, 13, 10), (4, 3, 9, 9), bias=False, padding=4,
                  full=((4, 3, 336, 336), (32, 3, 9, 9))),
        conv_case("conv2d 9x9 pad4 bias", (1, 3, 11, 10), (2, 3, 9, 9), padding=4,
                  full=((4, 32, 256, 256), (3, 32, 9, 9))),
        conv_case("conv2d 1x1", (3, 6, 5, 5), (5, 6, 1, 1)),
        conv_case("conv2d 1x1 b", (3, 4, 5, 5), (2, 4, 1, 1)),
        conv_case("conv2d 3x3 no bias no pad", (2, 2, 6, 7), (3, 2, 3, 3), bias=False),
        conv_case("conv2d 16 output channels", (1, 3, 16, 16), (16, 3, 3, 3), padding=1),
        conv_case("conv2d long reduction (split backward-weight)", (2, 2, 16, 17), (3, 2, 3, 3), padding=1),
        transposed_case("conv_transpose2d s2", (2, 6, 5, 7), (6, 5, 3, 3), stride=2, padding=1, output_padding=1,
                        full=((4, 128, 64, 64), (128, 64, 3, 3))),
        transposed_case("conv_transpose2d s2 p1 op1", (2, 4, 5, 6), (4, 3, 3, 3), stride=2, padding=1, output_padding=1),
        transposed_case("conv_transpose2d s1", (1, 4, 6, 5), (4, 3, 3, 3), bias=False, stride=1, padding=1),
        transposed_case("conv_transpose2d s1 p1", (1, 3, 5, 7), (3, 2, 3, 3), stride=1, padding=1),
        transposed_case("conv_transpose2d s2 p0", (2, 2, 3, 4), (2, 3, 3, 3), bias=False, stride=2),
        transposed_case("conv_transpose2d 4x4 s2", (1, 2, 3, 3), (2, 3, 4, 4), stride=2, padding=1),
        transposed_case("conv_transpose2d 3x3 s3 op2", (2, 2, 3, 2), (2, 3, 3, 3), stride=3, output_padding=2),
        # at least 16 channels on both sides: every pass on v3's tensor cores (conv_tc.MIN_M)
        conv_case("conv2d 3x3 pad1 tc", (2, 17, 9, 11), (20, 17, 3, 3), padding=1),
        conv_case("conv2d 3x3 stride2 tc", (2, 16, 9, 8), (24, 16, 3, 3), stride=2, padding=1),
        conv_case("conv2d 9x9 pad4 tc", (1, 16, 12, 10), (16, 16, 9, 9), padding=4),
        conv_case("conv2d 1x1 tc", (2, 32, 6, 5), (48, 32, 1, 1)),
        conv_case("conv2d long reduction tc", (2, 16, 24, 23), (16, 16, 3, 3), padding=1),
        transposed_case("conv_transpose2d s2 tc", (2, 24, 5, 4), (24, 16, 3, 3), stride=2, padding=1,
                        output_padding=1),
        upsample_case("upsample_conv2d", (2, 5, 4, 3), (7, 5, 3, 3), full=((4, 64, 128, 128), (32, 64, 3, 3))),
        upsample_case("upsample_conv2d 1 row no bias", (1, 3, 1, 5), (2, 3, 3, 3), bias=False),
        upsample_case("upsample_conv2d tc", (2, 16, 5, 6), (16, 16, 3, 3)),
    ]
