"""max_pool2d's cpu path (microst/ops/pool.py): the first maximum of each window wins (ties, the
order of the taps), NaN and inf keep the rule's own answer, inference keeps no argmax, and the
nearest upsampling's backward sums each block."""
import numpy as np
import pytest

import microst
import microst.functional as F
from microst.ops import pool, workspace


def first_maximum(x, k, s):
    """(y, argmax) by the rule, one window at a time: a later tap wins only when strictly greater."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    y, arg = np.empty((n, c, ho, wo), x.dtype), np.empty((n, c, ho, wo), np.int64)
    for idx in np.ndindex(n, c, ho, wo):
        window = x[idx[0], idx[1], idx[2] * s:idx[2] * s + k, idx[3] * s:idx[3] * s + k].ravel()
        best = 0
        for t in range(1, window.size):
            if window[t] > window[best]:
                best = t
        y[idx], arg[idx] = window[best], best
    return y, arg


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (3, 1)])
def test_ties_pick_the_first_maximum(k, s):
    x = np.random.default_rng(0).integers(0, 3, (2, 3, 9, 8)).astype(np.float32)  # many ties
    y, arg = pool.max_pool_forward("cpu", x, (k, k), (s, s), ((9 - k) // s + 1, (8 - k) // s + 1))
    ref_y, ref_arg = first_maximum(x, k, s)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (1, 2), (2, 1)])
def test_one_channel_at_a_time(k, s, monkeypatch):
    """The cpu pass goes through the images and channels a cache-sized block at a time; one channel per
    block gives the rule's y and argmax, and the backward pass the same dx as all in one block."""
    x = np.random.default_rng(4).integers(0, 3, (2, 3, 9, 8)).astype(np.float32)
    out = ((9 - k) // s + 1, (8 - k) // s + 1)
    dy = np.random.default_rng(5).standard_normal((2, 3) + out).astype(np.float32)
    monkeypatch.setattr(workspace, "PLANES_BYTES", 1)
    y, arg = pool.max_pool_forward("cpu", x, (k, k), (s, s), out)
    ref_y, ref_arg = first_maximum(x, k, s)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    ref_dx = np.zeros(x.shape, np.float32)  # each output's gradient to the pixel its first maximum came from
    for n, c, i, j in np.ndindex(dy.shape):
        ref_dx[n, c, i * s + ref_arg[n, c, i, j] // k, j * s + ref_arg[n, c, i, j] % k] += dy[n, c, i, j]
    got = pool.max_pool_backward("cpu", dy, arg, x.shape, (k, k), (s, s), out)
    np.testing.assert_allclose(got, ref_dx, rtol=1e-6, atol=1e-6)  # (overlapping windows: sums in another order)


def test_nan_and_inf_follow_the_rule():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, 0, 1], x[0, 0, 2, 2], x[0, 1, 4, 4], x[0, 1, 0, 0] = np.nan, np.nan, np.inf, -np.inf
    y, arg = pool.max_pool_forward("cpu", x, (2, 2), (2, 2), (3, 3))
    ref_y, ref_arg = first_maximum(x, 2, 2)
    np.testing.assert_array_equal(y, ref_y)  # (NaN compares equal here)
    np.testing.assert_array_equal(arg, ref_arg)


def test_argmax_only_when_a_gradient_is_wanted():
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6)).astype(np.float32)
    assert pool.max_pool_forward("cpu", x, (2, 2), (2, 2), (3, 3), keep_argmax=False)[1] is None
    with microst.no_grad():
        t = F.max_pool2d(microst.tensor(x, requires_grad=True), 2)
    assert t._op is None
    t = F.max_pool2d(microst.tensor(x, requires_grad=True), 2)
    assert t._op.argmax is not None


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_backward_sums_each_block(scale):
    dy = np.random.default_rng(3).standard_normal((2, 3, 4 * scale, 5 * scale))
    expected = dy.reshape(2, 3, 4, scale, 5, scale).sum(axis=(3, 5))
    np.testing.assert_allclose(pool.upsample_nearest_backward("cpu", dy, (2, 3, 4, 5), scale), expected, rtol=1e-12)
