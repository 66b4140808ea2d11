"""The shape of every op: forward and backward on raw arrays, plus what kernel launches share.

An op knows nothing of Tensors or graphs. ``microst.autograd.apply`` builds one op object per
call, sets ``device`` and ``needs_grad`` (one bool per input), calls ``forward(*arrays)``, and
later ``backward(dy)``, which returns one gradient (or None) per input. Whatever ``forward``
keeps on ``self`` for ``backward`` is freed with the op once backward has run.

Every family module (conv, norm, loss, pool, pad, activation, arith) is written the same way:
array-level functions per pass, ``name(device, arrays..., options)``, that run NumPy on ``cpu``
and the selected kernel version (microst.ops.versions) on ``emu``/``cuda``; thin Op classes
that check arguments, keep what backward needs and call them; and the family's CASES (Case).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .. import cuda
from .. import device as devices
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
GRID_CAP = 8192  # blocks of a grid-stride loop at most
# The kernels index with 32-bit ints (kernels/common.cuh). A grid-stride loop's index runs up to
# n + its stride (at most GRID_CAP * THREADS) before it stops, so sizes stay below this:
INT32_LIMIT = 2 ** 31 - GRID_CAP * THREADS


class SizeError(ValueError):
    """A tensor too large for 32-bit kernel indexing; autograd.apply puts the op's name in front."""


def i32(v):
    """A kernel's int argument (a Python int would be passed as 64 bits by CuPy)."""
    if not -2 ** 31 <= v < 2 ** 31:
        raise SizeError(f"the value {v} does not fit the kernels' 32-bit int arguments")
    return np.int32(v)


f32 = np.float32


def blocks(n, threads=THREADS, cap=GRID_CAP):
    """Blocks for a grid-stride loop over n elements: enough to fill the GPU, never zero."""
    return max(1, min(cap, -(-n // threads)))


def check_size(shape, what):
    size = int(np.prod(shape, dtype=np.int64))
    if size >= INT32_LIMIT:
        raise SizeError(f"{what} of shape {tuple(shape)} has {size:,} elements, more than the kernels' 32-bit "
                        f"indexing allows ({INT32_LIMIT:,}); make it smaller (a smaller batch, or stylize --tile)")


def launch(device, kernel, grid, args, block=THREADS, shared_mem=0):
    """Run a kernel, given as (file, name), with arrays and NumPy scalars as `args`.

    Input (const) arrays are made contiguous, and on emu copied into emu memory if they are not
    there yet (kernels never see strided views, and on emu only emu_empty's memory). Outputs are
    written in place, so they must be contiguous emu/cuda arrays already: allocate them with
    `empty`; anything else is refused rather than silently written into a copy."""
    k = cuda.get_kernel(device, *kernel)
    xp = array_module(device)
    args = list(args)
    for i, (a, p) in enumerate(zip(args, k.params)):
        if not p.pointer:
            continue
        if a.size >= INT32_LIMIT:
            check_size(a.shape, f"{k.name}: argument {i} ({p.name})")
        if a.flags.c_contiguous and (device != "emu" or devices.is_emu_array(a)):
            continue
        if not p.const:
            raise ValueError(f"{k.name}: output argument {i} ({p.name}) must be a contiguous {device} array "
                             f"from ops.base.empty; the kernel would write into a copy")
        if device == "emu":
            args[i] = devices.emu_empty(a.shape, a.dtype)
            args[i][...] = a
        else:
            args[i] = xp.ascontiguousarray(a)
    k(grid, block, tuple(args), shared_mem=shared_mem)


def empty(device, shape, dtype=np.float32):
    """An output array for a kernel (poisoned with NaN under cuda.poisoned(), to catch unwritten elements)."""
    shape = tuple(int(s) for s in shape)
    check_size(shape, "output")
    return cuda.empty(device, shape, dtype)


def device_array(device, a):
    """`a` as a kernel may be handed it as an output: contiguous, and on emu in emu memory (a copy
    only when it is not so already)."""
    if a.flags.c_contiguous and (device != "emu" or devices.is_emu_array(a)):
        return a
    return devices.move(np.ascontiguousarray(a), device) if device == "emu" else array_module(device).ascontiguousarray(a)


def zeros(device, shape, dtype=np.float32):
    a = empty(device, shape, dtype)
    a.fill(0)
    return a


# -- the cases a family declares once: tests, microst.lab and bench/bench_kernels.py use them ----
@dataclass(frozen=True)
class Case:
    """One configuration of a family's ops, checked and timed as fn(F, *inputs) and its backward.

    fn(F, *xs) is written against F = microst.functional (which has torch.nn.functional's names,
    plus gram, tv_loss and cat), so that a benchmark can run the same expression in PyTorch.
    shapes: the input shapes at scale "small" (tests, emu); full: at scale "full" (a layer of
    the networks; the lab and bench on cuda), None to reuse `shapes`. Inputs are standard normal
    times `scale`; those at the indices in `positive` become |x| + 0.5; those in `constant` get
    no gradient (e.g. batch norm's running statistics). op: the Op class whose
    broken backward the gradient check must catch (None when fn is a mix of ops). flops(shapes):
    the useful FLOPs of forward + backward (2 per multiply-add of a GEMM; 0 for other ops);
    bytes(shapes): the least bytes they must move, by default reading every input and the output
    gradient once and writing the output and every input gradient once (float32).
    """
    name: str
    fn: Callable
    shapes: tuple
    full: Optional[tuple] = None
    positive: tuple = ()
    constant: tuple = ()
    scale: float = 1.0
    op: Optional[type] = None
    flops: Callable = lambda shapes: 0

    def input_shapes(self, scale="small"):
        if scale not in ("small", "full"):
            raise ValueError(f"scale must be small or full, got {scale!r}")
        return self.full if scale == "full" and self.full is not None else self.shapes

    def inputs(self, scale="small", dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal(s) * self.scale for s in self.input_shapes(scale)]
        for i in self.positive:
            arrays[i] = np.abs(arrays[i]) + 0.5
        return [a.astype(dtype) for a in arrays]


def least_bytes(input_shapes, output_shape, itemsize=4):
    """Bytes a forward + backward must move at least: inputs and output gradient read once, output
    and input gradients written once."""
    sizes = [int(np.prod(s)) for s in input_shapes]
    return itemsize * 2 * (sum(sizes) + int(np.prod(output_shape)))
