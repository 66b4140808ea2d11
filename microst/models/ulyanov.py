"""Ulyanov et al. (2016) texture network: a multi-scale generator g(x_c, z) fed with noise.

For scales k = 1 .. K (k = 1 the finest), the input of scale k is the content image downsampled
by 2^(k-1) (average pooling) concatenated with uniform noise z_k in [0, 1) of `noise_channels`
channels at that resolution. Each scale runs a block of three convolutions (3x3, 3x3, 1x1;
`channels` = 8 filters each, each followed by norm and ReLU or LeakyReLU). Going from the
coarsest scale to the finest, the coarser path is upsampled x2 (nearest), both paths are
normalized, their channels concatenated, and a block of the same kind (as many filters as it
gets channels: 16, 24, ... 8K) joins them. A final 1x1 conv maps to 3 channels; the output is
127.5 * (tanh(y) + 1), RGB in (0, 255).

    forward(content, seed=None)        content (N, 3, H, W) in [0, 255], any H and W (padded by
                                       reflection up to a multiple of 2^(K-1), and to at least
                                       2^K, then cropped back)
    forward(None, seed, size=(H, W))   a pure texture synthesizer (built with content=False)

The noise comes from microst.random.rng() when seed is None (so that training is repeatable
from one seed), from its own generator when a seed is given: the same seed gives the same
output, different seeds different stylizations of the same content (diversity).
"""
import numpy as np

from .. import device as devices
from .. import functional as F
from .. import nn
from ..autograd import Tensor, cat
from ..random import rng
from .generator import Generator, aligned_padding, make_norm, reflect_pad, to_pixels, to_unit

ACTIVATIONS = ("relu", "leaky_relu")


