"""microst against its PyTorch twin (bench/torch_twin.py: the same generator, VGG-16 and loss, with the
same weights) on one device: stylize at 256², 512², 1024² and 1920x1080, and one training iteration
at 256² batch 4 (generator forward + VGG-16 perceptual loss + backward + Adam).

    PYTHONPATH=. python3 bench/compare_torch.py [--device cuda] [--out bench/results.json] [--repeats 20]
    PYTHONPATH=. python3 bench/compare_torch.py --device emu --tiny     # the test's run: tiny sizes

Outputs are compared first (stylize: max |microst - torch| in pixels; train: the total loss of the
first step, relative), then each side is timed: medians of --repeats after two warm-ups, under CUDA
events on cuda (a host clock around a synchronized call elsewhere). microst runs at each
--precision (fp32, tf32, bf16: its GEMMs on CUDA cores or tensor cores), each against the PyTorch
modes of the same precision, eager, with cudnn.benchmark: fp32 against "fp32" (TF32 switched off),
tf32 against PyTorch's default TF32 convolutions ("tf32") and channels_last tensors
("tf32-channels_last"), bf16 against bf16 autocast ("bf16-autocast"); on a CPU device PyTorch runs
float32 only. One row per case, microst precision and PyTorch mode goes to --out (JSON: case,
precision, torch_mode, microst_ms, torch_ms, ratio, device, date, commit, check), and a table to stdout.
Without torch the microst rows are still measured and written (torch_ms and ratio null).
"""
import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
STYLE = ROOT / "weights" / "styles" / "great_wave.jpg"
CASES = ("stylize-256", "stylize-512", "stylize-1024", "stylize-1920x1080", "train-256-b4")
TINY = ("stylize-32", "stylize-40x24", "train-32-b1")
KEYS = ("case", "precision", "torch_mode", "microst_ms", "torch_ms", "ratio", "device", "date", "commit", "check")
PRECISIONS = ("fp32", "tf32", "bf16")
TORCH_MODES = {"fp32": ("fp32",), "tf32": ("tf32", "tf32-channels_last"), "bf16": ("bf16-autocast",)}  # on cuda


def parse_case(case):
    """(kind, height, width, batch) of 'stylize-512', 'stylize-1920x1080' (width x height) or 'train-256-b4'."""
    kind, size, *rest = case.split("-")
    w, _, h = size.partition("x")
    return kind, int(h or w), int(w), int(rest[0][1:]) if rest else 1


def timer(device):
    """ms(fn): the median time of fn over repeats (CUDA events on cuda, a synchronized clock elsewhere)."""
    def ms(fn, repeats, events=None):
        fn(), fn()
        times = []
        for _ in range(repeats):
            if events:
                start, end = events()
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(events.elapsed(start, end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - t0))
        return float(np.median(times))
    return ms


class Events:
    def __init__(self, new, elapsed):
        self.new, self.elapsed = new, elapsed

    def __call__(self):
        return self.new(), self.new()


def microst_side(device, h, w, batch, train, style_size, width):
    """(run() -> output array or total loss, model, loss) of microst for one case."""
    import microst
    from microst.io import load_image
    from microst.lab.flops import random_vgg
    from microst.losses import PerceptualLoss
    model = initial_model(device, width)
    x = microst.tensor(np.random.default_rng(1).uniform(0, 255, (batch, 3, h, w)).astype(np.float32), device=device)
    if not train:
        model.eval()

        def run():
            with microst.no_grad():
                return model(x).numpy()
        return run, model, None
    style = load_image(STYLE, style_size)[None]
    loss = PerceptualLoss(random_vgg().to(device), microst.tensor(style, device=device))
    optimizer = microst.optim.Adam(model.parameters())

    def step():
        terms = loss(model(x), x)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        return terms["total"]
    return step, model, (loss, style)


