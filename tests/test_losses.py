"""Perceptual losses: values from their definitions, gradient checks through a tiny VGG-shaped
network (random weights, float64, random upstream gradient), and PerceptualLoss's contract."""
import numpy as np
import pytest

import microst
import microst.functional as F
from microst import losses
from microst.gradcheck import check_backward
from microst.losses import PerceptualLoss, content_loss, style_loss, tv_loss
from microst.models import VGG16Features
from microst.models.vgg16 import SEQUENCE

import reference as ref

R = np.random.default_rng(5)
STYLE = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def tiny_weights(width=(3, 4, 3, 2), seed=0, dtype=np.float64):
    """VGG-16's layout (blocks 1-4: 2, 2, 3, 3 convs) with `width` channels per block."""
    rng = np.random.default_rng(seed)
    weights, cin = {}, 3
    for _, kind, conv in SEQUENCE:
        if kind != "conv" or int(conv[5]) > 4:
            continue
        cout = width[int(conv[5]) - 1]
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))
        weights[conv] = (w.astype(dtype), (0.1 * rng.standard_normal(cout)).astype(dtype))
        cin = cout
    return weights


def tiny_vgg(layers=STYLE, dtype=np.float64, seed=0):
    return VGG16Features(layers=layers, weights=tiny_weights(seed=seed, dtype=dtype))


def pixels(*shape):
    return R.uniform(0, 255, shape)


def t(a):
    return microst.tensor(np.asarray(a, np.float64))


# -- values -------------------------------------------------------------------------------------
def test_values_follow_the_definitions():
    vgg = tiny_vgg()
    x, c, s = pixels(2, 3, 16, 16), pixels(2, 3, 16, 16), pixels(1, 3, 24, 20)
    fx, fc, fs = vgg(t(x)), vgg(t(c)), vgg(t(s))
    grams = {k: F.gram(v) for k, v in fs.items()}
    expected_content = sum(((fx[k].numpy() - fc[k].numpy()) ** 2).mean() for k in ("relu2_2", "relu3_3"))
    assert np.isclose(content_loss(fx, fc, ("relu2_2", "relu3_3")).item(), expected_content, rtol=1e-12)
    weights = (1.0, 0.5, 2.0, 3.0)
    expected_style = sum(w * ((ref.gram(fx[k].numpy()) - ref.gram(fs[k].numpy())) ** 2).mean()
                         for k, w in zip(STYLE, weights))  # the (1, C, C) style Gram against each image
    assert np.isclose(style_loss(fx, grams, STYLE, weights).item(), expected_style, rtol=1e-12)
    as_dict = dict(zip(STYLE, weights))
    assert np.isclose(style_loss(fx, grams, STYLE, as_dict).item(), expected_style, rtol=1e-12)
    assert np.isclose(tv_loss(t(x)).item(), ref.tv_loss(x), rtol=1e-12)


def test_style_gram_of_one_image_broadcasts_over_the_batch():
    vgg = tiny_vgg()
    x, s = pixels(3, 3, 16, 16), pixels(1, 3, 16, 16)
    fx = vgg(t(x))
    one = {k: F.gram(v) for k, v in vgg(t(s)).items()}
    repeated = {k: t(np.repeat(v.numpy(), 3, axis=0)) for k, v in one.items()}
    assert np.isclose(style_loss(fx, one, STYLE).item(), style_loss(fx, repeated, STYLE).item(), rtol=1e-14)


def test_loss_argument_errors():
    vgg = tiny_vgg()
    fx, fc = vgg(t(pixels(1, 3, 16, 16))), vgg(t(pixels(1, 3, 24, 16)))
    with pytest.raises(ValueError, match="content_loss: relu2_2 of the output is .* but of the content"):
        content_loss(fx, fc, ("relu2_2",))
    with pytest.raises(ValueError, match=r"3 numbers for 4 layers"):
        style_loss(fx, {k: F.gram(v) for k, v in fc.items()}, STYLE, (1, 2, 3))
    with pytest.raises(ValueError, match="none given for relu4_3"):
        style_loss(fx, {k: F.gram(v) for k, v in fc.items()}, STYLE, {"relu1_2": 1, "relu2_2": 1, "relu3_3": 1})


# -- gradient checks through a tiny VGG-shaped network --------------------------------------------
# Inputs are pixels in [0, 255] and the losses are ~1e4: a step of 1e-6 along a unit direction
# leaves the central difference to rounding, so these checks step by EPS = 1e-3 (still tiny
# against the pixel scale, and far from changing which ReLU or max-pool input wins).
EPS = 1e-3


def test_style_loss_gradient_through_vgg():
    vgg = tiny_vgg()
    grams = {k: F.gram(v) for k, v in vgg(t(pixels(1, 3, 20, 18))).items()}
    check_backward(lambda x: style_loss(vgg(x), grams, STYLE, (1.0, 2.0, 0.5, 4.0)), [pixels(2, 3, 16, 16)], eps=EPS)


def test_content_loss_gradient_through_vgg():
    vgg = tiny_vgg(layers=("relu2_2", "relu4_3"))
    targets = vgg(t(pixels(2, 3, 16, 16)))
    check_backward(lambda x: content_loss(vgg(x), targets, ("relu2_2", "relu4_3")), [pixels(2, 3, 16, 16)], eps=EPS)


