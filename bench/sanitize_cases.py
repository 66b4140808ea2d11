"""Small cases that launch every kernel of every version, on cuda, for compute-sanitizer
(bench/gpu_check.sh): per family version (and precision, for a tensor-core version), the smallest cases that together reach all of its kernels
(found by counting their launches on emu, dry), each checked against the cpu path. Every launch is
synchronized and checked (MICROST_CUDA_SYNC=1), and CuPy's memory pool is off so that every array
is its own allocation and an access past its end is outside any allocation.

    compute-sanitizer --tool memcheck python3 bench/sanitize_cases.py [--device emu]
"""
import argparse
import os
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "emu"))
    args = parser.parse_args()
    os.environ["MICROST_CUDA_SYNC"] = "1"
    if args.device == "cuda":
        import cupy
        cupy.cuda.set_allocator(None)  # plain cudaMalloc per array
    from microst import ops
    from microst.lab.family import errors, forward_backward
    from microst.ops import precision, versions
    from microst import cuda
    failed = 0
    for family in ops.FAMILIES:
        for name, version in versions.versions(family).items():
            wanted = {kernel for _, kernel in version.kernels.values()}
            for prec in version.precisions or ("fp32",):  # a tensor-core version: its kernels per precision
                with ops.use_precision(prec):
                    for case in covering(family, name, wanted, cuda, forward_backward):
                        seed = zlib.crc32(case.name.encode()) % 1000
                        arrays = case.inputs(seed=seed)
                        with precision.rounded_like(prec):
                            expected = forward_backward("cpu", case, arrays, seed + 1)
                        with versions.use_kernels(**{family: name}):
                            _, rel = errors(forward_backward(args.device, case, arrays, seed + 1), expected)
                        status = "ok" if rel < 1e-3 else "WRONG"
                        failed += status != "ok"
                        print(f"{family}={name} {prec} {case.name}: {status} (max relative error {rel:.2e})",
                              flush=True)
            wanted -= {"adam_step_v2", "nonfinite_flag_v2"}  # adam_matches runs them
            if wanted:
                print(f"{family}={name}: no case launches {', '.join(sorted(wanted))}", flush=True)
    failed += not adam_matches(args.device)
    sys.exit(1 if failed else 0)


def adam_matches(device):
    """The fused Adam (and its non-finite flag) on `device` against the cpu's Adam, three steps."""
    import numpy as np
    import microst
    from microst.device import move, to_numpy
    from microst.ops import adam
    results = {}
    for d in ("cpu", device):
        rng = np.random.default_rng(0)
        params = [microst.nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in ((5000,), (3, 7))]
        for p in params:
            p.data, p.device = move(p.data, d), d
        opt, flag = microst.optim.Adam(params, lr=1e-2), adam.nonfinite_flag(d) if d != "cpu" else None
        for _ in range(3):
            for p in params:
                p.grad = move(rng.standard_normal(p.shape).astype(np.float32), d)
            if flag is not None:
                adam.check_finite(d, move(np.array(1.0, np.float32), d), flag)
            opt.step(skip=flag)
        results[d] = [to_numpy(p.data) for p in params]
    ok = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(results[device], results["cpu"]))
    print(f"arith adam_step + nonfinite_flag: {'ok' if ok else 'WRONG'}", flush=True)
    return ok


def covering(family, name, wanted, cuda, forward_backward):
    """The smallest cases, smallest first, that launch every kernel in `wanted` (emptied as they are)."""
    from microst import ops
    from microst.ops import versions
    chosen = []
    for case in sorted(ops.cases(family), key=lambda c: sum(int(__import__("numpy").prod(s)) for s in c.shapes)):
        if not wanted:
            break
        with versions.use_kernels(**{family: name}), cuda.counting(dry=True) as launched:
            forward_backward("emu", case, case.inputs(), 0)
        if wanted & set(launched):
            chosen.append(case)
            wanted -= set(launched)
    return chosen


if __name__ == "__main__":
    main()
