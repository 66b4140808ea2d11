"""instance_norm and batch_norm: y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps).

The two differ only in which axes the statistics run over: instance norm per image and channel
(H, W), batch norm per channel over the whole batch (N, H, W). Variance is the biased one, as in
the formulas of Ulyanov et al. and in PyTorch; batch norm's running variance is unbiased.

Backward, with xhat = (x - mean) * rstd and g = dy * weight, averaged over the same axes:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    dweight = sum(dy * xhat),  dbias = sum(dy)
"""
from .base import Op, check_rank

INSTANCE_AXES, BATCH_AXES = (2, 3), (0, 2, 3)


def _check(op, x, weight, bias, axes):
    check_rank(op, "input", x, 4)
    c = x.shape[1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for input {tuple(x.shape)}, got {tuple(p.shape)}")
    count = 1
    for a in axes:
        count *= x.shape[a]
    if axes and count < 2:
        raise ValueError(f"{op}: needs more than one value per channel to normalize, input {tuple(x.shape)}")
    return count


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


class _Normalize(Op):
    """Normalize over self.axes with statistics from x itself; the common part of both norms."""
    axes = INSTANCE_AXES

    def normalize(self, x, weight, bias):
        mean = x.mean(axis=self.axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=self.axes, keepdims=True)
        self.rstd = 1.0 / self.xp.sqrt(var + x.dtype.type(self.eps))
        return self.scale_shift(centered * self.rstd, weight, bias), mean, var

    def scale_shift(self, xhat, weight, bias):
        self.xhat, self.weight = xhat, weight
        y = xhat * _per_channel(weight) if weight is not None else xhat.copy()
        if bias is not None:
            y += _per_channel(bias)
        return y

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        xhat = self.xhat
        g = dy * _per_channel(self.weight) if self.weight is not None else dy
        dx = None
        if need_x:
            dx = self.rstd * (g - g.mean(axis=self.axes, keepdims=True)
                              - xhat * (g * xhat).mean(axis=self.axes, keepdims=True))
        dw = (dy * xhat).sum(axis=(0, 2, 3)) if need_w else None
        db = dy.sum(axis=(0, 2, 3)) if need_b else None
        return dx, dw, db


class InstanceNorm(_Normalize):
    name = "instance_norm"  # params: eps

    def forward(self, x, weight, bias):
        _check(self.name, x, weight, bias, INSTANCE_AXES)
        return self.normalize(x, weight, bias)[0]


class BatchNorm(_Normalize):
    """params: running_mean, running_var (arrays or None, updated in place), training, momentum, eps."""
    name = "batch_norm"
    axes = BATCH_AXES

    def forward(self, x, weight, bias):
        count = _check(self.name, x, weight, bias, BATCH_AXES if self.training else ())
        if self.training:
            y, mean, var = self.normalize(x, weight, bias)
            m = self.momentum
            if self.running_mean is not None:
                self.running_mean *= 1 - m
                self.running_mean += m * mean.reshape(-1)
            if self.running_var is not None:
                self.running_var *= 1 - m
                self.running_var += m * var.reshape(-1) * (count / (count - 1))
            return y
        if self.running_mean is None or self.running_var is None:
            raise ValueError("batch_norm: eval mode (training=False) needs running_mean and running_var")
        self.rstd = _per_channel(1.0 / self.xp.sqrt(self.running_var + x.dtype.type(self.eps)))
        return self.scale_shift((x - _per_channel(self.running_mean)) * self.rstd, weight, bias)

    def backward(self, dy):
        if self.training:
            return super().backward(dy)
        need_x, need_w, need_b = self.needs_grad  # statistics are constants: dx is a per-channel scale
        g = dy * _per_channel(self.weight) if self.weight is not None else dy
        dx = g * self.rstd if need_x else None
        dw = (dy * self.xhat).sum(axis=(0, 2, 3)) if need_w else None
        db = dy.sum(axis=(0, 2, 3)) if need_b else None
        return dx, dw, db
