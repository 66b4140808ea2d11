"""Stylize latency of TransformerNet at 256², 512², 1024² on a microst device, against PyTorch's CPU
time for the same architecture and weights (bench/torch_twin.py) when torch is importable.

    python bench/bench_stylize.py [--device cpu] [--threads 2] [--sizes 256 512 1024] [--repeats 3]
                                  [--model great_wave | PATH] [--profile 512]

One image (batch 1), inference (no graph), median of --repeats after one warm-up, microst and
torch taking turns (a busy machine slows both alike). Before timing,
the twin's output is compared with microst's on the same input (max |difference| in pixels).
--profile S prints the time per op type of one microst forward pass at S x S.
Both libraries get the same number of threads (BLAS for microst, intra-op for torch).

Results: bench/RESULTS.md.
"""
import argparse
import sys
import time
from pathlib import Path

from threads import set_threads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def profile(model, x, microst):
    """Seconds per op (microst/ops forward) of one forward pass."""
    from microst import autograd
    totals = {}
    real_apply = autograd.apply

    def timed(op_class, *inputs, **params):
        start = time.perf_counter()
        out = real_apply(op_class, *inputs, **params)
        name = op_class.name
        if name.startswith("conv"):  # one line per layer shape: input -> weight
            name = f"{name} {tuple(inputs[0].shape[1:])} w{tuple(inputs[1].shape)}"
        totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
        return out

    autograd.apply = timed
    import microst.functional as F
    F.apply = timed
    try:
        with microst.no_grad():
            start = time.perf_counter()
            model(x)
            total = time.perf_counter() - start
    finally:
        autograd.apply = real_apply
        F.apply = real_apply
    return total, totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="bundled style or checkpoint (default: the default architecture, random)")
    parser.add_argument("--profile", type=int, metavar="S", help="per-op time of one forward pass at S x S")
    args = parser.parse_args()
    torch = set_threads(args.threads)

    import numpy as np
    import microst
    from microst.models import TransformerNet
    if torch is not None:
        from torch_twin import johnson_twin

    device = microst.device.resolve(args.device)
    if args.model:
        model = microst.load_model(args.model, device=device)
    else:
        microst.manual_seed(0)
        model = TransformerNet().eval().to(device)
    print(f"TransformerNet {model.config}, {sum(p.size for p in model.parameters())} parameters")
    print(f"device {device}, {args.threads} threads, batch 1, median of {args.repeats} after a warm-up")

    rng = np.random.default_rng(0)
    twin = None
    if torch is not None:
        twin = johnson_twin(model)
        x = (rng.random((1, 3, 96, 160)) * 255).astype(np.float32)
        with microst.no_grad(), torch.no_grad():
            ours = model(microst.tensor(x, device=device)).numpy()
            theirs = twin(torch.from_numpy(x)).numpy()
        print(f"outputs compared at 96x160: max |microst - torch| = {np.abs(ours - theirs).max():.2e} "
              f"(pixels in 0..255)")
    else:
        print("torch is not installed: microst times only (pip install torch to compare)")

    if args.profile:
        x = microst.tensor((rng.random((1, 3, args.profile, args.profile)) * 255).astype(np.float32), device=device)
        model(x)
        total, totals = profile(model, x, microst)
        print(f"\nprofile of one forward pass at {args.profile}x{args.profile}: {total:.3f} s")
        for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {name:52s} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
        print()

    print(f"{'size':>6s} {'microst s':>10s} {'torch s':>8s} {'ratio':>6s}")
    for size in args.sizes:
        x = (rng.random((1, 3, size, size)) * 255).astype(np.float32)
        xt = microst.tensor(x, device=device)

        def ours():
            with microst.no_grad():
                model(xt).numpy()

        runs = {"microst": ours}
        if twin is not None:
            xtorch = torch.from_numpy(x)

            def theirs():
                with torch.no_grad():
                    twin(xtorch)

            runs["torch"] = theirs
        times = interleaved_times(runs, args.repeats)
        line = f"{size:>5d}² {times['microst']:10.3f}"
        if twin is not None:
            line += f" {times['torch']:8.3f} {times['microst'] / times['torch']:6.2f}"
        print(line, flush=True)


def interleaved_times(runs, repeats):
    """Median seconds of each function, run in turn (so that a busy machine slows all alike)."""
    for fn in runs.values():
        fn()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


if __name__ == "__main__":
    main()
