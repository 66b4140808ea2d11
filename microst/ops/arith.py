"""Tensor arithmetic: + - * / with broadcasting, scalar ops, ** by a scalar, sums, reshape, slicing, cat.

cpu: NumPy. emu/cuda: kernels/arith_v1.cu: binary_forward (broadcast through 0 strides),
scalar_forward, pow_backward, reduce_sum (one block per output element), strided_copy (slices,
their backward, cat, broadcasts). The kernels take shapes padded to 4 dimensions.
"""
import numpy as np

from . import versions
from .base import Case, Op, blocks, empty, f32, i32, launch, zeros

ROLES = ("binary_forward", "scalar_forward", "pow_backward", "reduce_sum", "strided_copy")
VERSIONS = versions.declare(
    versions.Version("arith", "v1", "one thread per element; reduce_sum one block per output element",
                     versions.kernels_of("arith_v1.cu", ROLES, "v1")),
    versions.Version("arith", "v2", "per-channel sums (bias gradients) over chunks of each plane, summed in order; "
                     "Adam on every parameter in one launch",
                     {**versions.kernels_of("arith_v1.cu", ROLES, "v1"),
                      **versions.kernels_of("arith_v2.cu", ("plane_sums", "channel_totals", "adam_step",
                                                            "nonfinite_flag"), "v2")}))
CHUNK_VALUES, GRID_BLOCKS = 4096, 2048  # channel sums: values per block at least, blocks in all at most


def _kernel(device, role):
    return versions.selected("arith", device).kernel(role)

OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW = range(5)
MAX_DIMS = 4


# -- array-level helpers, also used by other op families --------------------------------------
def _pad4(values, fill):
    if len(values) > MAX_DIMS:
        raise ValueError(f"emu/cuda kernels handle at most {MAX_DIMS} dimensions, got shape {tuple(values)}")
    return (fill,) * (MAX_DIMS - len(values)) + tuple(values)


def _contiguous_strides(shape):
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _broadcast_strides(shape, out_shape):
    """Element strides that read a contiguous `shape` at every coordinate of `out_shape` (4-D)."""
    shape, out_shape = _pad4(shape, 1), _pad4(out_shape, 1)
    return tuple(0 if s == 1 and o != 1 else st for s, o, st in zip(shape, out_shape, _contiguous_strides(shape)))


def binary(device, op, a, b):
    """a op b with NumPy broadcasting."""
    if device == "cpu":
        return {OP_ADD: np.add, OP_SUB: np.subtract, OP_MUL: np.multiply, OP_DIV: np.divide, OP_POW: np.power}[op](a, b)
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    y = empty(device, out_shape)
    launch(device, _kernel(device, "binary_forward"), blocks(y.size),
           (a, b, y, i32(op), *map(i32, _pad4(out_shape, 1)),
            *map(i32, _broadcast_strides(a.shape, out_shape)), *map(i32, _broadcast_strides(b.shape, out_shape))))
    return y


def scalar(device, op, x, c):
    """x op c for a Python number c (OP_ADD, OP_MUL, OP_POW)."""
    if device == "cpu":
        c = x.dtype.type(c)
        return x + c if op == OP_ADD else x * c if op == OP_MUL else x ** c
    y = empty(device, x.shape)
    launch(device, _kernel(device, "scalar_forward"), blocks(y.size), (x, y, i32(y.size), i32(op), f32(c)))
    return y


def sum_axes(device, x, axes=None, scale=1.0):
    """scale * x.sum(axis=axes) (axes None: all), dimensions dropped."""
    axes = tuple(range(x.ndim)) if axes is None else \
        tuple(sorted(a % x.ndim for a in ((axes,) if isinstance(axes, int) else axes)))
    if device == "cpu":
        s = x.sum(axis=axes)
        return s * x.dtype.type(scale) if scale != 1.0 else s
    version = versions.selected("arith", device)
    if axes == (0, 2, 3) and x.ndim == 4 and "plane_sums" in version.kernels and x.shape[0] * x.shape[1] <= 65535:
        return _channel_sums(device, version, x, scale)
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    reduced = tuple(n if i in axes else 1 for i, n in enumerate(x.shape))
    strides = _pad4(_contiguous_strides(x.shape), 0)
    out_shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    y = empty(device, out_shape)
    launch(device, _kernel(device, "reduce_sum"), blocks(y.size, 1, cap=4096),
           (x, y, f32(scale), *map(i32, _pad4(kept, 1)), *map(i32, strides),
            *map(i32, _pad4(reduced, 1)), *map(i32, strides)))
    return y


