"""python -m microst.export: the ONNX graph computes what microst computes.

Each generator, with every norm (batch norm in eval mode with running statistics that are not 1 and
0), both upsamplings, both activations and TextureNet with and without content, is exported, run in
onnxruntime and compared with microst on cpu at two odd sizes, TextureNet fed the noise microst draws
(model.prepare). Then the command line: a bundled style becomes a valid file, bad input is one line."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import microst
from microst import random
from microst.autograd import no_grad
from microst.checkpoint import load_model
from microst.export import main, to_onnx
from microst.models.generator import NORMS, InstanceNorm2d
from microst.models.johnson import UPSAMPLES, TransformerNet
from microst.models.ulyanov import TextureNet
from microst.nn import BatchNorm2d, Conv2d, ConvTranspose2d

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (pip install 'microst[onnx]')")

README = Path(__file__).resolve().parent.parent / "README.md"
SIZES = [(37, 53), (64, 48)]
TOLERANCE = 0.05  # pixels (of 255): float32 sums in another order, through ten layers and tanh


def onnxruntime():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime): "
                                                     "the exported graph cannot be run")


def session(proto):
    return onnxruntime().InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def randomized(cls, seed=0, **config):
    """cls(**config) in eval mode, the same whatever ran before: its convs initialized from `seed` with
    weights of variance 1 / fan-in (without instance norm the default 1 / (3 fan-in) leaves a flat 127.5
    to compare), its norms' scales, shifts and running statistics drawn away from 1 and 0 (running
    variances in [0.5, 2])."""
    random.manual_seed(seed)
    model = cls(**config)
    rng, state = np.random.default_rng(seed), {}
    for prefix, m in model.named_modules():
        if isinstance(m, (Conv2d, ConvTranspose2d)):
            state[prefix + "weight"] = m.weight.numpy() * np.sqrt(3)
        if isinstance(m, (InstanceNorm2d, BatchNorm2d)):
            n = m.weight.shape[0]
            state.update({prefix + "weight": rng.uniform(0.5, 1.5, n), prefix + "bias": 0.2 * rng.standard_normal(n)})
        if isinstance(m, BatchNorm2d):
            state.update({prefix + "running_mean": 0.2 * rng.standard_normal(n),
                          prefix + "running_var": rng.uniform(0.5, 2.0, n)})
    return model.load_state_dict(state, strict=False).eval()


def image(h, w, seed=1):
    return (np.random.default_rng(seed).random((2, 3, h, w)) * 255).astype(np.float32)


def compare(model, feeds, expected):
    out = session(to_onnx(model)).run(None, feeds)[0]
    assert out.shape == expected.shape
    # a flat or saturated output would hide a wrong graph
    assert np.mean((expected > 5) & (expected < 250)) > 0.5 and expected.std() > 10, "the test would see nothing"
    error = float(np.abs(out - expected).max())
    assert error < TOLERANCE, f"max |onnx - microst| = {error} pixels"
    return error


def compare_transformer_net(model, x):
    with no_grad():
        expected = model(microst.tensor(x)).numpy()
    return compare(model, {"image": x}, expected)


@pytest.mark.parametrize("h, w", SIZES)
@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("norm", NORMS)
def test_transformer_net_round_trip(norm, upsample, h, w):
    compare_transformer_net(randomized(TransformerNet, norm=norm, upsample=upsample, width=0.25), image(h, w))


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (1, 6)])
def test_tiny_images_are_padded_as_microst_pads_them(size):
    """A pad larger than the image reflects repeatedly (and a side of one pixel is replicated)."""
    compare_transformer_net(randomized(TransformerNet, width=0.125), image(*size))


def noise_feeds(model, noise):
    """The graph's noise inputs from the (Tensor, factor) pairs of model.prepare (none without noise)."""
    return {f"noise_{k + 1}": t.numpy() for k, (t, _) in enumerate(noise)} if model.noise_channels else {}


