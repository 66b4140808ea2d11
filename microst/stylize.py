"""Stylize images with a trained generator.

    python -m microst.stylize photo.jpg --model great_wave -o photo_wave.jpg
    python -m microst.stylize photos/ more.png --model runs/x/x.h5 --out-dir stylized/ --size 1024

INPUT: image files and folders (every image under a folder). --model: a bundled style's name
(weights/styles/NAME.h5) or a checkpoint path. With one input, -o names the output file (its
extension picks the format); otherwise outputs go to --out-dir (default: the current folder) as
STEM_STYLE.EXT, EXT the input's (.jpg for formats other than JPEG, PNG and WebP), in the same
subfolders as under an input folder.

EXIF orientation is applied; grayscale and palette images become RGB; transparent pixels are
composited onto white. The time per image is printed.

--preserve-color keeps the input's colours and takes only the stylization's luminance (the
"luminance-only transfer" of Gatys et al.): Y of the output in YCbCr (BT.601), Cb and Cr of the
input.

--tile N stylizes images too large for memory in tiles of N x N output pixels. Each tile is run
with a margin of context around it (the network's receptive reach), neighbouring tiles overlap by
--tile-overlap pixels and are cross-faded there, and instance normalization uses statistics
measured once on the whole image (downscaled to --tile-stats pixels on its longest side when
larger), so that tiles agree: there are no seams, and for an image no larger than --tile-stats the
result equals the untiled one up to float rounding.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import device as devices
from .autograd import Tensor, no_grad, tensor
from .errors import UserError, cli_main
from .io import IMAGE_SUFFIXES, find_images, load_image, save_image

OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


# -- the work ------------------------------------------------------------------------------------
def stylize(model, image, device=None, seed=None, tile=None, overlap=None, stats_size=1024, preserve_color=False):
    """Stylize one (3, H, W) float32 RGB image in [0, 255]; returns the same shape and range."""
    device = device or model.device
    with no_grad():
        if tile:
            y = stylize_tiled(model, image, tile, seed=seed, overlap=overlap, stats_size=stats_size, device=device)
        else:
            y = model(tensor(image[None], device=device), seed=seed).numpy()[0]
    return preserve_colors(image, y) if preserve_color else y


def stylize_tiled(model, image, tile, seed=None, overlap=None, stats_size=1024, device=None):
    """model(image) computed tile by tile (see the module docstring); image (3, H, W) -> (3, H, W)."""
    from .models.generator import frozen_norm_statistics
    device = device or model.device
    align, margin, halo = model.align, model.margin, model.halo
    tile = max(align, tile // align * align)
    overlap = _round_up(max(align, tile // 8) if overlap is None else overlap, align)
    small = _downscale(image, stats_size)
    with no_grad(), frozen_norm_statistics(model, tensor(small[None], device=device), seed):
        inputs, geometry = model.prepare(tensor(image[None], device=device), seed)
        hp, wp = (s - 2 * margin for s in inputs[0][0].shape[2:])
        out = np.zeros((3, hp, wp), np.float32)
        total = np.zeros((hp, wp), np.float32)
        for y0 in range(0, hp, tile):
            for x0 in range(0, wp, tile):
                ky0, ky1 = max(0, y0 - overlap), min(hp, y0 + tile + overlap)
                kx0, kx1 = max(0, x0 - overlap), min(wp, x0 + tile + overlap)
                wy0, wy1 = max(0, (ky0 - halo) // align * align), min(hp, _round_up(ky1 + halo, align))
                wx0, wx1 = max(0, (kx0 - halo) // align * align), min(wp, _round_up(kx1 + halo, align))
                windows = [t[:, :, wy0 // f:(wy1 + 2 * margin) // f, wx0 // f:(wx1 + 2 * margin) // f]
                           for t, f in inputs]
                y = model.core(*windows).numpy()[0, :, ky0 - wy0:ky1 - wy0, kx0 - wx0:kx1 - wx0]
                weight = np.outer(_ramp(ky0, ky1, hp, overlap), _ramp(kx0, kx1, wp, overlap))
                out[:, ky0:ky1, kx0:kx1] += y * weight
                total[ky0:ky1, kx0:kx1] += weight
        out /= total
        return model.finish(Tensor(out[None]), geometry).numpy()[0]


def _round_up(n, align):
    return -(-n // align) * align


def _ramp(k0, k1, size, overlap):
    """Cross-fade weights over [k0, k1): rising over the first 2*overlap pixels unless k0 is the
    image's edge, falling over the last 2*overlap unless k1 is; neighbours' ramps sum to 1."""
    p = np.arange(k0, k1) + 0.5
    w = np.ones(k1 - k0, np.float32)
    if k0 > 0:
        w = np.minimum(w, (p - k0) / (2 * overlap))
    if k1 < size:
        w = np.minimum(w, (k1 - p) / (2 * overlap))
    return w


def _downscale(image, size):
    """The image with its longest side at most `size` (Lanczos)."""
    h, w = image.shape[1:]
    if max(h, w) <= size:
        return image
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(shape, Image.LANCZOS))
                     for c in image]).astype(np.float32)


def preserve_colors(content, stylized):
    """Luminance of `stylized`, chrominance of `content` (both (3, H, W) RGB [0, 255]; YCbCr, BT.601)."""
    r, g, b = stylized.astype(np.float64)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    r, g, b = content.astype(np.float64)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
    return np.clip(rgb, 0, 255).astype(np.float32)


# -- the command ---------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(prog="python -m microst.stylize", description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--model", required=True, metavar="NAME|PATH", help="bundled style name or checkpoint path")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input only)")
    out.add_argument("--out-dir", metavar="DIR", help="output folder (default: the current folder)")
    p.add_argument("--size", type=int, metavar="N", help="resize so that the longest side is N pixels")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "emu"))
    p.add_argument("--noise-seed", type=int, default=0, metavar="S",
                   help="texture networks: the noise seed (different seeds, different stylizations; default 0)")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours (luminance transfer)")
    p.add_argument("--tile", type=int, metavar="N", help="stylize in N x N tiles (images too large for memory)")
    p.add_argument("--tile-overlap", type=int, metavar="P", help="cross-fade width between tiles (default N/8)")
    p.add_argument("--tile-stats", type=int, default=1024, metavar="S",
                   help="longest side at which instance-norm statistics are measured for tiling (default 1024)")
    return p


def collect_inputs(inputs):
    """(image file, its folder relative to the folder named on the command line, or "") for the files
    named and every image found under the folders named, in order."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = find_images(item)
            if not found:
                raise UserError(f"{item}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            files += [(f, os.path.relpath(os.path.dirname(f), item)) for f in found]
        elif os.path.exists(item):
            files.append((item, ""))
        else:
            raise UserError(f"{item}: no such file or folder; check the path")
    return files


def output_paths(files, output, out_dir, style):
    """Output paths: -o for one input; else OUT_DIR/[subfolder/]STEM_STYLE.EXT (subfolders of an input
    folder are kept, so that equal names in different folders do not collide)."""
    if output is not None:
        if len(files) != 1:
            raise UserError(f"-o {output}: names one output file but there are {len(files)} input images; "
                            f"use --out-dir DIR instead")
        if not output.lower().endswith(OUTPUT_SUFFIXES):
            raise UserError(f"-o {output}: unknown image format; end the name with .jpg, .png or .webp")
        paths = [Path(output)]
    else:
        directory = Path(out_dir or ".")
        paths = []
        for f, sub in files:
            suffix = Path(f).suffix.lower()
            paths.append(directory / sub / f"{Path(f).stem}_{style}{suffix if suffix in OUTPUT_SUFFIXES else '.jpg'}")
    files = [f for f, _ in files]
    for f, p in zip(files, paths):
        if os.path.abspath(f) == os.path.abspath(p):
            raise UserError(f"{p}: would overwrite its own input; choose another output name or folder")
    return paths


@cli_main
def main(argv=None):
    from .io import load_model
    args = build_parser().parse_args(argv)
    for name in ("size", "tile", "tile_stats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be a positive number of pixels")
    try:
        device = devices.resolve(args.device, announce=True)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device {args.device}: {e}") from None
    files = collect_inputs(args.inputs)
    model = load_model(args.model, device=device)
    style = model.checkpoint.style or Path(args.model).stem
    if model.kind == "texture" and not model.config.get("content", True):
        raise UserError(f"{args.model}: is a texture synthesizer (trained without content); it cannot stylize "
                        f"images")
    paths = output_paths(files, args.output, args.out_dir, style)
    for (f, _), p in zip(files, paths):
        image = load_image(f, args.size)
        start = time.perf_counter()
        try:
            y = stylize(model, image, device, seed=args.noise_seed, tile=args.tile, overlap=args.tile_overlap,
                        stats_size=args.tile_stats, preserve_color=args.preserve_color)
        except MemoryError:
            raise UserError(f"{f}: out of memory at {image.shape[2]}x{image.shape[1]}; use --tile 512 "
                            f"(or --size to shrink it)") from None
        elapsed = time.perf_counter() - start
        save_image(p, y)
        print(f"{f} -> {p} ({image.shape[2]}x{image.shape[1]}, {elapsed:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
