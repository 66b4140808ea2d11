"""A PyTorch twin of microst's TransformerNet, for benchmarks only (never imported by microst).

    twin = johnson_twin(model)      # model: a microst.models.TransformerNet; same config, same weights
    y = twin(torch.from_numpy(x))    # x (N, 3, H, W) in [0, 255] -> (N, 3, H, W) in (0, 255)

It mirrors microst/models/johnson.py layer by layer, with the same parameter names, so that the
state_dict loads as it is: reflection padding (margin + up to a multiple of 4, at least 8),
x / 127.5 - 1, conv 9x9 / 3x3 s2 / 3x3 s2 (zero padding k // 2) + norm + ReLU, unpadded residual
blocks with the identity cropped by 2, upsampling by transposed conv or nearest + conv,
conv 9x9, 127.5 * (tanh + 1), crop back.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind, channels):
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, norm="instance", relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.norm = _norm(norm, cout)
        self.relu = relu

    def forward(self, x):
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class UpsampleLayer(nn.Module):
    def __init__(self, cin, cout, mode, norm):
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = _norm(norm, cout)

    def forward(self, x):
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    def __init__(self, channels, norm):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(channels, channels, 3), _norm(norm, channels)
        self.conv2, self.norm2 = nn.Conv2d(channels, channels, 3), _norm(norm, channels)

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(y)) + x[:, :, 2:-2, 2:-2]


def _reflect_pad(x, left, right, top, bottom):
    for before, after, axis in ((left, right, 3), (top, bottom, 2)):
        while before or after:
            size = x.shape[axis]
            step = (before, after) if size == 1 else (min(before, size - 1), min(after, size - 1))
            mode = "replicate" if size == 1 else "reflect"
            x = F.pad(x, step + (0, 0) if axis == 3 else (0, 0) + step, mode=mode)
            before, after = before - step[0], after - step[1]
    return x


def _aligned(size, align, minimum):
    extra = max(-(-size // align) * align, -(-minimum // align) * align) - size
    return extra // 2, extra - extra // 2


class TransformerNet(nn.Module):
    def __init__(self, norm="instance", upsample="transpose", width=1.0, residual_blocks=5, **_):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.margin = 8 * residual_blocks
        self.conv1 = ConvLayer(3, c1, 9, norm=norm)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2, norm=norm)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2, norm=norm)
        self.residuals = nn.Sequential(*[ResidualBlock(c3, norm) for _ in range(residual_blocks)])
        self.up1 = UpsampleLayer(c3, c2, upsample, norm)
        self.up2 = UpsampleLayer(c2, c1, upsample, norm)
        self.conv_out = ConvLayer(c1, 3, 9, norm="none", relu=False)

    def forward(self, x):
        h, w = x.shape[2:]
        (top, bottom), (left, right) = _aligned(h, 4, 8), _aligned(w, 4, 8)
        m = self.margin
        x = _reflect_pad(x / 127.5 - 1.0, m + left, m + right, m + top, m + bottom)
        x = self.conv3(self.conv2(self.conv1(x)))
        x = self.up2(self.up1(self.residuals(x)))
        y = 127.5 * (torch.tanh(self.conv_out(x)) + 1.0)
        return y[:, :, top:top + h, left:left + w]


def johnson_twin(model):
    """The PyTorch twin of a microst TransformerNet, with its weights, in eval mode."""
    config = {k: v for k, v in model.config.items() if k != "model"}
    twin = TransformerNet(**config)
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"torch twin: missing {missing}, unexpected {unexpected}")
    return twin.eval()
