"""instance_norm and batch_norm: y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps).

The two differ only in which values share statistics: instance norm one image's channel (H, W),
batch norm a channel over the batch (N, H, W). Variance is the biased one, as in Ulyanov et al.
and PyTorch; batch norm's running variance is unbiased. In eval mode batch norm uses the running
statistics, which are then constants.

Backward, with xhat = (x - mean) * rstd and g = dy * weight, means over the same values:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))      (eval: dx = rstd * g)
    dweight = sum(dy * xhat),  dbias = sum(dy)

instance_norm_relu and batch_norm_relu are the same followed by a ReLU, in one pass on the
kernels (the generators' norm + ReLU pairs): backward masks dy by the output y > 0.

cpu: NumPy (instance norm's forward a chunk of planes at a time, which stays in the cache);
emu/cuda: the selected version (ops/norm_kernels.py): v1 one block per statistics group, v2 several
blocks per group with a deterministic second stage. All save mean and rstd (not xhat) for backward,
which recomputes xhat.
"""
import numpy as np

from . import versions
from .base import Case, Op, check_rank
from .norm_kernels import VERSIONS  # noqa: F401 (the family's versions)
from .activation import relu_cpu
from .workspace import scratch


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


def _per_plane(v, n):
    """A per-channel vector repeated for each of n images: one value per (image, channel) plane, (n * C, 1)."""
    return np.tile(v, n).reshape(-1, 1)


def _axes(per_image):
    return (2, 3) if per_image else (0, 2, 3)


def norm_forward(device, x, weight, bias, per_image, eps, mean=None, rstd=None, relu=False):
    """(y, mean, rstd, xhat); statistics of x itself unless mean and rstd (per channel) are given;
    relu: y = relu(normalized). xhat is None: backward recomputes it (on cpu as on the kernels)."""
    if device != "cpu":
        version = versions.selected("norm", device)
        return version.launcher.forward(device, version, x, weight, bias, per_image, eps, mean, rstd, relu) + (None,)
    return _forward_cpu(x, weight, bias, per_image, eps, mean, rstd, relu)


def _forward_cpu(x, weight, bias, per_image, eps, mean, rstd, relu):
    """y = (x - mean) * (rstd * weight) + bias in place on x - mean (the output's own memory). xhat is
    not kept: backward recomputes it from x, mean and rstd (one pass, and no array held in between)."""
    if per_image and mean is None:
        return _instance_forward_cpu(x, weight, bias, eps, relu)
    if mean is None:
        mean = x.mean(axis=_axes(per_image), keepdims=True)
        y = x - mean
        square = scratch("norm_square", x.shape, x.dtype)
        np.multiply(y, y, out=square)
        rstd = 1.0 / np.sqrt(square.mean(axis=_axes(per_image), keepdims=True) + x.dtype.type(eps))
    else:
        mean, rstd = _per_channel(mean), _per_channel(rstd)
        y = x - mean
    y *= rstd * _per_channel(weight) if weight is not None else rstd
    if bias is not None:
        y += _per_channel(bias)
    if relu:
        relu_cpu(y, out=y)
    return y, mean.reshape(-1), rstd.reshape(-1), None


PLANES_CHUNK = 1 << 18  # instance norm's forward normalizes planes in chunks of about this many elements
DOT = 1024  # the cpu's per-plane sums are BLAS dots over this many elements, then summed pairwise
_vecdot = getattr(np, "vecdot", None) or (lambda a, b, axis=-1: np.einsum("...i,...i->...", a, b))  # NumPy < 2


def _plane_sums(a, b=None):
    """(planes,) sums over the last axis of a (planes, size), or of a * b: BLAS dots of DOT elements at a
    time, their results summed pairwise. np.sum's float32 loop runs at a third of a dot's speed (a
    65536-element row 56 us against 17), and a * b would be one more pass; one dot over a whole plane
    would lose the pairwise sum's accuracy (a 1104² plane's mean 4x further from float64's)."""
    planes, size = a.shape
    length = min(size, DOT)
    blocks = size // length
    head = lambda v: v[:, :blocks * length].reshape(planes, blocks, length)  # noqa: E731 (views)
    if b is None:
        sums = np.matmul(head(a), np.ones(length, a.dtype)).sum(axis=1)
    else:
        sums = _vecdot(head(a), head(b), axis=-1).sum(axis=1)
    if blocks * length < size:
        rest = a[:, blocks * length:]
        sums += rest.sum(axis=1) if b is None else _vecdot(rest, b[:, blocks * length:], axis=-1)
    return sums.reshape(planes, 1)


