"""Pointwise nonlinearities: relu, leaky_relu, tanh, sigmoid.

cpu: NumPy expressions. emu/cuda: kernels/activation.cu, one thread per element.
"""
from .base import Op, blocks, empty, f32, i32, launch


def pointwise(device, kernel, *inputs, extra=()):
    """Run kernels/activation.cu::<kernel>(*inputs, out, n, *extra) over the elements of inputs[0]."""
    out = empty(device, inputs[0].shape)
    n = out.size
    launch(device, "activation.cu", kernel, blocks(n), (*inputs, out, i32(n), *extra))
    return out


class Relu(Op):
    name = "relu"

    def forward(self, x):
        self.y = self.xp.maximum(x, 0) if self.on_cpu else pointwise(self.device, "relu_forward", x)
        return self.y

    def backward(self, dy):
        if self.on_cpu:
            return (dy * (self.y > 0),)
        return (pointwise(self.device, "relu_backward", self.y, dy),)


class LeakyRelu(Op):
    name = "leaky_relu"  # params: negative_slope

    def forward(self, x):
        self.x = x
        if self.on_cpu:
            return self.xp.where(x > 0, x, x * x.dtype.type(self.negative_slope))
        return pointwise(self.device, "leaky_relu_forward", x, extra=(f32(self.negative_slope),))

    def backward(self, dy):
        if self.on_cpu:
            return (self.xp.where(self.x > 0, dy, dy * dy.dtype.type(self.negative_slope)),)
        return (pointwise(self.device, "leaky_relu_backward", self.x, dy, extra=(f32(self.negative_slope),)),)


class Tanh(Op):
    name = "tanh"

    def forward(self, x):
        self.y = self.xp.tanh(x) if self.on_cpu else pointwise(self.device, "tanh_forward", x)
        return self.y

    def backward(self, dy):
        if self.on_cpu:
            return (dy * (1 - self.y * self.y),)
        return (pointwise(self.device, "tanh_backward", self.y, dy),)


class Sigmoid(Op):
    name = "sigmoid"

    def forward(self, x):
        if self.on_cpu:
            e = self.xp.exp(-self.xp.abs(x))  # exp of a non-positive number: no overflow for large |x|
            self.y = self.xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        else:
            self.y = pointwise(self.device, "sigmoid_forward", x)
        return self.y

    def backward(self, dy):
        if self.on_cpu:
            return (dy * self.y * (1 - self.y),)
        return (pointwise(self.device, "sigmoid_backward", self.y, dy),)
