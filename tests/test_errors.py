"""Bad input to the ops: a clear ValueError/TypeError naming the op and the shapes."""
import numpy as np
import pytest

import microst
import microst.functional as F


def z(*shape, dtype=np.float32):
    return microst.tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.conv2d(z(3, 8, 8), z(4, 3, 3, 3)), ValueError, r"conv2d: input must have 4 dimensions .* \(3, 8, 8\)"),
    (lambda: F.conv2d(z(1, 3, 8, 8), z(4, 2, 3, 3)), ValueError, r"conv2d: input has 3 channels but weight \(4, 2, 3, 3\)"),
    (lambda: F.conv2d(z(1, 3, 4, 4), z(4, 3, 9, 9), padding=1), ValueError, r"conv2d: kernel 9x9 is larger than the padded input 6x6"),
    (lambda: F.conv2d(z(1, 3, 8, 8), z(4, 3, 3, 3), z(3)), ValueError, r"conv2d: bias must have shape \(4,\)"),
    (lambda: F.conv2d(z(1, 3, 8, 8), z(4, 3, 3, 3), stride=0), ValueError, r"conv2d: stride must be >= 1"),
    (lambda: F.conv2d(z(1, 3, 8, 8), z(4, 3, 3, 3, dtype=np.float64)), TypeError, r"conv2d: inputs have different dtypes"),
    (lambda: F.conv_transpose2d(z(1, 3, 4, 4), z(2, 4, 3, 3)), ValueError, r"conv_transpose2d: input has 3 channels"),
    (lambda: F.conv_transpose2d(z(1, 3, 4, 4), z(3, 4, 3, 3), stride=2, output_padding=2), ValueError, r"output_padding"),
    (lambda: F.upsample_conv2d(z(1, 3, 4, 4), z(4, 3, 5, 5)), ValueError, r"upsample_conv2d: the kernel must be 3x3.*interpolate"),
    (lambda: F.upsample_conv2d(z(1, 3, 4, 4), z(4, 2, 3, 3)), ValueError, r"upsample_conv2d: input has 3 channels"),
    (lambda: F.upsample_conv2d(z(1, 3, 4, 4), z(4, 3, 3, 3), z(3)), ValueError, r"upsample_conv2d: bias must have shape \(4,\)"),
    (lambda: F.pad(z(1, 1, 3, 3), (3, 0, 0, 0), "reflect"), ValueError, r"pad: reflect padding .* smaller than the input size 3x3"),
    (lambda: F.pad(z(1, 1, 3, 3), (1, 1, 1, 1), "wrap"), ValueError, r"pad: mode must be one of"),
    (lambda: F.max_pool2d(z(1, 1, 3, 3), 4), ValueError, r"max_pool2d: kernel 4x4 is larger than the input 3x3"),
    (lambda: F.avg_pool2d(z(2, 3), 2), ValueError, r"avg_pool2d: input must have 4 dimensions"),
    (lambda: F.interpolate(z(1, 1, 2, 2), 1.5), ValueError, r"interpolate: scale_factor must be a positive integer"),
    (lambda: F.instance_norm(z(1, 3, 4, 4), z(4)), ValueError, r"instance_norm: weight must have shape \(3,\)"),
    (lambda: F.instance_norm(z(1, 3, 1, 1)), ValueError, r"instance_norm: needs more than one value"),
    (lambda: F.batch_norm(z(1, 3, 4, 4), None, None, training=False), ValueError, r"batch_norm: eval mode"),
    (lambda: F.mse_loss(z(1, 3), z(1, 4)), ValueError, r"mse_loss: input \(1, 3\) and target \(1, 4\)"),
    (lambda: F.gram(z(3, 4)), ValueError, r"gram: input must have 4 dimensions"),
    (lambda: F.tv_loss(z(1, 1, 1, 5)), ValueError, r"tv_loss: needs H, W >= 2"),
    (lambda: microst.tensor(np.zeros(3, np.int32)), TypeError, r"tensor: dtype int32 is not supported"),
    (lambda: microst.tensor(np.zeros(3), device="tpu"), ValueError, r"unknown device 'tpu'"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
