"""The tensor-core versions (conv v3, loss v3) and the precision switch: selection by precision and
shape, the rounding the references use, the whole network on emu within the precision's bounds,
two training iterations at each precision, and the command lines' --precision.

The per-case checks of every version against a reference rounded the same way are
tests/test_kernels.py's; emu's own WMMA and cp.async emulation is tests/test_emu_wmma.py's."""
import numpy as np
import pytest

import microst
import microst.functional as F
from microst import checkpoint as mckpt
from microst import cuda, ops
from microst.errors import UserError
from microst.io import load_image
from microst.ops import conv as conv_ops
from microst.ops import precision, versions
from microst.train import resolve_options, train
from microst.transfer import stylize

from test_train import make_images, quiet
from test_video import SAMPLE


# -- the switch ------------------------------------------------------------------------------
def test_precision_selects_the_version(monkeypatch):
    monkeypatch.delenv("MICROST_PRECISION", raising=False)
    monkeypatch.delenv("MICROST_KERNELS", raising=False)
    assert precision.current("emu") == "fp32" and precision.current("cuda") == "tf32"
    assert versions.selection("emu")["conv"] == "v2" and versions.selection("cuda")["conv"] == "v3"
    assert versions.selection("cuda")["loss"] == "v3" and versions.selection("cuda")["norm"] == "v2"
    with ops.use_precision("bf16"):
        assert versions.selection("emu")["conv"] == "v3" and precision.current("cpu") == "fp32"
    with ops.use_precision("fp32"):
        assert versions.selection("cuda")["conv"] == "v2"  # the newest version that computes in fp32
    monkeypatch.setenv("MICROST_PRECISION", "bf16")
    assert precision.current("emu") == "bf16" and versions.selection("emu")["loss"] == "v3"
    monkeypatch.setenv("MICROST_PRECISION", "fp16")
    with pytest.raises(UserError, match="MICROST_PRECISION: unknown precision 'fp16'; choose one of fp32, tf32, bf16"):
        precision.current("emu")


def test_a_pin_that_conflicts_with_the_precision_is_an_error(monkeypatch):
    monkeypatch.delenv("MICROST_PRECISION", raising=False)
    with ops.use_kernels(conv="v2"), ops.use_precision("tf32"):
        with pytest.raises(UserError, match=r"conv=v2 computes in fp32, not at precision tf32; pin a version that "
                                            r"does \(conv=v3\)"):
            versions.selected("conv", "emu")
    with ops.use_kernels(conv="v3"):  # emu's default fp32
        with pytest.raises(UserError, match="conv=v3 computes in tf32/bf16, not at precision fp32"):
            versions.selected("conv", "emu")
    with ops.use_kernels(conv="v2"):  # no precision chosen: the pin of an FP32 version is the choice
        assert versions.selected("conv", "cuda").name == "v2"
    monkeypatch.setenv("MICROST_KERNELS", "loss=v1")
    with ops.use_precision("bf16"), pytest.raises(UserError, match="loss=v1 computes in fp32"):
        versions.selected("loss", "emu")


def test_rounding_to_tf32_and_bf16_bit_by_bit():
    def f(bits):
        return np.array(bits, np.uint32).view(np.float32)
    one = 0x3F800000
    # tf32 keeps 10 mantissa bits: the 13 below round to nearest, ties away from zero
    assert precision.round_tf32(f([one + 0x0FFF, one + 0x1000, one + 0x1001])).view(np.uint32).tolist() == \
        [one, one + 0x2000, one + 0x2000]
    assert precision.round_tf32(f([one + 0x3000])).view(np.uint32)[0] == one + 0x4000  # tie, odd: away
    assert precision.round_tf32(-f([one + 0x1000]))[0] == -f([one + 0x2000])[0]         # away from zero
    # bf16 keeps 7: the 16 below round to nearest, ties to even
    assert precision.round_bf16(f([one + 0x8000, one + 0x18000, one + 0x8001])).view(np.uint32).tolist() == \
        [one, one + 0x20000, one + 0x10000]
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3.4e38], np.float32)
    for r in (precision.round_tf32(x), precision.round_bf16(x)):
        assert np.isinf(r[0]) and np.isinf(r[1]) and np.isnan(r[2]) and r[3] == 0 and np.signbit(r[4])
    assert precision.unit_roundoff("tf32") == 2.0 ** -11 and precision.unit_roundoff("bf16") == 2.0 ** -8


