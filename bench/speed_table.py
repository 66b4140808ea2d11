"""The seed lecture's speed table: style transfer by optimization (Gatys et al., L-BFGS on the pixels)
at 100, 300 and 500 iterations against one feed-forward pass of a generator (Johnson et al.).

    python bench/speed_table.py [--device cuda] [--sizes 256,512,1024] [--iterations 100,300,500]
                                [--model weights/styles/NAME.h5] [--out bench/RESULTS.md]

Gatys: one L-BFGS run per size (content initialization, the losses' default layers and weights),
the elapsed time read at each iteration count, VGG-16 weights loaded and style Grams computed
before the clock starts. Feed-forward: the median of 5 timed passes (after one warm-up) of the
generator on a batch of one image, no gradient, result brought back to the host. The generator is
microst.models.TransformerNet (untrained: the time does not depend on the weights) unless --model
names a trained checkpoint. Default sizes: 256 on cuda (the seed lecture's size: 500 L-BFGS
iterations there fit a GPU session's minutes; give --sizes 256,512,1024 for more); 32, 64 on
cpu/emu, so that it finishes in minutes (on two shared CPU cores one L-BFGS iteration of VGG-16 takes ~0.5 s at 64x64
and ~6 s at 384x256: 500 iterations at 512x512 would take more than an hour).
Images are synthetic unless --content/--style are given: the time does not depend on them.
"""
import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import microst  # noqa: E402
from microst import device as devices  # noqa: E402
from microst.io import load_image  # noqa: E402
from microst.models import VGG16Features  # noqa: E402
from microst.optimize import stylize  # noqa: E402


def synthetic(size, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(12 * xx * yy)]) + rng.normal(0, 30, (3, size, size))
    return np.clip(img, 0, 255).astype(np.float32)


def square(path, size):
    """The image at `path`, resized so its shorter side is `size`, centre-cropped to size x size."""
    img = load_image(path)
    h, w = img.shape[1:]
    img = load_image(path, round(size * max(h, w) / min(h, w)))
    h, w = img.shape[1:]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[:, top:top + size, left:left + size])


def generator(model, device):
    if model:
        return microst.load_model(model, device)
    from microst.models import TransformerNet
    return TransformerNet().to(device).eval()


def time_feed_forward(net, image, device, repeats=5):
    x = microst.tensor(image[None], device=device)
    times = []
    with microst.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            net(x).numpy()  # .numpy() waits for the GPU
            if i:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_gatys(vgg, content, style, counts):
    """{count: seconds}; a count the run did not reach (L-BFGS stopped) is extrapolated, marked '~'."""
    _, history = stylize(vgg, content, style, iterations=max(counts), progress=False)
    done = history[-1]["iteration"]
    out = {}
    for n in counts:
        if n <= done:
            out[n] = (history[n]["seconds"], "")
        else:
            out[n] = (history[-1]["seconds"] / max(done, 1) * n, "~")
    return out, history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu, emu, cuda or auto (default: $MICROST_DEVICE, else auto)")
    p.add_argument("--sizes", help="image sides, comma-separated (default 256 on cuda, 32,64 otherwise)")
    p.add_argument("--iterations", default="100,300,500", help="L-BFGS iteration counts (default 100,300,500)")
    p.add_argument("--model", help="a trained generator checkpoint (default: an untrained TransformerNet)")
    p.add_argument("--no-generator", action="store_true", help="time Gatys alone")
    p.add_argument("--content", help="content image (default: synthetic)")
    p.add_argument("--style", help="style image (default: synthetic)")
    p.add_argument("--out", help="also append the table to this Markdown file (e.g. bench/RESULTS.md)")
    args = p.parse_args(argv)

    device = devices.resolve(args.device, announce=True)
    counts = sorted(int(n) for n in args.iterations.split(","))
    sizes = [int(s) for s in (args.sizes or ("256" if device == "cuda" else "32,64")).split(",")]
    vgg = VGG16Features().to(device)
    net = None
    if not args.no_generator:
        try:
            net = generator(args.model, device)
        except (ImportError, AttributeError) as e:  # no generator yet: Gatys alone
            print(f"no feed-forward generator ({e}); timing Gatys alone", file=sys.stderr)

    header = (["Image size"] + [f"Gatys {n}" for n in counts] + ["Feed-forward"]
              + [f"Speedup {n}" for n in counts])
    rows = []
    for size in sizes:
        content = square(args.content, size) if args.content else synthetic(size, 0)
        style = square(args.style, size) if args.style else synthetic(size, 1)
        gatys, history = time_gatys(vgg, content, style, counts)
        ff = time_feed_forward(net, content, device) if net is not None else None
        row = [f"{size}x{size}"] + [f"{mark}{s:.2f}s" for s, mark in (gatys[n] for n in counts)]
        row.append(f"{ff:.3f}s" if ff is not None else "-")
        row += [f"{mark}{s / ff:.0f}x" if ff else "-" for s, mark in (gatys[n] for n in counts)]
        rows.append(row)
        print(f"{size}: {history[-1]['iteration']} iterations, {history[-1]['evals']} loss evaluations, "
              f"loss {history[0]['total']:.4g} -> {history[-1]['total']:.4g}", file=sys.stderr)

    cpu = platform.processor() or platform.machine()
    title = (f"Speed table, {datetime.date.today()}, device {device} ({cpu}, {os.cpu_count()} CPUs visible), "
             f"generator {args.model or 'TransformerNet (untrained)' if net is not None else 'none'}")
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
