"""Stylize images with a trained generator.

    python -m microst.stylize photo.jpg --model great_wave -o photo_wave.jpg
    python -m microst.stylize photos/ more.png --model runs/x/x.h5 --out-dir stylized/ --size 1024
    python -m microst.stylize clip.mp4 --model great_wave -o clip_wave.mp4 --stable   # microst[video]
    python -m microst.stylize photo.jpg --model all --sheet sheet.png                 # every style
    python -m microst.stylize photos/ --model great_wave --out-dir out/ --ray         # microst[ray]

INPUT: image files and folders (every image under a folder). --model: a bundled style's name
(weights/styles/NAME.h5) or a checkpoint path. With one input, -o names the output file (its
extension picks the format); otherwise outputs go to --out-dir (default: the current folder) as
STEM_STYLE.EXT, EXT the input's (.jpg for formats microst does not write), in the same subfolders
as under an input folder. Each output is written to a temporary file and renamed into place.

EXIF orientation is applied; grayscale (8 and 16 bits), palette, CMYK and YCbCr images become RGB;
transparent pixels are composited onto white. The time per image is printed, and a progress bar
runs over the images of several, and over the tiles of a tiled one (--no-progress: none).

An image that would take more memory than the device has free is stylized in tiles that fit, and
the command says so; one that does not fit even in small tiles is refused, naming --size.

Of several images, one that cannot be read (damaged, truncated, a decompression bomb) or whose
output name would be too long is skipped with a warning, the others go on, a summary ends the run
and the exit status is 2. Outputs that exist are overwritten, unless --skip-existing.

--preserve-color keeps the input's colours and takes only the stylization's luminance (the
"luminance-only transfer" of Gatys et al.): Y of the output in YCbCr (BT.601), Cb and Cr of the
input. --strength S (0..1, after --preserve-color) blends the stylization with the photo: 0 gives
the photo, 1 (the default) the stylization alone.

A video input (.mp4 .m4v .mov .mkv .webm .avi; needs the extra microst[video], PyAV) is stylized
frame by frame into a video of the same frame rate, its audio copied; a texture network's noise
stays the same in every frame. --stable reduces flicker: instance normalization uses statistics
smoothed over the frames (an exponential moving average, 0.1 for each new frame), the way tiling
freezes them across tiles. A folder of frames is a folder of images, as any other.

--model all --sheet SHEET renders every bundled style on one photo, labelled, into one image
(--sheet with one --model: that style beside the photo); "all" is a name no style may take.

--ray stylizes the images of folders on Ray workers (the extra microst[ray]; microst.scale): a local
Ray, or the cluster at --ray-address. Each worker loads the model once (one GPU each on cuda, one
CPU otherwise; --workers, --images-per-batch); outputs, skipped images, --skip-existing and the
summary are those of the folders above, the summary with images/s. Without --ray, ray is not imported.

A texture synthesizer (a texture network trained with --no-content) takes no photo:
--texture-size WxH -o OUT synthesizes its texture at any size, --noise-seed choosing which.

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

from . import cli
from .errors import UserError, cli_main
from .checkpoint import bundled_styles, load_model
from .autograd import no_grad
from .io import check_image_path, load_image, save_image
from .jobs import Job, Stylizer, jobs
from .sheet import SIZE, write_sheet

ALL = "all"  # --model all: every bundled style (a reserved name)


def build_parser():
    p = cli.ArgumentParser("python -m microst.stylize", __doc__)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders")
    p.add_argument("--model", required=True, metavar="NAME|PATH",
                   help="bundled style name or checkpoint path ('all': every bundled style, with --sheet)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output image or video file (one input only)")
    out.add_argument("--out-dir", metavar="DIR", help="output folder (default: the current folder)")
    out.add_argument("--sheet", metavar="SHEET", help="one image of the photo stylized by each --model, labelled")
    cli.add_size(p)
    cli.add_device(p)
    cli.add_precision(p)
    cli.add_progress(p)
    p.add_argument("--texture-size", type=size_pair, metavar="WxH",
                   help="texture synthesizers: synthesize a WxH texture (no INPUT) into -o OUT")
    p.add_argument("--noise-seed", type=int, default=0, metavar="S",
                   help="texture networks: the noise seed (different seeds, different stylizations; default 0)")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours (luminance transfer)")
    p.add_argument("--strength", type=cli.unit_interval, default=1.0, metavar="S",
                   help="0..1: blend of the stylization with the photo, after --preserve-color (default 1)")
    p.add_argument("--stable", action="store_true",
                   help="videos (extra microst[video]): smooth instance-norm statistics over frames against flicker")
    p.add_argument("--tile", type=cli.pixels, metavar="N", help="stylize in N x N tiles (images too large for memory)")
    p.add_argument("--tile-overlap", type=cli.non_negative_int, metavar="P",
                   help="cross-fade width between tiles (default N/8)")
    p.add_argument("--tile-stats", type=cli.pixels, default=1024, metavar="S",
                   help="longest side at which instance-norm statistics are measured for tiling (default 1024)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out the images whose output exists already (to finish an interrupted folder)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="cuda: replay each image size's forward pass as one CUDA graph (opt-in until measured; "
                        "TransformerNet models, no --tile)")
    ray = p.add_argument_group("on a Ray cluster (extra microst[ray]; INPUTs are folders, outputs go to --out-dir)")
    ray.add_argument("--ray", action="store_true", help="stylize on Ray workers: a local Ray, or --ray-address's")
    ray.add_argument("--ray-address", metavar="ADDRESS",
                     help="the cluster's head, HEAD:6379 ('auto': the cluster this machine joined with `ray start`; "
                          "default: a new local Ray)")
    ray.add_argument("--workers", type=cli.positive_int, metavar="N",
                     help="the number of workers, each loading the model once (default: one per GPU with --device "
                          "cuda, else one per CPU of the cluster)")
    ray.add_argument("--images-per-batch", type=cli.positive_int, metavar="N",
                     help="images a worker takes at a time (default: about 4 batches per worker, 16 at most)")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.ray:
        return on_ray(args)
    for option, given in (("--ray-address", args.ray_address), ("--workers", args.workers),
                          ("--images-per-batch", args.images_per_batch)):
        if given is not None:
            raise UserError(f"{option}: sets up --ray's workers; add --ray (or leave out {option})")
    device = cli.resolve_device(args.device)
    cli.apply_precision(args.precision, device)
    if args.sheet:
        return sheet(args, device)
    if args.model == ALL:
        raise UserError("--model all: renders every bundled style on one photo; add --sheet SHEET.png")
    if args.texture_size:
        return texture(args, device)
    if not args.inputs:
        raise UserError("INPUT: missing; give image or video files or folders (or --texture-size WxH for a texture "
                        "synthesizer)")
    model = _stylizing_model(args.model, device)
    style = model.checkpoint.style or Path(args.model).stem
    todo = jobs(args.inputs, args.output, args.out_dir, style)
    summary = _stylizer(model, device, args).run(todo, args.skip_existing)
    if len(todo) > 1 or summary.skipped:
        print(summary, file=sys.stderr)
    return 2 if summary.skipped else 0


def sheet(args, device):
    """--sheet: the one input photo stylized by each model named, on one labelled image."""
    if len(args.inputs) != 1:
        raise UserError(f"--sheet: renders one photo; {len(args.inputs)} inputs given")
    check_image_path(args.sheet)
    names = bundled_styles() if args.model == ALL else [args.model]
    if not names:
        raise UserError("--model all: no bundled styles are installed (weights/styles/*.h5)")
    photo = load_image(args.inputs[0], args.size or SIZE)
    job = Job(args.inputs[0], Path(args.sheet))
    stylizations = []
    for name in names:
        model = load_model(name, device=device)
        if _synthesizer(model) and args.model == ALL:
            print(f"{name}: left out (a texture synthesizer, it cannot stylize a photo)", file=sys.stderr)
            continue
        model = _stylizing_model(name, device, model)
        stylizations.append((model.checkpoint.style or name, _stylizer(model, device, args).stylize(job, photo)))
    write_sheet(args.sheet, photo, stylizations)
    print(f"{args.inputs[0]} -> {args.sheet} ({len(stylizations)} styles: {', '.join(n for n, _ in stylizations)})")
    return 0


def texture(args, device):
    """--texture-size: a texture synthesizer's output at that size, into -o."""
    if args.inputs:
        raise UserError("--texture-size: synthesizes from noise alone; leave out the INPUT images")
    if not args.output:
        raise UserError("--texture-size: give the output image with -o OUT.png")
    check_image_path(args.output)
    model = load_model(args.model, device=device)
    if not _synthesizer(model):
        raise UserError(f"{args.model}: stylizes photos (it is not a texture synthesizer); give INPUT images "
                        f"instead of --texture-size")
    width, height = args.texture_size
    start = time.perf_counter()
    with no_grad():
        y = model(None, seed=args.noise_seed, size=(height, width)).numpy()[0]
    save_image(args.output, y)
    print(f"{args.model} -> {args.output} ({width}x{height}, {time.perf_counter() - start:.2f} s)")
    return 0


