"""The cuda device's compile, without a GPU: NVRTC from the `nvidia-cuda-nvrtc` wheel, to a CUBIN.

    report = compile_file("conv_v1.cu", arch="sm_90")   # {kernel: Resources}, or CompileError

The source is what the cuda device hands `cupy.RawModule` (includes inlined), with its options
(kernel.cuda_options(): CUDA_OPTIONS, and -I for the folders of CUDA's <mma.h>, <cuda_pipeline.h>,
...) and what CuPy adds to every NVRTC compile (-ftz=true, the GPU's architecture), plus
`--ptxas-options=-v`, whose report gives each kernel's registers, spills, stack frame and shared
memory. CI runs it on every kernel of every version (tests/test_nvrtc.py):
a kernel that spills registers fails there, before any GPU has run it.
"""
import ctypes
import glob
import os
import re
from pathlib import Path
from typing import NamedTuple

from .kernel import cuda_options
from .source import KERNEL_DIR, CompileError, analyse, display

CUPY_ADDS = ("-ftz=true",)  # cupy.cuda.compiler adds this to every NVRTC compile
_lib = None


class Resources(NamedTuple):
    registers: int
    spill_stores: int   # bytes
    spill_loads: int    # bytes
    stack_frame: int    # bytes
    shared: int         # bytes of static shared memory


def library():
    """libnvrtc from the nvidia-cuda-nvrtc wheel (with its builtins loaded first), or None."""
    global _lib
    if _lib is None:
        try:
            import nvidia
        except ImportError:
            return None
        for root in nvidia.__path__:
            found = sorted(glob.glob(os.path.join(root, "cu*", "lib", "libnvrtc.so.*")))
            builtins = sorted(glob.glob(os.path.join(root, "cu*", "lib", "libnvrtc-builtins.so.*")))
            found = [f for f in found if ".alt." not in f]
            builtins = [f for f in builtins if ".alt." not in f]
            if found and builtins:
                ctypes.CDLL(builtins[0], mode=ctypes.RTLD_GLOBAL)
                _lib = ctypes.CDLL(found[0])
                break
    return _lib


def version():
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_file(file, arch="sm_90"):
    """{kernel name: Resources} of one kernel file compiled as the cuda device compiles it."""
    lib = library()
    if lib is None:
        raise RuntimeError("NVRTC is not installed: pip install 'nvidia-cuda-nvrtc==13.0.88'")
    path = (KERNEL_DIR / file).resolve()
    source = analyse(path)
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.text.encode(), path.name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        options = [o.encode() for o in (*cuda_options(), *CUPY_ADDS, f"--gpu-architecture={arch}",
                                        "--ptxas-options=-v")]
        rc = lib.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        log = log.value.decode(errors="replace")
        if rc:
            raise CompileError(f"NVRTC could not compile {display(path)}:\n{log}")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    report = parse_ptxas(log)
    missing = set(source.kernels) - set(report)
    if missing:
        raise CompileError(f"{display(path)}: ptxas reported nothing for {', '.join(sorted(missing))}")
    return {name: report[name] for name in source.kernels}


def _check(lib, rc, what):
    if rc:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise CompileError(f"{what} failed: {lib.nvrtcGetErrorString(rc).decode()}")


def parse_ptxas(log):
    """{function: Resources} from ptxas -v's report."""
    out, name, spills = {}, None, (0, 0, 0)
    for line in log.splitlines():
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            name = m.group(1)
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spills = tuple(int(g) for g in m.groups())
        m = re.search(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?", line)
        if m and name:
            out[name] = Resources(int(m.group(1)), spills[1], spills[2], spills[0], int(m.group(2) or 0))
            name, spills = None, (0, 0, 0)
    return out


def kernel_files():
    """Every kernel source of the product: kernels/*.cu (each family version)."""
    return sorted(p.name for p in Path(KERNEL_DIR).glob("*.cu"))
