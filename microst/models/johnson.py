"""Johnson et al. (2016) image transform network, exactly the seed lecture's table by default.

    layer                                        activation size (input 3 x 256 x 256)
    reflection padding 40                        3 x 336 x 336
    conv 9x9, 32, stride 1    + norm + ReLU      32 x 336 x 336
    conv 3x3, 64, stride 2    + norm + ReLU      64 x 168 x 168
    conv 3x3, 128, stride 2   + norm + ReLU      128 x 84 x 84
    5 residual blocks, 128 (unpadded convs)      128 x 80 ... 64 x 64
    conv 3x3, 64, stride 1/2  + norm + ReLU      64 x 128 x 128
    conv 3x3, 32, stride 1/2  + norm + ReLU      32 x 256 x 256
    conv 9x9, 3, stride 1                        3 x 256 x 256  -> 127.5 * (tanh + 1)

A residual block is conv 3x3 (no padding) + norm + ReLU, conv 3x3 (no padding) + norm, plus the
identity cropped by 2 pixels per side. The padded convolutions (9x9 and the strided ones) pad
with zeros, as in the paper. Every residual block shrinks the map by 2 pixels per side at a
quarter of the resolution, 8 pixels at full resolution, which the reflection padding
(8 x residual_blocks = 40) gives back.

Input: RGB in [0, 255], (N, 3, H, W), any H and W: the input is padded up to a multiple of 4
(and at least 8; reflection, split between both sides) and the output cropped back, so output
size = input size.
Output: RGB in (0, 255), 127.5 * (tanh(y) + 1) of the last convolution y.

Options:
- norm: "instance" (default; Ulyanov et al. 2017), "batch" (the 2016 paper) or "none" (the
  lecture's question: is no normalization better?).
- upsample: "transpose" (fractionally strided conv, the paper) or "nearest" (nearest x2 then a
  3x3 conv: no checkerboard artifacts).
- width: multiplies every channel count (32, 64, 128); 0.5 gives a net with 1/4 the work.
"""
from .. import functional as F
from .. import nn
from .generator import Generator, aligned_padding, make_norm, reflect_pad, to_pixels, to_unit

UPSAMPLES = ("transpose", "nearest")


class ConvLayer(nn.Module):
    """conv (zero padding k // 2) + norm + ReLU; relu=False and norm="none" for the last layer."""

    def __init__(self, cin, cout, kernel, stride=1, norm="instance", relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.norm = make_norm(norm, cout)
        self.relu = relu

    def forward(self, x):
        return self.norm(self.conv(x), relu=self.relu)


class UpsampleLayer(nn.Module):
    """x2 upsampling + norm + ReLU: a transposed conv 3x3 stride 2 ("stride 1/2"), or nearest x2
    followed by a conv 3x3."""

    def __init__(self, cin, cout, mode="transpose", norm="instance"):
        super().__init__()
        if mode not in UPSAMPLES:
            raise ValueError(f"unknown upsample {mode!r}; choose one of {', '.join(UPSAMPLES)}")
        self.mode = mode
        if mode == "transpose":
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = make_norm(norm, cout)

    def forward(self, x):
        if self.mode == "nearest":  # one op: on the cpu a conv at the input's resolution, no upsampled map
            return self.norm(F.upsample_conv2d(x, self.conv.weight, self.conv.bias), relu=True)
        return self.norm(self.conv(x), relu=True)


class ResidualBlock(nn.Module):
    """Two unpadded 3x3 convs (norm + ReLU, then norm) plus the identity cropped 2 px per side."""

    def __init__(self, channels, norm="instance"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x):
        y = self.norm1(self.conv1(x), relu=True)
        y = self.norm2(self.conv2(y))
        return y + x[:, :, 2:-2, 2:-2]


class TransformerNet(Generator):
    kind = "johnson"
    align = 4

    def __init__(self, norm="instance", upsample="transpose", width=1.0, residual_blocks=5):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.config = {"model": self.kind, "norm": norm, "upsample": upsample, "width": float(width),
                       "residual_blocks": int(residual_blocks)}
        self.margin = 8 * residual_blocks
        # how far the zero padding at a tile's edge reaches into its output (the padded convs: 9x9 and
        # strided before the unpadded trunk, upsampling and 9x9 after): measured 15 px; 20 for safety
        self.halo = 20
        self.conv1 = ConvLayer(3, c1, 9, norm=norm)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2, norm=norm)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2, norm=norm)
        self.residuals = nn.Sequential(*[ResidualBlock(c3, norm) for _ in range(residual_blocks)])
        self.up1 = UpsampleLayer(c3, c2, upsample, norm)
        self.up2 = UpsampleLayer(c2, c1, upsample, norm)
        self.conv_out = ConvLayer(c1, 3, 9, norm="none", relu=False)

    def peak_bytes(self, h, w):
        """About the most memory one inference pass at h x w holds at a time: a few maps of the first
        layer's channels at the padded size (measured: 16.4 bytes per pixel and channel on cpu; 20 here
        for the kernel devices' offset tables and CuPy's pool)."""
        m = self.margin + 2 * self.align
        return int((h + 2 * m) * (w + 2 * m) * self.conv1.conv.weight.shape[0] * 20)

    def prepare(self, x, seed=None):
        """Scale to [-1, 1], reflection-pad by the margin plus up to a multiple of 4 (at least 8)."""
        if x is None or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"TransformerNet: expected an (N, 3, H, W) image batch, got "
                             f"{None if x is None else x.shape}")
        h, w = x.shape[2:]
        # up to a multiple of 4, and at least 8 so that the last residual block's map is 2 x 2 or more
        (top, bottom), (left, right) = (aligned_padding(s, self.align, 2 * self.align) for s in (h, w))
        m = self.margin
        padded = reflect_pad(to_unit(x), m + left, m + right, m + top, m + bottom)
        return [(padded, 1)], (top, left, h, w)

    def core(self, x):
        x = self.conv3(self.conv2(self.conv1(x)))
        x = self.residuals(x)
        x = self.up2(self.up1(x))
        return to_pixels(self.conv_out(x))
