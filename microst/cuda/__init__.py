"""Load, compile and launch the CUDA C kernels in ``kernels/*.cu`` on ``cuda`` and ``emu``.

    k = cuda.get_kernel("emu", "conv_v1.cu", "conv2d_forward_v1")   # or "cuda"
    k(grid, block, (x, w, y, np.int32(n)), shared_mem=0)

- ``source``: a kernel file with its includes inlined, and what the launcher reads from it
  (each kernel's parameters; which kernels need fibers on emu).
- ``emu``: the g++ build for the CPU against ``kernels/emu/cuda_emu.h``, cached, launched
  through ctypes.
- ``kernel``: ``get_kernel`` and ``Kernel``: the NVRTC build on cuda (``cupy.RawModule``), argument
  checks, launches.
- ``settings``: output poisoning, emu's scheduling order, cuda synchronization.
"""
from . import emu
from .kernel import CUDA_OPTIONS, MAX_DYNAMIC_SHARED, MAX_THREADS_PER_BLOCK, Kernel, get_kernel
from .settings import counting, emu_order, empty, poisoned, poisoning, synchronize
from .source import KERNEL_DIR, CompileError, Param

__all__ = ["CUDA_OPTIONS", "CompileError", "KERNEL_DIR", "Kernel", "MAX_DYNAMIC_SHARED", "MAX_THREADS_PER_BLOCK",
           "Param", "counting", "emu_order", "empty", "get_kernel", "poisoned", "poisoning", "synchronize"]


def __getattr__(name):
    if name == "emu_compiles":  # a live count, kept by the emu module
        return emu.compiles
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