class ConvBlock(nn.Module):
    """conv 3x3, conv 3x3, conv 1x1 (zero padding), each followed by norm and the activation."""

    def __init__(self, cin, cout, norm="instance", activation="relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.conv1, self.norm1 = nn.Conv2d(cin, cout, 3, padding=1), make_norm(norm, cout)
        self.conv2, self.norm2 = nn.Conv2d(cout, cout, 3, padding=1), make_norm(norm, cout)
        self.conv3, self.norm3 = nn.Conv2d(cout, cout, 1), make_norm(norm, cout)

    def act(self, norm, x):
        """norm(x) and the activation; a ReLU goes into the norm's op (one pass on the kernel devices)."""
        if self.activation == "relu":
            return norm(x, relu=True)
        return F.leaky_relu(norm(x), 0.2)

    def forward(self, x):
        x = self.act(self.norm1, self.conv1(x))
        x = self.act(self.norm2, self.conv2(x))
        return self.act(self.norm3, self.conv3(x))


class Join(nn.Module):
    """Upsample the coarse path x2, normalize both paths, concatenate, then a ConvBlock."""

    def __init__(self, coarse_channels, fine_channels, norm="instance", activation="relu"):
        super().__init__()
        cout = coarse_channels + fine_channels
        self.norm_coarse = make_norm(norm, coarse_channels)
        self.norm_fine = make_norm(norm, fine_channels)
        self.block = ConvBlock(cout, cout, norm, activation)

    def forward(self, coarse, fine):
        coarse = F.interpolate(coarse, scale_factor=2)
        return self.block(cat([self.norm_coarse(coarse), self.norm_fine(fine)], dim=1))


class TextureNet(Generator):
    kind = "texture"

    def __init__(self, scales=6, channels=8, noise_channels=3, norm="instance", activation="relu",
                 content=True):
        super().__init__()
        if scales < 1 or channels < 1 or noise_channels < 0:
            raise ValueError(f"TextureNet: scales and channels must be >= 1 and noise_channels >= 0, got "
                             f"{scales}, {channels}, {noise_channels}")
        if not content and noise_channels == 0:
            raise ValueError("TextureNet: a texture synthesizer (content=False) needs noise_channels >= 1")
        self.config = {"model": self.kind, "scales": int(scales), "channels": int(channels),
                       "noise_channels": int(noise_channels), "norm": norm, "activation": activation,
                       "content": bool(content)}
        self.scales, self.noise_channels, self.content = scales, noise_channels, content
        self.align = 2 ** (scales - 1)
        # how far the zero padding at a tile's edge reaches into its output: about 2 pixels at the
        # resolution of each scale, 2 * (2^K - 1) in all (measured: 13 px at K = 3, 124 at K = 6);
        # 3 * (2^K - 1) rounded up to the grid for safety
        self.halo = -(-3 * (2 ** scales - 1) // self.align) * self.align
        cin = (3 if content else 0) + noise_channels
        self.blocks = nn.Sequential(*[ConvBlock(cin, channels, norm, activation) for _ in range(scales)])
        self.joins = nn.Sequential(*[Join(channels * (scales - k), channels, norm, activation)
                                     for k in range(1, scales)])  # joins[k-1] makes scale k's output
        self.conv_out = nn.Conv2d(channels * scales, 3, 1)

    def peak_bytes(self, h, w):
        """About the most memory one inference pass at h x w holds at a time: the finest join's maps (8K
        channels at full size; measured 30 bytes per pixel and channel on cpu, 36 here for headroom)."""
        return int(h * w * self.config["channels"] * self.config["scales"] * 36)

    def prepare(self, x, seed=None, size=None, batch=1):
        """Scale and pad the content; draw the noise of every scale at the padded size."""
        if x is not None:
            if not self.content:
                raise ValueError("TextureNet: this is a texture synthesizer (content=False); call it with None")
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"TextureNet: expected an (N, 3, H, W) image batch, got {x.shape}")
            (n, _, h, w), dtype, device = x.shape, x.dtype, x.device
        else:
            if self.content:
                raise ValueError("TextureNet: this net stylizes content images; give one (or build it "
                                 "with content=False for pure textures)")
            if size is None:
                raise ValueError("TextureNet: a texture needs size=(H, W)")
            (h, w), n, dtype, device = size, batch, np.dtype(np.float32), self.device
        # up to a multiple of 2^(K-1), and at least twice that, so that the coarsest scale has 2 x 2
        # pixels or more (instance norm needs more than one value)
        (top, bottom), (left, right) = (aligned_padding(s, self.align, 2 * self.align) for s in (h, w))
        hp, wp = h + top + bottom, w + left + right
        inputs = []
        if x is not None:
            inputs.append((reflect_pad(to_unit(x), left, right, top, bottom), 1))
        generator = rng() if seed is None else np.random.default_rng(seed)
        for k in range(self.scales):
            f = 2 ** k
            z = generator.random((n, self.noise_channels, hp // f, wp // f), dtype=np.float32).astype(dtype)
            inputs.append((Tensor(devices.move(z, device), device=device), f))
        return inputs, (top, left, h, w)

    def forward(self, x=None, seed=None, size=None, batch=1):
        inputs, geometry = self.prepare(x, seed, size, batch)
        return self.finish(self.core(*[t for t, _ in inputs]), geometry)

    def core(self, *inputs):
        """inputs: the padded content (when the net uses content), then z_1 .. z_K."""
        content, noise = (inputs[0], inputs[1:]) if self.content else (None, inputs)
        levels = []
        for k in range(self.scales):
            if content is not None and k:
                content = F.avg_pool2d(content, 2)  # 2^k overall: averages of equal 2x2 averages
            parts = [] if content is None else [content]
            if self.noise_channels:
                parts.append(noise[k])
            levels.append(self.blocks[k](parts[0] if len(parts) == 1 else cat(parts, dim=1)))
        y = levels[-1]
        for k in range(self.scales - 2, -1, -1):
            y = self.joins[k](y, levels[k])
        return to_pixels(self.conv_out(y))
