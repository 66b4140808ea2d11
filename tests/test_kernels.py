"""Every version of every kernel family against the `cpu` path (the NumPy reference), on every case
the family declares (microst.ops.<family>.cases()): float32, fresh random inputs, odd shapes (H, W
not multiples of the 64-wide tiles, C not a multiple of 32, batch > 1), outputs poisoned with NaN
before each launch. On `emu` always, under two block scheduling orders (a cheap race detector); on
`cuda` under the gpu marker (once: the order is emu's). Forward output and every input gradient are
compared. Memory out of bounds traps (tests/test_emu_bounds.py)."""
import zlib

import numpy as np
import pytest

import microst
import microst.functional as F
from microst import cuda, emu_memory, ops
from microst.device import to_numpy
from microst.lab.family import forward_backward
from microst.ops import conv as conv_ops
from microst.ops import precision, versions
from microst.ops.norm_kernels import NormV2

DEVICES = ["emu", pytest.param("cuda", marks=pytest.mark.gpu)]
# emu runs the blocks (and threads) in forward order with arrays at the end of their guarded pages
# (an access past the end traps), and in reverse order with arrays at the front (one before the
# start traps): microst/emu_memory.py
ORDERS = ("forward", "reverse")
GUARD = {"forward": "end", "reverse": "front"}


def _version_cases():
    for family in ops.FAMILIES:
        for case in ops.cases(family):
            for version, v in versions.versions(family).items():
                for prec in v.precisions or ("fp32",):
                    name = f"{case.name}-{family}={version}-{prec}"
                    for order in ORDERS:
                        yield pytest.param(family, case, version, prec, "emu", order, id=f"{name}-emu-{order}")
                    yield pytest.param(family, case, version, prec, "cuda", "forward", marks=pytest.mark.gpu,
                                       id=f"{name}-cuda")


def run_fn(device, fn, arrays, seed):
    xs = [microst.tensor(a, requires_grad=True, device=device) for a in arrays]
    y = fn(*xs)
    y.backward(np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32))
    return [y.numpy()] + [to_numpy(x.grad) for x in xs]


def assert_close(got, expected):
    for i, (g, e) in enumerate(zip(got, expected)):
        what = "output" if i == 0 else f"gradient of input {i - 1}"
        assert np.all(np.isfinite(g)), f"{what}: NaN/inf (an element was never written?)"
        # tolerances relative to the array's own scale (Gram values are ~1/C, far below 1)
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-4 * float(np.abs(e).max(initial=1e-30)), err_msg=what)


@pytest.mark.parametrize("family, case, version, prec, device, order", list(_version_cases()))
def test_kernel_version_matches_cpu(family, case, version, prec, device, order):
    """A tensor-core version (tf32, bf16) against the cpu path with the same operands rounded the
    same way (precision.rounded_like), at the tolerance of FP32: what is left is the order of
    the FP32 sums."""
    seed = zlib.crc32(case.name.encode()) % 1000
    arrays = case.inputs(seed=seed)
    with precision.rounded_like(prec):
        expected = forward_backward("cpu", case, arrays, seed + 1)
    with ops.use_kernels(**{family: version}), ops.use_precision(prec), cuda.poisoned(), cuda.emu_order(order), \
            emu_memory.guard(GUARD[order]):
        got = forward_backward(device, case, arrays, seed + 1)
    assert_close(got, expected)


def test_every_family_has_cases_and_a_selected_version():
    for family in ops.FAMILIES:
        assert ops.cases(family), family
        for device in ("emu", "cuda"):
            assert versions.selected(family, device).name in versions.versions(family)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("device", DEVICES)
def test_conv_weight_gradient_split_reduction(device, version, monkeypatch):
    """The backward-weight reduction split over several blocks and summed in order."""
    launcher = conv_ops.VERSIONS[version].launcher
    monkeypatch.setattr(launcher, "SPLIT_ROWS", 16)
    assert launcher.splits(conv_ops.conv_geometry((2, 4, 9, 7), (5, 4, 3, 3), (1, 1), (1, 1)))[0] > 1
    x, w, b = (np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in [(2, 4, 9, 7), (5, 4, 3, 3), (5,)])
    fn = lambda x, w, b: F.conv2d(x, w, b, padding=1)  # noqa: E731
    expected = run_fn("cpu", fn, [x, w, b], 0)
    with ops.use_kernels(conv=version), cuda.poisoned(), cuda.emu_order("random"):
        got = run_fn(device, fn, [x, w, b], 0)
    assert_close(got, expected)


