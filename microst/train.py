"""Train a fast style-transfer generator for one style image.

    python -m microst.train --style great_wave.jpg --data photos/ [--iterations 40000] [...]

The generator (Johnson's TransformerNet, or Ulyanov's TextureNet with --model texture) learns
to minimize the perceptual loss (microst.losses.PerceptualLoss, on the frozen VGG-16 of
weights/vgg16.h5) of its output against random crops of the photos under --data (every
image file in the folder and its subfolders; unreadable ones are skipped and counted) and
against the style image's Gram matrices. Adam, constant learning rate.

Everything goes to --out (default runs/STYLE/):
    checkpoint.h5          training checkpoint: weights, Adam state, RNG state, loss history
                           (every --checkpoint-every iterations, at the end, and on Ctrl-C)
    STYLE.h5               the trained generator alone (python -m microst.stylize --model it)
    preview_NNNNNN.png     every --preview-every iterations: held-out photos (top row) and
                           their stylization (bottom row)
    loss.png, history.json the loss terms per iteration (weighted, as summed into the total)

--resume CHECKPOINT continues a run exactly where it stopped (same weights, optimizer state,
RNG state, hence the same crops and noise): N iterations in one go or N/2 + resume + N/2 give
bit-identical weights. Options that define the run are taken from the checkpoint; only
--iterations, --out, --device, --checkpoint-every, --preview-every and --no-progress may change.
"""
import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import device as devices
from . import random as mrandom
from .autograd import no_grad, tensor
from .errors import UserError, cli_main
from .io import HISTORY_COLUMNS, load_checkpoint, load_image, save_checkpoint, save_image

DEFAULTS = {
    "model": "johnson", "norm": "instance", "upsample": "transpose", "width": 1.0, "scales": 6,
    "noise_channels": 3, "no_content": False, "iterations": 40000, "batch_size": 4, "image_size": 256,
    "style_size": None, "content_weight": None, "style_weight": None, "tv_weight": None,
    "content_layers": "relu2_2", "style_layers": "relu1_2,relu2_2,relu3_3,relu4_3", "lr": 1e-3,
    "device": "auto", "seed": None, "out": None, "checkpoint_every": 1000, "resume": None,
    "preview_every": 500, "preview_images": "4", "vgg": None, "style": None, "data": None,
    "no_progress": False,
}
PATH_OPTIONS = ("style", "data", "vgg", "out", "resume")
# options that may differ between a run and its resumption
RESUMABLE = ("iterations", "out", "device", "checkpoint_every", "preview_every", "no_progress", "resume")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m microst.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]), argument_default=None)
    a = p.add_argument
    a("--style", metavar="IMAGE", help="the style image (required unless --resume)")
    a("--data", metavar="DIR", help="folder of training photos, searched recursively (jpg/png/webp)")
    g = p.add_argument_group("generator")
    g.add_argument("--model", choices=("johnson", "texture"), help="johnson (TransformerNet, default) or texture "
                   "(Ulyanov's multi-scale TextureNet)")
    g.add_argument("--norm", choices=("instance", "batch", "none"), help="normalization layers (default instance)")
    g.add_argument("--upsample", choices=("transpose", "nearest"),
                   help="johnson: fractionally strided convs (default) or nearest x2 + conv (no checkerboard)")
    g.add_argument("--width", type=float, help="johnson: channel width multiplier (default 1.0: 32, 64, 128)")
    g.add_argument("--scales", type=int, help="texture: number of scales K (default 6)")
    g.add_argument("--noise-channels", type=int, help="texture: noise channels per scale (default 3)")
    g.add_argument("--no-content", action="store_true", default=None,
                   help="texture: train a pure texture synthesizer from noise (no --data needed)")
    g = p.add_argument_group("training")
    g.add_argument("--iterations", type=int, help="total iterations (default 40000)")
    g.add_argument("--batch-size", type=int, help="default 4")
    g.add_argument("--image-size", type=int, help="side of the square training crops (default 256)")
    g.add_argument("--style-size", type=int, help="longest side of the style image (default: --image-size)")
    from .losses import DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT
    g.add_argument("--content-weight", type=float, help=f"default {DEFAULT_CONTENT_WEIGHT:g} (microst.losses)")
    g.add_argument("--style-weight", type=float, help=f"default {DEFAULT_STYLE_WEIGHT:g}; raise it for more style")
    g.add_argument("--tv-weight", type=float, help=f"total variation (smoothing), default {DEFAULT_TV_WEIGHT:g}")
    g.add_argument("--content-layers", metavar="L,L", help="VGG-16 layers (default relu2_2)")
    g.add_argument("--style-layers", metavar="L,L", help="default relu1_2,relu2_2,relu3_3,relu4_3")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, help="seed of every random choice (default: a fresh one, recorded)")
    g.add_argument("--vgg", metavar="H5", help="VGG-16 weights (default weights/vgg16.h5)")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "emu"), help="default auto (cuda if usable, else cpu)")
    g.add_argument("--out", metavar="DIR", help="output folder (default runs/STYLE)")
    g.add_argument("--checkpoint-every", type=int, metavar="N", help="default 1000")
    g.add_argument("--resume", metavar="CKPT", help="continue the run of this training checkpoint")
    g.add_argument("--preview-every", type=int, metavar="N", help="default 500 (0: only at the end)")
    g.add_argument("--preview-images", metavar="N|DIR", help="hold out N photos of --data for previews "
                   "(default 4), or use the images of DIR")
    g.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    return p


