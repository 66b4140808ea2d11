"""Give NumPy's BLAS and PyTorch the same number of threads, so that CPU timings compare, and say which
kernels NumPy's BLAS runs (OPENBLAS_CORETYPE, when the environment sets it, overrides OpenBLAS's own
choice: on the AVX-512 host of 2026-12-03 a machine-wide OPENBLAS_CORETYPE=Haswell made every GEMM
1.3-1.4x slower than the SkylakeX kernels OpenBLAS picks itself, and the cpu conv starts Winograd
at 128 channels rather than 256 by it; bench/RESULTS.md)."""
import os
import sys


def set_threads(n):
    """Call before NumPy is imported. Returns the torch module, or None when it is not installed."""
    if "numpy" in sys.modules:
        raise SystemExit("set thread counts before NumPy loads")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n)
    return torch


def blas_kernels():
    """'OpenBLAS SkylakeX kernels (its own choice)', '... (OPENBLAS_CORETYPE=Haswell)', or unknown."""
    from microst.ops.blas_kernels import openblas_core
    core, pinned = openblas_core(), os.environ.get("OPENBLAS_CORETYPE")
    if core is None:
        return "unknown kernels (not OpenBLAS, or no /proc)"
    return f"OpenBLAS {core} kernels ({f'OPENBLAS_CORETYPE={pinned}' if pinned else 'its own choice'})"
