"""microst.io: images (EXIF, alpha, grayscale, formats) and generator checkpoints (HDF5): round trip
bit-exact, training state, atomic writes, bundled styles by name, clear errors for bad files."""
import json

import h5py
import numpy as np
import pytest
from PIL import Image

import microst
import microst.checkpoint as mckpt
import microst.io as mio
from microst.errors import UserError
from microst.models import TextureNet, TransformerNet
from microst.optim import Adam

R = np.random.default_rng(5)


def batch(h=12, w=16):
    return microst.tensor((R.random((1, 3, h, w)) * 255).astype(np.float32))


# -- images ----------------------------------------------------------------------------------
def test_exif_orientation_alpha_and_grayscale(tmp_path):
    pixels = (R.random((10, 20, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif)
    assert mio.load_image(tmp_path / "rotated.jpg").shape == (3, 20, 10)

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3] = 200, 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    im = mio.load_image(tmp_path / "alpha.png")
    np.testing.assert_array_equal(im[:, 0, 0], [200, 0, 0])
    np.testing.assert_array_equal(im[:, 3, 0], [255, 255, 255])  # composited onto white

    Image.fromarray(np.full((5, 7), 90, np.uint8), "L").save(tmp_path / "gray.png")
    im = mio.load_image(tmp_path / "gray.png", size=14)
    assert im.shape == (3, 10, 14) and np.allclose(im, 90, atol=1)


def test_save_image_format_from_extension(tmp_path):
    img = (R.random((3, 8, 9)) * 255).astype(np.float32)
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.webp", "WEBP"), ("d.bmp", "BMP"), ("e.TIF", "TIFF")):
        mio.save_image(tmp_path / "sub" / name, img)
        with Image.open(tmp_path / "sub" / name) as im:
            assert im.format == fmt and im.size == (9, 8)
    np.testing.assert_array_equal(mio.load_image(tmp_path / "sub" / "a.png"), np.rint(img))
    assert sorted(p.suffix.lower() for p in (tmp_path / "sub").iterdir()) == sorted(
        s for s in mio.IMAGE_SUFFIXES if s not in (".jpeg", ".tiff"))  # what is read is written, nothing else
    with pytest.raises(UserError, match=r"x\.unknownext: unknown image format '\.unknownext'; end the name with one "
                                        r"of \.jpg, \.jpeg, \.png"):
        mio.save_image(tmp_path / "x.unknownext", img)


def test_image_errors_are_one_line(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    for path, message in ((tmp_path / "missing.jpg", "no such file"), (tmp_path / "notes.jpg", "cannot read this image"),
                          (tmp_path, "is a directory")):
        with pytest.raises(UserError, match=message) as e:
            mio.load_image(path)
        assert "\n" not in str(e.value)


# -- checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: TransformerNet(norm="batch", upsample="nearest", width=0.125),
                                  lambda: TextureNet(scales=3, channels=4, noise_channels=2)])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, make):
    microst.manual_seed(0)
    net = make()
    x = batch()
    net(x, seed=1)  # batch norm: move the running statistics away from their initial values
    net.eval()
    path = mckpt.save_checkpoint(tmp_path / "net.h5", net, style="wave", iteration=123, training={"lr": 0.001})
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    loaded = microst.load_model(path)
    assert type(loaded) is type(net) and loaded.config == net.config and not loaded.training
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net(x, seed=1).numpy(), loaded(x, seed=1).numpy())
    ckpt = loaded.checkpoint
    assert (ckpt.style, ckpt.iteration, ckpt.training, ckpt.version) == ("wave", 123, {"lr": 0.001}, microst.__version__)
    with h5py.File(path, "r") as f:  # the documented layout
        assert f.attrs["format"] == "microst-generator/2"
        assert json.loads(f.attrs["config"]) == net.config
        assert set(f["model"]) == set(net.state_dict())