def test_perceptual_loss_gradient_through_vgg():
    vgg = tiny_vgg()
    loss = PerceptualLoss(vgg, t(pixels(1, 3, 16, 20)), content_weight=2.0, style_weight=3.0, tv_weight=0.5,
                          content_layers=("relu2_2", "relu3_3"))
    content = t(pixels(2, 3, 16, 16))
    for term in ("content", "style", "tv", "total"):
        check_backward(lambda x: loss(x, content)[term], [pixels(2, 3, 16, 16)], eps=EPS)


def test_gradient_check_catches_a_wrong_gram_backward(monkeypatch):
    """The check above is not blind: a Gram backward that forgets the transpose term (dF = 2 dG F
    instead of (dG + dGᵀ) F, right only for symmetric dG) must fail it."""
    from microst.ops import loss as loss_ops

    def wrong(self, dy):  # the op keeps its input F as self.x (N, C, H, W)
        n, c, h, w = self.x.shape
        return ((2 * np.matmul(dy, self.x.reshape(n, c, h * w)) / (c * h * w)).reshape(self.x.shape),)

    vgg = tiny_vgg()
    monkeypatch.setattr(loss_ops.Gram, "backward", wrong)
    with pytest.raises(AssertionError, match="directional derivative"):
        check_backward(lambda x: F.gram(vgg(x)["relu2_2"]), [pixels(1, 3, 16, 16)], eps=EPS)


# -- PerceptualLoss -------------------------------------------------------------------------------
class CountingVGG(VGG16Features):
    def __init__(self, **kw):
        super().__init__(**kw)
        object.__setattr__(self, "calls", [])

    def forward(self, x, layers=None):
        self.calls.append(tuple(layers or self.layers))
        return super().forward(x, layers)


def test_perceptual_loss_terms_and_weights():
    vgg = CountingVGG(layers=STYLE, weights=tiny_weights())
    style, content, x = t(pixels(1, 3, 20, 20)), t(pixels(2, 3, 16, 16)), t(pixels(2, 3, 16, 16))
    loss = PerceptualLoss(vgg, style, content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    assert vgg.calls == [STYLE]  # the style Grams, once
    terms = loss(x, content)
    assert vgg.calls[1:] == [STYLE, ("relu2_2",)]  # the output; the content only as deep as relu2_2
    assert set(terms) == {"content", "style", "tv", "total"}
    fx, fc = vgg(x), vgg(content)
    grams = {k: F.gram(v) for k, v in vgg(style).items()}
    assert np.isclose(terms["content"].item(), 2.0 * content_loss(fx, fc, ("relu2_2",)).item())
    assert np.isclose(terms["style"].item(), 3.0 * style_loss(fx, grams, STYLE).item())
    assert np.isclose(terms["tv"].item(), 0.5 * tv_loss(x).item())
    assert np.isclose(terms["total"].item(), terms["content"].item() + terms["style"].item() + terms["tv"].item())
    targets = loss.content_targets(content)
    assert np.isclose(loss(x, content_features=targets)["total"].item(), terms["total"].item())


def test_perceptual_loss_without_content_is_texture_synthesis():
    vgg = tiny_vgg()
    loss = PerceptualLoss(vgg, t(pixels(1, 3, 16, 16)))
    x = microst.tensor(pixels(1, 3, 16, 16), requires_grad=True)
    terms = loss(x, None)
    assert terms["content"].item() == 0.0
    assert np.isclose(terms["total"].item(), terms["style"].item() + terms["tv"].item())
    terms["total"].backward()
    assert x.grad is not None and np.abs(x.grad).max() > 0
    assert all(b.grad is None for _, b in vgg.named_buffers())  # VGG stays frozen


def test_perceptual_loss_defaults_are_johnsons_layers():
    vgg = tiny_vgg(dtype=np.float32)
    loss = PerceptualLoss(vgg, microst.tensor(pixels(3, 16, 16).astype(np.float32)))  # (3, H, W) accepted
    assert loss.content_layers == ("relu2_2",) and loss.style_layers == STYLE
    assert (loss.content_weight, loss.style_weight, loss.tv_weight) == (
        losses.DEFAULT_CONTENT_WEIGHT, losses.DEFAULT_STYLE_WEIGHT, losses.DEFAULT_TV_WEIGHT)
    assert loss.style_grams["relu1_2"].shape == (1, 3, 3) and not loss.style_grams["relu1_2"].requires_grad
    terms = loss(microst.tensor(pixels(2, 3, 16, 16).astype(np.float32)),
                 microst.tensor(pixels(2, 3, 16, 16).astype(np.float32)))
    assert all(v.dtype == np.float32 for v in terms.values())


def test_perceptual_loss_bad_style_image():
    vgg = tiny_vgg()
    with pytest.raises(ValueError, match="give one style image"):
        PerceptualLoss(vgg, t(pixels(2, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"style_image must be \(N, 3, H, W\)"):
        PerceptualLoss(vgg, t(pixels(1, 4, 16, 16)))
