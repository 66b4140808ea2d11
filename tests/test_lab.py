"""The kernel lab and what it rests on: version selection and pins, the case lists, the launcher's
checks (32-bit sizes, outputs written in place), the emu allocator, `python -m microst.lab`, and
the FLOP counts of whole networks."""
import os
import subprocess
import sys

import numpy as np
import pytest

import microst
import microst.functional as F
from microst import device as devices
from microst import ops
from microst.errors import UserError
from microst.ops import base, versions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_lab(*args, env=None):
    return subprocess.run([sys.executable, "-m", "microst.lab", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})


# -- selection and pins ----------------------------------------------------------------------------
def test_pins_select_a_version_and_the_context_manager_restores_the_default():
    assert versions.selected("conv", "emu").name == versions.DEFAULTS["conv"]["emu"]
    with ops.use_kernels(conv="v0"):
        assert versions.selected("conv", "emu").name == "v0"
        assert versions.selected("conv", "cuda").name == "v0"
        assert versions.selected("norm", "emu").name == versions.DEFAULTS["norm"]["emu"]
    assert versions.selected("conv", "emu").name == versions.DEFAULTS["conv"]["emu"]


def test_environment_pins(monkeypatch):
    monkeypatch.setenv("MICROST_KERNELS", "conv=v0, loss=v1")
    assert versions.selected("conv", "emu").name == "v0"
    with ops.use_kernels(conv="v1"):  # a call beats the environment
        assert versions.selected("conv", "emu").name == "v1"


@pytest.mark.parametrize("pins, message", [
    ({"conv": "v9"}, r"conv has no kernel version 'v9'; versions of conv: v0, v1, v2"),
    ({"convolution": "v1"}, r"unknown kernel family 'convolution'; families: conv, norm, loss"),
])
def test_a_bad_pin_lists_what_exists(pins, message):
    with pytest.raises(UserError, match=message):
        ops.use_kernels(**pins)


@pytest.mark.parametrize("value, message", [
    ("conv=v9", "conv has no kernel version 'v9'"), ("conv", "is not FAMILY=VERSION"),
    ("gemm=v1", "unknown kernel family 'gemm'")])
def test_a_bad_environment_pin_is_one_line_and_exit_2(value, message):
    r = run_lab("conv", env={"MICROST_KERNELS": value})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_a_bad_kernel_version_option_is_one_line():
    r = run_lab("conv", "--kernel-version", "v7")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "v0, v1, v2" in r.stderr, r.stderr


def test_every_version_names_kernels_that_exist():
    for family in ops.FAMILIES:
        for version in versions.versions(family).values():
            for file, name in version.kernels.values():
                microst.cuda.get_kernel("emu", file, name)  # raises when file or kernel is missing


def test_cases_have_unique_names_and_count_flops_for_the_gemms():
    for family in ops.FAMILIES:
        names = [c.name for c in ops.cases(family)]
        assert len(names) == len(set(names)), family
    for case in ops.cases("conv") + [c for c in ops.cases("loss") if c.name.startswith("gram")]:
        assert case.flops(case.shapes) > 0, case.name
        assert case.flops(case.input_shapes("full")) >= case.flops(case.shapes), case.name


