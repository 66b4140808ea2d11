"""Modules: parameters, buffers, train/eval, state_dict, and the layers of the networks.

Initialization follows PyTorch's defaults so that results are comparable: convolutions draw
weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5));
norms start at weight 1, bias 0, running mean 0, running variance 1.
"""
import math
from collections import OrderedDict

import numpy as np

from . import device as devices
from . import functional as F
from .autograd import Tensor
from .random import rng


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad=True)."""

    def __init__(self, data, device="cpu"):
        super().__init__(data, requires_grad=True, device=device)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, tensor):
        """A non-trainable Tensor saved in state_dict (e.g. batch norm running statistics)."""
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise NotImplementedError

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}{name}.")

    def named_parameters(self):
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                yield prefix + name, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, m in self.named_modules():
            for name, b in m._buffers.items():
                yield prefix + name, b

    def children(self):
        return list(self._modules.values())

    # -- modes and devices -------------------------------------------------------------------
    def train(self, mode=True):
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to `device` in place; returns self."""
        device = devices.resolve(device)
        for _, m in self.named_modules():
            for registry in (m._parameters, m._buffers):
                for name, t in registry.items():
                    t.data, t.device = devices.move(t.data, device), device
                    if t.grad is not None:
                        t.grad = devices.move(t.grad, device)
        return self

    @property
    def device(self):
        tensors = [p for _, p in self.named_parameters()] + [b for _, b in self.named_buffers()]
        return tensors[0].device if tensors else "cpu"

    # -- state -------------------------------------------------------------------------------
    def state_dict(self):
        """name -> NumPy array (a copy), parameters then buffers, keys like 'res1.conv1.weight'."""
        state = OrderedDict()
        for name, t in list(self.named_parameters()) + list(self.named_buffers()):
            state[name] = np.array(t.numpy(), copy=True)
        return state

    def load_state_dict(self, state, strict=True):
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, t in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != t.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape} in the state, "
                                 f"{t.shape} in the model")
            t.data = devices.move(value.astype(t.dtype, copy=True), t.device)
        return self


def _uniform(shape, bound):
    return rng().uniform(-bound, bound, size=shape).astype(np.float32)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.stride, self.padding = stride, padding
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        self.weight = Parameter(_uniform((out_channels, in_channels, kh, kw), bound))
        self.bias = Parameter(_uniform((out_channels,), bound)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True):
        super().__init__()
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        bound = 1.0 / math.sqrt(out_channels * kh * kw)  # PyTorch's fan_in of a (Cin, Cout, kh, kw) weight
        self.weight = Parameter(_uniform((in_channels, out_channels, kh, kw), bound))
        self.bias = Parameter(_uniform((out_channels,), bound)) if bias else None

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)


class InstanceNorm2d(Module):
    def __init__(self, num_features, affine=True, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None

    def forward(self, x, relu=False):
        """relu=True: relu(norm(x)) as one op (F.instance_norm_relu)."""
        if relu:
            return F.instance_norm_relu(x, self.weight, self.bias, self.eps)
        return F.instance_norm(x, self.weight, self.bias, self.eps)


class BatchNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))

    def forward(self, x, relu=False):
        """relu=True: relu(norm(x)) as one op (F.batch_norm_relu)."""
        return (F.batch_norm_relu if relu else F.batch_norm)(x, self.running_mean, self.running_var, self.weight,
                                                             self.bias, training=self.training,
                                                             momentum=self.momentum, eps=self.eps)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
