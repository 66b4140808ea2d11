"""Tensor, the graph and backward: arithmetic, broadcasting, slicing, cat, accumulation, no_grad."""
import numpy as np
import pytest

import microst
from microst.gradcheck import check_backward
from microst.ops import arith

R = np.random.default_rng(3)


def randn(*shape):
    return R.standard_normal(shape)


ARITH_CASES = [
    ("add broadcast", lambda a, b: a + b, [randn(2, 3, 4), randn(3, 1)], arith.Add),
    ("sub broadcast", lambda a, b: a - b, [randn(2, 3), randn(2, 1)], arith.Sub),
    ("mul broadcast", lambda a, b: a * b, [randn(2, 3, 4), randn(4)], arith.Mul),
    ("div", lambda a, b: a / b, [randn(3, 4), 2 + R.random((3, 4))], arith.Div),
    ("scalars", lambda a: (2.0 - a) * 3 + 1 - a / 4, [randn(3, 4)], arith.MulScalar),
    ("reciprocal", lambda a: 1.0 / a, [1 + R.random((2, 5))], arith.PowScalar),
    ("pow", lambda a: a ** 3 + (a * a) ** 0.5, [1 + R.random((2, 5))], arith.PowScalar),
    ("sum all", lambda a: a.sum() * a, [randn(2, 3)], arith.Sum),
    ("sum dim keepdim", lambda a: a.sum(dim=1, keepdim=True) * a, [randn(2, 3, 4)], arith.Sum),
    ("sum dims", lambda a: a.sum(dim=(0, 2)), [randn(2, 3, 4)], arith.Sum),
    ("mean dim", lambda a: a.mean(dim=-1), [randn(2, 3, 4)], arith.Mean),
    ("mean all", lambda a: a.mean() * a, [randn(2, 3)], arith.Mean),
    ("reshape", lambda a: a.reshape(6, 4) * a.reshape((6, 4)), [randn(2, 3, 4)], arith.Reshape),
    ("crop", lambda a: a[:, :, 2:-2, 2:-2], [randn(2, 3, 7, 8)], arith.Slice),
    ("strided slice", lambda a: a[1, ..., ::2], [randn(2, 3, 5)], arith.Slice),
    ("cat", lambda a, b: microst.cat([a, b, a], dim=1), [randn(2, 3, 2), randn(2, 1, 2)], arith.Cat),
]


@pytest.mark.parametrize("name, fn, inputs, op", ARITH_CASES, ids=[c[0] for c in ARITH_CASES])
def test_gradient(name, fn, inputs, op):
    check_backward(fn, inputs)


@pytest.mark.parametrize("name, fn, inputs, op", ARITH_CASES, ids=[c[0] for c in ARITH_CASES])
def test_gradient_check_catches_a_broken_backward(name, fn, inputs, op, break_backward):
    break_backward(op)
    with pytest.raises(AssertionError, match="directional derivative"):
        check_backward(fn, inputs)


def test_forward_values():
    a = microst.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(((a + 1) * a - a / 2).numpy(), [[1.5, 5.0], [10.5, 18.0]])
    np.testing.assert_allclose((-a ** 2).sum(dim=0).numpy(), [-10.0, -20.0])
    np.testing.assert_allclose((10 - a).numpy(), [[9, 8], [7, 6]])
    np.testing.assert_allclose((np.float32(2) * a).numpy(), [[2, 4], [6, 8]])


def test_gradient_accumulates_over_uses_and_calls():
    x = microst.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x + x).sum().backward()  # d/dx = 2x + 1
    np.testing.assert_allclose(x.grad, [3.0, 5.0, 7.0])
    (x * 2).sum().backward()  # accumulates into .grad like PyTorch
    np.testing.assert_allclose(x.grad, [5.0, 7.0, 9.0])


def test_shared_gradient_arrays_are_not_aliased():
    """Add passes dy through to both inputs; leaf grads must not share that memory."""
    a = microst.tensor([1.0, 2.0], requires_grad=True)
    b = microst.tensor([3.0, 4.0], requires_grad=True)
    (a + b).backward(np.array([1.0, 1.0], np.float32))
    a.grad += 5
    np.testing.assert_allclose(b.grad, [1.0, 1.0])


def test_deep_graph_needs_no_recursion():
    x = microst.tensor(np.ones(4), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.ones(4))


def test_backward_frees_the_graph_and_refuses_a_second_pass():
    x = microst.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert y._op is None
    with pytest.raises(RuntimeError, match="freed"):
        y.backward()


def test_backward_keeps_only_what_it_needs():
    x = microst.tensor(randn(3), requires_grad=True)
    c = microst.tensor(randn(3))  # a constant: no gradient computed for it
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_no_grad_records_nothing():
    x = microst.tensor([1.0], requires_grad=True)
    with microst.no_grad():
        y = x * 2
    assert not y.requires_grad and y._op is None
    assert microst.is_grad_enabled()


def test_backward_errors():
    x = microst.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="non-scalar"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        microst.tensor([1.0]).backward()


def test_tensor_dtypes():
    assert microst.tensor([1, 2]).dtype == np.float32
    assert microst.tensor(np.zeros(2, np.float64)).dtype == np.float64
    assert microst.tensor(np.zeros(2, np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="int64"):
        microst.tensor(np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="different dtypes"):
        microst.tensor(np.zeros(2, np.float32)) + microst.tensor(np.zeros(2, np.float64))
    with pytest.raises(TypeError, match="microst Tensors"):
        microst.functional.relu(np.zeros((1, 1, 2, 2)))


def test_cat_and_slice_errors():
    with pytest.raises(ValueError, match="cat"):
        microst.cat([microst.tensor(np.zeros((2, 3))), microst.tensor(np.zeros((3, 3)))], dim=1)
    with pytest.raises(TypeError, match="slice"):
        microst.tensor(np.zeros(3))[[0, 1]]


def test_default_device_from_environment(monkeypatch):
    assert microst.tensor([1.0]).device == "cpu"
    monkeypatch.setenv("MICROST_DEVICE", "emu")
    assert microst.tensor([1.0]).device == "emu"
    assert microst.tensor([1.0], device="cpu").device == "cpu"
