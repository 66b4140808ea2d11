"""Train a fast style-transfer generator for one style image.

    python -m microst.train --style great_wave.jpg --data photos/ [--iterations 40000] [...]

The generator (Johnson's TransformerNet, or Ulyanov's TextureNet with --model texture) learns
to minimize the perceptual loss (microst.losses.PerceptualLoss, on the frozen VGG-16 of
weights/vgg16.h5) of its output against random crops of the photos under --data (every
image file in the folder and its subfolders; unreadable ones are skipped and counted) and
against the style image's Gram matrices. Adam, constant learning rate.

Everything goes to --out (default runs/STYLE/; one run at a time per folder: a second one is
refused, naming the first one's process):
    checkpoint.h5          training checkpoint: weights, Adam state, RNG state, loss history, the
                           hashes of the style image and of the photos (every --checkpoint-every
                           iterations, at the end, and on Ctrl-C, SIGTERM or SIGHUP)
    STYLE.h5               the trained generator alone (python -m microst.stylize --model it)
    preview_NNNNNN.png     every --preview-every iterations: held-out photos (top row) and
                           their stylization (bottom row)
    loss.png, history.json the loss terms per iteration (weighted, as summed into the total)

--resume CHECKPOINT continues a run exactly where it stopped (same weights, optimizer state,
RNG state, hence the same crops and noise): N iterations in one go or N/2 + resume + N/2 give
bit-identical weights. It writes beside the checkpoint it resumes (or into --out). Options that
define the run are taken from the checkpoint; only --iterations, --out, --device, the --*-every
options and --no-progress may change; a style image or photos that changed since are refused
unless --allow-changed-data.

Before the first iteration the output folder is checked: a folder (not a file), writable, with
room for a checkpoint, and names that fit. A write that fails later (a full disk) stops the run
with one line. Stopped by a signal, the run writes a checkpoint, says how to resume, and exits
with 128 + the signal's number (130 for Ctrl-C).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

from . import cli
from .errors import UserError, cli_main
from .checkpoint import load_checkpoint
from .losses import (DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS, DEFAULT_STYLE_WEIGHT,
                     DEFAULT_TV_WEIGHT)
from .training import train

DEFAULTS = {
    "model": "johnson", "norm": "instance", "upsample": "transpose", "width": 1.0, "scales": 6,
    "noise_channels": 3, "no_content": False, "iterations": 40000, "batch_size": 4, "image_size": 256,
    "style_size": None, "content_weight": DEFAULT_CONTENT_WEIGHT, "style_weight": DEFAULT_STYLE_WEIGHT,
    "tv_weight": DEFAULT_TV_WEIGHT, "content_layers": DEFAULT_CONTENT_LAYERS, "style_layers": DEFAULT_STYLE_LAYERS,
    "lr": 1e-3, "device": None, "precision": None, "seed": None, "out": None, "checkpoint_every": 1000,
    "read_every": 50, "resume": None,
    "preview_every": 500, "preview_images": "4", "vgg": None, "style": None, "data": None, "no_progress": False,
    "allow_changed_data": False,
}
PATH_OPTIONS = ("style", "data", "vgg", "out", "resume")
# options that may differ between a run and its resumption
RESUMABLE = ("iterations", "out", "device", "precision", "checkpoint_every", "preview_every", "no_progress",
             "resume", "read_every", "allow_changed_data")
LAYER_OPTIONS = ("content_layers", "style_layers")


def build_parser():
    # SUPPRESS: options not given stay out of the namespace, so that a resumed run tells them from defaults
    p = cli.ArgumentParser("python -m microst.train", __doc__, argument_default=argparse.SUPPRESS)
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
    g.add_argument("--scales", type=cli.positive_int, help="texture: number of scales K (default 6)")
    g.add_argument("--noise-channels", type=cli.non_negative_int, help="texture: noise channels per scale (default 3)")
    g.add_argument("--no-content", action="store_true",
                   help="texture: train a pure texture synthesizer from noise (no --data needed)")
    g = p.add_argument_group("training")
    g.add_argument("--iterations", type=cli.positive_int, help="total iterations (default 40000)")
    g.add_argument("--batch-size", type=cli.positive_int, help="default 4")
    g.add_argument("--image-size", type=cli.pixels, help="side of the square training crops (default 256)")
    g.add_argument("--style-size", type=cli.pixels, help="longest side of the style image (default: --image-size)")
    g.add_argument("--content-weight", type=float, help=f"default {DEFAULT_CONTENT_WEIGHT:g} (microst.losses)")
    g.add_argument("--style-weight", type=float, help=f"default {DEFAULT_STYLE_WEIGHT:g}; raise it for more style")
    g.add_argument("--tv-weight", type=float, help=f"total variation (smoothing), default {DEFAULT_TV_WEIGHT:g}")
    cli.add_layers(g)
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, help="seed of every random choice (default: a fresh one, recorded)")
    cli.add_vgg(g)
    g = p.add_argument_group("run")
    cli.add_device(g)
    cli.add_precision(g)
    g.add_argument("--out", metavar="DIR", help="output folder (default runs/STYLE)")
    g.add_argument("--checkpoint-every", type=cli.positive_int, metavar="N", help="default 1000")
    g.add_argument("--read-every", type=cli.positive_int, metavar="N",
                   help="read the loss from the device every N iterations (default 50; the GPU is not waited for "
                        "in between)")
    g.add_argument("--resume", metavar="CKPT", help="continue the run of this training checkpoint (in its folder, "
                   "unless --out)")
    g.add_argument("--allow-changed-data", action="store_true",
                   help="resume although the style image or the photos changed since the run began")
    g.add_argument("--preview-every", type=cli.non_negative_int, metavar="N",
                   help="default 500 (0: only at the end)")
    g.add_argument("--preview-images", metavar="N|DIR", help="hold out N photos of --data for previews "
                   "(default 4), or use the images of DIR")
    cli.add_progress(g)
    return p


def _as_stored(training):
    """A checkpoint's training options as this version holds them: layer lists (JSON arrays, or the
    comma-separated strings of older checkpoints) as tuples."""
    options = {k: v for k, v in training.items() if k in DEFAULTS}
    for key in LAYER_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = cli.layer_list(options[key])
        elif options.get(key) is not None:
            options[key] = tuple(options[key])
    return options


def resolve_options(argv=None):
    """The run's options: command line over (the checkpoint's options when resuming) over DEFAULTS."""
    given = vars(build_parser().parse_args(argv))
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
        opts.update(_as_stored(checkpoint.training))
        recorded = opts["out"]
        # a resumed run writes beside its checkpoint (or into --out), never into the folder it was
        # started in: a copied checkpoint must not overwrite the original run's files
        opts["out"] = str(Path(given["resume"]).parent)
        if recorded and os.path.abspath(recorded) != opts["out"] and "out" not in given:
            print(f"resuming in {opts['out']}, where the checkpoint lies (it was written in {recorded})",
                  file=sys.stderr)
        for key, value in given.items():
            if key not in RESUMABLE and value != opts.get(key):
                raise UserError(f"--{key.replace('_', '-')} {_shown(value)} differs from the resumed run's "
                                f"{_shown(opts.get(key))}; a resumed run keeps its options (leave it out)")
    opts.update(given)
    if opts["style"] is None:
        raise UserError("--style: missing; give the style image (e.g. --style great_wave.jpg)")
    if Path(opts["style"]).stem.lower() == "all":
        raise UserError(f"--style {opts['style']}: a style cannot be called 'all' (stylize --model all means every "
                        f"bundled style); rename the image")
    if opts["data"] is None and not opts["no_content"]:
        raise UserError("--data: missing; give a folder of training photos (or --model texture --no-content)")
    if opts["image_size"] < 16:
        raise UserError(f"--image-size {opts['image_size']}: too small for VGG-16's pooling; use at least 16")
    if opts["no_content"] and opts["model"] != "texture":
        raise UserError("--no-content: only a texture network (--model texture) can synthesize from noise alone")
    if not opts["content_layers"] and not opts["style_layers"]:
        raise UserError("--content-layers and --style-layers: both empty; name at least one VGG-16 layer")
    if opts["seed"] is None:
        opts["seed"] = int(np.random.SeedSequence().entropy % (2 ** 31))
    if opts["out"] is None:
        opts["out"] = os.path.abspath(Path("runs") / Path(opts["style"]).stem)
    return opts, checkpoint


def _shown(value):
    """An option's value as typed on a command line (layers: comma-separated)."""
    return ",".join(value) if isinstance(value, tuple) else value


@cli_main
def main(argv=None):
    opts, checkpoint = resolve_options(argv)
    try:
        result = train(opts, checkpoint, log=lambda msg: print(msg, file=sys.stderr))
    except KeyboardInterrupt:  # a second Ctrl-C: stop without writing anything
        print("\naborted (no checkpoint written for the last iterations)", file=sys.stderr)
        return 130
    return 128 + result["interrupted"] if result["interrupted"] else 0  # 128 + the signal, as a shell does


if __name__ == "__main__":
    sys.exit(main())
