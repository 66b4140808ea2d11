"""The kernel lab: validate and time one kernel family's versions, or count a network's FLOPs.

    python -m microst.lab --list
    python -m microst.lab FAMILY [--kernel-version V|all] [--device emu|cuda|cpu] [--scale small|full]
    python -m microst.lab flops --net johnson|texture|vgg --size S [--batch B] [--train] [--device cuda|emu] [--predict]
    python -m microst.lab registers [--arch sm_90]

FAMILY: conv, norm, loss, pool, pad, activation or arith. The cases are the family's own
(microst.ops.<family>.cases()); each is checked (float64 gradient check on cpu, every version
against the NumPy reference) before it is timed. --scale small (the default on emu and cpu) keeps
emu runs to seconds (emu does about 0.5 GFLOP/s); full (the default on cuda) uses the networks'
layer shapes. MICROST_KERNELS and --kernel-version pin versions (microst.ops.versions); a
tensor-core version runs at each precision it has (v3: tf32, bf16), --precision P at that one
only (and flops counts the selection at P).
`registers` compiles every kernel of every version as the cuda device does (NVRTC, no GPU needed:
the nvidia-cuda-nvrtc wheel) and prints ptxas's registers, spills and shared memory per kernel.
"""
import sys

from .. import cli
from ..errors import UserError, cli_main
from ..ops import FAMILIES, PRECISIONS, use_precision, versions


def build_parser():
    p = cli.ArgumentParser("python -m microst.lab", __doc__)
    p.add_argument("what", nargs="?", metavar="FAMILY|flops|registers",
                   help=f"a kernel family ({', '.join(FAMILIES)}), flops or registers")
    p.add_argument("--list", action="store_true", help="list the families, their versions and what each changes")
    p.add_argument("--kernel-version", default="all", metavar="V|all", help="the version to run (default all)")
    p.add_argument("--device", choices=("emu", "cuda", "cpu"), default=None,
                   help="family: where to run (default emu); flops: whose kernel selection counts (default cuda)")
    p.add_argument("--scale", choices=("small", "full"), default=None, help="case sizes (default: full on cuda)")
    p.add_argument("--repeats", type=cli.positive_int, default=None, help="timed runs per row (median)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="only this GEMM precision (default: every precision of each version; flops: the device's)")
    p.add_argument("--net", choices=("johnson", "texture", "vgg"), default="johnson", help="flops: the network")
    p.add_argument("--size", type=cli.pixels, default=512, help="flops: image side (default 512)")
    p.add_argument("--batch", type=cli.positive_int, default=1, help="flops: batch size (default 1)")
    p.add_argument("--train", action="store_true", help="flops: a training step instead of inference")
    p.add_argument("--predict", action="store_true", help="flops: add the predicted H100/H200 time of each pass")
    p.add_argument("--arch", default="sm_90", help="registers: the GPU architecture (default sm_90)")
    return p


def list_versions(out=print):
    for family in FAMILIES:
        defaults = versions.DEFAULTS[family]
        out(f"{family}: default emu={defaults['emu']} cuda={defaults['cuda']}")
        for name, v in versions.versions(family).items():
            out(f"  {name}  {v.summary}")


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.list:
        list_versions()
        return 0
    if args.what is None:
        raise UserError("give a kernel family (" + ", ".join(FAMILIES) + "), flops, registers, or --list")
    use_precision(args.precision)
    if args.what == "flops":
        from .flops import report
        device = args.device or "cuda"
        if device == "cpu":
            raise UserError("flops --device cpu: the cpu runs no kernel versions; count for emu or cuda")
        report(args.net, args.size, args.batch, args.train, device, predict=args.predict)
        return 0
    if args.what == "registers":
        from .registers import table
        table(args.arch)
        return 0
    if args.what not in FAMILIES:
        raise UserError(f"{args.what!r} is not a kernel family; choose one of {', '.join(FAMILIES)}, flops or registers")
    if args.kernel_version != "all" and args.kernel_version not in versions.versions(args.what):
        raise UserError(f"--kernel-version {args.kernel_version}: {args.what} has versions "
                        f"{', '.join(versions.versions(args.what))} (or all)")
    device = args.device or "emu"
    if device == "cuda":
        from ..device import cuda_available
        if not cuda_available():
            raise UserError("--device cuda: no NVIDIA GPU with CuPy here; use --device emu")
    from .family import run
    run(args.what, args.kernel_version, device, args.scale or ("full" if device == "cuda" else "small"), args.repeats,
        only_precision=args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