def torch_side(torch, device, model, loss_style, h, w, batch, mode):
    from torch_twin import johnson_twin, perceptual_twin
    dev = "cuda" if device == "cuda" else "cpu"
    twin = johnson_twin(model, dev)
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 255, (batch, 3, h, w)).astype(np.float32), device=dev)
    if dev == "cuda":  # "fp32": no TF32 anywhere; the other modes PyTorch's default (TF32 convolutions)
        torch.backends.cudnn.allow_tf32 = mode != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = False
    if mode.endswith("channels_last"):
        twin, x = twin.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if mode == "bf16-autocast" else _nothing()
    if loss_style is None:
        def run():
            with torch.no_grad(), autocast:
                return twin(x)
        return run
    loss, style = loss_style
    tloss = perceptual_twin(loss, style, dev)
    optimizer = torch.optim.Adam(twin.parameters())
    twin.train()

    def step():
        with autocast:
            total = tloss(twin(x), x)["total"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return total
    return step


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def compare(case, device, precision, repeats, torch, modes, style_size, width):
    from microst.ops import use_precision
    use_precision(precision)
    kind, h, w, batch = parse_case(case)
    ms = timer(device)
    events = None
    if device == "cuda":
        import cupy
        events = Events(cupy.cuda.Event, cupy.cuda.get_elapsed_time)
    run, model, loss_style = microst_side(device, h, w, batch, kind == "train", style_size, width)
    reference = np.array(run().item() if kind == "train" else run())  # before any timed step moves the weights
    microst_ms = ms(run, repeats, events)
    rows = []
    for mode in modes if torch is not None else [None]:
        row = {"case": case, "precision": precision, "torch_mode": mode, "microst_ms": microst_ms, "torch_ms": None,
               "ratio": None, "check": None}
        if mode is not None:
            trun = torch_side(torch, device, initial_model("cpu", width), loss_style, h, w, batch, mode)
            theirs = trun()
            theirs = np.array(float(theirs.detach()) if kind == "train" else theirs.float().cpu().numpy())
            row["check"] = float(np.abs(reference - theirs).max() / (abs(float(reference)) if kind == "train" else 1.0))
            tevents = Events(lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b)) \
                if device == "cuda" else None
            row["torch_ms"] = ms(trun, repeats, tevents)
            row["ratio"] = microst_ms / row["torch_ms"]
        rows.append(row)
    return rows


def initial_model(device, width):
    """The default TransformerNet (instance norm, transposed convs) at `width`, seed 0: both sides start
    from these weights (the timed microst steps move microst's)."""
    import microst
    from microst.models.johnson import TransformerNet
    microst.manual_seed(0)
    return TransformerNet(width=width).to(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu", "emu"))
    parser.add_argument("--cases", nargs="+", help=f"default {' '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and one repeat (the test's run)")
    parser.add_argument("--no-torch", action="store_true", help="measure microst alone")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="microst's precisions (default all three; on cpu fp32)")
    parser.add_argument("--out", type=Path, help="JSON file for the rows (default: print only)")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.backends.cudnn.benchmark = True
        except ImportError:
            print("torch is not importable: microst rows only")
    parser_precisions = args.precision or (PRECISIONS if args.device != "cpu" else ("fp32",))
    cases = args.cases or (TINY if args.tiny else CASES)
    repeats = 1 if args.tiny else args.repeats
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    stamp = {"device": _device_name(args.device), "date": datetime.date.today().isoformat(), "commit": commit}
    rows = []
    print("| case | microst precision | torch mode | microst ms | torch ms | microst/torch | check |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in cases:
        for precision in parser_precisions:
            modes = TORCH_MODES[precision] if args.device == "cuda" else ("fp32",)
            for row in compare(case, args.device, precision, repeats, torch, modes, 32 if args.tiny else 256,
                               0.125 if args.tiny else 1.0):
                row.update(stamp)
                rows.append({k: row[k] for k in KEYS})
                fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
                print(f"| {row['case']} | {precision} | {row['torch_mode'] or '-'} | {row['microst_ms']:.3f} | "
                      f"{fmt(row['torch_ms'], '.3f')} | {fmt(row['ratio'], '.2f')} | {fmt(row['check'], '.2g')} |",
                      flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


def _device_name(device):
    if device == "cuda":
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return device


if __name__ == "__main__":
    sys.exit(main())
