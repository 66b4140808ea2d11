"""Every kernel against the `cpu` path: float32, fresh random inputs, odd shapes (H, W not multiples
of the 64-wide tiles, C not a multiple of 32, batch > 1), outputs poisoned with NaN before each
launch. On `emu` always, under two block scheduling orders (a cheap race detector); on `cuda`
under the gpu marker. Forward output and every input gradient are compared."""
import zlib

import numpy as np
import pytest

import microst
import microst.functional as F
from microst import cuda
from microst.device import to_numpy
from microst.ops import conv as conv_ops

DEVICES = ["emu", pytest.param("cuda", marks=pytest.mark.gpu)]
ORDERS = ["forward", "reverse"]


def case(name, fn, *shapes, positive=()):
    return pytest.param(fn, shapes, positive, id=name)


def _bn_eval(x, w, b):
    c = x.shape[1]
    mean = microst.tensor(np.linspace(-0.5, 0.5, c).astype(np.float32), device=x.device)
    var = microst.tensor(np.linspace(0.5, 2.0, c).astype(np.float32), device=x.device)
    return F.batch_norm(x, mean, var, w, b, training=False)


CASES = [
    case("conv2d 3x3 pad1 odd", lambda x, w, b: F.conv2d(x, w, b, padding=1), (2, 5, 9, 11), (7, 5, 3, 3), (7,)),
    case("conv2d wide channels", lambda x, w, b: F.conv2d(x, w, b, padding=1), (2, 37, 5, 7), (70, 37, 3, 3), (70,)),
    case("conv2d 3x3 stride2", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (2, 3, 9, 8), (6, 3, 3, 3), (6,)),
    case("conv2d 9x9 pad4", lambda x, w: F.conv2d(x, w, padding=4), (1, 3, 13, 10), (4, 3, 9, 9)),
    case("conv2d 1x1", lambda x, w, b: F.conv2d(x, w, b), (3, 6, 5, 5), (5, 6, 1, 1), (5,)),
    case("conv_transpose2d s2", lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1), (2, 6, 5, 7), (6, 5, 3, 3), (5,)),
    case("conv_transpose2d s1", lambda x, w: F.conv_transpose2d(x, w, None, 1, 1), (1, 4, 6, 5), (4, 3, 3, 3)),
    case("instance_norm", lambda x, w, b: F.instance_norm(x, w, b), (3, 5, 7, 9), (5,), (5,)),
    case("instance_norm plain", lambda x: F.instance_norm(x), (2, 3, 33, 35)),
    case("batch_norm train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (3, 5, 6, 7), (5,), (5,)),
    case("batch_norm eval", _bn_eval, (2, 5, 6, 7), (5,), (5,)),
    case("gram", F.gram, (2, 37, 9, 11)),
    case("gram wide", F.gram, (1, 70, 5, 3)),
    case("mse_loss", F.mse_loss, (2, 3, 17, 19), (2, 3, 17, 19)),
    case("tv_loss", F.tv_loss, (2, 3, 9, 13)),
    case("relu", F.relu, (2, 3, 9, 7)),
    case("leaky_relu", lambda x: F.leaky_relu(x, 0.2), (2, 3, 9, 7)),
    case("tanh", F.tanh, (2, 3, 9, 7)),
    case("sigmoid", F.sigmoid, (2, 3, 9, 7)),
    case("pad reflect", lambda x: F.pad(x, (3, 2, 1, 4), "reflect"), (2, 3, 7, 6)),
    case("pad replicate", lambda x: F.pad(x, (2, 3, 4, 1), "replicate"), (2, 3, 5, 6)),
    case("pad constant", lambda x: F.pad(x, (1, 2, 3, 0), "constant", 0.5), (1, 2, 5, 6)),
    case("max_pool2d 2", lambda x: F.max_pool2d(x, 2), (2, 3, 9, 8)),
    case("max_pool2d 3 s2", lambda x: F.max_pool2d(x, 3, 2), (1, 3, 11, 9)),
    case("avg_pool2d 2", lambda x: F.avg_pool2d(x, 2), (2, 3, 9, 8)),
    case("avg_pool2d 3 s1", lambda x: F.avg_pool2d(x, 3, 1), (1, 2, 7, 6)),
    case("interpolate x2", lambda x: F.interpolate(x, scale_factor=2), (2, 3, 5, 7)),
    case("add broadcast", lambda a, b: a + b, (2, 3, 4, 5), (3, 1, 5)),
    case("sub", lambda a, b: a - b, (2, 3, 4, 5), (2, 3, 4, 5)),
    case("mul broadcast", lambda a, b: a * b, (2, 3, 4, 5), (1, 3, 1, 1)),
    case("div", lambda a, b: a / b, (2, 3, 4), (2, 3, 4), positive=(1,)),
    case("scalar ops", lambda a: (2.0 - a) * 3.0 + a / 4.0, (2, 3, 4)),
    case("pow", lambda a: a ** 3.0 + a ** 0.5, (3, 7), positive=(0,)),
    case("sum dims", lambda a: a.sum(dim=(0, 2)), (3, 4, 5)),
    case("mean keepdim", lambda a: a.mean(dim=1, keepdim=True) * a, (2, 3, 4)),
    case("mean all", lambda a: a.mean(), (2, 3, 4, 5)),
    case("crop", lambda a: a[:, :, 2:-2, 2:-2], (2, 3, 9, 8)),
    case("strided slice", lambda a: a[1, ..., ::-2], (2, 3, 7)),
    case("cat", lambda a, b: microst.cat([a, b, a], dim=1), (2, 3, 4), (2, 2, 4)),
    case("reshape", lambda a: a.reshape(6, 10) * 2.0, (2, 3, 10)),
]


def _random_inputs(shapes, positive, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for i in positive:
        arrays[i] = np.abs(arrays[i]) + 0.5
    return arrays


def forward_backward(device, fn, arrays, seed):
    xs = [microst.tensor(a, requires_grad=True, device=device) for a in arrays]
    y = fn(*xs)
    gy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    return [y.numpy()] + [to_numpy(x.grad) for x in xs]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn, shapes, positive", CASES)
def test_kernel_matches_cpu(fn, shapes, positive, device, order):
    seed = zlib.crc32(str(shapes).encode()) % 1000
    arrays = _random_inputs(shapes, positive, seed)
    expected = forward_backward("cpu", fn, arrays, seed)
    with cuda.poisoned(), cuda.emu_order(order):
        got = forward_backward(device, fn, arrays, seed)
    for i, (g, e) in enumerate(zip(got, expected)):
        what = "output" if i == 0 else f"gradient of input {i - 1}"
        assert np.all(np.isfinite(g)), f"{what}: NaN/inf (an element was never written?)"
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(e).max())), err_msg=what)


@pytest.mark.parametrize("device", DEVICES)
def test_conv_weight_gradient_split_reduction(device, monkeypatch):
    """The backward-weight reduction split over several blocks and summed by sum_splits."""
    monkeypatch.setattr(conv_ops, "SPLIT_ROWS", 16)
    arrays = _random_inputs([(2, 4, 9, 7), (5, 4, 3, 3)], (), 0)
    expected = forward_backward("cpu", lambda x, w: F.conv2d(x, w, padding=1), arrays, 0)
    with cuda.poisoned(), cuda.emu_order("random"):
        got = forward_backward(device, lambda x, w: F.conv2d(x, w, padding=1), arrays, 0)
    np.testing.assert_allclose(got[2], expected[2], rtol=2e-4, atol=2e-4)


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
