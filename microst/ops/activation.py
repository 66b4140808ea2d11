"""Pointwise nonlinearities: relu, leaky_relu, tanh, sigmoid."""
from .base import Op


class Relu(Op):
    name = "relu"

    def forward(self, x):
        self.y = self.xp.maximum(x, 0)
        return self.y

    def backward(self, dy):
        return (dy * (self.y > 0),)


class LeakyRelu(Op):
    name = "leaky_relu"  # params: negative_slope

    def forward(self, x):
        self.x = x
        return self.xp.where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def backward(self, dy):
        return (self.xp.where(self.x > 0, dy, dy * dy.dtype.type(self.negative_slope)),)


class Tanh(Op):
    name = "tanh"

    def forward(self, x):
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, dy):
        return (dy * (1 - self.y * self.y),)


class Sigmoid(Op):
    name = "sigmoid"

    def forward(self, x):
        # exp of a negative number only: no overflow for large |x|
        e = self.xp.exp(-self.xp.abs(x))
        self.y = self.xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y),)
