"""Validate, then time, every version of one kernel family on its cases.

    python -m microst.lab conv --kernel-version all --device emu

For each case of the family (microst.ops.<family>.cases()): the float64 gradient check on cpu
once, then for each version, at each precision it computes in (v3: tf32 and bf16, each against
the cpu path with the same operands rounded the same way, microst.ops.precision.rounded_like),
the forward output and every input gradient against the cpu path (max abs and relative error; a
version whose error exceeds the tolerance of the kernel tests is marked FAIL and not timed),
then the median time of forward + backward. GFLOP/s counts the case's useful FLOPs; GB/s the
least bytes forward + backward must move; on cuda, % floor is the floor (the larger of FLOPs /
peak at the row's precision and bytes / memory bandwidth, from the device's attributes) over
the measured time.
"""
import time
import zlib

import numpy as np

from .. import cuda, ops
from ..device import to_numpy
from ..gradcheck import check_backward
from ..ops import precision, versions
from ..ops.base import least_bytes

RTOL = 2e-4  # as tests/test_kernels.py
TENSOR_CORE_RATIO = {"fp32": 1, "tf32": 495 / 67, "bf16": 990 / 67}  # dense peak over FP32's (Hopper)


def forward_backward(device, case, arrays, gy_seed):
    """[output, gradient of each non-constant input] of case.fn on `device`, float32 arrays in,
    NumPy arrays out, for the upstream gradient drawn from gy_seed."""
    import microst
    import microst.functional as F
    xs = [microst.tensor(a, requires_grad=i not in case.constant, device=device) for i, a in enumerate(arrays)]
    y = case.fn(F, *xs)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    return [y.numpy()] + [to_numpy(x.grad) for i, x in enumerate(xs) if i not in case.constant]


def gradient_check(case, seed):
    """The float64 gradient check of the case on cpu (raises AssertionError when backward is wrong)."""
    import microst.functional as F
    return check_backward(lambda *xs: case.fn(F, *xs), case.inputs(dtype=np.float64, seed=seed),
                          no_grad_inputs=case.constant)


def errors(got, expected):
    """(max abs error, max relative error) over the output and every gradient."""
    abs_err = rel_err = 0.0
    for g, e in zip(got, expected):
        if not np.all(np.isfinite(g)):
            return float("inf"), float("inf")
        diff = float(np.abs(g.astype(np.float64) - e).max()) if g.size else 0.0
        abs_err = max(abs_err, diff)
        rel_err = max(rel_err, diff / float(np.abs(e).max(initial=1e-30)))  # of the array's own scale
    return abs_err, rel_err


def median_ms(fn, device, repeats):
    fn()  # warm-up (and the first compile)
    times = []
    for _ in range(repeats):
        cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def peak(device):
    """(FP32 FLOP/s, bytes/s) of the GPU from its attributes (FP32 lanes per SM: 128 on sm_80+);
    TENSOR_CORE_RATIO gives the peaks of the other precisions."""
    import cupy
    a = cupy.cuda.Device().attributes
    flops = a["MultiProcessorCount"] * 128 * 2 * a["ClockRate"] * 1e3
    bandwidth = 2 * a["MemoryClockRate"] * 1e3 * a["GlobalMemoryBusWidth"] / 8
    return flops, bandwidth


def run(family, kernel_version="all", device="emu", scale="small", repeats=None, out=print, only_precision=None):
    """Print the family's table; returns its rows as dicts."""
    names = list(versions.versions(family)) if kernel_version == "all" else [kernel_version]
    runs = [("cpu", "fp32")] if device == "cpu" else \
        [(n, p) for n in names for p in versions.versions(family)[n].precisions or ("fp32",)
         if only_precision in (None, p) or versions.versions(family)[n].precisions is None]
    repeats = repeats or (3 if device == "emu" else 10)
    limits = peak(device) if device == "cuda" else None
    out(f"{family} on {device}, scale {scale}: versions {', '.join(names)}; fwd+bwd, median of {repeats}")
    out(f"{'case':<34} {'version':<9} {'max abs err':>11} {'max rel err':>11} {'ms':>9} {'GFLOP/s':>9} "
        f"{'GB/s':>8}" + (f" {'% floor':>8}" if limits else ""))
    table = []
    for case in ops.cases(family):
        seed = zlib.crc32(case.name.encode()) % 1000
        gradient_check(case, seed)
        arrays = case.inputs(scale, seed=seed)
        references = {}
        flops = case.flops(case.input_shapes(scale))
        for name, prec in runs:
            if prec not in references:
                with precision.rounded_like(prec):
                    references[prec] = forward_backward("cpu", case, arrays, seed + 1)
            expected = references[prec]
            nbytes = least_bytes(case.input_shapes(scale), expected[0].shape)
            pins = {} if name == "cpu" else {family: name}
            with versions.use_kernels(**pins), precision.use_precision(prec), cuda.poisoned():
                got = forward_backward(device, case, arrays, seed + 1)
                abs_err, rel_err = errors(got, expected)
                ok = rel_err <= 2 * RTOL
                ms = median_ms(lambda: forward_backward(device, case, arrays, seed + 1), device, repeats) \
                    if ok else float("nan")
            row = {"family": family, "case": case.name, "version": name, "precision": prec, "device": device,
                   "scale": scale,
                   "max_abs_err": abs_err, "max_rel_err": rel_err, "ms": ms, "gflops": flops / ms / 1e6,
                   "gbps": nbytes / ms / 1e6, "ok": ok}
            label = name if prec == "fp32" else f"{name}/{prec}"
            line = (f"{case.name[:34]:<34} {label:<9} {abs_err:>11.2e} {rel_err:>11.2e} "
                    + (f"{ms:>9.3f} {row['gflops']:>9.2f} {row['gbps']:>8.2f}" if ok else f"{'FAIL':>9}"))
            if limits and ok:
                floor_ms = 1e3 * max(flops / (limits[0] * TENSOR_CORE_RATIO[prec]), nbytes / limits[1])
                row["floor_pct"] = 100 * floor_ms / ms
                line += f" {row['floor_pct']:>7.1f}%"
            out(line)
            table.append(row)
    return table
