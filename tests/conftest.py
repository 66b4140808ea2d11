import numpy as np
import pytest

from microst.device import cuda_available


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU with CuPy here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def break_backward(monkeypatch):
    """break_backward(OpClass): for the rest of the test, the op's backward returns its first
    gradient 1% too large. Gradient-check tests use it to prove that they can fail."""
    def breaker(op):
        real_backward = op.backward

        def broken(self, dy):
            grads = list(real_backward(self, dy))
            i = next(i for i, g in enumerate(grads) if g is not None)
            grads[i] = grads[i] * 1.01
            return tuple(grads)

        monkeypatch.setattr(op, "backward", broken)
    return breaker
