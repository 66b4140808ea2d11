"""How good is a trained style? Measured, not only viewed ([gallery]'s quality check).

    python bench/gallery_quality.py MODEL.h5 [MODEL.h5 ...] --photos A.jpg B.jpg C.jpg [--size 256]
        [--iterations 200] [--style-dir DIR] [--out quality.json]

For each model and each photo (held out from its training), at --size px:
- stylization: the Gram distance of the feed-forward output to the style, divided by the photo's own
  (the style term at weight 1; smaller is more stylized; great_wave sets the bar);
- the weighted total loss of the output, with the model's own training weights and layers (from its
  checkpoint), and the iteration at which Gatys et al.'s L-BFGS, started from the photo and run on
  the same loss, first reaches that total ("Gatys iterations equivalent"; Johnson et al. report
  about 50-100 for their 40k-iteration nets), with L-BFGS's totals after 10, 25, 50, 100 and 200.
The style image is the checkpoint's (its recorded path, or the file of that name under --style-dir).
Prints a Markdown table (means over the photos) and writes every number to --out.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microst import losses, optimize  # noqa: E402
from microst.autograd import no_grad, tensor  # noqa: E402
from microst.checkpoint import load_model  # noqa: E402
from microst.io import load_image  # noqa: E402
from microst.models import VGG16Features  # noqa: E402

CHECKPOINTS = (10, 25, 50, 100, 200)


def style_image(model, style_dir, size):
    path = Path(model.checkpoint.training.get("style", ""))
    if style_dir is not None or not path.is_file():
        path = Path(style_dir or ".") / path.name
    return load_image(path, model.checkpoint.training.get("style_size") or size)


def training_options(model):
    """The checkpoint's training options, layer lists as tuples (older checkpoints: comma-separated)."""
    t = dict(model.checkpoint.training)
    for key in ("content_layers", "style_layers"):
        t[key] = tuple(t[key].split(",")) if isinstance(t[key], str) else tuple(t[key])
    return t


def loss_of(model, vgg, style):
    t = training_options(model)
    return losses.PerceptualLoss(vgg, tensor(style[None]), t["content_weight"], t["style_weight"], t["tv_weight"],
                                 t["content_layers"], t["style_layers"])


def measure(model, vgg, style, photo, iterations):
    t = training_options(model)
    loss = loss_of(model, vgg, style)
    bare = losses.PerceptualLoss(vgg, tensor(style[None]), 0.0, 1.0, 0.0, (), t["style_layers"])
    with no_grad():
        y = model(tensor(photo[None]), seed=0).numpy()[0]
        total = float(loss(tensor(y[None]), tensor(photo[None]))["total"].item())
        ratio = float(bare(tensor(y[None]))["style"].item() / bare(tensor(photo[None]))["style"].item())
    _, history = optimize.stylize(vgg, photo, style, iterations=iterations, content_weight=t["content_weight"],
                                  style_weight=t["style_weight"], tv_weight=t["tv_weight"],
                                  content_layers=t["content_layers"], style_layers=t["style_layers"])
    totals = [h["total"] for h in history]
    reached = next((h["iteration"] for h in history if h["total"] <= total), None)
    return {"feed_forward_total": total, "stylization": ratio, "gatys_equivalent": reached,
            "gatys_totals": {n: totals[n] for n in CHECKPOINTS if n < len(totals)}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--photos", nargs="+", type=Path, required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--style-dir", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    vgg = VGG16Features()
    results = {}
    print("| style | stylization (Gram distance ratio) | feed-forward total | Gatys iterations equivalent "
          "| L-BFGS total after " + ", ".join(map(str, CHECKPOINTS)) + " |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.models:
        model = load_model(path)
        style = style_image(model, args.style_dir, args.size)
        rows = [measure(model, vgg, style, load_image(photo, args.size), args.iterations) for photo in args.photos]
        results[path.stem] = dict(zip((ph.stem for ph in args.photos), rows))
        reached = [r["gatys_equivalent"] for r in rows]
        shown = ", ".join(str(n) if n is not None else f">{args.iterations}" for n in reached)
        gatys = " / ".join(f"{np.mean([r['gatys_totals'][n] for r in rows if n in r['gatys_totals']]):.4g}"
                           for n in CHECKPOINTS if all(n in r["gatys_totals"] for r in rows))
        print(f"| {path.stem} | {np.mean([r['stylization'] for r in rows]):.4f} | "
              f"{np.mean([r['feed_forward_total'] for r in rows]):.4g} | {shown} | {gatys} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
