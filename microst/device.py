"""Device names and the array module behind each.

- ``cpu``:  NumPy arrays, vectorized NumPy ops (the reference semantics).
- ``emu``:  NumPy arrays, the hand-written kernels in ``kernels/*.cu`` compiled for the CPU.
- ``cuda``: CuPy arrays, the same kernels compiled by NVRTC.
"""
import os
import sys

import numpy as np

from . import emu_memory

DEVICES = ("cpu", "emu", "cuda")


def cuda_available():
    """True when CuPy imports and sees a GPU."""
    try:
        import cupy
        return bool(cupy.is_available())
    except Exception:  # ImportError, or a CuPy without a driver
        return False


def resolve(device=None, announce=False):
    """Turn 'auto', None (=$MICROST_DEVICE or 'auto') or a device name into one of DEVICES."""
    if device is None:
        device = os.environ.get("MICROST_DEVICE", "auto")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
        if announce:
            print(f"microst: device auto -> {device}", file=sys.stderr)
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of auto, {', '.join(DEVICES)}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError("device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'microst[cuda13]' "
                           "(or [cuda12]), or use --device cpu / emu")
    return device


def array_module(device):
    """numpy for cpu and emu, cupy for cuda."""
    if device == "cuda":
        import cupy
        return cupy
    return np


def device_of(array):
    """'cuda' for a CuPy array, else 'cpu' (a NumPy array could also be meant for emu)."""
    return "cpu" if isinstance(array, np.ndarray) or np.isscalar(array) else "cuda"


def to_numpy(array):
    return array if isinstance(array, np.ndarray) else array.get()


def move(array, device):
    """The array as the array type of `device`: a copy when it must cross to or from the GPU, or
    into emu memory (kernels on emu only see arrays of emu_empty); else the array itself."""
    if device == "cuda":
        import cupy
        return cupy.asarray(array)
    array = to_numpy(array)
    if device == "emu" and not is_emu_array(array):
        copy = emu_empty(array.shape, array.dtype)
        copy[...] = array
        return copy
    return array


def empty(device, shape, dtype=np.float32):
    """A new uninitialized C-contiguous array of the device."""
    if device == "cuda":
        import cupy
        return cupy.empty(shape, dtype)
    return emu_empty(shape, dtype) if device == "emu" else np.empty(shape, dtype)


def zeros(device, shape, dtype=np.float32):
    a = empty(device, shape, dtype)
    a.fill(0)
    return a


def full(device, shape, value, dtype=np.float32):
    a = empty(device, shape, dtype)
    a.fill(value)
    return a


def free_memory(device):
    """Bytes that `device` can still give, or None when unknown: MemAvailable of /proc/meminfo on cpu and
    emu (Linux), free GPU memory plus what CuPy's pool holds unused on cuda."""
    if device == "cuda":
        import cupy
        return int(cupy.cuda.Device().mem_info[0] + cupy.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def holds(array, device):
    """True when `array` is an array of `device` (cuda: CuPy; emu: emu memory; cpu: any NumPy array)."""
    if device == "cuda":
        return not isinstance(array, np.ndarray)
    return isinstance(array, np.ndarray) and (device != "emu" or is_emu_array(array))


def copy(array, device):
    """A new array of `device` holding the values of `array` (of any device)."""
    a = empty(device, array.shape, array.dtype)
    a[...] = array if device == "cuda" or isinstance(array, np.ndarray) else array.get()
    return a


# -- emu memory: one allocator for every array a kernel on emu may touch (microst.emu_memory) -----
EMU_ALIGNMENT = emu_memory.ALIGNMENT
emu_empty = emu_memory.empty


def is_emu_array(array):
    """True for an array (or a view of one) in emu memory."""
    return emu_memory.block_of(array) is not None
