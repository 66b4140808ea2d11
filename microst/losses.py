"""The perceptual losses of style transfer (Gatys et al. 2016; Johnson et al. 2016).

Scale conventions (images are RGB in [0, 255], fed to VGG-16 with Caffe preprocessing):

- gram(F) = F Fᵀ / (C·H·W) for a feature map F of C channels and H·W positions (microst.functional.gram);
- every squared error is a mean, never a sum (microst.functional.mse_loss);

    content_loss = Σ_{l in content layers} mean((φ_l(output) - φ_l(content))²)
    style_loss   = Σ_{l in style layers}   w_l · mean((gram(φ_l(output)) - gram(φ_l(style)))²)
    tv_loss      = mean of squared vertical + mean of squared horizontal neighbour differences

  and PerceptualLoss's total = content_weight·content + style_weight·style + tv_weight·tv.

Defaults: Johnson et al.'s layers (content relu2_2; style relu1_2, relu2_2, relu3_3, relu4_3 with
equal weights w_l = 1) and the weights of Johnson's fast-neural-style training script, which uses
these same scales (Caffe VGG-16 on [0, 255], Gram / (C·H·W), mean squared errors): content 1,
style 5. Measured here on 256x256 photos and the paintings of ../shared/data (raw, unweighted):

    content (relu2_2), output = another photo or a gray image     1e5 .. 3e5
    style, photo or gray image against a painting                  3e5 .. 2e6 (relu1_2 and relu2_2
                                                                   dominate; relu4_3 only ~10)
    tv of a photo                                                  2e2 .. 1.5e3

So an untrained generator's first outputs (near gray) start with the weighted style term ten to
fifty times the content term; once the colours and textures are learnt the two are of the same
order (Gatys's optimization at these weights ends near content 8e4, style 2e4). The TV weight 1
keeps the TV term around 1% of the total: a mild smoothing. These defaults are every command's
(train and the optimization baseline alike). Raise style_weight for more style; raise tv_weight
(e.g. 10) when optimizing pixels directly leaves high-frequency noise.
"""
import numpy as np

from . import device as devices
from . import functional as F
from .autograd import Tensor, no_grad, tensor
from .ops.arith import broadcast_to

DEFAULT_CONTENT_LAYERS = ("relu2_2",)
DEFAULT_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 5.0
DEFAULT_TV_WEIGHT = 1.0


def _sum(terms, like):
    total = None
    for term in terms:
        total = term if total is None else total + term
    return total if total is not None else _zero(like)


def _zero(like):
    return tensor(np.zeros((), like.dtype), device=like.device)


def content_loss(features, targets, layers):
    """Σ over `layers` of mse(features[l], targets[l]); features and targets: {layer: Tensor}."""
    terms = []
    for layer in layers:
        f, t = features[layer], targets[layer]
        if f.shape != t.shape:
            raise ValueError(f"content_loss: {layer} of the output is {f.shape} but of the content {t.shape}; "
                             f"give a content image of the output's size")
        terms.append(F.mse_loss(f, t))
    return _sum(terms, next(iter(features.values())))


def style_loss(features, style_grams, layers, weights=None):
    """Σ over `layers` of weights[l] · mse(gram(features[l]), style_grams[l]).

    style_grams[l]: (1, C, C) or (N, C, C) Tensors (one style image's Grams broadcast over a batch).
    weights: one number per layer (a sequence) or {layer: number}; None gives 1 for each layer.
    """
    weights = _layer_weights(layers, weights)
    terms = []
    for layer in layers:
        g = F.gram(features[layer])
        target = style_grams[layer]
        if target.shape != g.shape:
            if target.shape[0] != 1 or target.shape[1:] != g.shape[1:]:
                raise ValueError(f"style_loss: {layer} Gram of the output is {g.shape} but the target's is "
                                 f"{target.shape}")
            data = broadcast_to(target.device, target.data, g.shape)  # a copy on the kernel devices
            target = Tensor(np.ascontiguousarray(data) if target.device == "cpu" else data, device=target.device)
        term = F.mse_loss(g, target)
        terms.append(term if weights[layer] == 1 else term * weights[layer])
    return _sum(terms, next(iter(features.values())))


def tv_loss(image):
    """Total variation of an (N, C, H, W) image: the mean squared difference of vertical neighbours
    plus that of horizontal neighbours (microst.functional.tv_loss)."""
    return F.tv_loss(image)


