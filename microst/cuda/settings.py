"""Debug and scheduling settings of the kernel devices: output poisoning, emu's block and thread
order, and waiting for cuda. Settings made with the context managers hold for the calling thread.

- ``poisoned()`` / MICROST_POISON=1: ``empty`` fills new arrays with NaN (floats) or the dtype's
  maximum (ints), so that a kernel that leaves an output element unwritten shows it.
- ``emu_order(order)`` / MICROST_EMU_ORDER: the order in which emu runs blocks and threads.
- ``synchronize("cuda")`` waits; MICROST_CUDA_SYNC=1 waits and checks after every launch.
- ``counting(dry=True)``: the launches made inside are listed by kernel name (and, dry, not run:
  the arguments are still checked; microst.lab counts a network's launches this way).
"""
import contextlib
import os
import threading

import numpy as np

from .. import device as devices

_state = threading.local()


def _setting(name, default):
    return getattr(_state, name, default)


def poisoning():
    """True inside ``poisoned()`` (in this thread) or when MICROST_POISON=1."""
    return _setting("poison", 0) > 0 or os.environ.get("MICROST_POISON") == "1"


@contextlib.contextmanager
def poisoned():
    """Inside, ``empty`` fills arrays with NaN (floats) or the dtype's maximum (ints), so that a
    kernel that leaves an output element unwritten shows it."""
    _state.poison = _setting("poison", 0) + 1
    try:
        yield
    finally:
        _state.poison -= 1


def empty(device, shape, dtype=np.float32):
    """A new array of the device (see microst.device.empty), poisoned while poisoning is on."""
    a = devices.empty(device, shape, dtype)
    if poisoning():
        dt = np.dtype(dtype)
        a.fill(np.nan if dt.kind in "fc" else True if dt.kind == "b" else np.iinfo(dt).max)
    return a


_ORDERS = {"forward": 0, "reverse": 1, "random": 2}


@contextlib.contextmanager
def emu_order(order, seed=0):
    """Order in which emu runs the blocks of a grid, and the threads of a block between barriers,
    for the launches of this thread inside the context: "forward" (the default), "reverse" or
    "random" (seeded; each launch draws a new order). A kernel whose result changes with the
    order has a race. MICROST_EMU_ORDER=reverse, random or random:SEED sets it outside."""
    if order not in _ORDERS:
        raise ValueError(f"emu order must be one of {', '.join(_ORDERS)}, got {order!r}")
    saved = _setting("order", None)
    _state.order = (order, int(seed), [0])
    try:
        yield
    finally:
        _state.order = saved


_env_orders = {}  # MICROST_EMU_ORDER value -> (order, seed, [launch count])


def current_order():
    """(order code, seed for this launch)."""
    setting = _setting("order", None)
    if setting is None:
        env = os.environ.get("MICROST_EMU_ORDER", "forward")
        if env not in _env_orders:
            name, _, seed = env.partition(":")
            if name not in _ORDERS or (seed and not seed.isdigit()):
                raise ValueError(f"MICROST_EMU_ORDER must be forward, reverse, random or random:SEED, got {env!r}")
            _env_orders[env] = (name, int(seed or 0), [0])
        setting = _env_orders[env]
    name, seed, launches = setting
    launches[0] += 1
    return _ORDERS[name], (seed * 0x9E3779B97F4A7C15 + launches[0]) & 0xFFFFFFFFFFFFFFFF


def synchronize(device):
    """Wait for the kernels launched on the device (emu launches are synchronous already)."""
    if device == "cuda":
        import cupy
        cupy.cuda.Device().synchronize()



class Launches(list):
    """The kernel names launched inside ``counting()``, in order; dry: they were not run."""

    def __init__(self, dry):
        super().__init__()
        self.dry = dry


def launch_counter():
    return _setting("launches", None)


@contextlib.contextmanager
def counting(dry=True):
    saved = launch_counter()
    _state.launches = launches = Launches(dry)
    try:
        yield launches
    finally:
        _state.launches = saved
