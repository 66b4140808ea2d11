"""Building an ONNX graph out of microst's layers: the pieces python -m microst.export assembles.

    g = Graph(onnx, model)                          # onnx: the package, imported by the caller
    y = g.op("Relu", x)                             # one node; its output's (unique) name
    y = conv(g, model.conv1.conv, x)                # a microst layer as nodes, weights as initializers
    hw = g.op("Gather", g.op("Shape", x), g.const([2, 3]))
    before, after = aligned_padding(g, hw, align=4, minimum=8)
    x = reflect_pad(g, x, hw, before, after, steps=reflect_steps(45))

Nodes and weights are named by the microst modules they come from (the weight "conv1.conv.weight" is
the checkpoint's key, its node "conv1.conv"), so that a graph viewer shows the network as microst's
source does.

Sizes are dynamic, so the padding that the generators compute in Python (microst.models.generator)
is computed here inside the graph, on int64 tensors of two values (H, W) together: Shape, Gather,
Add, Div, Mul, Max, Sub, Min, Equal, Cast. ONNX's Pad "reflect" needs each pad smaller than the
side it pads, while generator.reflect_pad reflects again and again when a pad is larger (a margin
of 40 around a 5-pixel image); reflect_pad below chains as many Pad nodes as the largest pad needs
at the smallest side, each reflecting by min(what is left, side - 1), exactly as the Python loop
does, after one "edge" Pad that replicates a side of one pixel. Pads of zero copy the image and do
nothing else, so any H, W >= 1 is accepted, and large images pay a few copies of the input.
"""
import numpy as np

from . import nn
from .models import generator

OPSET = 17       # Pad without `axes`, Resize-13, BatchNormalization-15: what most runtimes run today
IR_VERSION = 8   # the IR version of opset 17, so that older runtimes load the file too


class Graph:
    """Nodes and initializers under construction, with names made unique; `model`'s modules name theirs."""

    def __init__(self, onnx, model):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self._used = [], [], set()
        self._paths = {id(m): prefix.rstrip(".") for prefix, m in model.named_modules()}

    def path(self, module):
        """The module's name in the model, as in its state_dict keys ("residuals.0.conv1")."""
        return self._paths[id(module)]

    def name(self, hint):
        name, k = hint, 1
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def const(self, value, name="const", dtype=np.int64):
        """An initializer holding `value` (ints default to int64: the shape arithmetic's type)."""
        name = self.name(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def param(self, module, key):
        """A parameter or buffer of a microst module, as float32, named by its state_dict key."""
        return self.const(getattr(module, key).numpy(), f"{self.path(module)}.{key}", np.float32)

    def op(self, op_type, *inputs, name=None, **attributes):
        """Append one node and return the name of its output."""
        out = self.name(name or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attributes))
        return out

    def scalar(self, value):
        return self.const(value, "const", np.float32)


# -- layers ---------------------------------------------------------------------------------------
def conv(g, module, x):
    """nn.Conv2d or nn.ConvTranspose2d: their weight layouts, (Cout, Cin, kh, kw) and (Cin, Cout, kh, kw),
    stride, zero padding and output_padding are ONNX's Conv and ConvTranspose's as they are."""
    s, p = module.stride, module.padding
    attributes = {"kernel_shape": list(module.weight.shape[2:]), "strides": [s, s], "pads": [p] * 4}
    op = "Conv"
    if isinstance(module, nn.ConvTranspose2d):
        op, attributes["output_padding"] = "ConvTranspose", [module.output_padding] * 2
    inputs = [x, g.param(module, "weight")] + ([g.param(module, "bias")] if module.bias is not None else [])
    return g.op(op, *inputs, name=g.path(module), **attributes)


def norm(g, module, x, relu=False):
    """A generator's norm (instance, batch with its running statistics, or none), then Relu when the
    model calls norm(x, relu=True) (microst fuses the two into one op; ONNX runtimes fuse them too).
    The generators' norms are affine (make_norm), as ONNX's norms require."""
    name = g.path(module)
    if isinstance(module, generator.InstanceNorm2d):
        x = g.op("InstanceNormalization", x, g.param(module, "weight"), g.param(module, "bias"), name=name,
                 epsilon=module.eps)
    elif isinstance(module, nn.BatchNorm2d):
        # eval mode: the running statistics, as microst's batch_norm with training=False
        x = g.op("BatchNormalization", x, *(g.param(module, key) for key in ("weight", "bias", "running_mean",
                                                                           "running_var")),
                 name=name, epsilon=module.eps)
    elif not isinstance(module, generator.Identity):
        raise ValueError(f"{name}: no ONNX translation for {type(module).__name__}")
    return g.op("Relu", x, name=f"{name}.relu") if relu else x


