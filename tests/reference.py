"""Slow, obviously-correct NumPy definitions (loops over output pixels) that the fast `cpu` ops are
checked against. Written from the definitions, independently of microst/ops."""
import numpy as np


def conv2d(x, w, b=None, stride=1, padding=0):
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, cout, ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", window, w)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Every input pixel scatters weight * value onto a stride-spaced canvas, then the canvas is cropped."""
    n, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    canvas = np.zeros((n, cout, (h - 1) * stride + kh + output_padding, (wd - 1) * stride + kw + output_padding), x.dtype)
    for i in range(h):
        for j in range(wd):
            canvas[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum("nc,cohw->nohw", x[:, :, i, j], w)
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (wd - 1) * stride - 2 * padding + kw + output_padding
    y = canvas[:, :, padding:padding + ho, padding:padding + wo]
    return y if b is None else y + b[None, :, None, None]


def pool2d(x, k, s, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    y = np.zeros((n, c, ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(x[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return y


def normalize(x, axes, weight=None, bias=None, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight[None, :, None, None]
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def gram(x):
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return np.einsum("nip,njp->nij", f, f) / (c * h * w)


def tv_loss(x):
    return (np.diff(x, axis=2) ** 2).mean() + (np.diff(x, axis=3) ** 2).mean()