@pytest.mark.parametrize("name", ["instance_norm", "instance_norm float4 planes", "instance_norm small variance",
                                  "batch_norm train", "batch_norm_relu train small variance", "instance_norm_relu"])
@pytest.mark.parametrize("device", DEVICES)
def test_norm_statistics_in_many_chunks(device, name, monkeypatch):
    """norm v2's statistics and sums over several blocks per plane, merged by the second stage."""
    monkeypatch.setattr(NormV2, "CHUNK_VALUES", 8)
    case = next(c for c in ops.cases("norm") if c.name == name)
    assert NormV2().chunking(case.shapes[0][0] * case.shapes[0][1], case.shapes[0][2] * case.shapes[0][3])[0] > 2
    seed = zlib.crc32(case.name.encode()) % 1000
    arrays = case.inputs(seed=seed)
    expected = forward_backward("cpu", case, arrays, seed + 1)
    with ops.use_kernels(norm="v2"), cuda.poisoned(), cuda.emu_order("random"):
        got = forward_backward(device, case, arrays, seed + 1)
    assert_close(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_channel_sums_in_many_chunks(device, monkeypatch):
    """arith v2's per-channel sums (bias gradients) over several blocks per plane."""
    from microst.ops import arith
    monkeypatch.setattr(arith, "CHUNK_VALUES", 8)
    x = np.random.default_rng(3).standard_normal((3, 4, 9, 7)).astype(np.float32)
    with ops.use_kernels(arith="v2"), cuda.poisoned(), cuda.emu_order("random"):
        got = arith.sum_axes(device, microst.tensor(x, device=device).data, (0, 2, 3), 0.5)
    np.testing.assert_allclose(to_numpy(got), 0.5 * x.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


def test_batch_norm_running_statistics_on_emu():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 6)).astype(np.float32) * 2 + 1
    stats = {}
    for device in ("cpu", "emu"):
        mean = microst.tensor(np.zeros(3, np.float32), device=device)
        var = microst.tensor(np.ones(3, np.float32), device=device)
        F.batch_norm(microst.tensor(x, device=device), mean, var, training=True)
        stats[device] = mean.numpy(), var.numpy()
    np.testing.assert_allclose(stats["emu"][0], stats["cpu"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["emu"][1], stats["cpu"][1], rtol=1e-4)


def test_kernel_devices_refuse_float64():
    with pytest.raises(TypeError, match="float32"):
        F.relu(microst.tensor(np.zeros((1, 1, 2, 2)), device="emu"))


class TinyNet(microst.nn.Module):
    """conv -> instance_norm -> relu -> conv_transpose -> tanh, plus a cropped residual."""

    def __init__(self):
        super().__init__()
        self.conv = microst.nn.Conv2d(3, 8, 3, stride=2)
        self.norm = microst.nn.InstanceNorm2d(8)
        self.up = microst.nn.ConvTranspose2d(8, 3, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        h = self.up(F.relu(self.norm(self.conv(x))))
        return F.tanh(h + x[:, :, :h.shape[2], :h.shape[3]])


@pytest.mark.parametrize("device", DEVICES)
def test_small_network_equal_across_devices(device):
    x = np.random.default_rng(0).standard_normal((2, 3, 13, 11)).astype(np.float32)
    gy = np.random.default_rng(1).standard_normal((2, 3, 12, 10)).astype(np.float32)
    results = {}
    for d in ("cpu", device):
        microst.manual_seed(0)
        net = TinyNet().to(d)
        xt = microst.tensor(x, requires_grad=True, device=d)
        y = net(xt)
        y.backward(gy)
        grads = {name: to_numpy(p.grad) for name, p in net.named_parameters()}
        results[d] = y.numpy(), to_numpy(xt.grad), grads
    (y0, dx0, g0), (y1, dx1, g1) = results["cpu"], results[device]
    np.testing.assert_allclose(y1, y0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-4, atol=1e-4)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-4, atol=1e-4, err_msg=name)
