"""Device names and the array module behind each.

- ``cpu``:  NumPy arrays, vectorized NumPy ops (the reference semantics).
- ``emu``:  NumPy arrays, the hand-written kernels in ``kernels/*.cu`` compiled for the CPU.
- ``cuda``: CuPy arrays, the same kernels compiled by NVRTC.
"""
import os
import sys

import numpy as np

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
    """The array as the array type of `device` (a copy only when it must cross to or from the GPU)."""
    if device == "cuda":
        import cupy
        return cupy.asarray(array)
    return to_numpy(array)