def test_training_checkpoint_keeps_optimizer_rng_and_history(tmp_path):
    microst.manual_seed(1)
    net = TransformerNet(width=0.125)
    opt = Adam(net.parameters(), lr=2e-3)
    for _ in range(2):
        opt.zero_grad()
        net(batch()).mean().backward()
        opt.step()
    rng_state = microst.random.get_state()
    history = [[1, 5.0, 1.0, 4.0, 0.0], [2, 4.5, 1.0, 3.5, 0.0]]
    columns = ("iteration", "total", "content", "style", "tv")
    path = mckpt.save_checkpoint(tmp_path / "ckpt.h5", net, iteration=2, optimizer=opt, rng_state=rng_state,
                               history=history, history_columns=columns)
    ckpt = mckpt.load_checkpoint(path)
    assert ckpt.rng_state == rng_state and ckpt.history == history and ckpt.history_columns == columns
    restored = Adam(TransformerNet(width=0.125).parameters(), lr=1.0)
    restored.load_state_dict(ckpt.optimizer)
    assert restored.lr == 2e-3
    for a, b in zip(opt.state, restored.state):
        assert a["step"] == b["step"] == 2
        np.testing.assert_array_equal(a["exp_avg"], b["exp_avg"])
        np.testing.assert_array_equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_float16_storage_loads_as_float32(tmp_path):
    microst.manual_seed(2)
    net = TransformerNet(width=0.25)
    mckpt.save_checkpoint(tmp_path / "half.h5", net, dtype=np.float16)
    mckpt.save_checkpoint(tmp_path / "full.h5", net)
    assert (tmp_path / "half.h5").stat().st_size < 0.6 * (tmp_path / "full.h5").stat().st_size
    loaded = microst.load_model(tmp_path / "half.h5")
    for (_, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_save_replaces_atomically(tmp_path, monkeypatch):
    net = TransformerNet(width=0.125)
    path = mckpt.save_checkpoint(tmp_path / "c.h5", net, iteration=1)

    class Boom(Exception):
        pass

    def broken_state_dict():
        raise Boom()

    monkeypatch.setattr(net, "state_dict", broken_state_dict)
    with pytest.raises(Boom):
        mckpt.save_checkpoint(path, net, iteration=2)
    assert mckpt.load_checkpoint(path).iteration == 1  # the old file is intact
    assert list(tmp_path.iterdir()) == [path]         # and no temp file is left


def test_bundled_style_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(mckpt, "STYLES_DIR", tmp_path)
    net = TransformerNet(width=0.125)
    mckpt.save_checkpoint(tmp_path / "mosaic.h5", net, style="mosaic")
    assert mckpt.bundled_styles() == ["mosaic"]
    assert microst.load_model("mosaic").checkpoint.style == "mosaic"
    with pytest.raises(UserError, match=r"^starry: no such checkpoint file and no bundled style of that name; "
                                        r"bundled styles: mosaic"):
        microst.load_model("starry")


def test_bad_checkpoints_give_one_clear_line(tmp_path):
    net = TransformerNet(width=0.125)
    good = mckpt.save_checkpoint(tmp_path / "good.h5", net)
    (tmp_path / "text.h5").write_text("hello")
    data = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[:len(data) // 2])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with h5py.File(tmp_path / "mismatch.h5", "w") as f:  # format 1: no hash to check, still loaded
        f.attrs["format"] = "microst-generator/1"
        f.attrs["config"] = json.dumps(TransformerNet(width=0.25).config)
        f.create_group("model")["conv1.conv.weight"] = np.zeros((8, 3, 9, 9), np.float32)
    cases = {"missing.h5": "no such file", "text.h5": "not a readable HDF5 file", "truncated.h5": "HDF5",
             "other.h5": "not a microst generator checkpoint", "mismatch.h5": "does not match its architecture"}
    for name, message in cases.items():
        with pytest.raises(UserError, match=message) as e:
            microst.load_model(tmp_path / name)
        assert "\n" not in str(e.value) and str(e.value).startswith(str(tmp_path / name))


def test_atomic_write_keeps_the_old_file_until_the_new_one_is_whole(tmp_path):
    from microst.files import atomic_write
    target = tmp_path / "deep" / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("crash")
    assert target.read_text() == "first" and list(target.parent.iterdir()) == [target]
