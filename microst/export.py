"""Export a trained generator as an ONNX graph, to run it without microst (onnxruntime, phones, browsers).

    python -m microst.export great_wave -o great_wave.onnx
    python -m microst.export runs/painting/painting.h5 -o painting.onnx

MODEL: a bundled style's name (weights/styles/NAME.h5) or a checkpoint path.

The graph does what microst does, pixels in and pixels out: input "image", (N, 3, H, W) float32 RGB
in [0, 255], any H, W >= 1 (dynamic); output "stylized", the same shape, RGB in (0, 255). Inside:
x / 127.5 - 1, the reflection padding up to the network's grid (and TransformerNet's margin), the
network, 127.5 * (tanh + 1), the crop back to H x W. Batch norm runs in eval mode, with its running
statistics.

A texture network (--model texture in train) also takes its noise, so that the caller chooses it
(a runtime's random draws would differ from microst's): inputs "noise_1" (the finest scale) ...
"noise_K", uniform in [0, 1), noise_k of shape (N, NOISE_CHANNELS, Hp / 2^(k-1), Wp / 2^(k-1)),
where Hp = max(ceil(H / A) * A, 2A) and A = 2^(K-1) (Wp likewise from W). The file's metadata holds
A ("align"), K ("scales") and NOISE_CHANNELS ("noise_channels"). Drawn in turn, k = 1 .. K, by
numpy.random.default_rng(S).random(shape, dtype=numpy.float32), they are stylize's --noise-seed S.
A texture synthesizer (trained without content) has no "image": its input "size" (int64, [H, W])
gives the size of its output, "texture".

Needs the onnx package: pip install "microst[onnx]". The file is checked with onnx.checker and
written to a temporary file renamed into place.
"""
import json
import sys

from . import cli
from .checkpoint import load_model
from .errors import UserError, cli_main
from .files import atomic_write
from .onnx_graph import (IR_VERSION, OPSET, Graph, aligned_padding, conv, crop, image_size, norm, reflect_pad,
                         reflect_steps, to_pixels, to_unit, upsample_nearest)
from .version import __version__


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError('exporting to ONNX needs the onnx package: pip install "microst[onnx]"') from None
    return onnx


# -- TransformerNet (microst.models.johnson) --------------------------------------------------------
def _layer(g, layer, x):
    """ConvLayer: conv + norm (+ ReLU)."""
    return norm(g, layer.norm, conv(g, layer.conv, x), relu=layer.relu)


def _residual(g, block, x):
    y = norm(g, block.norm1, conv(g, block.conv1, x), relu=True)
    y = norm(g, block.norm2, conv(g, block.conv2, y))
    inner = g.op("Slice", x, g.const([2, 2]), g.const([-2, -2]), g.const([2, 3]), name="identity")
    return g.op("Add", y, inner, name=g.path(block))


def _upsample(g, layer, x):
    if layer.mode == "nearest":
        x = upsample_nearest(g, x, f"{g.path(layer)}.nearest")
    return norm(g, layer.norm, conv(g, layer.conv, x), relu=True)


def transformer_net(g, model, image):
    """TransformerNet.prepare, core and finish on the input `image`."""
    hw = image_size(g, image)
    before, after = aligned_padding(g, hw, model.align, 2 * model.align)
    margin = g.const(model.margin)
    # the largest pad at a side of two pixels or more: the margin plus align - 1 (2 pixels padded to 2 * align)
    x = reflect_pad(g, to_unit(g, image), hw, g.op("Add", before, margin), g.op("Add", after, margin),
                    reflect_steps(model.margin + model.align))
    for layer in (model.conv1, model.conv2, model.conv3):
        x = _layer(g, layer, x)
    for block in model.residuals:
        x = _residual(g, block, x)
    x = _upsample(g, model.up2, _upsample(g, model.up1, x))
    return crop(g, to_pixels(g, _layer(g, model.conv_out, x)), before, hw)


# -- TextureNet (microst.models.ulyanov) -----------------------------------------------------------
def _block(g, block, x):
    """ConvBlock: three convs, each followed by norm and ReLU or LeakyReLU(0.2) (ConvBlock.act)."""
    for c, n in ((block.conv1, block.norm1), (block.conv2, block.norm2), (block.conv3, block.norm3)):
        x = conv(g, c, x)
        if block.activation == "relu":
            x = norm(g, n, x, relu=True)
        else:
            x = g.op("LeakyRelu", norm(g, n, x), name=f"{g.path(n)}.leaky_relu", alpha=0.2)
    return x


