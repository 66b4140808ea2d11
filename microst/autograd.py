"""Tensor, the graph that records ops, and backward in topological order.

Every op (microst/ops) works on raw arrays. ``apply`` runs one op on Tensors: it unwraps them,
checks that they share a device and a float dtype, runs the op's forward and, when a gradient
is wanted, links the output to the op and its inputs. ``Tensor.backward`` walks that graph
without recursion, calls each op's backward once, accumulates gradients with ``+=`` (a tensor
may feed several ops) and drops each op (and what it saved) as soon as it has run.
"""
import contextlib
import os

import numpy as np

from . import device as devices
from .ops import arith
from .ops.base import SizeError

_grad_enabled = True
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@contextlib.contextmanager
def no_grad():
    """Within this block ops record no graph (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


class Tensor:
    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, device="cpu"):
        self.data = data
        self.device = device
        self.requires_grad = requires_grad
        self.grad = None
        self._op = None      # the op that produced this tensor, until backward has used it
        self._inputs = ()    # that op's input tensors
        self._freed = False  # True once backward has run through this tensor's op
        self._grad_storage = None  # the array .grad was last given: reused, so that its address stays

    # -- facts -------------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))

    def __len__(self):
        return self.data.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({devices.to_numpy(self.data)!r}, device='{self.device}'{grad})"

    # -- conversions -------------------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (shared on cpu/emu, copied from the GPU on cuda)."""
        return devices.to_numpy(self.data)

    def item(self):
        return self.numpy().item()

    def detach(self):
        return Tensor(self.data, device=self.device)

    def to(self, device):
        """A copy on `device` ('cpu', 'emu', 'cuda' or 'auto'); self when already there."""
        device = devices.resolve(device)
        if device == self.device:
            return self
        return Tensor(devices.move(self.data, device), requires_grad=self.requires_grad, device=device)

    # -- arithmetic --------------------------------------------------------------------------
    def __add__(self, other):
        return apply(arith.Add, self, other) if isinstance(other, Tensor) else apply(arith.AddScalar, self, c=other)

    def __sub__(self, other):
        return apply(arith.Sub, self, other) if isinstance(other, Tensor) else apply(arith.AddScalar, self, c=-other)

    def __mul__(self, other):
        return apply(arith.Mul, self, other) if isinstance(other, Tensor) else apply(arith.MulScalar, self, c=other)

    def __truediv__(self, other):
        return apply(arith.Div, self, other) if isinstance(other, Tensor) else apply(arith.MulScalar, self, c=1.0 / other)

    def __neg__(self):
        return apply(arith.MulScalar, self, c=-1.0)

    def __pow__(self, p):
        if isinstance(p, Tensor):
            raise TypeError("pow: only a scalar exponent is supported (tensor ** number)")
        return apply(arith.PowScalar, self, p=p)

    __radd__ = __add__
    __rmul__ = __mul__

    def __rsub__(self, other):
        return (-self) + other

    def __rtruediv__(self, other):
        return (self ** -1.0) * other

    def sum(self, dim=None, keepdim=False):
        return apply(arith.Sum, self, axis=dim, keepdims=keepdim)

    def mean(self, dim=None, keepdim=False):
        return apply(arith.Mean, self, axis=dim, keepdims=keepdim)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return apply(arith.Reshape, self, shape=tuple(shape))

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        for i in index:
            if not (i is Ellipsis or isinstance(i, (int, slice))):
                raise TypeError(f"slice: only ints, slices and ... are supported, got {type(i).__name__}")
        return apply(arith.Slice, self, index=index)

    # -- backward ----------------------------------------------------------------------------
    def backward(self, grad=None):
        """Gradients of this tensor with respect to every leaf that requires one.

        `grad` is the upstream gradient (same shape); it may be omitted for a one-element tensor.
        Leaf gradients accumulate into `.grad` (call zero_grad between steps).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input had requires_grad=True)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward: grad must be given for a non-scalar tensor of shape {self.shape}")
            grad = devices.full(self.device, self.data.shape, 1, self.dtype)
        else:
            xp = devices.array_module(self.device)
            grad = grad.data if isinstance(grad, Tensor) else devices.move(xp.asarray(grad, self.dtype), self.device)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}, tensor has {self.shape}")

        grads = {id(self): grad}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._op is None:  # a leaf
                if node._freed:
                    raise RuntimeError("backward: part of this graph was freed by an earlier backward; "
                                       "run the forward pass again")
                if node.grad is None:  # own it (ops may return views shared with others), in the same
                    node.grad = node._grad_storage = _copy_into(node._grad_storage, g, self.device)  # buffer
                else:
                    node.grad += g
                continue
            input_grads = _run(node._op, "backward", node._op.backward, g)
            for t, gi in zip(node._inputs, input_grads):
                if t is None or gi is None or not t.requires_grad:
                    continue
                grads[id(t)] = gi if id(t) not in grads else grads[id(t)] + gi
            node._op, node._inputs, node._freed = None, (), True  # free what the op saved


def _copy_into(buffer, g, device):
    """g copied into `buffer` when it fits (same shape, dtype and device), else into a new array. A
    leaf's gradient keeps its address from step to step: the fused optimizer's tables stay valid."""
    if buffer is not None and buffer.shape == g.shape and buffer.dtype == g.dtype and devices.holds(buffer, device):
        buffer[...] = g
        return buffer
    return devices.copy(g, device)


def _topological_order(root):
    """Tensors reachable from root through ops, each after all of its inputs (iterative DFS)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node._inputs:
            if t is not None and t.requires_grad and id(t) not in seen:
                stack.append((t, False))
    return order