def resolve_options(argv=None):
    """The run's options: command line over (the checkpoint's options when resuming) over DEFAULTS."""
    given = {k: v for k, v in vars(build_parser().parse_args(argv)).items() if v is not None}
    for key in PATH_OPTIONS:  # absolute, so that a run resumes from any folder
        if key in given:
            given[key] = os.path.abspath(given[key])
    if "preview_images" in given and not given["preview_images"].isdigit():
        given["preview_images"] = os.path.abspath(given["preview_images"])
    opts = dict(DEFAULTS)
    checkpoint = None
    if given.get("resume"):
        checkpoint = load_checkpoint(given["resume"])
        if not checkpoint.training or checkpoint.optimizer is None or checkpoint.rng_state is None:
            raise UserError(f"{given['resume']}: holds a trained model but no training state (optimizer, RNG); "
                            f"resume from the checkpoint.h5 a training run writes")
        opts.update({k: v for k, v in checkpoint.training.items() if k in opts})
        for key, value in given.items():
            if key not in RESUMABLE and value != opts.get(key):
                raise UserError(f"--{key.replace('_', '-')} {value} differs from the resumed run's "
                                f"{opts.get(key)}; a resumed run keeps its options (leave it out)")
    opts.update(given)
    if opts["style"] is None:
        raise UserError("--style: missing; give the style image (e.g. --style great_wave.jpg)")
    if opts["data"] is None and not opts["no_content"]:
        raise UserError("--data: missing; give a folder of training photos (or --model texture --no-content)")
    for key in ("iterations", "batch_size", "image_size", "checkpoint_every"):
        if opts[key] < 1:
            raise UserError(f"--{key.replace('_', '-')} {opts[key]}: must be at least 1")
    if opts["image_size"] < 16:
        raise UserError(f"--image-size {opts['image_size']}: too small for VGG-16's pooling; use at least 16")
    if opts["preview_every"] < 0:
        raise UserError(f"--preview-every {opts['preview_every']}: must be 0 or more")
    if opts["no_content"] and opts["model"] != "texture":
        raise UserError("--no-content: only a texture network (--model texture) can synthesize from noise alone")
    if opts["seed"] is None:
        opts["seed"] = int(np.random.SeedSequence().entropy % (2 ** 31))
    if opts["out"] is None:
        opts["out"] = os.path.abspath(Path("runs") / Path(opts["style"]).stem)
    from .losses import DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT
    for key, value in (("content_weight", DEFAULT_CONTENT_WEIGHT), ("style_weight", DEFAULT_STYLE_WEIGHT),
                       ("tv_weight", DEFAULT_TV_WEIGHT)):
        if opts[key] is None:
            opts[key] = value
    return opts, checkpoint


def _layers(text, option):
    from .models.vgg16 import LAYER_NAMES
    layers = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in layers:
        if name not in LAYER_NAMES:
            raise UserError(f"{option} {text}: unknown VGG-16 layer {name!r}; choose among "
                            f"{', '.join(n for n in LAYER_NAMES if n.startswith('relu'))}")
    return layers


def model_config(opts):
    if opts["model"] == "johnson":
        return {"model": "johnson", "norm": opts["norm"], "upsample": opts["upsample"], "width": opts["width"]}
    return {"model": "texture", "scales": opts["scales"], "noise_channels": opts["noise_channels"],
            "norm": opts["norm"], "content": not opts["no_content"]}


