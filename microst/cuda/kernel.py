"""Kernels by name, and their launches with checked arguments.

    k = get_kernel("emu", "conv_v1.cu", "conv2d_forward_v1")   # or "cuda"
    k(grid, block, (x, w, y, np.int32(n)), shared_mem=0)

A kernel file is compiled once per device (NVRTC through ``cupy.RawModule`` on cuda, g++ on emu)
and every kernel looked up once. Arguments are checked against the kernel's parameter list,
parsed from the source: arrays must be C-contiguous arrays of the device's kind with the
parameter's dtype, scalars NumPy scalars of the parameter's type (a Python int or float is
refused: CuPy would pass it as a 64-bit value).
"""
import functools
import glob
import os
import re
import shutil
import threading

import numpy as np

from .. import emu_memory
from . import emu, settings
from .source import KERNEL_DIR, STRUCT_FORMAT, CompileError, analyse, display

MAX_THREADS_PER_BLOCK = 1024
MAX_DYNAMIC_SHARED = 227 * 1024  # an H100 block; above 48 KiB, cuda launches opt in for the kernel
_OPT_IN_SHARED = 48 * 1024
# CuPy adds -ftz=true to every NVRTC compile (denormal floats flush to zero); emu sets the
# CPU's flush-to-zero and denormals-are-zero modes while a kernel runs, to match.
CUDA_OPTIONS = ("-std=c++17",)
# The toolkit's device headers that kernels include. NVRTC searches no folder of its own (its
# bundled headers have none of these), and CuPy adds only the toolkit it finds; nvidia-cuda-runtime
# has the first four, nvidia-cuda-crt the crt/mma.h that mma.h includes.
_CUDA_HEADERS = ("mma.h", "cuda_fp16.h", "cuda_bf16.h", "cuda_pipeline.h", "crt/mma.h")