def _instance_forward_cpu(x, weight, bias, eps, relu):
    """Instance norm's forward a few planes (images' channels) at a time, PLANES_CHUNK elements (1 MB):
    the chunk stays in the cache from its mean to its ReLU, where whole-array passes stream the map
    from memory seven times."""
    n, c, h, w = x.shape
    planes, y = x.reshape(n * c, h * w), np.empty(x.shape, x.dtype)
    out, mean, rstd = y.reshape(n * c, h * w), np.empty((n * c, 1), x.dtype), np.empty((n * c, 1), x.dtype)
    scale = _per_plane(weight, n) if weight is not None else None
    shift = _per_plane(bias, n) if bias is not None else None
    step = max(1, PLANES_CHUNK // (h * w))
    for p0 in range(0, n * c, step):
        p1 = min(n * c, p0 + step)
        xs, ys, m, r = planes[p0:p1], out[p0:p1], mean[p0:p1], rstd[p0:p1]
        np.multiply(_plane_sums(xs), x.dtype.type(1 / (h * w)), out=m)
        np.subtract(xs, m, out=ys)
        np.multiply(_plane_sums(ys, ys), x.dtype.type(1 / (h * w)), out=r)
        r += x.dtype.type(eps)
        np.sqrt(r, out=r)
        np.divide(1, r, out=r)
        ys *= r * scale[p0:p1] if scale is not None else r
        if shift is not None:
            ys += shift[p0:p1]
        if relu:
            relu_cpu(ys, out=ys)
    return y, mean.reshape(-1), rstd.reshape(-1), None


def norm_backward(device, dy, x, y, xhat, weight, mean, rstd, per_image, batch_stats, needs, relu=False):
    """(dx, dweight, dbias), each None unless asked for in needs = (x, weight, bias). y: the
    forward's output, read (for the ReLU's mask) when relu."""
    if device != "cpu":
        version = versions.selected("norm", device)
        return version.launcher.backward(device, version, dy, x, y, weight, mean, rstd, per_image, batch_stats,
                                         needs, relu)
    return _backward_cpu(dy, x, y, xhat, weight, mean, rstd, per_image, batch_stats, needs, relu)


def _backward_cpu(dy, x, y, xhat, weight, mean, rstd, per_image, batch_stats, needs, relu):
    """dx = rstd * weight * (dy - mean(dy) - xhat * mean(dy * xhat)) (weight is constant within a group,
    so it moves out of the means); the two sums per group also give dweight and dbias."""
    if per_image and batch_stats and xhat is None:
        return _instance_backward_cpu(dy, x, y, weight, mean, rstd, needs, relu)
    need_x, need_w, need_b = needs
    n, c = dy.shape[:2]
    group = (n, c, 1, 1) if per_image else (1, c, 1, 1)
    rstd = rstd.reshape(group)
    if xhat is None:
        xhat = x - mean.reshape(group)
        xhat *= rstd
    if relu:
        dy = dy * (y > 0)
    axes = _axes(per_image)
    stats = need_x and batch_stats
    dy_sum = dy.sum(axis=axes, keepdims=True) if need_b or stats else None  # per group
    dyx_sum = (dy * xhat).sum(axis=axes, keepdims=True) if need_w or stats else None
    dx = None
    if need_x:
        scale = rstd * _per_channel(weight) if weight is not None else rstd
        if stats:
            count = dy.dtype.type(dy.size // (n * c if per_image else c))
            dx = xhat * (dyx_sum / count)
            np.subtract(dy, dx, out=dx)
            dx -= dy_sum / count
            dx *= scale
        else:
            dx = dy * scale
    dw = dyx_sum.sum(axis=0).reshape(c) if need_w else None
    db = dy_sum.sum(axis=0).reshape(c) if need_b else None
    return dx, dw, db


def _instance_backward_cpu(dy, x, y, weight, mean, rstd, needs, relu):
    """Instance norm's backward a few planes at a time, as its forward (PLANES_CHUNK elements): g = dy
    (masked by y > 0 after a ReLU), xhat, the two sums and dx of a chunk while it is in the cache, where
    whole-array passes stream the maps from memory a dozen times."""
    need_x, need_w, need_b = needs
    n, c, h, w = dy.shape
    count = dy.dtype.type(h * w)
    flat = lambda a: a.reshape(n * c, h * w)  # noqa: E731
    dys, xs, ys = flat(dy), flat(x), flat(y) if relu else None
    dx = np.empty(dy.shape, dy.dtype) if need_x else None
    dy_sum, dyx_sum = np.empty((n * c, 1), dy.dtype), np.empty((n * c, 1), dy.dtype)
    mean, rstd = mean.reshape(-1, 1), rstd.reshape(-1, 1)
    scale = rstd * _per_plane(weight, n) if weight is not None else rstd
    step = max(1, PLANES_CHUNK // (h * w))
    for p0 in range(0, n * c, step):
        p1 = min(n * c, p0 + step)
        g = dys[p0:p1]
        if relu:
            mask = scratch("norm_mask", g.shape, bool)
            np.greater(ys[p0:p1], 0, out=mask)
            g = np.multiply(g, mask, out=scratch("norm_dy", g.shape, dy.dtype))
        xhat = np.subtract(xs[p0:p1], mean[p0:p1], out=scratch("norm_xhat", g.shape, dy.dtype))
        xhat *= rstd[p0:p1]
        dy_sum[p0:p1] = _plane_sums(g)
        dyx_sum[p0:p1] = _plane_sums(g, xhat)
        if need_x:
            out = flat(dx)[p0:p1]
            np.multiply(xhat, dyx_sum[p0:p1] / count, out=out)
            np.subtract(g, out, out=out)
            out -= dy_sum[p0:p1] / count
            out *= scale[p0:p1]
    dw = dyx_sum.reshape(n, c).sum(axis=0) if need_w else None
    db = dy_sum.reshape(n, c).sum(axis=0) if need_b else None
    return dx, dw, db


# -- the ops ---------------------------------------------------------------------------------
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


class _Normalize(Op):
    """Subclasses set per_image and call normalize(); given mean/rstd are constants (eval).
    relu (a class attribute): the op is norm followed by ReLU."""
    relu = False

    def normalize(self, x, weight, bias, mean=None, rstd=None):
        self.batch_stats = mean is None
        y, self.mean, self.rstd, self.xhat = norm_forward(self.device, x, weight, bias, self.per_image, self.eps,
                                                          mean, rstd, self.relu)
        self.x, self.y, self.weight = x, (y if self.relu else None), weight
        return y, self.mean, self.rstd

    def backward(self, dy):
        return norm_backward(self.device, dy, self.x, self.y, self.xhat, self.weight, self.mean, self.rstd,
                             self.per_image, self.batch_stats, self.needs_grad, self.relu)


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


class InstanceNormRelu(InstanceNorm):
    name = "instance_norm_relu"
    relu = True


class BatchNormRelu(BatchNorm):
    name = "batch_norm_relu"
    relu = True


def cases():
    """Unit-variance inputs, and small-variance ones (var ~ 1e-4, comparable to eps = 1e-5), where
    moving eps inside or outside the square root changes the result."""
    def affine(F, x, w, b):
        return F.instance_norm(x, weight=w, bias=b)

    def bn_train(F, x, w, b):
        return F.batch_norm(x, None, None, w, b, training=True)

    def bn_eval(F, x, w, b, mean, var):  # mean and var: the running statistics (constants)
        return F.batch_norm(x, mean, var, w, b, training=False)

    image, vec = (3, 5, 7, 9), (5,)
    out = []
    for tag, scale in (("", 1.0), (" small variance", 1e-2)):
        out += [
            Case(f"instance_norm{tag}", affine, (image, vec, vec), scale=scale,
                 full=((4, 32, 336, 336), (32,), (32,)) if not tag else None, op=InstanceNorm),
            Case(f"instance_norm plain{tag}", lambda F, x: F.instance_norm(x), ((2, 3, 33, 35),), scale=scale,
                 op=InstanceNorm),
            Case(f"instance_norm affine b{tag}", affine, ((2, 3, 5, 7), (3,), (3,)), scale=scale, op=InstanceNorm),
            Case(f"batch_norm train{tag}", bn_train, ((3, 5, 6, 7), vec, vec), scale=scale, op=BatchNorm),
            Case(f"batch_norm eval{tag}", bn_eval, ((2, 5, 6, 7), vec, vec, vec, vec), scale=scale, constant=(3, 4),
                 positive=(4,), op=BatchNorm),
        ]
    for tag, scale in (("", 1.0), (" small variance", 1e-2)):
        out += [
            Case(f"instance_norm_relu{tag}", lambda F, x, w, b: F.instance_norm_relu(x, weight=w, bias=b),
                 (image, vec, vec), scale=scale, full=((4, 64, 168, 168), (64,), (64,)) if not tag else None,
                 op=InstanceNormRelu),
            Case(f"batch_norm_relu train{tag}", lambda F, x, w, b: F.batch_norm_relu(x, None, None, w, b, training=True),
                 ((3, 5, 6, 7), vec, vec), scale=scale, op=BatchNormRelu),
            Case(f"batch_norm_relu eval{tag}",
                 lambda F, x, w, b, m, v: F.batch_norm_relu(x, m, v, w, b, training=False),
                 ((2, 5, 6, 7), vec, vec, vec, vec), scale=scale, constant=(3, 4), positive=(4,), op=BatchNormRelu),
        ]
    out.append(Case("instance_norm plain c", lambda F, x: F.instance_norm(x), ((3, 2, 4, 3),), op=InstanceNorm))
    out.append(Case("instance_norm float4 planes", affine, ((2, 3, 16, 20), (3,), (3,)), op=InstanceNorm))
    out.append(Case("batch_norm train b", bn_train, ((3, 4, 5, 3), (4,), (4,)), op=BatchNorm))
    return out
