"""The shape of every op: forward and backward on raw arrays.

An op knows nothing of Tensors or graphs. ``microst.autograd.apply`` builds one op object per
call, sets ``device`` and ``needs_grad`` (one bool per input), calls ``forward(*arrays)``, and
later ``backward(dy)``, which returns one gradient (or None) per input. Whatever ``forward``
keeps on ``self`` for ``backward`` is freed with the op once backward has run.
"""
import numpy as np

from .. import cuda
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


# -- launching kernels on emu / cuda ---------------------------------------------------------
THREADS = 256  # threads per block for every kernel here (the GEMM tiles assume it)
i32, f32 = np.int32, np.float32


def blocks(n, threads=THREADS, cap=8192):
    """Blocks for a grid-stride loop over n elements: enough to fill the GPU, never zero."""
    return max(1, min(cap, -(-n // threads)))


def launch(device, file, kernel, grid, args, block=THREADS, shared_mem=0):
    """Run kernels/<file>::<kernel>. Array arguments are made contiguous first (kernels never see
    strided views); outputs are allocated contiguous by the caller, so they stay the same object."""
    xp = array_module(device)
    args = tuple(xp.ascontiguousarray(a) if hasattr(a, "strides") and not np.isscalar(a) else a for a in args)
    cuda.get_kernel(device, file, kernel)(grid, block, args, shared_mem=shared_mem)


def empty(device, shape, dtype=np.float32):
    """An output array for a kernel (poisoned with NaN under cuda.poisoned(), to catch unwritten elements)."""
    return cuda.empty(device, tuple(int(s) for s in shape), dtype)
