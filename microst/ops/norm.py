"""instance_norm and batch_norm: y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps).

The two differ only in which values share statistics: instance norm one image's channel (H, W),
batch norm a channel over the batch (N, H, W). Variance is the biased one, as in Ulyanov et al.
and PyTorch; batch norm's running variance is unbiased. In eval mode batch norm uses the running
statistics, which are then constants.

Backward, with xhat = (x - mean) * rstd and g = dy * weight, means over the same values:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))      (eval: dx = rstd * g)
    dweight = sum(dy * xhat),  dbias = sum(dy)

cpu: NumPy. emu/cuda: kernels/norm.cu, one block per statistics group (warp shuffles + shared
memory), saving mean and rstd (not xhat) for backward.
"""
import numpy as np

from .base import Op, check_rank, empty, f32, i32, launch


def _check(op, x, weight, bias, axes):
    check_rank(op, "input", x, 4)
    c = x.shape[1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for input {tuple(x.shape)}, got {tuple(p.shape)}")
    count = int(np.prod([x.shape[a] for a in axes]))
    if axes and count < 2:
        raise ValueError(f"{op}: needs more than one value per channel to normalize, input {tuple(x.shape)}")
    return count


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


class _Normalize(Op):
    """The shared machinery. Subclasses set per_image (statistics per image or over the batch)
    and call normalize(); batch_stats False means mean/rstd are given constants."""

    def normalize(self, x, weight, bias, mean=None, rstd=None):
        self.batch_stats = mean is None
        self.x_shape, self.has_weight = x.shape, weight is not None
        n, c = x.shape[:2]
        if self.on_cpu:
            axes = (2, 3) if self.per_image else (0, 2, 3)
            if self.batch_stats:
                mean = x.mean(axis=axes, keepdims=True)
                centered = x - mean
                rstd = 1.0 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + x.dtype.type(self.eps))
            else:
                mean, rstd = _per_channel(mean), _per_channel(rstd)
                centered = x - mean
            self.xhat, self.rstd, self.weight = centered * rstd, rstd, weight
            y = self.xhat * _per_channel(weight) if weight is not None else self.xhat.copy()
            if bias is not None:
                y += _per_channel(bias)
            return y, mean.reshape(-1), rstd.reshape(-1)

        xp = self.xp
        weight = xp.ones(c, np.float32) if weight is None else weight
        bias = xp.zeros(c, np.float32) if bias is None else bias
        groups = n * c if self.per_image else c
        if self.batch_stats:
            mean, rstd = empty(self.device, (groups,)), empty(self.device, (groups,))
        y = empty(self.device, x.shape)
        launch(self.device, "norm.cu", "norm_forward", groups,
               (x, weight, bias, y, mean, rstd, i32(n), i32(c), i32(x.shape[2] * x.shape[3]),
                i32(self.per_image), i32(self.batch_stats), f32(self.eps)))
        self.x, self.mean, self.rstd, self.weight = x, mean, rstd, weight
        return y, mean, rstd

    def backward(self, dy):
        need_x, need_w, need_b = self.needs_grad
        if self.on_cpu:
            return self._backward_cpu(dy, need_x, need_w, need_b)
        n, c, h, w = self.x_shape
        groups = n * c if self.per_image else c
        dx = empty(self.device, self.x_shape)
        sum_dy, sum_dy_xhat = empty(self.device, (groups,)), empty(self.device, (groups,))
        launch(self.device, "norm.cu", "norm_backward", groups,
               (self.x, dy, self.weight, self.mean, self.rstd, dx, sum_dy, sum_dy_xhat,
                i32(n), i32(c), i32(h * w), i32(self.per_image), i32(self.batch_stats)))
        images = n if self.per_image else 1
        dw = self._sum_over_images(sum_dy_xhat, images, c) if need_w else None
        db = self._sum_over_images(sum_dy, images, c) if need_b else None
        return dx if need_x else None, dw, db

    def _sum_over_images(self, s, images, c):
        out = empty(self.device, (c,))
        launch(self.device, "norm.cu", "sum_over_images", 1, (s, out, i32(images), i32(c)))
        return out

    def _backward_cpu(self, dy, need_x, need_w, need_b):
        xhat = self.xhat
        g = dy * _per_channel(self.weight) if self.weight is not None else dy
        dx = None
        if need_x and self.batch_stats:
            axes = (2, 3) if self.per_image else (0, 2, 3)
            dx = self.rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
        elif need_x:
            dx = g * self.rstd
        dw = (dy * xhat).sum(axis=(0, 2, 3)) if need_w else None
        db = dy.sum(axis=(0, 2, 3)) if need_b else None
        return dx, dw, db


class InstanceNorm(_Normalize):
    name = "instance_norm"  # params: eps
    per_image = True

    def forward(self, x, weight, bias):
        _check(self.name, x, weight, bias, (2, 3))
        return self.normalize(x, weight, bias)[0]


class BatchNorm(_Normalize):
    """params: running_mean, running_var (arrays or None, updated in place), training, momentum, eps."""
    name = "batch_norm"
    per_image = False

    def forward(self, x, weight, bias):
        if not self.training:
            _check(self.name, x, weight, bias, ())
            if self.running_mean is None or self.running_var is None:
                raise ValueError("batch_norm: eval mode (training=False) needs running_mean and running_var")
            rstd = 1.0 / self.xp.sqrt(self.running_var + x.dtype.type(self.eps))
            return self.normalize(x, weight, bias, self.running_mean.astype(x.dtype), rstd.astype(x.dtype))[0]
        count = _check(self.name, x, weight, bias, (0, 2, 3))
        y, mean, rstd = self.normalize(x, weight, bias)
        m = self.momentum
        if self.running_mean is not None:
            self.running_mean *= 1 - m
            self.running_mean += m * mean
        if self.running_var is not None:  # unbiased, like PyTorch; var recovered from rstd
            var = 1.0 / (rstd * rstd) - self.eps
            self.running_var *= 1 - m
            self.running_var += m * var * (count / (count - 1))
        return y