# -- the launcher's checks ----------------------------------------------------------------------
def _huge(size=2 ** 31):
    """A float32 array of `size` elements that takes no memory (every element the same)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(1, 1, 1, size), strides=(0, 0, 0, 0))


def test_sizes_beyond_32_bit_indexing_are_refused_naming_the_op():
    x = microst.Tensor(_huge(), device="emu")
    with pytest.raises(ValueError, match=r"relu \(forward\): output of shape \(1, 1, 1, 2147483648\) has "
                                         r"2,147,483,648 elements, more than the kernels' 32-bit indexing allows"):
        F.relu(x)


def test_the_launcher_refuses_an_input_beyond_32_bit_indexing():
    out = base.empty("emu", (4,))
    with pytest.raises(base.SizeError, match=r"relu_forward_v1: argument 0 \(x\) of shape"):
        base.launch("emu", ("activation_v1.cu", "relu_forward_v1"), 1, (_huge(), out, base.i32(4)))


def test_the_launcher_refuses_an_output_it_would_write_into_a_copy():
    x = base.empty("emu", (8,))
    x.fill(1.0)
    strided = base.empty("emu", (16,))[::2]
    with pytest.raises(ValueError, match=r"relu_forward_v1: output argument 1 \(y\) must be a contiguous emu array"):
        base.launch("emu", ("activation_v1.cu", "relu_forward_v1"), 1, (x, strided, base.i32(8)))
    not_emu = np.empty(8, np.float32)
    with pytest.raises(ValueError, match="output argument 1"):
        base.launch("emu", ("activation_v1.cu", "relu_forward_v1"), 1, (x, not_emu, base.i32(8)))


def test_the_launcher_copies_strided_inputs():
    x = np.arange(16, dtype=np.float32) - 8
    y = base.empty("emu", (8,))
    base.launch("emu", ("activation_v1.cu", "relu_forward_v1"), 1, (x[::2], y, base.i32(8)))
    np.testing.assert_array_equal(y, np.maximum(x[::2], 0))


# -- the emu allocator ------------------------------------------------------------------------------
def test_emu_arrays_come_from_one_aligned_allocator():
    x = microst.tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32), device="emu",
                       requires_grad=True)
    w = microst.tensor(np.ones((4, 3, 3, 3), np.float32), device="emu", requires_grad=True)
    y = F.instance_norm(F.relu(F.conv2d(x, w, padding=1)))
    y.backward(np.ones(y.shape, np.float32))
    for a in (x.data, w.data, y.data, x.grad, w.grad):
        assert devices.is_emu_array(a) and a.ctypes.data % devices.EMU_ALIGNMENT == 0
    assert not devices.is_emu_array(np.zeros(3))
    moved = devices.move(np.arange(5.0), "emu")
    assert devices.is_emu_array(moved) and moved.ctypes.data % 64 == 0 and moved.tolist() == [0, 1, 2, 3, 4]


# -- python -m microst.lab --------------------------------------------------------------------------
def test_lab_list_names_every_family_and_version():
    r = run_lab("--list")
    assert r.returncode == 0, r.stderr
    for family in ops.FAMILIES:
        assert f"{family}: default emu=" in r.stdout
    assert "v0  plain loops" in r.stdout


def test_lab_validates_and_times_every_version_of_a_family():
    from microst.lab.family import run
    lines = []
    rows = run("conv", "all", "emu", "small", repeats=1, out=lines.append)
    assert {r["version"] for r in rows} == set(versions.versions("conv"))
    runs = sorted((r["version"], r["precision"]) for r in rows if r["case"] == rows[0]["case"])
    assert runs == [("v0", "fp32"), ("v1", "fp32"), ("v2", "fp32"), ("v3", "bf16"), ("v3", "tf32")]
    assert len(rows) == len(runs) * len(ops.cases("conv")) and all(r["ok"] for r in rows)
    assert all(r["max_rel_err"] < 1e-5 and r["ms"] > 0 for r in rows)
    assert lines[1].split()[:3] == ["case", "version", "max"]


def test_lab_on_cpu_shows_one_cpu_row_per_case():
    from microst.lab.family import run
    rows = run("pad", "all", "cpu", "small", repeats=1, out=lambda line: None)
    assert [r["version"] for r in rows] == ["cpu"] * len(ops.cases("pad"))


# -- microst.lab flops -------------------------------------------------------------------------------
def test_flops_totals_of_the_v1_kernels():
    """The counts the kernel work starts from (see microst.lab.flops for the rules)."""
    from microst.lab.flops import report
    with ops.use_kernels(conv="v1", loss="v1"):
        useful, issued = report("johnson", 512, 1, False, "cuda", out=lambda line: None)
        assert (round(useful / 1e9, 1), round(issued / 1e9, 1)) == (76.3, 189.5)
        useful, issued = report("johnson", 256, 4, True, "cuda", out=lambda line: None)
        assert (round(useful / 1e9, 1), round(issued / 1e9, 1)) == (617.1, 890.6)


@pytest.mark.parametrize("size, batch, train", [(512, 1, False), (256, 4, True)])
def test_the_default_kernels_issue_at_most_15_percent_more_than_the_useful_flops(size, batch, train):
    from microst.lab.flops import report
    for device in ("cuda", "emu"):
        useful, issued = report("johnson", size, batch, train, device, out=lambda line: None)
        assert issued <= 1.15 * useful, (device, issued / useful)


def test_flops_rows_name_layers_and_passes():
    from microst.lab.flops import report
    lines = []
    report("johnson", 64, 1, True, "emu", out=lines.append)
    text = "\n".join(lines)
    for expected in ("conv1.conv", "residuals.4.conv2", "up1.conv", "conv_out.conv", "backward_weight", "vgg",
                     "gram_backward"):
        assert expected in text, expected
    assert "conv1.conv               backward_data" not in text  # no input gradient for the first layer
    assert lines[-1].startswith("total useful GFLOP ")
