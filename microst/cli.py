"""What every microst command line shares: the parser class and the options that mean the same everywhere.

    p = cli.ArgumentParser("python -m microst.x", __doc__)   # errors: one line, exit status 2
    cli.add_device(p); cli.add_vgg(p); cli.add_progress(p); cli.add_layers(p); cli.add_size(p)
    args = p.parse_args(argv)
    device = cli.resolve_device(args.device)                 # UserError (one line) if unusable

Bad types and choices (`--device foo`, `--size 0`, `--style-layers relu9_9`) are caught by the parser
and answered like a UserError under errors.cli_main: `error: MESSAGE` on one line of stderr, exit
status 2, no usage dump. The helpers set no defaults of their own, so a parser made with
argument_default=argparse.SUPPRESS (train: a resumed run tells given options from defaults) sees
only what the user typed; a command that wants a default sets it with parser.set_defaults.
"""
import argparse
import sys

from . import device as devices
from .errors import UserError
from .losses import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from .models.vgg16 import LAYER_NAMES
from .ops.precision import PRECISIONS, use_precision

DEVICE_CHOICES = ("auto", "cpu", "cuda", "emu")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with errors as one line (`error: ...; see PROG --help`) and exit status 2.

    doc: the command's module docstring: its first paragraph becomes the description, the rest the
    epilog of --help (kept as written). Subcommands (add_subparsers) are parsers of this class too."""

    def __init__(self, prog=None, doc=None, **kwargs):
        if doc:
            paragraphs = doc.strip().split("\n\n")
            kwargs.setdefault("description", paragraphs[0])
            kwargs.setdefault("epilog", "\n\n".join(paragraphs[1:]) or None)
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, **kwargs)

    def error(self, message):
        print(f"error: {' '.join(message.split())}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


# -- argument types: a bad value is a parser error, hence one line ----------------------------------
def positive_int(text):
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def non_negative_int(text):
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def pixels(text):
    """A size in pixels (>= 1)."""
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of pixels") from None


def unit_interval(text):
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def layer_list(text):
    """Comma-separated VGG-16 layer names (e.g. relu1_2,relu2_2) -> a tuple; "" -> ()."""
    layers = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in layers:
        if name not in LAYER_NAMES:
            raise argparse.ArgumentTypeError(f"unknown VGG-16 layer {name!r}; choose among {', '.join(LAYER_NAMES)}")
    return layers


def number_list(text):
    """Comma-separated numbers -> a tuple of floats."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


# -- the shared options ------------------------------------------------------------------------------
def add_device(parser):
    """--device auto|cpu|cuda|emu; None when not given: then $MICROST_DEVICE, else auto (resolve_device)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES,
                        help="default: $MICROST_DEVICE, else auto (cuda if usable, else cpu)")


def resolve_device(name):
    """The device to run on (see microst.device.resolve), announcing what auto picked; a UserError naming
    the option (or $MICROST_DEVICE) when it is unknown or unusable."""
    try:
        return devices.resolve(name, announce=True)
    except (ValueError, RuntimeError) as e:
        source = f"--device {name}" if name is not None else "$MICROST_DEVICE"
        raise UserError(f"{source}: {e}") from None


def add_precision(parser):
    """--precision fp32|tf32|bf16: the kernels' GEMM precision (None: $MICROST_PRECISION, else the device's)."""
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="GEMMs on the GPU: tf32 or bf16 on tensor cores (FP32 accumulate), or fp32; default "
                             "$MICROST_PRECISION, else tf32 on cuda, fp32 on emu (cpu: always fp32)")


def apply_precision(name, device):
    """Set the kernels' precision for this process (microst.ops.use_precision); a UserError for a
    tensor-core precision on cpu."""
    if name is None:
        return
    if device == "cpu" and name != "fp32":
        raise UserError(f"--precision {name}: the cpu computes in FP32; tensor cores are cuda's (and emu's, "
                        f"which emulates them): use --device cuda or emu, or leave --precision out")
    use_precision(name)


def add_vgg(parser):
    """--vgg H5: the VGG-16 weights of the loss network (None: weights/vgg16.h5)."""
    parser.add_argument("--vgg", metavar="H5", help="VGG-16 weights, HDF5 (default weights/vgg16.h5)")


def add_progress(parser):
    """--no-progress: no progress bar."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_layers(parser):
    """--content-layers and --style-layers: tuples of VGG-16 layer names (defaults: microst.losses')."""
    parser.add_argument("--content-layers", type=layer_list, metavar="L,L",
                        help=f"VGG-16 layers of the content loss, comma-separated "
                             f"(default {','.join(DEFAULT_CONTENT_LAYERS)})")
    parser.add_argument("--style-layers", type=layer_list, metavar="L,L",
                        help=f"VGG-16 layers of the style loss (default {','.join(DEFAULT_STYLE_LAYERS)})")


def add_size(parser, help="resize so that the longest side is N pixels"):
    """--size N: the longest side of the images, in pixels."""
    parser.add_argument("--size", type=pixels, metavar="N", help=help)
