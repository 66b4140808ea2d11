"""Give NumPy's BLAS and PyTorch the same number of threads, so that CPU timings compare."""
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
