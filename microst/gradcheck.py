"""Finite-difference gradient check, after Chainer's check_backward.

For y = fn(x1, ..., xk), a random upstream gradient gy and a random unit direction d over all
checked inputs, backward gives the directional derivative  sum_i <dL/dxi, di>  of L = <y, gy>;
central differences give  (L(x + eps d) - L(x - eps d)) / (2 eps).  The two must agree.

Why a random gy and not y.sum(): for a normalization, sum(y) does not depend on x at all, so a
backward that returns garbage-but-zero-mean passes a .sum() check. A random gy has no such blind spot.
Run in float64: in float32 the finite difference drowns in rounding.
"""
import numpy as np

from .autograd import no_grad, tensor


def check_backward(fn, inputs, no_grad_inputs=(), eps=1e-6, atol=1e-7, rtol=1e-5, seed=0):
    """Raise AssertionError unless backward of fn(*inputs) matches central differences.

    inputs: arrays (converted to float64 Tensors); those at the indices in no_grad_inputs are
    held constant. fn gets Tensors and returns one Tensor.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    checked = [i for i in range(len(arrays)) if i not in no_grad_inputs]
    xs = [tensor(a.copy(), requires_grad=i in checked, device="cpu") for i, a in enumerate(arrays)]
    y = fn(*xs)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)

    directions = {i: rng.standard_normal(arrays[i].shape) for i in checked}
    norm = np.sqrt(sum((d * d).sum() for d in directions.values()))
    directions = {i: d / norm for i, d in directions.items()}
    analytic = sum(float((xs[i].grad * directions[i]).sum()) if xs[i].grad is not None else 0.0 for i in checked)

    def loss_at(step):
        moved = [a + step * directions[i] if i in directions else a for i, a in enumerate(arrays)]
        with no_grad():
            return float((fn(*[tensor(m, device="cpu") for m in moved]).numpy() * gy).sum())

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    if not abs(analytic - numeric) <= atol + rtol * abs(numeric):
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise AssertionError(f"gradient check failed for inputs {shapes}: directional derivative "
                             f"by backward {analytic!r}, by central differences {numeric!r} "
                             f"(difference {analytic - numeric:.3e})")
    return analytic, numeric
