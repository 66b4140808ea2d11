"""Speed of the emu device: compile time, a tiled matmul, row statistics, the fiber switch.

    python bench/bench_emu.py [--repeats 5]

Times are medians of process CPU time (the emu device runs on the calling thread, so CPU time
is its time even on a busy machine). The kernels are the test kernels of tests/emu_kernels.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from microst import cuda

KERNELS = Path(__file__).resolve().parent.parent / "tests" / "emu_kernels"


def median_cpu(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    # Compile: a fresh cache, so that the runtime library is built first, then one module.
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MICROST_CACHE"] = cache
        cuda.get_kernel("emu", str(KERNELS / "elementwise.cu"), "saxpy")  # builds the runtime too
        start = time.perf_counter()
        children = os.times().children_user + os.times().children_system
        cuda.get_kernel("emu", str(KERNELS / "matmul.cu"), "matmul")
        children = os.times().children_user + os.times().children_system - children
        print(f"compile matmul.cu: {time.perf_counter() - start:.2f} s wall, {children:.2f} s g++ CPU")

        n = 256
        a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
        c = np.empty((n, n), np.float32)
        matmul = cuda.get_kernel("emu", str(KERNELS / "matmul.cu"), "matmul")
        t = median_cpu(lambda: matmul((n // 16, n // 16), (16, 16), (a, b, c, *map(np.int32, (n, n, n)))), args.repeats)
        assert np.allclose(c, a @ b, rtol=1e-4, atol=1e-3)
        print(f"matmul 256^3, 16x16 tiles, __syncthreads: {t * 1e3:.1f} ms")

        x = rng.random((64, 4096), np.float32)
        mean, rstd = np.empty(64, np.float32), np.empty(64, np.float32)
        stats = cuda.get_kernel("emu", str(KERNELS / "reduce.cu"), "row_stats")
        t = median_cpu(lambda: stats(64, 256, (x, mean, rstd, np.int32(4096), np.float32(1e-5))), args.repeats)
        assert np.allclose(mean, x.mean(1), atol=1e-5)
        print(f"row statistics 64x4096, 256 threads, warp shuffles: {t * 1e3:.1f} ms")

        # A wait at a barrier: one fiber switch and the scheduling (256 threads x 1000 barriers).
        barriers = cuda.get_kernel("emu", str(KERNELS / "reduce.cu"), "barrier_loop")
        out = np.empty(256, np.int32)
        t = median_cpu(lambda: barriers(1, 256, (out, np.int32(1000))), args.repeats)
        print(f"barrier wait, per thread: {t / (256 * 1000) * 1e9:.1f} ns")


if __name__ == "__main__":
    main()
