"""Every kernel family's cases on `cuda`, at the shapes of Johnson's network (scale "full", the cases
that declare one): each version first validated against the `cpu` path, then forward + backward
timed (median of --repeats), beside the same expression in PyTorch (cuDNN, its default TF32
convolutions) in the same process when torch is importable.

    python bench/bench_kernels.py [--repeats 20] [--family conv] [--kernel-version all]

The cases are the families' own (microst.ops.<family>.cases()): a case's fn(F, *xs) is written
against microst.functional, whose names are torch.nn.functional's, so torch runs it unchanged
(gram, tv_loss, cat and the fused ops get their torch twins here). `python -m microst.lab FAMILY --device cuda`
prints the same validation and times without torch.
"""
import argparse
import sys
import types
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microst import ops  # noqa: E402
from microst.lab.family import errors, forward_backward, median_ms  # noqa: E402
from microst.ops import versions  # noqa: E402


def torch_namespace(torch):
    import torch.nn.functional as TF

    def gram(x):
        n, c, h, w = x.shape
        f = x.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    def tv_loss(x):
        return (x[:, :, 1:] - x[:, :, :-1]).pow(2).mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean()

    def instance_norm_relu(x, weight=None, bias=None, eps=1e-5):
        return TF.relu(TF.instance_norm(x, weight=weight, bias=bias, eps=eps))

    def batch_norm_relu(*args, **kwargs):
        return TF.relu(TF.batch_norm(*args, **kwargs))

    def upsample_conv2d(x, weight, bias=None):
        return TF.conv2d(TF.interpolate(x, scale_factor=2), weight, bias, padding=1)

    return types.SimpleNamespace(**{k: getattr(TF, k) for k in dir(TF) if not k.startswith("_")},
                                 gram=gram, tv_loss=tv_loss, cat=torch.cat, instance_norm_relu=instance_norm_relu,
                                 batch_norm_relu=batch_norm_relu, upsample_conv2d=upsample_conv2d)


def torch_forward_backward(torch, F, case, arrays, gy):
    xs = [torch.as_tensor(a, device="cuda").requires_grad_(i not in case.constant) for i, a in enumerate(arrays)]
    y = case.fn(F, *xs)
    y.backward(gy)
    return y


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--family", choices=ops.FAMILIES, help="one family only")
    parser.add_argument("--kernel-version", default=None, help="a version, or all (default: the selected one)")
    args = parser.parse_args()
    import cupy
    try:
        import torch
        torch.backends.cudnn.benchmark = True
        TF = torch_namespace(torch)
    except ImportError:
        torch = None
    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}; forward + backward, median of "
          f"{args.repeats}")
    print(f"{'case':40s} {'version':>7s} {'ours ms':>9s} {'GFLOP/s':>9s} {'torch ms':>9s} {'ours/torch':>10s}")
    for family in [args.family] if args.family else ops.FAMILIES:
        names = list(versions.versions(family)) if args.kernel_version == "all" else \
            [args.kernel_version or versions.selected(family, "cuda").name]
        for case in ops.cases(family):
            if case.full is None:
                continue
            seed = zlib.crc32(case.name.encode()) % 1000
            arrays = case.inputs("full", seed=seed)
            expected = forward_backward("cpu", case, arrays, seed + 1)
            torch_ms = None
            if torch is not None:
                gy = torch.as_tensor(np.random.default_rng(seed + 1).standard_normal(expected[0].shape)
                                     .astype(np.float32), device="cuda")
                torch_ms = median_ms(lambda: torch_forward_backward(torch, TF, case, arrays, gy), "cuda", args.repeats)
            for name in names:
                with versions.use_kernels(**{family: name}):
                    _, rel = errors(forward_backward("cuda", case, arrays, seed + 1), expected)
                    if rel > 1e-3:
                        print(f"{case.name[:40]:40s} {name:>7s} INVALID vs cpu: max relative error {rel:.3g}; not timed")
                        continue
                    ms = median_ms(lambda: forward_backward("cuda", case, arrays, seed + 1), "cuda", args.repeats)
                flops = case.flops(case.input_shapes("full"))
                line = f"{case.name[:40]:40s} {name:>7s} {ms:9.3f} {flops / ms / 1e6:9.1f}"
                if torch_ms is not None:
                    line += f" {torch_ms:9.3f} {ms / torch_ms:10.2f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
