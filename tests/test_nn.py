"""Modules (parameters, buffers, state_dict, train/eval, init) and the optimizers."""
import numpy as np
import pytest

import microst
import microst.functional as F
from microst import nn, optim
from microst.gradcheck import check_backward


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1))

    def forward(self, x):
        return self.body(self.norm(self.conv(x)))


def test_state_dict_keys_and_round_trip():
    microst.manual_seed(0)
    a = Block()
    assert list(a.state_dict()) == ["conv.weight", "conv.bias", "norm.weight", "norm.bias", "body.1.weight",
                                    "body.1.bias", "norm.running_mean", "norm.running_var"]
    assert a.state_dict()["body.1.weight"].shape == (4, 2, 3, 3)
    microst.manual_seed(1)
    b = Block().load_state_dict(a.state_dict())
    x = microst.tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32))
    np.testing.assert_array_equal(a.eval()(x).numpy(), b.eval()(x).numpy())
    assert b(x).shape == (2, 2, 10, 12)


def test_load_state_dict_errors():
    state = Block().state_dict()
    del state["conv.bias"]
    with pytest.raises(KeyError, match="conv.bias"):
        Block().load_state_dict(state)
    state = Block().state_dict()
    state["conv.weight"] = np.zeros((1, 1, 1, 1))
    with pytest.raises(ValueError, match="conv.weight"):
        Block().load_state_dict(state)


def test_train_eval_switch_batch_norm_statistics():
    m = Block()
    x = microst.tensor(np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32))
    m(x)
    assert not np.allclose(m.norm.running_mean.numpy(), 0)  # training updates the running mean
    before = m.norm.running_mean.numpy().copy()
    m.eval()
    assert not m.norm.training
    m(x)
    np.testing.assert_array_equal(m.norm.running_mean.numpy(), before)


def test_default_initialization_bounds():
    microst.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 9)
    w = conv.weight.numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound
    tconv = nn.ConvTranspose2d(16, 8, 3)
    assert tconv.weight.shape == (16, 8, 3, 3) and np.abs(tconv.weight.numpy()).max() <= 1 / np.sqrt(8 * 9)
    norm = nn.InstanceNorm2d(5)
    assert norm.weight.numpy().tolist() == [1] * 5 and norm.bias.numpy().tolist() == [0] * 5
    assert nn.InstanceNorm2d(5, affine=False).parameters() == []


def test_manual_seed_repeats_initialization():
    microst.manual_seed(5)
    a = nn.Conv2d(2, 2, 3).weight.numpy()
    microst.manual_seed(5)
    np.testing.assert_array_equal(a, nn.Conv2d(2, 2, 3).weight.numpy())


def test_module_gradients_through_layers():
    """A whole module in float64 passes the gradient check with respect to its input."""
    microst.manual_seed(0)
    m = Block()
    for p in m.parameters():
        p.data = p.data.astype(np.float64)
    check_backward(lambda x: m(x), [np.random.default_rng(1).standard_normal((2, 3, 4, 5))])


def _quadratic_problem():
    target = np.array([1.0, -2.0, 3.0], np.float32)
    p = nn.Parameter(np.zeros(3, np.float32))
    return p, target, lambda: ((p - microst.tensor(target)) ** 2).sum()


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1)])
def test_optimizers_minimize_a_quadratic(make):
    p, target, loss = _quadratic_problem()
    opt = make([p])
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), target, atol=1e-3)


def test_adam_first_steps_match_the_formula():
    p = nn.Parameter(np.array([1.0, -1.0], np.float32))
    opt = optim.Adam([p], lr=0.01)
    g = np.array([0.5, 2.0], np.float32)
    p.grad = g.copy()
    opt.step()  # first step of Adam moves every coordinate by lr * sign(g)
    np.testing.assert_allclose(p.numpy(), [0.99, -1.01], rtol=1e-6)


def test_sgd_plain_step():
    p = nn.Parameter(np.array([1.0, 2.0], np.float32))
    opt = optim.SGD([p], lr=0.5, weight_decay=0.1)
    p.grad = np.array([1.0, -1.0], np.float32)
    opt.step()
    np.testing.assert_allclose(p.numpy(), [1 - 0.5 * 1.1, 2 - 0.5 * (-1 + 0.2)], rtol=1e-6)


def test_optimizer_state_dict_resumes_exactly():
    def run(steps, resume_after=None):
        p, _, loss = _quadratic_problem()
        opt = optim.Adam([p], lr=0.05)
        for i in range(steps):
            if i == resume_after:
                state, values = opt.state_dict(), p.numpy().copy()
                p = nn.Parameter(values)
                opt = optim.Adam([p], lr=123.0)
                opt.load_state_dict(state)
                loss = _rebind(loss, p)
            opt.zero_grad()
            loss().backward()
            opt.step()
        return p.numpy()

    def _rebind(_, p):
        target = microst.tensor(np.array([1.0, -2.0, 3.0], np.float32))
        return lambda: ((p - target) ** 2).sum()

    np.testing.assert_array_equal(run(10), run(10, resume_after=4))


def test_module_to_moves_everything():
    m = Block()
    assert m.to("cpu") is m and m.device == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        m.to("tpu")
