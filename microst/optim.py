"""SGD and Adam with PyTorch's update rules, and state_dict() / load_state_dict() for resuming.

Updates are plain array expressions on cpu (NumPy). On emu and cuda, Adam updates every parameter
in one kernel launch (microst.ops.adam, the same float32 operations in the same order: on emu the
result equals the cpu's to the bit); SGD stays array expressions (NumPy on emu, CuPy on cuda).
step(skip=flag) takes a device-side flag (microst.ops.adam.nonfinite_flag): while it is set, the
kernel updates nothing.
"""
from .autograd import no_grad
from . import device as devices
from .ops import adam as fused
from .ops import versions


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.lr = lr
        self.state = [dict() for _ in self.params]  # per parameter: step, moment arrays

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self, skip=None):
        """Update every parameter that has a gradient. skip: a device flag for the fused path (Adam on
        emu/cuda); on the other paths the caller checks the loss before stepping."""
        with no_grad():
            if self.fused_step(skip):
                return
            for p, state in zip(self.params, self.state):
                if p.grad is not None:
                    self.update(p, p.grad, state)

    def fused_step(self, skip):
        return False

    def state_dict(self):
        """{'lr': ..., 'state': [{name: NumPy array or number}, ...]} (hyperparameters included)."""
        return {"hyper": self.hyper(),
                "state": [{k: devices.to_numpy(v) if hasattr(v, "shape") else v for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, state_dict):
        if len(state_dict["state"]) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state for {len(state_dict['state'])} "
                             f"parameters, optimizer has {len(self.params)}")
        for name, value in state_dict["hyper"].items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.state = [{k: devices.move(v, p.device) if hasattr(v, "shape") and v.ndim else v for k, v in s.items()}
                      for p, s in zip(self.params, state_dict["state"])]


class SGD(Optimizer):
    """p -= lr * (g + weight_decay * p), with momentum buffer b = momentum * b + g when momentum > 0."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay

    def hyper(self):
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay}

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()
            else:
                state["momentum_buffer"] = self.momentum * state["momentum_buffer"] + g
            g = state["momentum_buffer"]
        p.data -= (self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, as torch.optim.Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def hyper(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def fused_step(self, skip):
        """Every parameter in one launch (emu/cuda, when they all are at the same step); False if not taken."""
        todo = [(p, s) for p, s in zip(self.params, self.state) if p.grad is not None]
        device = todo[0][0].device if todo else "cpu"
        if device == "cpu" or "adam_step" not in versions.selected("arith", device).kernels:
            return False
        for p, state in todo:
            if not state:
                state.update(step=0, exp_avg=devices.zeros(p.device, p.shape, p.dtype),
                             exp_avg_sq=devices.zeros(p.device, p.shape, p.dtype))
        if len({s["step"] for _, s in todo}) != 1:
            return False
        step = todo[0][1]["step"] + 1
        fused.adam_step(device, [p.data for p, _ in todo], [p.grad for p, _ in todo],
                        [s["exp_avg"] for _, s in todo], [s["exp_avg_sq"] for _, s in todo],
                        self.hyper() | {"betas": self.betas}, step,
                        fused.nonfinite_flag(device) if skip is None else skip)
        for _, state in todo:
            state["step"] = step
        return True

    def update(self, p, g, state):
        xp = devices.array_module(p.device)
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if not state:
            state.update(step=0, exp_avg=devices.zeros(p.device, p.shape, p.dtype),
                         exp_avg_sq=devices.zeros(p.device, p.shape, p.dtype))
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = xp.sqrt(v / (1 - b2 ** t)) + self.eps
        p.data -= ((self.lr / (1 - b1 ** t)) * m / denom).astype(p.dtype, copy=False)
