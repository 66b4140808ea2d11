"""The generators: Johnson's TransformerNet (the seed's table) and Ulyanov's TextureNet, on `cpu`:
shapes, bounded output, noise seeds, gradient checks of a residual block and a 3-scale TextureNet."""
import numpy as np
import pytest

import microst
from microst.models import TextureNet, TransformerNet
from microst.models import build_generator
from microst.models.generator import frozen_norm_statistics, reflect_pad
from microst.models.johnson import ResidualBlock

R = np.random.default_rng(3)


def image(n, h, w, dtype=np.float32):
    return microst.tensor((R.random((n, 3, h, w)) * 255).astype(dtype))


def to_float64(model):
    for _, m in model.named_modules():
        for registry in (m._parameters, m._buffers):
            for t in registry.values():
                t.data = t.data.astype(np.float64)
    return model


def check_model_backward(model, x, fn=None, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Directional finite-difference check of d<fn(model, x), gy> with respect to x and every parameter
    at once (float64, random upstream gradient gy, random unit direction)."""
    fn = fn or (lambda m, x: m(x))
    rng = np.random.default_rng(0)
    params = model.parameters()
    x = microst.tensor(np.asarray(x, np.float64), requires_grad=True)
    y = fn(model, x)
    gy = rng.standard_normal(y.shape)
    model.zero_grad()
    y.backward(gy)
    leaves = [x] + params
    directions = [rng.standard_normal(t.shape) for t in leaves]
    norm = np.sqrt(sum((d * d).sum() for d in directions))
    directions = [d / norm for d in directions]
    analytic = sum(float((t.grad * d).sum()) for t, d in zip(leaves, directions))
    originals = [t.data.copy() for t in leaves]

    def loss_at(step):
        for t, o, d in zip(leaves, originals, directions):
            t.data = o + step * d
        with microst.no_grad():
            value = float((fn(model, microst.tensor(x.data)).numpy() * gy).sum())
        for t, o in zip(leaves, originals):
            t.data = o
        return value

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= atol + rtol * abs(numeric), (analytic, numeric)


# -- TransformerNet --------------------------------------------------------------------------
def test_transformer_net_follows_the_seed_table():
    """3x256x256 in: the activation sizes of the lecture's table, layer by layer; 1.68 M parameters."""
    microst.manual_seed(0)
    net = TransformerNet()
    assert sum(p.size for p in net.parameters()) == 1679235
    x = image(1, 256, 256)
    sizes = []
    with microst.no_grad():
        (h, _), = net.prepare(x)[0]
        sizes.append(h.shape[1:])
        for layer in (net.conv1, net.conv2, net.conv3):
            h = layer(h)
            sizes.append(h.shape[1:])
        for block in net.residuals:
            h = block(h)
            sizes.append(h.shape[1:])
        for layer in (net.up1, net.up2, net.conv_out):
            h = layer(h)
            sizes.append(h.shape[1:])
    assert sizes == [(3, 336, 336), (32, 336, 336), (64, 168, 168), (128, 84, 84), (128, 80, 80), (128, 76, 76),
                     (128, 72, 72), (128, 68, 68), (128, 64, 64), (64, 128, 128), (32, 256, 256), (3, 256, 256)]
    assert net.conv1.conv.weight.shape == (32, 3, 9, 9) and net.conv_out.conv.weight.shape == (3, 32, 9, 9)
    assert net.up1.conv.weight.shape == (128, 64, 3, 3)  # a transposed conv: (Cin, Cout, kh, kw)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
def test_transformer_net_output_size_equals_input_size(norm, upsample):
    microst.manual_seed(1)
    net = TransformerNet(norm=norm, upsample=upsample, width=0.125)
    for h, w in [(33, 47), (16, 16), (5, 70), (1, 1)]:
        y = net(image(2, h, w))
        assert y.shape == (2, 3, h, w)
        assert y.dtype == np.float32


def test_width_multiplier_and_residual_blocks():
    net = TransformerNet(width=0.5, residual_blocks=3)
    assert net.conv1.conv.weight.shape == (16, 3, 9, 9)
    assert net.residuals[0].conv1.weight.shape == (64, 64, 3, 3)
    assert len(net.residuals) == 3 and net.margin == 24
    assert net(image(1, 20, 24)).shape == (1, 3, 20, 24)


def test_output_is_bounded_pixels():
    """127.5 * (tanh + 1): always within [0, 255], even with absurd weights."""
    microst.manual_seed(2)
    net = TransformerNet(width=0.125, norm="none")
    net.conv_out.conv.bias.data += 1e4
    y = net(image(1, 12, 12)).numpy()
    assert y.min() >= 0 and y.max() <= 255 and y.max() > 254
    net.conv_out.conv.bias.data -= 2e4
    assert net(image(1, 12, 12)).numpy().max() < 1


def test_residual_block_is_unpadded_with_cropped_identity():
    microst.manual_seed(3)
    block = ResidualBlock(4)
    x = microst.tensor(R.standard_normal((2, 4, 11, 9)).astype(np.float32))
    assert block(x).shape == (2, 4, 7, 5)
    block.norm2.weight.data[:] = 0  # kill the residual branch: the output is the cropped input
    block.norm2.bias.data[:] = 0
    np.testing.assert_array_equal(block(x).numpy(), x.numpy()[:, :, 2:-2, 2:-2])


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_gradient_check_residual_block(norm):
    microst.manual_seed(4)
    block = to_float64(ResidualBlock(3, norm=norm))
    check_model_backward(block, R.standard_normal((2, 3, 8, 7)))


def test_gradient_check_small_transformer_net():
    microst.manual_seed(5)
    net = to_float64(TransformerNet(width=0.0625, residual_blocks=1, upsample="nearest"))
    check_model_backward(net, R.random((1, 3, 6, 5)) * 255, rtol=1e-4)


def test_reflect_pad_larger_than_the_image():
    x = microst.tensor(np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3))
    y = reflect_pad(x, 5, 4, 2, 0).numpy()[0, 0]
    assert y.shape == (3, 12)
    np.testing.assert_array_equal(y[0], [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2])