TEXTURES = [dict(norm=n) for n in NORMS] + [dict(activation="leaky_relu"), dict(noise_channels=0)]


@pytest.mark.parametrize("h, w", SIZES)
@pytest.mark.parametrize("options", TEXTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_texture_net_round_trip(options, h, w):
    model = randomized(TextureNet, **dict(dict(scales=3, channels=4, noise_channels=2), **options))
    x = image(h, w)
    inputs, _ = model.prepare(microst.tensor(x), seed=7)
    feeds = {"image": x, **noise_feeds(model, inputs[1:])}
    with no_grad():
        expected = model(microst.tensor(x), seed=7).numpy()
    compare(model, feeds, expected)


@pytest.mark.parametrize("h, w", SIZES)
def test_texture_synthesizer_round_trip(h, w):
    model = randomized(TextureNet, scales=3, channels=4, noise_channels=2, content=False)
    inputs, _ = model.prepare(None, seed=3, size=(h, w), batch=2)
    feeds = {"size": np.array([h, w], np.int64), **noise_feeds(model, inputs)}
    with no_grad():
        expected = model(None, seed=3, size=(h, w), batch=2).numpy()
    compare(model, feeds, expected)


def test_the_noise_follows_the_documented_shapes_and_draws():
    model = TextureNet(scales=3, channels=4, noise_channels=2)
    proto = to_onnx(model)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {"image": ["N", 3, "H", "W"], "noise_1": ["N", 2, "Hp", "Wp"],
                    "noise_2": ["N", 2, "Hp/2", "Wp/2"], "noise_3": ["N", 2, "Hp/4", "Wp/4"]}
    align = int({p.key: p.value for p in proto.metadata_props}["align"])
    h, w = 37, 53  # Hp = max(ceil(H / A) * A, 2A)
    hp, wp = (max(-(-s // align) * align, 2 * align) for s in (h, w))
    inputs, _ = model.prepare(microst.tensor(image(h, w)), seed=5)
    shapes = [(2, 2, hp, wp), (2, 2, hp // 2, wp // 2), (2, 2, hp // 4, wp // 4)]
    assert [t.shape for t, _ in inputs[1:]] == shapes
    rng = np.random.default_rng(5)  # and drawn so, they are --noise-seed 5's
    for (t, _), shape in zip(inputs[1:], shapes):
        np.testing.assert_array_equal(t.numpy(), rng.random(shape, dtype=np.float32))


# -- the command line ------------------------------------------------------------------------------
def test_a_bundled_style_exports_to_a_valid_file(tmp_path, capsys):
    out = tmp_path / "great_wave.onnx"
    assert main(["great_wave", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["image"] and proto.graph.output[0].name == "stylized"
    compare_transformer_net(load_model("great_wave"), image(37, 53)[:1])


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """The five lines of "Export to ONNX" in the README, on a photo and an export made here."""
    from PIL import Image
    onnxruntime()  # or skip
    section = README.read_text().split("## Export to ONNX", 1)[1]
    code = re.search(r"^```\n(import .*?)^```", section, re.S | re.M).group(1)
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    Image.fromarray((image(40, 30)[0].transpose(1, 2, 0)).astype(np.uint8)).save("photo.jpg")
    assert main(["great_wave", "-o", "great_wave.onnx"]) == 0
    exec(compile(code, str(README), "exec"), {})
    assert Image.open("photo_wave.jpg").size == (30, 40)


def one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_an_unknown_model_is_one_line(tmp_path, capsys):
    assert "no_such_style" in one_line_error(capsys, ["no_such_style", "-o", str(tmp_path / "x.onnx")])


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "x.onnx"  # under a file: no folder can be made there (even as root)
    assert str(out) in one_line_error(capsys, ["great_wave", "-o", str(out)])
    assert not out.parent.is_dir()


def test_without_onnx_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert "microst[onnx]" in one_line_error(capsys, ["great_wave", "-o", str(tmp_path / "x.onnx")])