def tensor(data, requires_grad=False, device=None, dtype=None):
    """A Tensor from an array, list or number. Float32 and float64 arrays keep their dtype; lists
    and numbers become float32 (or `dtype`); integer arrays are refused. The device defaults to
    $MICROST_DEVICE, else 'cpu'."""
    device = devices.resolve(device or os.environ.get("MICROST_DEVICE", "cpu"))
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (list, tuple, int, float)) and dtype is None:
        dtype = np.float32
    xp = devices.array_module(device)
    array = devices.move(data if hasattr(data, "dtype") else np.asarray(data, dtype), device)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"tensor: dtype {array.dtype} is not supported; convert to float32 or float64 first")
    return Tensor(xp.ascontiguousarray(array), requires_grad=requires_grad, device=device)


def apply(op_class, *inputs, **params):
    """Run op_class on Tensors (None allowed for optional inputs such as a missing bias)."""
    name = op_class.name
    tensors = [x for x in inputs if x is not None]
    if not tensors:
        raise TypeError(f"{name}: needs at least one tensor input")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected microst Tensors, got {type(t).__name__} "
                            f"(wrap arrays with microst.tensor(...))")
    device, dtype = tensors[0].device, tensors[0].dtype
    for t in tensors[1:]:
        if t.device != device:
            raise ValueError(f"{name}: inputs are on different devices ({device} and {t.device}); use .to()")
        if t.dtype != dtype:
            raise TypeError(f"{name}: inputs have different dtypes ({dtype} and {t.dtype})")
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype {dtype} is not supported; use float32 or float64")
    if device != "cpu" and dtype != np.float32:
        raise TypeError(f"{name}: the {device} kernels are float32, got {dtype} (float64 runs on cpu)")

    op = op_class(**params)
    op.device = device
    needs = _grad_enabled and any(t.requires_grad for t in tensors)
    op.needs_grad = tuple(x is not None and x.requires_grad and needs for x in inputs)
    data = _run(op, "forward", op.forward, *[None if x is None else x.data for x in inputs])
    if isinstance(data, np.generic):  # NumPy turns 0-d results into scalars; keep arrays
        data = np.asarray(data)
    out = Tensor(data, device=device)
    if needs:
        out.requires_grad, out._op, out._inputs = True, op, tuple(inputs)
    return out


def _run(op, what, method, *args):
    """An op's forward or backward, with the op's name put in front of a kernel size error."""
    try:
        return method(*args)
    except SizeError as e:
        raise ValueError(f"{op.name} ({what}): {e}") from None


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    ndim = tensors[0].ndim
    for t in tensors:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != dim % ndim):
            raise ValueError(f"cat: shapes {[t.shape for t in tensors]} differ outside dim {dim}")
    return apply(arith.Cat, *tensors, dim=dim % ndim)
