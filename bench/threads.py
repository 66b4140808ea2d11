"""Give NumPy's BLAS and PyTorch the same number of threads, so that CPU timings compare, and say which
kernels NumPy's BLAS runs (OPENBLAS_CORETYPE, when the environment sets it, overrides OpenBLAS's own
choice: on the AVX-512 host of 2026-12-03 a machine-wide OPENBLAS_CORETYPE=Haswell made every GEMM
1.3-1.4x slower than the SkylakeX kernels OpenBLAS picks itself; bench/RESULTS.md)."""
import ctypes
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
    """'OpenBLAS SkylakeX kernels (its own choice)', '... (OPENBLAS_CORETYPE=Haswell)', or what is known
    when the loaded BLAS is not OpenBLAS on Linux."""
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    how = f"OPENBLAS_CORETYPE={pinned}" if pinned else "its own choice"
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            corename = getattr(lib, name, None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                return f"OpenBLAS {corename().decode()} kernels ({how})"
    return "BLAS kernels unknown (not OpenBLAS, or not Linux)"
