"""Adam on emu/cuda updates every parameter in one launch (microst.ops.adam): the same float32
operations in the same order as microst.optim.Adam's NumPy path, so that on emu the two agree to
the bit; a device-side flag set by a non-finite loss stops the update."""
import numpy as np
import pytest

import microst
from microst import cuda
from microst.device import to_numpy
from microst.ops import adam, use_kernels

SHAPES = [(5000,), (3, 7), (64, 32, 3, 3), (1,)]  # one larger than a block's chunk


def _run(device, steps=3, weight_decay=0.0, skip_from=None):
    rng = np.random.default_rng(0)
    params = [microst.nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in SHAPES]
    for p in params:
        p.data, p.device = microst.device.move(p.data, device), device
    opt = microst.optim.Adam(params, lr=1e-2, weight_decay=weight_decay)
    flag = adam.nonfinite_flag(device) if device != "cpu" else None
    for step in range(steps):
        for p in params:
            p.grad = microst.device.move(rng.standard_normal(p.shape).astype(np.float32), device)
        if skip_from is not None and step >= skip_from:
            flag.fill(1)
        opt.step(skip=flag)
    return [to_numpy(p.data).copy() for p in params], opt


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_on_emu_equals_numpy_adam_to_the_bit(weight_decay):
    cpu, _ = _run("cpu", weight_decay=weight_decay)
    with cuda.poisoned():
        emu, opt = _run("emu", weight_decay=weight_decay)
    for a, b in zip(emu, cpu):
        np.testing.assert_array_equal(a, b)
    assert [s["step"] for s in opt.state] == [3] * len(SHAPES)


def test_one_launch_updates_every_parameter(monkeypatch):
    launches = []
    real = adam.launch
    monkeypatch.setattr(adam, "launch", lambda *a, **k: (launches.append(a[1]), real(*a, **k)))
    _run("emu", steps=2)
    assert [name for _, name in launches] == ["adam_step_v2", "adam_step_v2"]


def test_the_nonfinite_flag_stops_the_update():
    before, _ = _run("emu", steps=1)
    after, _ = _run("emu", steps=3, skip_from=1)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


def test_check_finite_sets_the_flag_on_the_device():
    flag = adam.nonfinite_flag("emu")
    for value, expected in ((1.5, 0), (np.inf, 1), (0.0, 1)):  # the flag stays set
        adam.check_finite("emu", microst.device.move(np.array(value, np.float32), "emu"), flag)
        assert flag[0] == expected


def test_without_the_fused_kernel_adam_takes_the_array_path():
    cpu, _ = _run("cpu")
    with use_kernels(arith="v1"):
        emu, _ = _run("emu")
    for a, b in zip(emu, cpu):
        np.testing.assert_array_equal(a, b)
