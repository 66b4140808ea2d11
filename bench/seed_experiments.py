"""The seed lecture's experiments, small enough for a CPU; rerun them bigger on a GPU.

    python bench/seed_experiments.py train --style STYLE.jpg --data PHOTOS/ --runs runs/exp \\
        [--iterations 400 --image-size 96 --device cpu]     # resumable: a finished run is skipped
    python bench/seed_experiments.py report --runs runs/exp --photos A.jpg B.jpg [--size 256] \\
        --out docs/experiments                                # pictures (JPEG) and results.json

The runs (one style, the same photos, iterations and seed for all; microst.train):
    johnson_instance, johnson_batch, johnson_none    TransformerNet, transposed-conv upsampling
    johnson_instance_nearest                          nearest x2 + conv instead
    texture_instance, texture_batch, texture_none     Ulyanov's TextureNet

The report, per question, with the numbers it prints (and writes to results.json):
1. Normalization (batch vs instance vs none), per generator: each model's output side by side and
   the final training losses (mean of the last 10% of iterations).
2. Checkerboard: transposed conv vs nearest upsampling, a zoomed crop of each, and a checkerboard
   measure: mean |y00 + y11 - y01 - y10| over the 2x2 cells (the period-2 pattern), in pixels.
3. Instance norm's robustness to the content's contrast and brightness: one photo at three
   levels, stylized by the IN and the BN model, and the mean |output(level) - output(original)|.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microst.checkpoint import load_model  # noqa: E402
from microst.io import load_image, save_pillow  # noqa: E402
from microst.sheet import compose_sheet  # noqa: E402
from microst.transfer import stylize  # noqa: E402

RUNS = {
    "johnson_instance": ["--model", "johnson", "--norm", "instance", "--upsample", "transpose"],
    "johnson_batch": ["--model", "johnson", "--norm", "batch", "--upsample", "transpose"],
    "johnson_none": ["--model", "johnson", "--norm", "none", "--upsample", "transpose"],
    "johnson_instance_nearest": ["--model", "johnson", "--norm", "instance", "--upsample", "nearest"],
    "texture_instance": ["--model", "texture", "--norm", "instance"],
    "texture_batch": ["--model", "texture", "--norm", "batch"],
    "texture_none": ["--model", "texture", "--norm", "none"],
}
LEVELS = {"low contrast, darker": (0.5, -40.0), "original": (1.0, 0.0), "high contrast, brighter": (1.5, 30.0)}


def train(args, extra):
    for name, options in RUNS.items():
        if args.only and name not in args.only:
            continue
        out = args.runs / name
        model = out / f"{Path(args.style).stem}.h5"
        if model.exists():
            print(f"{name}: done ({model})")
            continue
        resume = out / "checkpoint.h5"
        command = [sys.executable, "-m", "microst.train"] + (
            ["--resume", str(resume)] if resume.exists() else
            ["--style", str(args.style), "--data", str(args.data), "--out", str(out), "--seed", str(args.seed),
             "--iterations", str(args.iterations), "--image-size", str(args.image_size), *options,
             *(["--width", str(args.width)] if name.startswith("johnson") else []), *extra])
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)


def final_losses(run, fraction=0.1):
    history = json.loads((run / "history.json").read_text())
    n = max(1, int(len(history["total"]) * fraction))
    return {k: float(np.mean(v[-n:])) for k, v in history.items() if k != "iteration"}


def checkerboard(y):
    """Mean |y00 + y11 - y01 - y10| over the 2x2 cells of a (3, H, W) image, in pixels."""
    h, w = (s // 2 * 2 for s in y.shape[1:])
    y = y[:, :h, :w].astype(np.float64)
    return float(np.abs(y[:, 0::2, 0::2] + y[:, 1::2, 1::2] - y[:, 0::2, 1::2] - y[:, 1::2, 0::2]).mean())


def zoom(y, size=48, factor=4):
    """The centre size x size crop, magnified `factor` times (nearest: every pixel a block)."""
    h, w = y.shape[1:]
    crop = y[:, (h - size) // 2:(h + size) // 2, (w - size) // 2:(w + size) // 2]
    return crop.repeat(factor, axis=1).repeat(factor, axis=2)


def adjusted(photo, contrast, brightness):
    return np.clip((photo - 127.5) * contrast + 127.5 + brightness, 0, 255).astype(np.float32)


def report(args):
    args.out.mkdir(parents=True, exist_ok=True)
    models = {name: load_model(args.runs / name / f"{args.style_name}.h5") for name in RUNS
              if (args.runs / name / f"{args.style_name}.h5").exists()}
    photos = [load_image(p, args.size) for p in args.photos]
    # Runs reported earlier (their folders may be gone) keep their numbers; these runs replace theirs.
    saved = args.out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results.setdefault("losses", {}).update({name: final_losses(args.runs / name) for name in models})

    for generator in ("johnson", "texture"):
        names = [n for n in (f"{generator}_instance", f"{generator}_batch", f"{generator}_none") if n in models]
        if not names:
            continue
        panels, labels = [], []
        for photo in photos:
            panels += [photo] + [stylize(models[n], photo, seed=0) for n in names]
            labels += ["photo"] + [n.split("_")[1] for n in names]
        save_pillow(args.out / f"norms_{generator}.jpg", compose_sheet(panels, labels, columns=len(names) + 1), 85)

    pair = [n for n in ("johnson_instance", "johnson_instance_nearest") if n in models]
    if len(pair) == 2:
        outputs = {n: stylize(models[n], photos[0]) for n in pair}
        results["checkerboard"] = {n: checkerboard(y) for n, y in outputs.items()}
        results["checkerboard"]["photo"] = checkerboard(photos[0])
        save_pillow(args.out / "upsampling_zoom.jpg",
                    compose_sheet([zoom(outputs[n]) for n in pair], ["transposed conv", "nearest + conv"]), 90)

    pair = [n for n in ("johnson_instance", "johnson_batch") if n in models]
    if len(pair) == 2:
        panels, labels, robustness = [], [], {}
        for name in pair:
            base = stylize(models[name], photos[0])
            robustness[name] = {}
            for level, (c, b) in LEVELS.items():
                x = adjusted(photos[0], c, b)
                y = base if level == "original" else stylize(models[name], x)
                robustness[name][level] = float(np.abs(y - base).mean())
                panels += [x, y]
                labels += [level, f"{name.split('_')[1]} norm"]
        results["robustness"] = robustness
        save_pillow(args.out / "robustness.jpg", compose_sheet(panels, labels, columns=2 * len(LEVELS)), 85)

    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the runs (unknown options go to microst.train)")
    t.add_argument("--style", type=Path, required=True)
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--runs", type=Path, default=Path("runs/exp"))
    t.add_argument("--iterations", type=int, default=400)
    t.add_argument("--image-size", type=int, default=96)
    t.add_argument("--width", type=float, default=0.5, help="johnson's width multiplier")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--only", type=lambda s: s.split(","), default=None, metavar="RUN,RUN",
                   help=f"train these runs only (of {', '.join(RUNS)})")
    r = sub.add_parser("report", help="pictures and numbers from finished runs")
    r.add_argument("--runs", type=Path, default=Path("runs/exp"))
    r.add_argument("--style-name", default="great_wave", help="the stem of the style image the runs used")
    r.add_argument("--photos", nargs="+", type=Path, required=True)
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--out", type=Path, default=Path("docs/experiments"))
    args, extra = p.parse_known_args()
    if args.command == "train":
        train(args, extra)
    elif extra:
        p.error(f"unknown options for report: {' '.join(extra)}")
    else:
        report(args)


if __name__ == "__main__":
    main()
