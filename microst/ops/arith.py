"""Tensor arithmetic: + - * / with broadcasting, scalar ops, ** by a scalar, sums, reshape, slicing, cat."""
from .base import Op, unbroadcast


class Add(Op):
    name = "add"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, dy):
        return tuple(unbroadcast(self.xp, dy, s) for s in self.shapes)


class Sub(Op):
    name = "sub"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, dy):
        return unbroadcast(self.xp, dy, self.shapes[0]), unbroadcast(self.xp, -dy, self.shapes[1])


class Mul(Op):
    name = "mul"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, dy):
        da = unbroadcast(self.xp, dy * self.b, self.a.shape) if self.needs_grad[0] else None
        db = unbroadcast(self.xp, dy * self.a, self.b.shape) if self.needs_grad[1] else None
        return da, db


class Div(Op):
    name = "div"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, dy):
        da = unbroadcast(self.xp, dy / self.b, self.a.shape) if self.needs_grad[0] else None
        db = unbroadcast(self.xp, -dy * self.a / (self.b * self.b), self.b.shape) if self.needs_grad[1] else None
        return da, db


class AddScalar(Op):
    name = "add_scalar"  # params: c

    def forward(self, x):
        return x + x.dtype.type(self.c)

    def backward(self, dy):
        return (dy,)


class MulScalar(Op):
    name = "mul_scalar"  # params: c

    def forward(self, x):
        return x * x.dtype.type(self.c)

    def backward(self, dy):
        return (dy * dy.dtype.type(self.c),)


class PowScalar(Op):
    name = "pow"  # params: p

    def forward(self, x):
        self.x = x
        return x ** x.dtype.type(self.p)

    def backward(self, dy):
        x, p = self.x, self.x.dtype.type(self.p)
        return (dy * p * x ** (p - 1),)


class Sum(Op):
    name = "sum"  # params: axis, keepdims

    def forward(self, x):
        self.shape = x.shape
        return self.xp.asarray(x.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, dy):
        return (self.xp.broadcast_to(_keep_reduced_dims(dy, self.shape, self.axis, self.keepdims), self.shape),)


class Mean(Op):
    name = "mean"  # params: axis, keepdims

    def forward(self, x):
        self.shape = x.shape
        y = self.xp.asarray(x.mean(axis=self.axis, keepdims=self.keepdims))
        self.count = x.size // max(y.size, 1)
        return y

    def backward(self, dy):
        dy = _keep_reduced_dims(dy, self.shape, self.axis, self.keepdims)
        return (self.xp.broadcast_to(dy / dy.dtype.type(self.count), self.shape),)


def _keep_reduced_dims(dy, shape, axis, keepdims):
    if keepdims or axis is None:
        return dy.reshape((1,) * len(shape)) if axis is None else dy
    axes = (axis,) if isinstance(axis, int) else axis
    axes = sorted(a % len(shape) for a in axes)
    for a in axes:
        dy = dy.reshape(dy.shape[:a] + (1,) + dy.shape[a:])
    return dy


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
        return self.xp.ascontiguousarray(x[self.index])

    def backward(self, dy):
        dx = self.xp.zeros(self.in_shape, self.dtype)
        dx[self.index] = dy
        return (dx,)


class Cat(Op):
    name = "cat"  # params: dim

    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        return self.xp.concatenate(xs, axis=self.dim)

    def backward(self, dy):
        bounds = [sum(self.sizes[:i]) for i in range(1, len(self.sizes))]
        return tuple(self.xp.ascontiguousarray(g) for g in self.xp.split(dy, bounds, axis=self.dim))