def _join(g, join, coarse, fine):
    coarse = norm(g, join.norm_coarse, upsample_nearest(g, coarse, f"{g.path(join)}.nearest"))
    both = g.op("Concat", coarse, norm(g, join.norm_fine, fine), axis=1, name=f"{g.path(join)}.concat")
    return _block(g, join.block, both)


def texture_net(g, model, image, noise, size):
    """TextureNet.prepare (less the noise, which comes in), core and finish. `image`: the content input's
    name (None for a texture synthesizer, which gets `size` instead); `noise`: one input per scale."""
    hw = image_size(g, image) if image is not None else size
    before, after = aligned_padding(g, hw, model.align, 2 * model.align)
    content = None
    if image is not None:
        content = reflect_pad(g, to_unit(g, image), hw, before, after, reflect_steps(model.align))
    levels = []
    for k, block in enumerate(model.blocks):
        if content is not None and k:
            content = g.op("AveragePool", content, name=f"content_{k + 1}", kernel_shape=[2, 2], strides=[2, 2])
        parts = ([content] if content is not None else []) + ([noise[k]] if noise else [])
        x = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1, name=f"input_{k + 1}")
        levels.append(_block(g, block, x))
    y = levels[-1]
    for k in range(model.scales - 2, -1, -1):
        y = _join(g, model.joins[k], y, levels[k])
    return crop(g, to_pixels(g, conv(g, model.conv_out, y)), before, hw)


# -- the model -------------------------------------------------------------------------------------
def to_onnx(model):
    """An onnx ModelProto of a microst generator (TransformerNet or TextureNet), checked."""
    onnx = import_onnx()
    helper, TensorProto = onnx.helper, onnx.TensorProto
    g, config = Graph(onnx, model), model.config
    paragraphs = __doc__.split("\n\n")  # [3]: the graph's inputs and outputs, [4]: a texture net's noise
    pixels = ["N", 3, "H", "W"]
    image = "image" if config.get("content", True) else None
    inputs = [helper.make_tensor_value_info(image, TensorProto.FLOAT, pixels)] if image else []
    props = {"config": json.dumps(config), "align": str(model.align)}
    if model.kind == "texture":
        size = None if image else "size"
        if size:
            inputs.append(helper.make_tensor_value_info(size, TensorProto.INT64, [2]))
        noise = [f"noise_{k}" for k in range(1, model.scales + 1)] if model.noise_channels else []
        for k, name in enumerate(noise):
            f = f"/{2 ** k}" if k else ""
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                        ["N", model.noise_channels, f"Hp{f}", f"Wp{f}"]))
        out = texture_net(g, model, image, noise, size)
        props.update(scales=str(model.scales), noise_channels=str(model.noise_channels))
        doc = "\n\n".join(paragraphs[3:5])
    else:
        out = transformer_net(g, model, image)
        doc = paragraphs[3]
    name = "stylized" if image else "texture"
    g.nodes.append(helper.make_node("Identity", [out], [name], name=name))
    graph = helper.make_graph(g.nodes, f"microst_{model.kind}", inputs,
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, pixels)],
                              initializer=g.initializers, doc_string=doc)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="microst", producer_version=__version__)
    ckpt = getattr(model, "checkpoint", None)
    if ckpt is not None and ckpt.style:
        props["style"] = ckpt.style
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto


def export(model, path):
    """Write `model` as ONNX to `path` (atomically)."""
    proto = to_onnx(model)
    with atomic_write(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return proto


def build_parser():
    p = cli.ArgumentParser("python -m microst.export", __doc__)
    p.add_argument("model", metavar="MODEL", help="bundled style name or checkpoint path")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    import_onnx()  # before the model loads: a missing package is the first thing to say
    model = load_model(args.model, device="cpu")
    proto = export(model, args.output)
    names = ", ".join(i.name for i in proto.graph.input)
    print(f"wrote {args.output} ({model.kind}, opset {OPSET}; inputs {names}; output {proto.graph.output[0].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