# -- TextureNet ------------------------------------------------------------------------------
def test_texture_net_shapes_and_channels():
    microst.manual_seed(6)
    net = TextureNet(scales=4, channels=4, noise_channels=2)
    assert net.blocks[0].conv1.weight.shape == (4, 5, 3, 3)            # content 3 + noise 2 -> 4
    assert [j.block.conv1.weight.shape[0] for j in net.joins] == [16, 12, 8]  # finest first; 4 per scale joined
    assert net.conv_out.weight.shape == (3, 16, 1, 1)
    for h, w in [(37, 21), (8, 8), (3, 100)]:
        assert net(image(2, h, w), seed=0).shape == (2, 3, h, w)


def test_texture_net_noise_seed_gives_diversity():
    microst.manual_seed(7)
    net = TextureNet(scales=3, channels=4).eval()
    x = image(1, 24, 32)
    a, b, c = (net(x, seed=s).numpy() for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.1
    microst.manual_seed(8)
    d = net(x).numpy()  # seed None: noise from microst.random, repeatable through manual_seed
    microst.manual_seed(8)
    np.testing.assert_array_equal(d, net(x).numpy())


def test_texture_synthesizer_without_content():
    microst.manual_seed(9)
    net = TextureNet(scales=3, channels=4, content=False)
    y = net(None, seed=3, size=(20, 28), batch=2)
    assert y.shape == (2, 3, 20, 28)
    assert net.blocks[0].conv1.weight.shape[1] == 3  # noise only
    with pytest.raises(ValueError, match="texture synthesizer"):
        net(image(1, 8, 8))
    with pytest.raises(ValueError, match="stylizes content images"):
        TextureNet(scales=2)(None, size=(8, 8))


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_gradient_check_three_scale_texture_net(norm):
    microst.manual_seed(10)
    net = to_float64(TextureNet(scales=3, channels=2, noise_channels=1, norm=norm, activation="leaky_relu"))
    check_model_backward(net, R.random((2, 3, 8, 12)) * 255, fn=lambda m, x: m(x, seed=5), rtol=1e-4)


# -- shared ----------------------------------------------------------------------------------
def test_bad_options():
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        TransformerNet(norm="layer")
    with pytest.raises(ValueError, match="unknown upsample 'bilinear'"):
        TransformerNet(upsample="bilinear")
    with pytest.raises(ValueError, match="unknown activation"):
        TextureNet(activation="gelu")
    with pytest.raises(ValueError, match=r"expected an \(N, 3, H, W\)"):
        TransformerNet(width=0.125)(microst.tensor(np.zeros((1, 4, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator({"model": "pix2pix"})


def test_config_rebuilds_the_same_architecture():
    for net in (TransformerNet(norm="batch", upsample="nearest", width=0.25), TextureNet(scales=3, channels=3)):
        twin = build_generator(net.config)
        assert type(twin) is type(net) and twin.config == net.config
        assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_frozen_norm_statistics_of_the_same_image_change_nothing():
    microst.manual_seed(11)
    net = TransformerNet(width=0.125).eval()
    x = image(1, 20, 28)
    plain = net(x).numpy()
    with frozen_norm_statistics(net, x):
        frozen = net(x).numpy()
    np.testing.assert_allclose(frozen, plain, atol=1e-3)
    with frozen_norm_statistics(net, image(1, 20, 28)):  # another image's statistics: another output
        assert np.abs(net(x).numpy() - plain).max() > 1e-2
    np.testing.assert_array_equal(net(x).numpy(), plain)  # and back to normal afterwards


# -- the kernel devices ----------------------------------------------------------------------
@pytest.mark.parametrize("device", ["emu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("make", [lambda: TransformerNet(width=0.125, upsample="nearest"),
                                  lambda: TransformerNet(width=0.125, norm="batch"),
                                  lambda: TextureNet(scales=3, channels=4)], ids=["johnson", "johnson-batch", "texture"])
def test_forward_and_gradients_on_kernel_devices_match_cpu(device, make):
    microst.manual_seed(12)
    net = make()
    x = (R.random((2, 3, 19, 22)) * 255).astype(np.float32)
    gy = R.standard_normal((2, 3, 19, 22)).astype(np.float32)
    results = {}
    for d in ("cpu", device):
        net.to(d).zero_grad()
        y = net(microst.tensor(x, device=d), seed=4)
        y.backward(microst.tensor(gy, device=d))
        results[d] = (y.numpy(), [microst.device.to_numpy(p.grad) for p in net.parameters()])
    np.testing.assert_allclose(results[device][0], results["cpu"][0], atol=2e-2)
    scale = max(np.abs(g).max() for g in results["cpu"][1])  # (a conv bias before a norm has a zero
    for (name, _), a, b in zip(net.named_parameters(), results[device][1], results["cpu"][1]):  # gradient)
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4 * scale, err_msg=name)
