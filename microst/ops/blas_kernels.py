"""Which GEMM kernels NumPy's BLAS runs. The cpu conv chooses between Winograd and its gemm path by it
(ops/conv_cpu.py): with AVX-512 kernels a GEMM is 1.3-1.4x faster, and the multiplies Winograd saves
are then worth less than the memory passes of its transforms.

    openblas_core()     "SkylakeX", "Haswell", ... as OpenBLAS names the kernels it chose when it loaded
                        (or OPENBLAS_CORETYPE chose for it); None for another BLAS, or without /proc
    avx512_gemm()       whether those are AVX-512 kernels
"""
import ctypes
import functools

AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
_CORENAME = ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
             "openblas_get_corename")  # NumPy's wheels (scipy-openblas), then a system OpenBLAS


def loaded_openblas():
    """The paths of the OpenBLAS libraries this process has loaded (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []


@functools.cache
def openblas_core():
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _CORENAME:
            corename = getattr(lib, name, None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                return corename().decode()
    return None


def avx512_gemm():
    return (openblas_core() or "").lower() in AVX512_CORES
