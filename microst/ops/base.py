"""The shape of every op: forward and backward on raw arrays.

An op knows nothing of Tensors or graphs. ``microst.autograd.apply`` builds one op object per
call, sets ``device`` and ``needs_grad`` (one bool per input), calls ``forward(*arrays)``, and
later ``backward(dy)``, which returns one gradient (or None) per input. Whatever ``forward``
keeps on ``self`` for ``backward`` is freed with the op once backward has run.
"""
from ..device import array_module


class Op:
    name = "op"

    def __init__(self, **params):
        self.__dict__.update(params)
        self.device = "cpu"
        self.needs_grad = ()

    @property
    def xp(self):
        return array_module(self.device)

    @property
    def on_cpu(self):
        return self.device == "cpu"

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError


def check_rank(op, name, x, rank):
    if x.ndim != rank:
        raise ValueError(f"{op}: {name} must have {rank} dimensions"
                         f"{' (N, C, H, W)' if rank == 4 else ''}, got shape {tuple(x.shape)}")


def pair(v, what, op):
    """An int or a pair of ints as (a, b)."""
    if isinstance(v, int):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    raise ValueError(f"{op}: {what} must be an int or a pair of ints, got {v!r}")


def unbroadcast(xp, g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)
