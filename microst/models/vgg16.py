"""VGG-16 (Simonyan & Zisserman 2014) as the frozen loss network of style transfer.

    features = VGG16Features()(x)          # x: (N, 3, H, W), RGB in [0, 255]
    features["relu2_2"]                     # (N, 128, H/2, W/2)

Inside: Caffe preprocessing (RGB -> BGR, minus the ImageNet mean 103.939, 116.779, 123.68, as the
weights were trained), then 3x3 convolutions with padding 1, ReLU, and 2x2 max pooling (stride 2,
floor), run only as deep as the deepest layer asked for. Layer names: conv{b}_{k}, relu{b}_{k},
pool{b} (blocks 1..5; the committed weights/vgg16.h5 holds blocks 1-4, through relu4_3).

The weights are buffers, not parameters: plain Tensors with requires_grad=False. They move with
.to(device) but never receive a gradient; the gradient flows through them to the input.
The RGB -> BGR swap is folded into block1_conv1: its weight is kept with the input channels
reversed (RGB order), which is exactly the same convolution as swapping the image's channels.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from .vgg16_h5 import load_vgg16

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BLOCK_SIZES = (2, 2, 3, 3, 3)  # convolutions per block


def _sequence():
    seq = []
    for b, n in enumerate(BLOCK_SIZES, start=1):
        if b > 1:
            seq.append((f"pool{b - 1}", "pool", None))
        for k in range(1, n + 1):
            seq.append((f"conv{b}_{k}", "conv", f"block{b}_conv{k}"))
            seq.append((f"relu{b}_{k}", "relu", f"block{b}_conv{k}"))
    return tuple(seq)


SEQUENCE = _sequence()  # (layer name, kind, Keras conv name), in network order
LAYER_NAMES = tuple(name for name, _, _ in SEQUENCE)
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _check_layers(layers, available=LAYER_NAMES):
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("VGG16Features: asked for no layer")
    for name in layers:
        if name not in available:
            raise ValueError(f"VGG16Features: unknown layer {name!r}; choose among {', '.join(available)}")
    return layers


class VGG16Features(nn.Module):
    """Feature maps of VGG-16 for the perceptual losses.

    path:    the HDF5 weights (Keras layout); default weights/vgg16.h5 of this repository.
    layers:  the layers forward() returns by default (names as in LAYER_NAMES).
    weights: instead of a file, {"block1_conv1": (weight (Cout, Cin, 3, 3), bias), ...} with Cin in
             BGR order for block1_conv1, as in the file; any channel widths (tests use tiny ones).
    dtype:   of the weights read from `path` (the input must have the same dtype).
    """

    def __init__(self, path=None, layers=DEFAULT_LAYERS, weights=None, dtype=np.float32):
        super().__init__()
        self.layers = _check_layers(layers)
        self.depth = max(LAYER_NAMES.index(name) for name in self.layers) + 1
        convs = [conv for _, kind, conv in SEQUENCE[:self.depth] if kind == "conv"]
        if weights is None:
            weights = load_vgg16(path, convs, dtype)
        missing = [c for c in convs if c not in weights]
        if missing:
            raise ValueError(f"VGG16Features: no weights given for {', '.join(missing)}")
        self.convs = convs
        for i, conv in enumerate(convs):
            w, b = (np.asarray(a) for a in weights[conv])
            if i == 0:
                w = w[:, ::-1]  # BGR -> RGB input channels: the image's channel swap, folded in
            self.register_buffer(f"{conv}_weight", Tensor(np.ascontiguousarray(w)))
            self.register_buffer(f"{conv}_bias", Tensor(np.ascontiguousarray(b)))
        dtype = self._buffers[f"{convs[0]}_weight"].dtype
        mean_rgb = np.array(CAFFE_MEAN_BGR[::-1], dtype).reshape(1, 3, 1, 1)
        self.register_buffer("mean_rgb", Tensor(mean_rgb))

    @property
    def dtype(self):
        return self.mean_rgb.dtype

    def forward(self, x, layers=None):
        """{layer name: Tensor} for `layers` (default: those given to the constructor).

        x: (N, 3, H, W) RGB in [0, 255], same dtype and device as the network; H, W >= 2**(pools).
        """
        layers = self.layers if layers is None else _check_layers(layers, LAYER_NAMES[:self.depth])
        if not isinstance(x, Tensor):
            raise TypeError(f"VGG16Features: expected a microst Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16Features: input must be (N, 3, H, W) RGB in [0, 255], got shape {x.shape}")
        if x.dtype != self.dtype:
            raise TypeError(f"VGG16Features: input is {x.dtype} but the network is {self.dtype}; convert one of them")
        wanted = set(layers)
        last = max(LAYER_NAMES.index(name) for name in layers)
        out = {}
        h = x - self.mean_rgb
        for name, kind, conv in SEQUENCE[:last + 1]:
            if kind == "conv":
                h = F.conv2d(h, self._buffers[f"{conv}_weight"], self._buffers[f"{conv}_bias"], padding=1)
            elif kind == "relu":
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2)
            if name in wanted:
                out[name] = h
        return {name: out[name] for name in layers}