def upsample_nearest(g, x, name="upsample"):
    """F.interpolate(x, scale_factor=2): every pixel becomes a 2 x 2 block (asymmetric, floor)."""
    return g.op("Resize", x, "", g.const([1, 1, 2, 2], "scales", np.float32), name=name, mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def to_unit(g, x):
    """generator.to_unit, in the same order of float32 operations: x * (1 / 127.5) - 1."""
    return g.op("Sub", g.op("Mul", x, g.scalar(1.0 / 127.5)), g.scalar(1.0), name="to_unit")


def to_pixels(g, y):
    """generator.to_pixels: 127.5 * tanh(y) + 127.5."""
    return g.op("Add", g.op("Mul", g.op("Tanh", y), g.scalar(127.5)), g.scalar(127.5), name="to_pixels")


# -- sizes and padding ----------------------------------------------------------------------------
def image_size(g, x):
    """(H, W) of an NCHW tensor, int64."""
    return g.op("Gather", g.op("Shape", x), g.const([2, 3]), name="hw")


def aligned_padding(g, hw, align, minimum):
    """generator.aligned_padding on (H, W) inside the graph: (before, after), each (H, W), that pad up
    to a multiple of `align` that is at least `minimum`, split evenly."""
    up = g.op("Mul", g.op("Div", g.op("Add", hw, g.const(align - 1)), g.const(align)), g.const(align))
    extra = g.op("Sub", g.op("Max", up, g.const(-(-minimum // align) * align)), hw, name="extra")
    before = g.op("Div", extra, g.const(2), name="before")
    return before, g.op("Sub", extra, before, name="after")


def reflect_steps(largest_pad):
    """How many Pad "reflect" nodes reflect_pad needs so that no pad up to `largest_pad` is left over
    at any side of two pixels or more (generator.reflect_pad's loop, counted for one side growing
    alone: the slowest case)."""
    steps, size, left = 0, 2, largest_pad
    while left:
        step = min(left, size - 1)
        left, size, steps = left - step, size + step, steps + 1
    return steps


def _pads(g, before, after):
    """ONNX Pad's pads for NCHW from (H, W) before and after: [0, 0, top, left, 0, 0, bottom, right]."""
    zeros = g.const([0, 0])
    return g.op("Concat", zeros, before, zeros, after, axis=0, name="pads")


def reflect_pad(g, x, hw, before, after, steps):
    """generator.reflect_pad with dynamic amounts: replicate a side of one pixel, then reflect by at most
    side - 1 per Pad node. Reflection acts on each axis alone, so one node pads both H and W."""
    one = g.const(1)
    single = g.op("Cast", g.op("Equal", hw, one), to=g.onnx.TensorProto.INT64, name="single_pixel")
    edge_before, edge_after = g.op("Mul", before, single), g.op("Mul", after, single)
    x = g.op("Pad", x, _pads(g, edge_before, edge_after), name="replicate", mode="edge")
    before, after = g.op("Sub", before, edge_before), g.op("Sub", after, edge_after)
    size = g.op("Add", g.op("Add", hw, edge_before), edge_after)
    for _ in range(steps):
        room = g.op("Sub", size, one)
        b, a = g.op("Min", before, room), g.op("Min", after, room)
        x = g.op("Pad", x, _pads(g, b, a), name="reflect", mode="reflect")
        before, after = g.op("Sub", before, b), g.op("Sub", after, a)
        size = g.op("Add", g.op("Add", size, b), a)
    return x


def crop(g, y, top_left, hw):
    """Generator.finish: y[:, :, top:top + H, left:left + W]."""
    return g.op("Slice", y, top_left, g.op("Add", top_left, hw), g.const([2, 3]), name="crop")