@pytest.mark.parametrize("prec", ["tf32", "bf16"])
def test_a_three_channel_pass_stays_on_the_simt_kernel(prec):
    """The per-shape selection inside v3: M < 16 runs v2's kernel, M >= 16 a tensor-core tile."""
    x = np.random.default_rng(0).standard_normal((1, 32, 12, 10)).astype(np.float32)
    launched = {}
    for cout in (3, 32):
        w = np.random.default_rng(1).standard_normal((cout, 32, 3, 3)).astype(np.float32)
        with ops.use_precision(prec), cuda.counting(dry=True) as names:
            F.conv2d(microst.tensor(x, device="emu"), microst.tensor(w, device="emu"), padding=1)
        launched[cout] = list(names)
    assert launched[3] == ["conv2d_gemm_4x256_v2"]
    assert len(launched[32]) == 1 and launched[32][0].startswith(f"conv2d_tc_{prec}_")


def test_the_reference_rounds_only_what_the_tensor_cores_run():
    g3 = conv_ops.conv_geometry((1, 32, 8, 8), (3, 32, 3, 3), (1, 1), (1, 1))
    g32 = conv_ops.conv_geometry((1, 32, 8, 8), (32, 32, 3, 3), (1, 1), (1, 1))
    v3 = conv_ops.VERSIONS["v3"].launcher
    assert not v3.tensor_cores("forward", g3, "tf32") and v3.tensor_cores("backward_data", g3, "tf32")
    assert v3.tensor_cores("forward", g32, "bf16") and not v3.tensor_cores("forward", g32, "fp32")
    x = np.random.default_rng(2).standard_normal((1, 32, 8, 8)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((3, 32, 3, 3)).astype(np.float32)
    plain = conv_ops.conv2d_forward("cpu", x, w, None, (1, 1), (1, 1))
    with precision.rounded_like("bf16"):
        assert np.array_equal(conv_ops.conv2d_forward("cpu", x, w, None, (1, 1), (1, 1)), plain)  # M = 3: fp32
        w32 = np.concatenate([w] * 11)[:32]
        rounded = conv_ops.conv2d_forward("cpu", x, w32, None, (1, 1), (1, 1))
    expected = conv_ops.conv2d_forward("cpu", precision.round_bf16(x), precision.round_bf16(w32), None, (1, 1), (1, 1))
    np.testing.assert_array_equal(rounded, expected)


# -- whole networks ----------------------------------------------------------------------------
@pytest.mark.parametrize("prec, bound", [("tf32", 1e-2), ("bf16", 5e-2)])
def test_the_bundled_style_on_emu_within_the_precisions_bound(prec, bound):
    """great_wave (width 0.5) on a 48x64 photo: relative error vs the FP32 output, as the largest
    pixel difference over the pixel range (255)."""
    model = mckpt.load_model("great_wave", device="emu")
    photo = load_image(SAMPLE, 64)[:, :48, :64]
    fp32 = stylize(model, photo)
    with ops.use_precision(prec):
        reduced = stylize(model, photo)
    error = float(np.abs(reduced - fp32).max()) / 255
    assert error <= bound, f"{prec}: relative error {error:.2e} > {bound}"
    assert error > 0  # the tensor cores did run (at least one pass has 16+ channels)


def wide_vgg():
    """tiny_vgg's layout with 16-32 channels per layer: every VGG pass but the first on tensor cores."""
    r = np.random.default_rng(0)
    widths = {1: 16, 2: 16, 3: 32, 4: 32}
    weights, cin = {}, 3
    for block, n in ((1, 2), (2, 2), (3, 3), (4, 3)):
        for k in range(1, n + 1):
            cout = widths[block]
            weights[f"block{block}_conv{k}"] = ((r.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin)) / 10)
                                                .astype(np.float32), np.zeros(cout, np.float32))
            cin = cout
    return microst.models.VGG16Features(weights=weights)


@pytest.mark.parametrize("prec", ["fp32", "tf32", "bf16"])
def test_two_training_iterations_on_emu_at_each_precision(tmp_path, prec):
    style, data = make_images(tmp_path)
    opts, _ = resolve_options(["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"),
                               "--device", "emu", "--precision", prec, "--seed", "3", "--no-progress",
                               "--image-size", "32", "--batch-size", "2", "--width", "0.5", "--iterations", "2",
                               "--preview-images", "1", "--read-every", "1"])
    try:
        train(opts, vgg=wide_vgg(), log=quiet)
    finally:
        ops.use_precision(None)
    ckpt = mckpt.load_checkpoint(tmp_path / "run" / "checkpoint.h5")
    assert ckpt.iteration == 2 and ckpt.training["precision"] == prec
    assert all(np.isfinite(v).all() for v in ckpt.state.values())
    assert len(ckpt.history) == 2 and np.isfinite(np.asarray(ckpt.history, dtype=np.float64)).all()


# -- the command lines -------------------------------------------------------------------------
def test_precision_on_cpu_is_refused_in_one_line(tmp_path, capsys):
    from microst.stylize import main
    with pytest.raises(SystemExit) as e:
        main([str(SAMPLE), "--model", "great_wave", "-o", str(tmp_path / "o.jpg"), "--device", "cpu",
              "--precision", "tf32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--precision tf32: the cpu computes in FP32" in err[0]
