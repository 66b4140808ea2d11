"""Stylize latency of TransformerNet at 256², 512², 1024² on a microst device, against PyTorch's CPU
time for the same architecture and weights (bench/torch_twin.py) when torch is importable, and
onnxruntime's for the twin exported to ONNX when onnxruntime is (--no-onnx leaves it out).

    python bench/bench_stylize.py [--device cpu] [--threads 2] [--sizes 256 512 1024] [--repeats 3]
                                  [--model great_wave | PATH] [--profile 512] [--no-onnx]

One image (batch 1), inference (no graph), median of --repeats after one warm-up, the engines
taking turns in every repeat (a busy machine slows all alike). Before timing, the twin's output
(and onnxruntime's) is compared with microst's on the same input (max |difference| in pixels).
--profile S prints the time per op of one microst forward pass at S x S.
Every engine gets the same number of threads (BLAS for microst, intra-op for torch and onnxruntime).

Results: bench/RESULTS.md.
"""
import argparse
import sys
import tempfile
from pathlib import Path

from threads import blas_kernels, set_threads
from timing import interleaved_times, profile_once

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="bundled style or checkpoint (default: the default architecture, random)")
    parser.add_argument("--profile", type=int, metavar="S", help="per-op time of one forward pass at S x S")
    parser.add_argument("--no-onnx", action="store_true", help="leave onnxruntime out")
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
    print(f"NumPy's BLAS: {blas_kernels()}")

    rng = np.random.default_rng(0)
    twin = onnx = None
    if torch is not None:
        twin = johnson_twin(model)
        x = (rng.random((1, 3, 96, 160)) * 255).astype(np.float32)
        with microst.no_grad(), torch.no_grad():
            ours = model(microst.tensor(x, device=device)).numpy()
            theirs = twin(torch.from_numpy(x)).numpy()
        print(f"outputs compared at 96x160: max |microst - torch| = {np.abs(ours - theirs).max():.2e} "
              f"(pixels in 0..255)")
        onnx = None if args.no_onnx else onnx_runner(torch, twin, args.threads)
        if onnx is not None:
            print(f"                            max |microst - onnxruntime| = {np.abs(ours - onnx(x)).max():.2e}")
    else:
        print("torch is not installed: microst times only (pip install torch to compare)")

    if args.profile:
        x = microst.tensor((rng.random((1, 3, args.profile, args.profile)) * 255).astype(np.float32), device=device)
        with microst.no_grad():
            profile_once(lambda: model(x), f"one forward pass at {args.profile}x{args.profile}")

    columns = ["torch"] * (twin is not None) + ["onnxruntime"] * (onnx is not None)
    print(f"{'size':>6s} {'microst s':>10s}" + "".join(f" {name + ' s':>13s} {'microst/' + name:>19s}"
                                                     for name in columns))
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
        if onnx is not None:
            onnx(x)  # exports and loads the graph of this size before anything is timed
            runs["onnxruntime"] = lambda: onnx(x)
        times = interleaved_times(runs, args.repeats)
        print(f"{size:>5d}² {times['microst']:10.3f}" + "".join(
            f" {times[name]:13.3f} {times['microst'] / times[name]:19.2f}" for name in columns), flush=True)


def onnx_runner(torch, twin, threads):
    """x -> onnxruntime's output for the twin exported to ONNX (the TorchScript exporter, dynamo=False),
    or None when onnxruntime is missing. One graph per input shape: the twin's padding is Python
    arithmetic on the shape, which tracing turns into constants."""
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: no ONNX column (pip install onnx onnxruntime)")
        return None
    folder, sessions = Path(tempfile.mkdtemp()), {}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

    def run(x):
        if x.shape not in sessions:
            path = folder / f"johnson_{'x'.join(map(str, x.shape))}.onnx"
            torch.onnx.export(twin, torch.from_numpy(x), str(path), dynamo=False, input_names=["image"],
                              output_names=["stylized"])
            sessions[x.shape] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sessions[x.shape].run(None, {"image": x})[0]

    return run


if __name__ == "__main__":
    main()
