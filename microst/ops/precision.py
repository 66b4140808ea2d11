"""The precision of the GEMMs inside the kernels: fp32, tf32 or bf16 (tensor cores, FP32 accumulate).

Storage stays float32 everywhere: a tensor-core kernel rounds its GEMM operands as it loads them
(tf32: 10 mantissa bits, rounded to nearest with ties away from zero, as cvt.rna.tf32.f32 does;
bf16: 7 bits, to nearest even) and accumulates in FP32. Norm statistics, losses other than the
Gram matrices, master weights and the optimizer's state stay FP32.

The default is per device: tf32 on cuda (as PyTorch's for convolutions), fp32 on emu (today's
tolerances). cpu always computes in FP32 (or FP64). MICROST_PRECISION sets the default of the
kernel devices; in Python

    microst.ops.use_precision("bf16")          # from now on
    with microst.ops.use_precision("tf32"):    # inside the block only
        ...

A family whose versions differ by precision (conv, loss) runs, by default, its newest version
that computes at the precision asked; a pinned version that does not is an error (versions.py).

References for tests: within `rounded_like(precision)`, the cpu path rounds the operands of every
GEMM that a tensor-core kernel would run (the launcher says which: a 3-channel pass stays FP32),
so that a tensor-core kernel is compared with a reference rounded the same way.
"""
import os

import numpy as np

from ..errors import UserError

PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT = {"emu": "fp32", "cuda": "tf32", "cpu": "fp32"}
MANTISSA_BITS = {"fp32": 23, "tf32": 10, "bf16": 7}

_pin = []        # the use_precision stack's top is the pin
_reference = []  # the rounded_like stack's top: the precision references round to


def check(precision, where=""):
    if precision not in PRECISIONS:
        raise UserError(f"{where}unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def chosen():
    """Whether a precision was chosen (use_precision, MICROST_PRECISION) rather than defaulted."""
    return bool(_pin) or bool(os.environ.get("MICROST_PRECISION", "").strip())


def current(device):
    """The precision the kernels of `device` compute their GEMMs in."""
    if device == "cpu":
        return "fp32"
    if _pin:
        return _pin[-1]
    text = os.environ.get("MICROST_PRECISION", "").strip()
    return check(text, "MICROST_PRECISION: ") if text else DEFAULT[device]


class use_precision:
    """Set the kernels' precision: a call that holds from now on, or a context manager that
    restores the previous one on exit. None: back to the default."""

    def __init__(self, precision):
        self.previous = list(_pin)
        _pin.clear()
        if precision is not None:
            _pin.append(check(precision, "use_precision: "))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _pin[:] = self.previous


class rounded_like:
    """Within this block, the cpu path rounds the operands of the GEMMs that tensor cores would run
    at `precision` (for references; see the module docstring)."""

    def __init__(self, precision):
        self.precision = check(precision)

    def __enter__(self):
        _reference.append(self.precision)
        return self

    def __exit__(self, *exc):
        _reference.pop()


def reference():
    """The precision the cpu path rounds GEMM operands to (fp32: none)."""
    return _reference[-1] if _reference else "fp32"


def round_tf32(a):
    """Nearest TF32 value of each float32, ties away from zero (cvt.rna.tf32.f32); inf and NaN kept."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    rounded = ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)
    return np.where(np.isfinite(a), rounded, a)


def round_bf16(a):
    """Nearest bfloat16 value of each float32, ties to even (__float2bfloat16), as float32."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000))
    return np.where(np.isfinite(a), rounded.view(np.float32), a)


def rounded(a, precision):
    """`a` (float32 or float64) rounded to `precision`, in its own dtype."""
    if precision == "fp32":
        return a
    r = (round_tf32 if precision == "tf32" else round_bf16)(np.asarray(a, dtype=np.float32))
    return r.astype(a.dtype, copy=False)


def unit_roundoff(precision):
    """Half an ulp at 1: the relative error of one rounding to `precision`."""
    return 2.0 ** -(MANTISSA_BITS[precision] + 1)
