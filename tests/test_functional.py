"""Every function of microst.functional on `cpu`: forward against tests/reference.py, backward by
gradient check (float64, random upstream gradient, random direction) at several shapes."""
import zlib

import numpy as np
import pytest

import microst
import microst.functional as F
from microst import ops
from microst.gradcheck import check_backward
from microst.lab.family import gradient_check
from microst.ops import conv_cpu, norm

import reference as ref

R = np.random.default_rng(7)


def randn(*shape):
    return R.standard_normal(shape)


def t(a):
    return microst.tensor(np.asarray(a, np.float64))


# -- the gradient checks: every case of every family (microst.ops.<family>.cases()) ------------
CASES = [pytest.param(case, id=f"{family}: {case.name}") for family in ops.FAMILIES for case in ops.cases(family)]


@pytest.mark.parametrize("case", CASES)
def test_gradient(case):
    gradient_check(case, zlib.crc32(case.name.encode()))


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].op is not None])
def test_gradient_check_catches_a_broken_backward(case, break_backward):
    """The check above can fail: one input gradient of the op 1% off, and it must."""
    break_backward(case.op)
    with pytest.raises(AssertionError, match="directional derivative"):
        gradient_check(case, zlib.crc32(case.name.encode()))


def test_norm_backward_without_variance_term_fails_random_gy_but_passes_sum():
    """Why gradient checks use a random upstream gradient: an instance-norm backward that forgets
    the variance term, dx = rstd * (dy - mean(dy)), passes a .sum() check (sum(y) is constant)."""
    x, w, b = randn(2, 3, 4, 5), np.ones(3), np.zeros(3)

    def wrong(self, dy):
        rstd = self.rstd.reshape(dy.shape[0], dy.shape[1], 1, 1)
        return rstd * (dy - dy.mean(axis=(2, 3), keepdims=True)), None, None

    real = norm.InstanceNorm.backward
    norm.InstanceNorm.backward = wrong
    try:
        check_backward(lambda x: F.instance_norm(x).sum(), [x])  # blind
        with pytest.raises(AssertionError):
            check_backward(lambda x: F.instance_norm(x, t(w), t(b)), [x])
    finally:
        norm.InstanceNorm.backward = real


def test_composite_block():
    """conv -> instance_norm -> relu -> conv, plus the input cropped by 2 on each side (a residual block)."""
    def block(x, w1, w2, g, b):
        h = F.relu(F.instance_norm(F.conv2d(x, w1), g, b))
        return F.conv2d(h, w2) + x[:, :, 2:-2, 2:-2]
    check_backward(block, [randn(2, 3, 9, 8), randn(3, 3, 3, 3), randn(3, 3, 3, 3), randn(3), randn(3)])


# -- forward semantics against the loop references --------------------------------------------
@pytest.mark.parametrize("k, stride, padding, shape", [
    (3, 1, 1, (2, 3, 7, 9)), (3, 2, 1, (1, 4, 9, 8)), (9, 1, 4, (1, 3, 12, 11)), (1, 1, 0, (2, 5, 4, 3)),
    (3, 2, 0, (2, 2, 10, 7)), (5, 3, 2, (1, 2, 11, 13))])
def test_conv2d_matches_reference(k, stride, padding, shape):
    x, w, b = randn(*shape), randn(4, shape[1], k, k), randn(4)
    y = F.conv2d(t(x), t(w), t(b), stride, padding).numpy()
    np.testing.assert_allclose(y, ref.conv2d(x, w, b, stride, padding), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k, stride, padding, output_padding, shape", [
    (3, 2, 1, 1, (2, 4, 5, 6)), (3, 1, 1, 0, (1, 3, 4, 7)), (4, 2, 1, 0, (1, 2, 3, 3)), (3, 3, 0, 2, (2, 2, 3, 2))])
def test_conv_transpose2d_matches_reference(k, stride, padding, output_padding, shape):
    x, w, b = randn(*shape), randn(shape[1], 3, k, k), randn(3)
    y = F.conv_transpose2d(t(x), t(w), t(b), stride, padding, output_padding).numpy()
    np.testing.assert_allclose(y, ref.conv_transpose2d(x, w, b, stride, padding, output_padding), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode, numpy_mode", [("reflect", "reflect"), ("replicate", "edge"), ("constant", "constant")])
def test_pad_matches_numpy(mode, numpy_mode):
    x = randn(2, 3, 5, 6)
    y = F.pad(t(x), (2, 1, 3, 4), mode).numpy()
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (0, 0), (3, 4), (2, 1)), mode=numpy_mode))


def test_reflect_pad_does_not_repeat_the_edge():
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    x = np.repeat(x, 2, axis=2)
    assert F.pad(t(x), (2, 2, 0, 0), "reflect").numpy()[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (3, 1)])