def _layer_weights(layers, weights):
    if weights is None:
        return {layer: 1.0 for layer in layers}
    if isinstance(weights, dict):
        missing = [layer for layer in layers if layer not in weights]
        if missing:
            raise ValueError(f"style layer weights: none given for {', '.join(missing)}")
        return {layer: float(weights[layer]) for layer in layers}
    weights = list(weights)
    if len(weights) != len(layers):
        raise ValueError(f"style layer weights: {len(weights)} numbers for {len(layers)} layers {tuple(layers)}")
    return {layer: float(w) for layer, w in zip(layers, weights)}


def _as_batch(image, vgg, what):
    if not isinstance(image, Tensor):
        image = tensor(np.asarray(image, dtype=vgg.dtype), device=vgg.device)
    if image.ndim == 3:
        image = image.reshape((1,) + image.shape)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"PerceptualLoss: {what} must be (N, 3, H, W) RGB in [0, 255], got shape {image.shape}")
    return image.to(vgg.device)


class PerceptualLoss:
    """Content + style + total-variation loss on a frozen VGG16Features.

        loss = PerceptualLoss(vgg, style_image)          # style Grams computed once, here
        terms = loss(output, content)                    # {"content", "style", "tv", "total"}
        terms["total"].backward()

    `terms` names the loss terms, in order, as the returned dict has them besides "total": training
    histories, their columns and plots, and progress lines take the names from here, so that a new
    term (temporal, multi-style) is added in one place.

    vgg: a VGG16Features that computes every layer named here (its own `layers` do not matter).
    style_image: (1, 3, H, W) RGB in [0, 255] (any size; Grams do not depend on it).
    The terms returned are already weighted; total is their sum. content=None (texture
    synthesis) makes the content term 0. See the module docstring for the scales and defaults.
    """

    terms = ("content", "style", "tv")

    def __init__(self, vgg, style_image, content_weight=DEFAULT_CONTENT_WEIGHT, style_weight=DEFAULT_STYLE_WEIGHT,
                 tv_weight=DEFAULT_TV_WEIGHT, content_layers=DEFAULT_CONTENT_LAYERS,
                 style_layers=DEFAULT_STYLE_LAYERS, style_layer_weights=None):
        self.vgg = vgg
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.content_layers, self.style_layers = tuple(content_layers), tuple(style_layers)
        self.style_layer_weights = _layer_weights(self.style_layers, style_layer_weights)
        order = [name for name in _network_order() if name in set(self.content_layers + self.style_layers)]
        self.layers = tuple(order)
        with no_grad():
            style_image = _as_batch(style_image, vgg, "style_image")
            if style_image.shape[0] != 1:
                raise ValueError(f"PerceptualLoss: give one style image (1, 3, H, W), got {style_image.shape}")
            features = vgg(style_image, layers=self.style_layers) if self.style_layers else {}
            self.style_grams = {layer: F.gram(f) for layer, f in features.items()}

    def content_targets(self, content):
        """The content image's features at the content layers (no graph): pass them as
        content_features= to skip recomputing them when the content image does not change."""
        with no_grad():
            return self.vgg(_as_batch(content, self.vgg, "content"), layers=self.content_layers)

    def __call__(self, output, content=None, content_features=None):
        if not isinstance(output, Tensor):
            raise TypeError(f"PerceptualLoss: output must be a microst Tensor, got {type(output).__name__}")
        use_content = self.content_weight != 0 and self.content_layers and (
            content is not None or content_features is not None)
        use_style = self.style_weight != 0 and self.style_layers
        layers = [name for name in self.layers if (use_content and name in self.content_layers)
                  or (use_style and name in self.style_layers)]
        features = self.vgg(output, layers=layers) if layers else {}
        zero = _zero(output)

        c = zero
        if use_content:
            targets = content_features if content_features is not None else self.content_targets(content)
            c = content_loss(features, targets, self.content_layers) * self.content_weight
        s = zero
        if use_style:
            s = style_loss(features, self.style_grams, self.style_layers, self.style_layer_weights) * self.style_weight
        t = tv_loss(output) * self.tv_weight if self.tv_weight != 0 else zero
        return {**dict(zip(self.terms, (c, s, t))), "total": c + s + t}


def _network_order():
    from .models.vgg16 import LAYER_NAMES
    return LAYER_NAMES
