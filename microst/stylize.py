"""Stylize images with a trained generator.

    python -m microst.stylize photo.jpg --model great_wave -o photo_wave.jpg
    python -m microst.stylize photos/ more.png --model runs/x/x.h5 --out-dir stylized/ --size 1024

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
input.

--tile N stylizes images too large for memory in tiles of N x N output pixels. Each tile is run
with a margin of context around it (the network's receptive reach), neighbouring tiles overlap by
--tile-overlap pixels and are cross-faded there, and instance normalization uses statistics
measured once on the whole image (downscaled to --tile-stats pixels on its longest side when
larger), so that tiles agree: there are no seams, and for an image no larger than --tile-stats the
result equals the untiled one up to float rounding.
"""
import sys
from pathlib import Path

from . import cli
from .errors import UserError, cli_main
from .checkpoint import load_model
from .jobs import Stylizer, jobs


def build_parser():
    p = cli.ArgumentParser("python -m microst.stylize", __doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--model", required=True, metavar="NAME|PATH", help="bundled style name or checkpoint path")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input only)")
    out.add_argument("--out-dir", metavar="DIR", help="output folder (default: the current folder)")
    cli.add_size(p)
    cli.add_device(p)
    cli.add_progress(p)
    p.add_argument("--noise-seed", type=int, default=0, metavar="S",
                   help="texture networks: the noise seed (different seeds, different stylizations; default 0)")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours (luminance transfer)")
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
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    device = cli.resolve_device(args.device)
    model = load_model(args.model, device=device)
    if model.kind == "texture" and not model.config.get("content", True):
        raise UserError(f"{args.model}: is a texture synthesizer (trained without content); it cannot stylize "
                        f"images")
    style = model.checkpoint.style or Path(args.model).stem
    todo = jobs(args.inputs, args.output, args.out_dir, style)
    summary = Stylizer(model, device, size=args.size, seed=args.noise_seed, tile=args.tile,
                       overlap=args.tile_overlap, stats_size=args.tile_stats, preserve_color=args.preserve_color,
                       cuda_graph=args.cuda_graph, progress=not args.no_progress).run(todo, args.skip_existing)
    if len(todo) > 1 or summary.skipped:
        print(summary, file=sys.stderr)
    return 2 if summary.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