def test_pools_match_reference(k, s):
    x = randn(2, 3, 9, 8)
    np.testing.assert_allclose(F.max_pool2d(t(x), k, s).numpy(), ref.pool2d(x, k, s, np.max))
    np.testing.assert_allclose(F.avg_pool2d(t(x), k, s).numpy(), ref.pool2d(x, k, s, np.mean), rtol=1e-12)


def test_interpolate_nearest():
    x = randn(1, 2, 3, 4)
    y = F.interpolate(t(x), scale_factor=2).numpy()
    assert y.shape == (1, 2, 6, 8)
    np.testing.assert_array_equal(y[:, :, ::2, ::2], x)
    np.testing.assert_array_equal(y[:, :, 1::2, 1::2], x)


def test_norms_match_reference():
    x, w, b = randn(3, 4, 5, 6), randn(4), randn(4)
    np.testing.assert_allclose(F.instance_norm(t(x), t(w), t(b)).numpy(), ref.normalize(x, (2, 3), w, b), rtol=1e-10)
    np.testing.assert_allclose(F.batch_norm(t(x), None, None, t(w), t(b), training=True).numpy(),
                               ref.normalize(x, (0, 2, 3), w, b), rtol=1e-10)


def test_batch_norm_running_statistics_like_torch():
    x = randn(4, 3, 5, 5) * 2 + 1
    mean, var = microst.tensor(np.zeros(3)), microst.tensor(np.ones(3))
    F.batch_norm(t(x), mean, var, training=True, momentum=0.1)
    np.testing.assert_allclose(mean.numpy(), 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    y = F.batch_norm(t(x), mean, var, training=False).numpy()
    expected = (x - mean.numpy()[None, :, None, None]) / np.sqrt(var.numpy()[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_activations():
    x = np.array([-30.0, -2.0, -0.5, 0.5, 2.0, 30.0])
    np.testing.assert_array_equal(F.relu(t(x)).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(F.leaky_relu(t(x), 0.1).numpy(), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(F.tanh(t(x)).numpy(), np.tanh(x))
    np.testing.assert_allclose(F.sigmoid(t(x)).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-14)


def test_losses_match_reference():
    a, b = randn(2, 3, 4, 5), randn(2, 3, 4, 5)
    assert np.isclose(F.mse_loss(t(a), t(b)).item(), ((a - b) ** 2).mean())
    np.testing.assert_allclose(F.gram(t(a)).numpy(), ref.gram(a), rtol=1e-12)
    assert np.isclose(F.tv_loss(t(a)).item(), ref.tv_loss(a))


def test_float32_is_kept():
    x = microst.tensor(randn(1, 2, 5, 5).astype(np.float32))
    w = microst.tensor(randn(3, 2, 3, 3).astype(np.float32))
    assert F.instance_norm(F.conv2d(x, w, padding=1)).dtype == np.float32


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (2, 0)])
def test_conv_in_bands_of_output_rows(stride, padding, monkeypatch):
    """Large convolutions build im2col a band of output rows at a time: force many small bands."""
    monkeypatch.setattr(conv_cpu, "BAND_ELEMENTS", 200)
    x, w, b = randn(2, 3, 9, 8), randn(4, 3, 3, 3), randn(4)
    np.testing.assert_allclose(F.conv2d(t(x), t(w), t(b), stride, padding).numpy(),
                               ref.conv2d(x, w, b, stride, padding), rtol=1e-10, atol=1e-10)
    check_backward(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])
    check_backward(lambda x, w: F.conv_transpose2d(x, w, None, stride, padding), [x, randn(3, 2, 3, 3)])


@pytest.mark.parametrize("shape", [(7,), (0, 3), (2, 3, 4, 5), (2, 1, 3, 4, 5)])
def test_relu_on_cpu_against_the_formula(shape):
    """relu and instance_norm_relu take np.maximum against a shared plane of zeros (ops/workspace.py):
    any shape, NaN kept (as np.maximum(x, 0) and PyTorch keep it), and the zeros stay zeros."""
    from microst.ops import workspace
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if x.size:
        x.flat[0] = np.nan
    y = F.relu(microst.tensor(x)).numpy()
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert not workspace.zeros(8, np.float32).flags.writeable and not workspace.zeros(8, np.float32).any()
    planes = np.random.default_rng(1).standard_normal((2, 3, 5, 4))
    planes[0, 1, 2, 3] = np.nan
    normed = F.instance_norm_relu(microst.tensor(planes)).numpy()
    assert np.isnan(normed[0, 1]).all() and not np.isnan(np.delete(normed.reshape(6, -1), 1, axis=0)).any()
    assert (normed[np.isfinite(normed)] >= 0).all()
