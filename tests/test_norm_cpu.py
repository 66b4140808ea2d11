"""Instance norm's cpu forward and backward, which go through a few planes at a time (microst/ops/norm.py),
against the plain formula (tests/reference.py) and central differences, in chunks of any size: one
plane, a few, all."""
import numpy as np
import pytest

import microst.functional as F
from microst.gradcheck import check_backward
from microst import tensor
from microst.ops import norm

import reference


@pytest.mark.parametrize("chunk", [1, 100, 1 << 18])
@pytest.mark.parametrize("affine, relu", [(True, False), (True, True), (False, False), (False, True)])
def test_instance_norm_in_chunks(chunk, affine, relu, monkeypatch):
    monkeypatch.setattr(norm, "PLANES_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    x = rng.standard_normal((3, 5, 7, 6)) * 3 + 2
    w, b = (rng.standard_normal(5), rng.standard_normal(5)) if affine else (None, None)
    op = F.instance_norm_relu if relu else F.instance_norm
    y = op(tensor(x, requires_grad=True), weight=None if w is None else tensor(w), bias=None if b is None else tensor(b))
    expected = reference.normalize(x, (2, 3), w, b)
    np.testing.assert_allclose(y.numpy(), np.maximum(expected, 0) if relu else expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y._op.mean, x.mean(axis=(2, 3)).reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(y._op.rstd, 1 / np.sqrt(x.var(axis=(2, 3)).reshape(-1) + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 100, 1 << 18])
@pytest.mark.parametrize("affine, relu", [(True, False), (True, True), (False, True)])
def test_instance_norm_backward_in_chunks(chunk, affine, relu, monkeypatch):
    """Its backward goes through the planes in the same chunks: every gradient against central
    differences (float64, a random upstream gradient)."""
    monkeypatch.setattr(norm, "PLANES_CHUNK", chunk)
    rng = np.random.default_rng(chunk + 1)
    x = rng.standard_normal((2, 3, 5, 4)) * 3 + 2
    op = F.instance_norm_relu if relu else F.instance_norm
    if affine:
        check_backward(lambda x, w, b: op(x, weight=w, bias=b), [x, rng.standard_normal(3), rng.standard_normal(3)])
    else:
        check_backward(lambda x: op(x), [x])


@pytest.mark.parametrize("size", [1, 7, norm.DOT, 3 * norm.DOT + 5])
def test_plane_sums(size):
    """The per-plane sums (BLAS dots of DOT elements, then pairwise) of a and of a * b, any plane size,
    against float64; in float32 within 1e-6 of the sum (a plain running sum of 3K positive values
    drifts about 1e-5)."""
    rng = np.random.default_rng(size)
    a, b = rng.standard_normal((3, size)) + 4, rng.standard_normal((3, size))
    np.testing.assert_allclose(norm._plane_sums(a), a.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(norm._plane_sums(a, b), (a * b).sum(axis=1, keepdims=True), rtol=1e-10, atol=1e-10)
    a32 = a.astype(np.float32)
    exact = a32.astype(np.float64).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(norm._plane_sums(a32), exact, rtol=1e-6)
    np.testing.assert_allclose(norm._plane_sums(a32, a32), (a32.astype(np.float64) ** 2).sum(axis=1, keepdims=True),
                               rtol=1e-6)