def size_pair(text):
    """'512x384' -> (512, 384): width and height in pixels."""
    w, sep, h = text.lower().partition("x")
    try:
        width, height = int(w), int(h)
    except ValueError:
        width = height = 0
    if not sep or width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels (e.g. 512x512)")
    return width, height


def _synthesizer(model):
    return model.kind == "texture" and not model.config.get("content", True)


def _stylizing_model(name, device, model=None):
    model = model or load_model(name, device=device)
    if _synthesizer(model):
        raise UserError(f"{name}: is a texture synthesizer (trained without content); it cannot stylize images: "
                        f"synthesize its texture with --texture-size WxH -o OUT.png")
    return model


def _stylizer(model, device, args):
    return Stylizer(model, device, progress=not args.no_progress, **_stylizer_options(args))


def _stylizer_options(args):
    """How each image is stylized: Stylizer's options (here and on Ray workers)."""
    return dict(size=args.size, seed=args.noise_seed, tile=args.tile, overlap=args.tile_overlap,
                stats_size=args.tile_stats, preserve_color=args.preserve_color, strength=args.strength,
                stable=args.stable, cuda_graph=args.cuda_graph)


def on_ray(args):
    """--ray: the images of the INPUT folders stylized by a pool of Ray workers (microst.scale, which
    imports ray: nothing else here does)."""
    for option, given in (("-o", args.output), ("--sheet", args.sheet), ("--texture-size", args.texture_size)):
        if given:
            raise UserError(f"--ray: stylizes folders into --out-dir DIR; leave out {option}")
    from . import scale
    scale.require_ray()
    if not args.inputs:
        raise UserError("INPUT: missing; give the folders of images to stylize")
    scale.check_folders(args.inputs)
    device = args.device or os.environ.get("MICROST_DEVICE")  # the workers': resolved there, where they run
    if device is not None:
        cli.apply_precision(args.precision, device)
    model = _stylizing_model(args.model, "cpu")  # a bad model is found here, before any worker starts
    todo = jobs(args.inputs, None, args.out_dir, model.checkpoint.style or Path(args.model).stem)
    summary = scale.stylize_on_ray(todo, model.checkpoint.path, _stylizer_options(args), device=device,
                                   precision=args.precision, address=args.ray_address, workers=args.workers,
                                   images_per_batch=args.images_per_batch, skip_existing=args.skip_existing,
                                   progress=not args.no_progress)
    print(summary, file=sys.stderr)
    return 2 if summary.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