class _Interrupt:
    """Ctrl-C sets a flag that the loop checks after each iteration; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: finishing this iteration and writing a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(opts, checkpoint=None, vgg=None, log=print):
    """Run (or continue) a training run. opts: as resolve_options returns. vgg: a VGG16Features to use
    instead of loading --vgg (tests pass a tiny one). Returns {"history", "model", "checkpoint",
    "model_path", "interrupted", "skipped"}."""
    from .losses import PerceptualLoss
    from .models.generator import build
    from .optim import Adam

    try:
        device = devices.resolve(opts["device"], announce=True)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device {opts['device']}: {e}") from None
    content_layers = _layers(opts["content_layers"], "--content-layers")
    style_layers = _layers(opts["style_layers"], "--style-layers")
    style_name = Path(opts["style"]).stem
    style_image = load_image(opts["style"], opts["style_size"] or opts["image_size"])
    out = Path(opts["out"])

    mrandom.manual_seed(opts["seed"])
    config = model_config(opts)
    try:
        model = build(config)
    except ValueError as e:
        raise UserError(f"generator options: {e}") from None
    size, batch = opts["image_size"], opts["batch_size"]
    data = None
    hold_out = int(opts["preview_images"]) if str(opts["preview_images"]).isdigit() else 0
    if not opts["no_content"]:
        from .data import ImageFolder
        data = ImageFolder(opts["data"], size, hold_out=hold_out)
    previews = _previews(opts, data, size)

    if vgg is None:
        from .models import VGG16Features
        vgg = VGG16Features(path=opts["vgg"], layers=tuple(dict.fromkeys(content_layers + style_layers)))
    vgg = vgg.to(device)
    loss_fn = PerceptualLoss(vgg, tensor(style_image[None], device=device), content_weight=opts["content_weight"],
                             style_weight=opts["style_weight"], tv_weight=opts["tv_weight"],
                             content_layers=content_layers, style_layers=style_layers)
    model.to(device).train()
    optimizer = Adam(model.parameters(), lr=opts["lr"])
    start, history = 0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint.state)
        optimizer.load_state_dict({"hyper": checkpoint.optimizer["hyper"], "state": checkpoint.optimizer["state"]})
        mrandom.set_state(checkpoint.rng_state)
        start, history = checkpoint.iteration, [list(r) for r in checkpoint.history]

    if data is not None:
        log(f"data: {len(data)} training images under {opts['data']}, {len(data.held_out)} held out for previews"
            + (f", {len(data.skipped)} unreadable files skipped" if data.skipped else ""))
    log(f"training {config['model']} on {device}: {opts['iterations']} iterations"
        + (f" (resuming at {start})" if start else "") + f", batch {batch}, {size}x{size}, output in {out}/")
    training_options = {k: v for k, v in opts.items() if k != "resume"}

    def save(iteration):
        return save_checkpoint(out / "checkpoint.h5", model, style=style_name, iteration=iteration,
                               training=training_options, optimizer=optimizer, rng_state=mrandom.get_state(),
                               history=history)

    from tqdm import tqdm
    bar = tqdm(total=opts["iterations"], initial=start, disable=opts["no_progress"], dynamic_ncols=True,
               desc=style_name, unit="it", file=sys.stderr)
    interrupted, done = False, start
    with _Interrupt() as stop:
        while done < opts["iterations"] and not stop.requested:
            if data is None:
                content, output = None, model(None, size=(size, size), batch=batch)
            else:
                content = tensor(data.sample(batch), device=device)
                output = model(content)
            terms = loss_fn(output, content)
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()
            done += 1
            values = {k: float(terms[k].item()) for k in ("total", "content", "style", "tv")}
            history.append([done] + [values[c] for c in HISTORY_COLUMNS[1:]])
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            if opts["preview_every"] and done % opts["preview_every"] == 0 and done < opts["iterations"]:
                write_preview(out, model, previews, done, device, size)
                write_history(out, history)
            if done % opts["checkpoint_every"] == 0 and done < opts["iterations"]:
                save(done)
        interrupted = stop.requested and done < opts["iterations"]
    bar.close()
    ckpt_path = save(done)
    write_history(out, history)
    model_path = None
    if interrupted:
        log(f"interrupted at iteration {done}; checkpoint written to {ckpt_path}; continue with "
            f"python -m microst.train --resume {ckpt_path}")
    else:
        write_preview(out, model, previews, done, device, size)
        model_path = save_checkpoint(out / f"{style_name}.h5", model, style=style_name, iteration=done,
                                     training=training_options)
        first, last = _mean_total(history[:10]), _mean_total(history[-10:])
        log(f"done: {done} iterations; total loss {first:.4g} (first 10) -> {last:.4g} (last 10); "
            f"model in {model_path}")
    if data is not None and data.skipped:
        log(f"{len(data.skipped)} unreadable files were skipped, e.g. {data.skipped[0]}")
    return {"history": history, "model": model, "checkpoint": ckpt_path, "model_path": model_path,
            "interrupted": interrupted, "skipped": [] if data is None else list(data.skipped)}


def _mean_total(rows):
    return float(np.mean([r[1] for r in rows])) if rows else float("nan")


def _previews(opts, data, size):
    """The preview content images (n, 3, size, size), or None for a texture synthesizer."""
    if opts["no_content"]:
        return None
    spec = str(opts["preview_images"])
    if spec.isdigit():
        return data.previews(size) if int(spec) > 0 else data.previews(size)[:1]
    if not os.path.isdir(spec):
        raise UserError(f"--preview-images {spec}: neither a number nor a folder; give e.g. 4 or a folder of images")
    from .data import load_preview_folder
    images = load_preview_folder(spec, size)
    if not len(images):
        raise UserError(f"--preview-images {spec}: no readable images in this folder")
    return images


def write_preview(out, model, previews, iteration, device, size=128):
    """preview_NNNNNN.png: the preview photos (top row) and the generator's output (bottom row); for a
    texture synthesizer, four samples of different noise."""
    model.eval()
    try:
        with no_grad():
            if previews is None:
                rows = [np.concatenate([model(None, seed=s, size=(size, size)).numpy()[0] for s in range(4)], axis=2)]
            else:
                x = tensor(previews, device=device)
                y = model(x, seed=0) if model.kind == "texture" else model(x)
                rows = [np.concatenate(list(previews), axis=2), np.concatenate(list(y.numpy()), axis=2)]
    finally:
        model.train()
    path = Path(out) / f"preview_{iteration:06d}.png"
    save_image(path, np.concatenate(rows, axis=1))
    return path


def write_history(out, history):
    """history.json (one list per column) and loss.png (the curves)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = {name: [row[i] for row in history] for i, name in enumerate(HISTORY_COLUMNS)}
    columns["iteration"] = [int(i) for i in columns["iteration"]]
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(columns))
    os.replace(tmp, out / "history.json")
    plot_losses(out / "loss.png", history)