def _channel_sums(device, version, x, scale):
    """scale * x.sum(axis=(0, 2, 3)) of an NCHW array: chunks of each plane, then per channel in order."""
    n, c, h, w = x.shape
    hw = h * w
    chunks = max(1, min(-(-hw // CHUNK_VALUES), GRID_BLOCKS // (n * c)))
    length = -(-hw // chunks)
    chunks = -(-hw // length)
    partial = empty(device, (n * c, chunks))
    launch(device, version.kernel("plane_sums"), (chunks, n * c), (x, partial, i32(hw), i32(length)))
    y = empty(device, (c,))
    launch(device, version.kernel("channel_totals"), blocks(c), (partial, y, i32(n), i32(c), i32(chunks), f32(scale)))
    return y


def strided_copy(device, src, dst, shape, src_geometry, dst_geometry):
    """dst[view] = src[view] over a box of `shape`; each geometry is (strides, offset) in elements."""
    (ss, so), (ds, do) = src_geometry, dst_geometry
    launch(device, _kernel(device, "strided_copy"), blocks(int(np.prod(shape))),
           (src, dst, *map(i32, _pad4(shape, 1)), *map(i32, _pad4(ss, 0)), i32(so), *map(i32, _pad4(ds, 0)), i32(do)))


def contiguous_geometry(shape):
    return _contiguous_strides(shape), 0


def view_geometry(shape, index):
    """(shape, strides, offset) in elements of the view `index` of a contiguous array of `shape`.
    NumPy does the indexing arithmetic on a proxy whose "bytes" are our elements (nothing is read)."""
    proxy = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=shape, strides=_contiguous_strides(shape))
    view = proxy[index]
    offset = view.__array_interface__["data"][0] - proxy.__array_interface__["data"][0]
    return view.shape, (view.strides, offset)


def broadcast_to(device, a, shape):
    """A contiguous copy of `a` broadcast to `shape`."""
    if device == "cpu":
        return np.broadcast_to(a, shape)
    y = empty(device, shape)
    strided_copy(device, a, y, shape, (_broadcast_strides(a.shape, shape), 0), contiguous_geometry(shape))
    return y


def unbroadcast(device, g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    return sum_axes(device, g, axes).reshape(shape)


# -- the ops ---------------------------------------------------------------------------------
class Add(Op):
    name = "add"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return binary(self.device, OP_ADD, a, b)

    def backward(self, dy):
        return tuple(unbroadcast(self.device, dy, s) for s in self.shapes)


class Sub(Op):
    name = "sub"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return binary(self.device, OP_SUB, a, b)

    def backward(self, dy):
        db = unbroadcast(self.device, scalar(self.device, OP_MUL, dy, -1.0), self.shapes[1]) if self.needs_grad[1] else None
        return unbroadcast(self.device, dy, self.shapes[0]), db


class Mul(Op):
    name = "mul"

    def forward(self, a, b):
        self.a, self.b = a, b
        return binary(self.device, OP_MUL, a, b)

    def backward(self, dy):
        d = self.device
        da = unbroadcast(d, binary(d, OP_MUL, dy, self.b), self.a.shape) if self.needs_grad[0] else None
        db = unbroadcast(d, binary(d, OP_MUL, dy, self.a), self.b.shape) if self.needs_grad[1] else None
        return da, db


class Div(Op):
    name = "div"

    def forward(self, a, b):
        self.a, self.b = a, b
        return binary(self.device, OP_DIV, a, b)

    def backward(self, dy):
        d = self.device
        da = unbroadcast(d, binary(d, OP_DIV, dy, self.b), self.a.shape) if self.needs_grad[0] else None
        db = None
        if self.needs_grad[1]:  # -dy * a / b^2
            q = binary(d, OP_DIV, binary(d, OP_MUL, dy, self.a), binary(d, OP_MUL, self.b, self.b))
            db = unbroadcast(d, scalar(d, OP_MUL, q, -1.0), self.b.shape)
        return da, db


class AddScalar(Op):
    name = "add_scalar"  # params: c

    def forward(self, x):
        return scalar(self.device, OP_ADD, x, self.c)

    def backward(self, dy):
        return (dy,)


class MulScalar(Op):
    name = "mul_scalar"  # params: c

    def forward(self, x):
        return scalar(self.device, OP_MUL, x, self.c)

    def backward(self, dy):
        return (scalar(self.device, OP_MUL, dy, self.c),)


class PowScalar(Op):
    name = "pow"  # params: p

    def forward(self, x):
        self.x = x
        return scalar(self.device, OP_POW, x, self.p)

    def backward(self, dy):
        x = self.x
        if self.on_cpu:
            p = x.dtype.type(self.p)
            return (dy * p * x ** (p - 1),)
        dx = empty(self.device, x.shape)
        launch(self.device, _kernel(self.device, "pow_backward"), blocks(dx.size), (x, dy, dx, i32(dx.size), f32(self.p)))
        return (dx,)


def _normalized_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


class Sum(Op):
    name = "sum"  # params: axis, keepdims; mean=True divides by the count (Mean)
    mean = False

    def forward(self, x):
        self.shape = x.shape
        axes = _normalized_axes(self.axis, x.ndim)
        count = int(np.prod([x.shape[a] for a in axes]))
        self.scale = 1.0 / count if self.mean else 1.0
        y = sum_axes(self.device, x, axes, self.scale)
        # the output keeps reduced dimensions as 1 when asked; backward needs them as 1 anyway
        self.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        return self.xp.asarray(y).reshape(self.kept_shape if self.keepdims else y.shape)

    def backward(self, dy):
        dy = dy.reshape(self.kept_shape)
        if self.scale != 1.0:
            dy = scalar(self.device, OP_MUL, dy, self.scale)
        return (broadcast_to(self.device, dy, self.shape),)


class Mean(Sum):
    name = "mean"
    mean = True


class Reshape(Op):
    name = "reshape"  # params: shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, dy):
        return (dy.reshape(self.in_shape),)


class Slice(Op):
    """Basic indexing x[index] (ints, slices, Ellipsis); backward scatters into zeros."""
    name = "slice"  # params: index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        if self.on_cpu:
            return np.ascontiguousarray(x[self.index])
        shape, self.geometry = view_geometry(x.shape, self.index)
        y = empty(self.device, shape)
        strided_copy(self.device, x, y, shape, self.geometry, contiguous_geometry(shape))
        return y

    def backward(self, dy):
        if self.on_cpu:
            dx = np.zeros(self.in_shape, self.dtype)
            dx[self.index] = dy
        else:
            dx = zeros(self.device, self.in_shape, self.dtype)
            strided_copy(self.device, dy, dx, dy.shape, contiguous_geometry(dy.shape), self.geometry)
        return (dx,)


class Cat(Op):
    name = "cat"  # params: dim

    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        if self.on_cpu:
            return np.concatenate(xs, axis=self.dim)
        shape = list(xs[0].shape)
        shape[self.dim] = sum(self.sizes)
        y = empty(self.device, shape)
        for x, part in zip(xs, self._parts(shape)):
            strided_copy(self.device, x, y, x.shape, contiguous_geometry(x.shape), part)
        return y

    def _parts(self, shape):
        """The view geometry of each input's block inside the output."""
        start = 0
        for size in self.sizes:
            index = (slice(None),) * self.dim + (slice(start, start + size),)
            yield view_geometry(tuple(shape), index)[1]
            start += size

    def backward(self, dy):
        if self.on_cpu:
            return tuple(np.ascontiguousarray(g) for g in np.split(dy, np.cumsum(self.sizes)[:-1], axis=self.dim))
        grads = []
        for size, part in zip(self.sizes, self._parts(dy.shape)):
            shape = dy.shape[:self.dim] + (size,) + dy.shape[self.dim + 1:]
            g = empty(self.device, shape)
            strided_copy(self.device, dy, g, shape, part, contiguous_geometry(shape))
            grads.append(g)
        return tuple(grads)


def cases():
    return [
        Case("add broadcast", lambda F, a, b: a + b, ((2, 3, 4, 5), (3, 1, 5)), full=((4, 128, 64, 64), (1, 128, 1, 1)),
             op=Add),
        Case("sub", lambda F, a, b: a - b, ((2, 3, 4, 5), (2, 3, 4, 5)), op=Sub),
        Case("mul broadcast", lambda F, a, b: a * b, ((2, 3, 4, 5), (1, 3, 1, 1)), op=Mul),
        Case("div", lambda F, a, b: a / b, ((2, 3, 4), (2, 3, 4)), positive=(1,), op=Div),
        Case("scalar ops", lambda F, a: (2.0 - a) * 3.0 + a / 4.0, ((2, 3, 4),)),
        Case("pow", lambda F, a: a ** 3.0 + a ** 0.5, ((3, 7),), positive=(0,), op=PowScalar),
        Case("sum dims", lambda F, a: a.sum(dim=(0, 2)), ((3, 4, 5),), op=Sum),
        Case("sum per channel (bias gradient)", lambda F, a: a.sum(dim=(0, 2, 3)), ((3, 4, 5, 7),),
             full=((4, 32, 256, 256),), op=Sum),
        Case("mean keepdim", lambda F, a: a.mean(dim=1, keepdim=True) * a, ((2, 3, 4),)),
        Case("mean all", lambda F, a: a.mean(), ((2, 3, 4, 5),), op=Mean),
        Case("crop", lambda F, a: a[:, :, 2:-2, 2:-2], ((2, 3, 9, 8),), full=((4, 128, 84, 84),), op=Slice),
        Case("strided slice", lambda F, a: a[1, ..., ::-2], ((2, 3, 7),), op=Slice),
        Case("cat", lambda F, a, b: F.cat([a, b, a], dim=1), ((2, 3, 4), (2, 2, 4)), op=Cat),
        Case("reshape", lambda F, a: a.reshape(6, 10) * 2.0, ((2, 3, 10),)),
    ]
