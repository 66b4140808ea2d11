"""Adam's update of every parameter in one launch (arith v2: kernels/arith_v2.cu adam_step_v2), and
the device-side flag that stops it after a non-finite loss.

    flag = nonfinite_flag(device)                  # int32 [0], on the device
    check_finite(device, loss, flag)               # flag[0] = 1 if loss is not finite (no host wait)
    adam_step(device, params, grads, exp_avgs, exp_avg_sqs, hyper, step, flag)

On cpu the update is microst.optim.Adam's NumPy expressions; on emu the kernel does the same
float32 operations in the same order, so that the two agree to the bit (tests/test_optim.py).
The table of tensor pointers and of blocks is built once per set of arrays and kept.
"""
import numpy as np

from .. import device as devices
from . import versions
from .base import empty, f32, i32, launch

CHUNK = 4096  # elements per block
_tables = {}  # (device, the arrays' addresses and sizes) -> device tables


def _address(a):
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _tables_for(device, arrays):
    """(pointers, sizes, block owner, block start) for the tensors' 4-tuples of arrays."""
    key = (device, tuple((_address(a), a.size) for group in arrays for a in group))
    if key not in _tables:
        pointers = np.array([_address(a) for group in arrays for a in group], np.uint64)
        sizes = np.array([group[0].size for group in arrays], np.int32)
        owner = np.concatenate([np.full(-(-s // CHUNK), t, np.int32) for t, s in enumerate(sizes)])
        start = np.concatenate([np.arange(0, s, CHUNK, dtype=np.int32) for s in sizes])
        if len(_tables) > 16:
            _tables.clear()
        _tables[key] = tuple(devices.move(a, device) for a in (pointers, sizes, owner, start))
    return _tables[key]


def adam_step(device, params, grads, exp_avgs, exp_avg_sqs, hyper, step, flag):
    """Update params (and the moment arrays) in place, one kernel launch for all of them. hyper:
    lr, betas, eps, weight_decay; step: the step number (the same for every parameter)."""
    lr, (b1, b2), eps, weight_decay = hyper["lr"], hyper["betas"], hyper["eps"], hyper["weight_decay"]
    for a in (*params, *grads, *exp_avgs, *exp_avg_sqs):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError("adam_step: every array must be contiguous float32")
    pointers, sizes, owner, start = _tables_for(device, list(zip(params, grads, exp_avgs, exp_avg_sqs)))
    # The constants as NumPy rounds the Python numbers of optim.Adam to float32: the same bits.
    launch(device, versions.selected("arith", device).kernel("adam_step"), len(owner),
           (pointers, sizes, owner, start, flag, i32(CHUNK), f32(b1), f32(1 - b1), f32(b2), f32(1 - b2),
            f32(lr / (1 - b1 ** step)), f32(1 - b2 ** step), f32(eps), f32(weight_decay)))


def nonfinite_flag(device):
    flag = empty(device, (1,), np.int32)
    flag.fill(0)
    return flag


def check_finite(device, value, flag):
    """flag[0] = 1 when the 0-d device array `value` is not finite (sticky); no host wait."""
    version = versions.selected("arith", device)
    if "nonfinite_flag" in version.kernels:
        launch(device, version.kernel("nonfinite_flag"), 1, (value.reshape(1), flag), block=32)
    else:  # an array expression (CuPy on cuda: still asynchronous)
        xp = devices.array_module(device)
        flag[...] = xp.maximum(flag, (~xp.isfinite(value.reshape(1))).astype(np.int32))