def plot_losses(path, history, width=720, height=420):
    """Loss curves (log scale; moving average over ~1/50 of the run) as a PNG, drawn with Pillow."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    left, right, top, bottom = 70, width - 20, 20, height - 40
    colours = {"total": (0, 0, 0), "content": (31, 119, 180), "style": (214, 39, 40), "tv": (44, 160, 44)}
    rows = np.asarray(history, np.float64).reshape(-1, len(HISTORY_COLUMNS))
    if len(rows):
        its = rows[:, 0]
        window = max(1, len(rows) // 50)
        kernel = np.ones(window) / window
        curves = {}
        for name in colours:
            values = rows[:, HISTORY_COLUMNS.index(name)]
            values = np.convolve(values, kernel, mode="valid") if len(values) >= window else values
            positive = values > 0
            if positive.any():
                curves[name] = (its[window - 1:][:len(values)][positive], np.log10(values[positive]))
        if curves:
            lo = min(c[1].min() for c in curves.values())
            hi = max(c[1].max() for c in curves.values())
            lo, hi = np.floor(lo), max(np.ceil(hi), np.floor(lo) + 1)
            x0, x1 = its[0], max(its[-1], its[0] + 1)

            def xy(x, y):
                return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - lo) / (hi - lo) * (bottom - top))

            for decade in range(int(lo), int(hi) + 1):
                y = xy(x0, decade)[1]
                draw.line([(left, y), (right, y)], fill=(225, 225, 225))
                draw.text((5, y - 6), f"1e{decade}", fill="black")
            for name, (x, y) in curves.items():
                points = [xy(a, b) for a, b in zip(x, y)]
                if len(points) > 1:
                    draw.line(points, fill=colours[name], width=2)
            for i, name in enumerate(curves):
                draw.text((right - 80, top + 5 + 14 * i), name, fill=colours[name])
            draw.text((left, 4), f"loss terms as weighted (log scale), moving average of {window}", fill="black")
            draw.text((left, bottom + 8), f"iteration {int(x0)}", fill="black")
            draw.text((right - 110, bottom + 8), f"iteration {int(x1)}", fill="black")
    draw.rectangle([left, top, right, bottom], outline="black")
    im.save(path)


@cli_main
def main(argv=None):
    opts, checkpoint = resolve_options(argv)
    try:
        result = train(opts, checkpoint, log=lambda msg: print(msg, file=sys.stderr))
    except KeyboardInterrupt:  # a second Ctrl-C: stop without writing anything
        print("\naborted (no checkpoint written for the last iterations)", file=sys.stderr)
        return 130
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
