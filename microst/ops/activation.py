"""Pointwise nonlinearities: relu, leaky_relu, tanh, sigmoid.

cpu: NumPy expressions. emu/cuda: one thread per element (kernels/activation_v1.cu). Backward
passes read what forward saved: relu, tanh and sigmoid their output y, leaky_relu its input x.
"""
import numpy as np

from . import versions
from .base import Case, Op, blocks, empty, f32, i32, launch
from .workspace import zeros

ROLES = ("relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward", "tanh_forward",
         "tanh_backward", "sigmoid_forward", "sigmoid_backward")
VERSIONS = versions.declare(
    versions.Version("activation", "v1", "one thread per element, grid-stride loops",
                     versions.kernels_of("activation_v1.cu", ROLES, "v1")))


def pointwise(device, role, *inputs, extra=()):
    """kernel(*inputs, out, n, *extra) over the elements of inputs[0], for the selected version."""
    out = empty(device, inputs[0].shape)
    n = out.size
    launch(device, versions.selected("activation", device).kernel(role), blocks(n), (*inputs, out, i32(n), *extra))
    return out


# -- the passes, on arrays -------------------------------------------------------------------
def relu_forward(device, x):
    return relu_cpu(x) if device == "cpu" else pointwise(device, "relu_forward", x)


def relu_cpu(x, out=None):
    """max(x, 0) into out (a new array by default; out may be x), against a plane of zeros
    (ops/workspace.py's zeros says why); the norms' fused ReLUs call it too."""
    plane = int(np.prod(x.shape[-2:]))
    if plane == 0:
        return x.copy() if out is None else out
    if out is None:
        out = np.empty_like(x)
    np.maximum(x.reshape(-1, plane), zeros(plane, x.dtype), out=out.reshape(-1, plane))
    return out


def relu_backward(device, y, dy):
    return dy * (y > 0) if device == "cpu" else pointwise(device, "relu_backward", y, dy)


def leaky_relu_forward(device, x, slope):
    if device == "cpu":
        return np.where(x > 0, x, x * x.dtype.type(slope))
    return pointwise(device, "leaky_relu_forward", x, extra=(f32(slope),))


def leaky_relu_backward(device, x, dy, slope):
    if device == "cpu":
        return np.where(x > 0, dy, dy * dy.dtype.type(slope))
    return pointwise(device, "leaky_relu_backward", x, dy, extra=(f32(slope),))


def tanh_forward(device, x):
    return np.tanh(x) if device == "cpu" else pointwise(device, "tanh_forward", x)


def tanh_backward(device, y, dy):
    return dy * (1 - y * y) if device == "cpu" else pointwise(device, "tanh_backward", y, dy)


def sigmoid_forward(device, x):
    if device != "cpu":
        return pointwise(device, "sigmoid_forward", x)
    e = np.exp(-np.abs(x))  # exp of a non-positive number: no overflow for large |x|
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(device, y, dy):
    return dy * y * (1 - y) if device == "cpu" else pointwise(device, "sigmoid_backward", y, dy)


# -- the ops ---------------------------------------------------------------------------------
class Relu(Op):
    name = "relu"

    def forward(self, x):
        self.y = relu_forward(self.device, x)
        return self.y

    def backward(self, dy):
        return (relu_backward(self.device, self.y, dy),)


class LeakyRelu(Op):
    name = "leaky_relu"  # params: negative_slope

    def forward(self, x):
        self.x = x
        return leaky_relu_forward(self.device, x, self.negative_slope)

    def backward(self, dy):
        return (leaky_relu_backward(self.device, self.x, dy, self.negative_slope),)


class Tanh(Op):
    name = "tanh"

    def forward(self, x):
        self.y = tanh_forward(self.device, x)
        return self.y

    def backward(self, dy):
        return (tanh_backward(self.device, self.y, dy),)


class Sigmoid(Op):
    name = "sigmoid"

    def forward(self, x):
        self.y = sigmoid_forward(self.device, x)
        return self.y

    def backward(self, dy):
        return (sigmoid_backward(self.device, self.y, dy),)


def cases():
    image = (2, 3, 9, 7)
    return [
        Case("relu", lambda F, x: F.relu(x), (image,), full=((4, 32, 256, 256),), op=Relu),
        Case("leaky_relu", lambda F, x: F.leaky_relu(x, 0.2), (image,), op=LeakyRelu),
        Case("tanh", lambda F, x: F.tanh(x), (image,), op=Tanh),
        Case("sigmoid", lambda F, x: F.sigmoid(x), (image,), scale=3.0, op=Sigmoid),
    ]