@functools.lru_cache(maxsize=None)
def cuda_include_dirs():
    """The folders holding CUDA's <mma.h>, <cuda_fp16.h>, <cuda_bf16.h>, <cuda_pipeline.h>, in
    search order: $CUDA_PATH and $CUDA_HOME, the pip wheels' nvidia/*/include, the toolkit of the
    nvcc on PATH, /usr/local/cuda. Empty where there is none."""
    candidates = [os.path.join(os.environ[v], "include") for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    try:
        import nvidia  # the namespace package of the nvidia-* wheels
        for root in nvidia.__path__:
            candidates += sorted(glob.glob(os.path.join(root, "*", "include")), reverse=True)  # cu13 before cu12
    except ImportError:
        pass
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include"))
    candidates.append("/usr/local/cuda/include")
    dirs = []
    for d in candidates:
        d = os.path.realpath(d)
        if d not in dirs and any(os.path.isfile(os.path.join(d, h)) for h in _CUDA_HEADERS):
            dirs.append(d)
    return tuple(dirs)


def cuda_options():
    """The NVRTC options of the cuda device (and of nvrtc.compile_file): CUDA_OPTIONS and -I for
    each folder of cuda_include_dirs()."""
    return CUDA_OPTIONS + tuple(f"-I{d}" for d in cuda_include_dirs())


def _dims(value, what, kernel):
    if type(value) is int and value > 0:  # the common case, first
        return value, 1, 1
    if isinstance(value, (int, np.integer)):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise TypeError(f"kernel {kernel}: {what} must be an int or a tuple of 1-3 ints, got {value!r}")
    value = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if min(value) < 1:
        raise ValueError(f"kernel {kernel}: {what} {value} has a zero or negative size (CUDA refuses empty "
                         f"launches: skip the launch when there is no work)")
    return value


def _type_name(a):
    return f"{type(a).__module__}.{type(a).__name__}"


class Kernel:
    """One kernel of one file on one device; call it as k(grid, block, args, shared_mem=0)."""

    def __init__(self, device, source, name, launch):
        self.device = device
        self.name = name
        self.file = source.path
        self.params = source.kernels[name]
        self.uses_fibers = name in source.fibers  # emu runs it with one fiber per thread
        self._launch = launch
        self._format = "<" + "".join("Q" if p.pointer else STRUCT_FORMAT[p.dtype.type] for p in self.params)
        self._max_shared = _OPT_IN_SHARED

    def __repr__(self):
        return f"<Kernel {self.name} ({display(self.file)}) on {self.device}>"

    def _check_config(self, grid, block, shared_mem):
        grid, block = _dims(grid, "grid", self.name), _dims(block, "block", self.name)
        threads = block[0] * block[1] * block[2]
        if threads > MAX_THREADS_PER_BLOCK or block[2] > 64:
            raise ValueError(f"kernel {self.name}: block {block} has {threads} threads; CUDA allows at most "
                             f"{MAX_THREADS_PER_BLOCK} per block (and blockDim.z <= 64)")
        if grid[0] >= 2 ** 31 or grid[1] > 65535 or grid[2] > 65535:
            raise ValueError(f"kernel {self.name}: grid {grid} is too large (x < 2^31, y and z <= 65535)")
        if not isinstance(shared_mem, (int, np.integer)) or not 0 <= shared_mem <= MAX_DYNAMIC_SHARED:
            raise ValueError(f"kernel {self.name}: shared_mem must be an int from 0 to {MAX_DYNAMIC_SHARED} "
                             f"bytes, got {shared_mem!r}")
        return grid, block, int(shared_mem)

    def _check_args(self, args):
        """The argument values to pack (emu): data pointers and scalars."""
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel {self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            names = ", ".join(p.name for p in self.params)
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments ({names}), got {len(args)}")
        emu = self.device == "emu"
        values = []
        for i, (a, p) in enumerate(zip(args, self.params)):
            if p.pointer:
                if emu:
                    if not isinstance(a, np.ndarray):
                        raise TypeError(f"{self._arg(i)} must be a NumPy array on emu, got {_type_name(a)}")
                    pointer = a.ctypes.data
                else:
                    if isinstance(a, np.ndarray) or not hasattr(a, "data") or not hasattr(a.data, "ptr"):
                        raise TypeError(f"{self._arg(i)} must be a CuPy array on cuda, got {_type_name(a)}")
                    pointer = a.data.ptr
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self._arg(i)} must be C-contiguous (use xp.ascontiguousarray)")
                if p.dtype is not None and a.dtype != p.dtype:
                    raise TypeError(f"{self._arg(i)} must be a {p.dtype} array, got {a.dtype}")
                if pointer % p.align:
                    raise ValueError(f"{self._arg(i)}: the data must be {p.align}-byte aligned for {p.ctype}")
                if emu and not p.const and not a.flags.writeable:
                    raise ValueError(f"{self._arg(i)} is read-only, and the kernel may write to it")
                values.append(pointer)
            else:
                if type(a) in (int, float, bool):
                    raise TypeError(f"{self._arg(i)} is a Python {type(a).__name__}: wrap it as "
                                    f"numpy.{p.dtype}(...) (CuPy would pass it as a 64-bit value)")
                if not isinstance(a, np.generic) or a.dtype != p.dtype:
                    got = f"numpy.{a.dtype}" if isinstance(a, np.generic) else _type_name(a)
                    raise TypeError(f"{self._arg(i)} must be a numpy.{p.dtype} scalar, got {got}")
                values.append(a.item())
        return values

    def _arg(self, i):
        p = self.params[i]
        return f"kernel {self.name}: argument {i} ({p.ctype} {p.name})"

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block, shared_mem = self._check_config(grid, block, shared_mem)
        values = self._check_args(args)
        counter = settings.launch_counter()
        if counter is not None:
            counter.append(self.name)
            if counter.dry:
                return
        if self.device == "cuda":
            self._launch_cuda(grid, block, args, shared_mem)
        else:
            try:
                emu.launch(self._launch, self._format, grid, block, values, shared_mem)
            except RuntimeError as e:
                raise RuntimeError(self._explain_fault(str(e), args)) from None

    def _explain_fault(self, message, args):
        """An out-of-bounds fault's message, with the argument array whose guard the address is in."""
        m = re.search(r"out-of-bounds \w+ at address (0x[0-9a-f]+)", message)
        if not m:
            return message
        address = int(m.group(1), 16)
        for i, (a, p) in enumerate(zip(args, self.params)):
            block = emu_memory.block_of(a) if p.pointer else None
            offset = block.offset(address) if block is not None else None
            if offset is not None:
                index = (address - a.ctypes.data) // a.itemsize  # counted in the argument's own elements
                return (f"{message}: element {index} of argument {i} ({p.name}, {a.dtype} {tuple(a.shape)}: "
                        f"elements 0 to {a.size - 1}) of {self.name} ({display(self.file)})")
        return f"{message}: not next to any argument of {self.name} ({display(self.file)})"

    def _launch_cuda(self, grid, block, args, shared_mem):
        if shared_mem > self._max_shared:  # above 48 KiB a kernel must opt in
            self._launch.max_dynamic_shared_size_bytes = shared_mem
            self._max_shared = shared_mem
        self._launch(grid, block, tuple(args), shared_mem=shared_mem)
        if os.environ.get("MICROST_CUDA_SYNC") == "1":
            import cupy
            if cupy.cuda.get_current_stream().is_capturing():  # a CUDA graph capture cannot wait
                return
            try:
                cupy.cuda.get_current_stream().synchronize()
            except cupy.cuda.runtime.CUDARuntimeError as e:
                raise RuntimeError(f"kernel {self.name} ({display(self.file)}) failed: {e}") from e


_lock = threading.RLock()
_modules = {}  # (device, path, emu flags) -> (source, {name: launch function})
_kernels = {}  # (device, file as given, name, emu flags) -> Kernel


def _module(device, path):
    key = (device, path, emu.flags() if device == "emu" else ())
    if key not in _modules:
        source = analyse(path)
        if device == "emu":
            functions = emu.build(source)
        else:
            import cupy
            module = cupy.RawModule(code=source.text, options=cuda_options())
            try:  # the module compiles at its first get_function
                functions = {name: module.get_function(name) for name in source.kernels}
            except cupy.cuda.compiler.CompileException as e:
                raise CompileError(f"NVRTC could not compile {display(path)}:\n{e}") from e
        _modules[key] = (source, functions)
    return _modules[key]


def get_kernel(device, file, name):
    """The kernel `name` of `file` (relative to kernels/, or absolute) on device "cuda" or "emu",
    compiled on first use and memoized (a lookup is one dict access: launches call it every time)."""
    flags = emu.flags() if device == "emu" else ()
    kernel = _kernels.get((device, file, name, flags))
    if kernel is not None:
        return kernel
    if device not in ("cuda", "emu"):
        raise ValueError(f"kernels run on 'cuda' or 'emu', not {device!r}")
    path = (KERNEL_DIR / file).resolve()
    with _lock:
        if not path.is_file():
            raise FileNotFoundError(f"no kernel file {file!r} (looked for {path})")
        source, functions = _module(device, path)
        if name not in source.kernels:
            if name in source.other_globals:
                raise ValueError(source.other_globals[name])
            raise ValueError(f"no extern \"C\" __global__ kernel {name!r} in {display(path)} "
                             f"(found: {', '.join(source.kernels) or 'none'})")
        kernel = _kernels[(device, file, name, flags)] = Kernel(device, source, name, functions[name])
    return kernel
