"""conv2d forward + backward on `cpu` at the Johnson shapes, against PyTorch's CPU conv when importable.

    python bench/bench_cpu.py [--threads 2] [--repeats 5]

Prints the median time of forward+backward (input, weight and bias gradients) for each shape,
and microst/torch. Both use the same number of threads (BLAS for microst, intra-op for torch).
"""
import argparse
import time

from threads import set_threads

SHAPES = [  # (name, input shape, Cout, kernel, stride, padding)
    ("3->32 9x9 @336", (1, 3, 336, 336), 32, 9, 1, 0),
    ("128->128 3x3 @68", (1, 128, 68, 68), 128, 3, 1, 0),
    ("64->128 3x3 s2 @168", (1, 64, 168, 168), 128, 3, 2, 1),
]


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch = set_threads(args.threads)

    import numpy as np
    import microst
    import microst.functional as F

    rng = np.random.default_rng(0)
    print(f"conv2d forward+backward, float32, {args.threads} threads, median of {args.repeats}")
    print(f"{'shape':24s} {'microst ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
    for name, shape, cout, k, stride, padding in SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((cout, shape[1], k, k), dtype=np.float32) * 0.05
        b = rng.standard_normal(cout, dtype=np.float32)
        xt, wt, bt = (microst.tensor(a, requires_grad=True) for a in (x, w, b))
        y_shape = F.conv2d(xt, wt, bt, stride, padding).shape
        dy = rng.standard_normal(y_shape, dtype=np.float32)

        def ours():
            F.conv2d(xt, wt, bt, stride, padding).backward(dy)

        ms = median_time(ours, args.repeats) * 1e3
        line = f"{name:24s} {ms:11.1f}"
        if torch is not None:
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            tdy = torch.tensor(dy)

            def theirs():
                torch.nn.functional.conv2d(tx, tw, tb, stride, padding).backward(tdy)

            ref = median_time(theirs, args.repeats) * 1e3
            line += f" {ref:9.1f} {ms / ref:6.2f}"
        else:
            line += "  (torch not installed)"
        print(line)


if __name__ == "__main__":
    main()
