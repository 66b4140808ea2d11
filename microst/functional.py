"""Differentiable functions on Tensors, with the names, argument order and semantics of
torch.nn.functional where a twin exists (import as F). Each is one op from microst/ops."""
from .autograd import apply, cat, Tensor  # noqa: F401 (cat: torch.cat's twin, here for one namespace)
from .ops import activation, conv, loss, norm, pad as pad_op, pool


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation. weight (Cout, Cin, kh, kw); stride and padding: int or (h, w); zero padding."""
    return apply(conv.Conv2d, input, weight, bias, stride=stride, padding=padding)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0):
    """The adjoint of conv2d ("fractionally strided" convolution). weight (Cin, Cout, kh, kw).
    Output size (H - 1) * stride - 2 * padding + kh + output_padding."""
    return apply(conv.ConvTranspose2d, input, weight, bias, stride=stride, padding=padding,
                 output_padding=output_padding)


def upsample_conv2d(input, weight, bias=None):
    """conv2d(interpolate(input, 2), weight, bias, padding=1) for a 3x3 weight (Cout, Cin, 3, 3), one op."""
    return apply(conv.UpsampleConv2d, input, weight, bias)


def pad(input, pad, mode="constant", value=0.0):
    """Pad H and W by pad = (left, right, top, bottom); mode "reflect", "replicate" or "constant"."""
    return apply(pad_op.Pad, input, pad=tuple(pad), mode=mode, value=value)


def interpolate(input, scale_factor, mode="nearest"):
    """Nearest-neighbour upsampling by an integer factor (each pixel becomes a factor x factor block)."""
    if mode != "nearest":
        raise ValueError(f"interpolate: only mode='nearest' is supported, got {mode!r}")
    if float(scale_factor) != int(scale_factor) or int(scale_factor) < 1:
        raise ValueError(f"interpolate: scale_factor must be a positive integer, got {scale_factor!r}")
    return apply(pool.UpsampleNearest, input, scale=int(scale_factor))


def max_pool2d(input, kernel_size, stride=None):
    """Max over kernel_size windows (stride defaults to kernel_size; no padding; floor)."""
    return apply(pool.MaxPool2d, input, kernel_size=kernel_size, stride=stride)


def avg_pool2d(input, kernel_size, stride=None):
    """Mean over kernel_size windows (stride defaults to kernel_size; no padding; floor)."""
    return apply(pool.AvgPool2d, input, kernel_size=kernel_size, stride=stride)


def relu(input):
    return apply(activation.Relu, input)


def leaky_relu(input, negative_slope=0.01):
    return apply(activation.LeakyRelu, input, negative_slope=negative_slope)


def tanh(input):
    return apply(activation.Tanh, input)


def sigmoid(input):
    return apply(activation.Sigmoid, input)


def instance_norm(input, weight=None, bias=None, eps=1e-5):
    """Normalize each image's channels by their own mean and variance over H, W (train and test).
    Unlike torch's instance_norm the second and third positional arguments are weight and bias
    (instance norm keeps no running statistics here); pass them by keyword to be portable."""
    return apply(norm.InstanceNorm, input, weight, bias, eps=eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize each channel over (N, H, W). training=True uses the batch statistics and updates
    running_mean/running_var in place (running = (1 - momentum) * running + momentum * batch,
    variance unbiased); training=False normalizes with the running statistics."""
    return _batch_norm(norm.BatchNorm, input, running_mean, running_var, weight, bias, training, momentum, eps)


def instance_norm_relu(input, weight=None, bias=None, eps=1e-5):
    """relu(instance_norm(input, weight, bias, eps)), one op (one pass on the kernel devices)."""
    return apply(norm.InstanceNormRelu, input, weight, bias, eps=eps)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """relu(batch_norm(...)), one op (one pass on the kernel devices)."""
    return _batch_norm(norm.BatchNormRelu, input, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm(op, input, running_mean, running_var, weight, bias, training, momentum, eps):
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"batch_norm: {name} must be a Tensor or None, got {type(t).__name__}")
    return apply(op, input, weight, bias,
                 running_mean=None if running_mean is None else running_mean.data,
                 running_var=None if running_var is None else running_var.data,
                 training=training, momentum=momentum, eps=eps)


def mse_loss(input, target):
    """mean((input - target)^2) over all elements."""
    return apply(loss.MseLoss, input, target)


def gram(input):
    """Gram matrices of feature maps: (N, C, H, W) -> (N, C, C), G = F F^T / (C H W) with F = (C, H*W)."""
    return apply(loss.Gram, input)


def tv_loss(input):
    """Total variation, squared and averaged:

        tv(x) = mean_{n,c,i,j} (x[n,c,i+1,j] - x[n,c,i,j])^2 + mean_{n,c,i,j} (x[n,c,i,j+1] - x[n,c,i,j])^2

    (each mean over the differences that exist: (H-1)*W vertical and H*(W-1) horizontal per channel).
    """
    return apply(loss.TvLoss, input)
