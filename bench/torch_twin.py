"""PyTorch twins of microst's networks and loss, for benchmarks only (never imported by microst).

    twin = johnson_twin(model)      # model: a microst.models.TransformerNet; same config, same weights
    y = twin(torch.from_numpy(x))    # x (N, 3, H, W) in [0, 255] -> (N, 3, H, W) in (0, 255)
    loss = perceptual_twin(microst_loss, style_image)   # VGG-16 + content/style/TV, microst's semantics
    terms = loss(y, content)         # {"content", "style", "tv", "total"}, weighted as microst's

Every twin takes `device` (a torch device: "cpu", "cuda"), so that the CPU and the GPU benchmarks
compare against the same code.

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


def johnson_twin(model, device="cpu"):
    """The PyTorch twin of a microst TransformerNet, with its weights, in eval mode (call .train() to
    train it; instance norm uses per-image statistics either way)."""
    config = {k: v for k, v in model.config.items() if k != "model"}
    twin = TransformerNet(**config)
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"torch twin: missing {missing}, unexpected {unexpected}")
    return twin.eval().to(device)


# -- VGG-16 and the perceptual loss (microst/models/vgg16.py, microst/losses.py) -------------------
class VGG16Features(nn.Module):
    """microst's VGG16Features: x - Caffe mean (RGB order; block1_conv1's input channels already
    reversed), 3x3 convs with padding 1, ReLU, 2x2 max pooling; frozen weights (buffers)."""

    def __init__(self, vgg):
        super().__init__()
        from microst.models.vgg16 import SEQUENCE
        self.sequence = SEQUENCE
        self.convs = list(vgg.convs)
        for conv in self.convs:
            for part in ("weight", "bias"):
                name = f"{conv}_{part}"
                self.register_buffer(name, torch.from_numpy(vgg._buffers[name].numpy().copy()))
        self.register_buffer("mean_rgb", torch.from_numpy(vgg.mean_rgb.numpy().copy()))

    def forward(self, x, layers):
        wanted = set(layers)
        last = max(i for i, (name, _, _) in enumerate(self.sequence) if name in wanted)
        out, h = {}, x - self.mean_rgb
        for name, kind, conv in self.sequence[:last + 1]:
            if kind == "conv":
                h = F.conv2d(h, getattr(self, f"{conv}_weight"), getattr(self, f"{conv}_bias"), padding=1)
            elif kind == "relu":
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2)
            if name in wanted:
                out[name] = h
        return out


def gram(f):
    """F F^T / (C H W) per image, as microst.functional.gram."""
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def tv_loss(x):
    """Mean squared vertical plus mean squared horizontal neighbour differences (microst's tv_loss)."""
    return (x[:, :, 1:] - x[:, :, :-1]).pow(2).mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean()


class PerceptualLoss(nn.Module):
    """microst.losses.PerceptualLoss: content (mse of features), style (weighted mse of Grams against
    the style image's, broadcast over the batch) and TV, each already weighted, and their total."""

    def __init__(self, loss, style_image, device="cpu"):
        super().__init__()
        self.vgg = VGG16Features(loss.vgg).to(device)
        self.content_weight, self.style_weight, self.tv_weight = loss.content_weight, loss.style_weight, loss.tv_weight
        self.content_layers, self.style_layers = loss.content_layers, loss.style_layers
        self.layer_weights, self.layers = dict(loss.style_layer_weights), loss.layers
        with torch.no_grad():
            style = torch.as_tensor(style_image, device=device).reshape(1, 3, *style_image.shape[-2:])
            features = self.vgg(style, self.style_layers)
            self.style_grams = {layer: gram(features[layer]) for layer in self.style_layers}

    def forward(self, output, content):
        features = self.vgg(output, self.layers)
        with torch.no_grad():
            targets = self.vgg(content, self.content_layers)
        c = sum(F.mse_loss(features[layer], targets[layer]) for layer in self.content_layers) * self.content_weight
        s = sum(self.layer_weights[layer] * F.mse_loss(gram(features[layer]), self.style_grams[layer].expand(
            output.shape[0], -1, -1)) for layer in self.style_layers) * self.style_weight
        t = tv_loss(output) * self.tv_weight
        return {"content": c, "style": s, "tv": t, "total": c + s + t}


def perceptual_twin(loss, style_image, device="cpu"):
    """The twin of a microst PerceptualLoss (its VGG's weights, layers and loss weights); style_image
    (1, 3, H, W) or (3, H, W), the one microst's loss was built with."""
    return PerceptualLoss(loss, style_image, device)
