"""python -m microst.stylize on `cpu`: tiling equals the untiled result, colour preservation, the noise
seed, EXIF/grayscale/alpha inputs, folders, output formats, the job loop with its atomic saves, and
one-line errors with exit status 2."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import microst
from microst.errors import UserError
from microst import checkpoint as mckpt
from microst import io as mio
from microst.jobs import Job, Stylizer, jobs
from microst.models import TextureNet, TransformerNet
from microst.stylize import main
from microst.transfer import preserve_colors, stylize, stylize_tiled

R = np.random.default_rng(11)


def photo(h, w, seed=0):
    """A smooth random colour image (3, h, w) in [0, 255], like a photo rather than like noise."""
    r = np.random.default_rng(seed)
    small = (r.random((5, 6, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32).transpose(2, 0, 1).copy()


@pytest.fixture
def styles(tmp_path, monkeypatch):
    """Two small random 'bundled styles' in a temporary weights/styles."""
    monkeypatch.setattr(mckpt, "STYLES_DIR", tmp_path / "styles")
    microst.manual_seed(0)
    mckpt.save_checkpoint(tmp_path / "styles" / "tiny.h5", TransformerNet(width=0.125), style="tiny")
    mckpt.save_checkpoint(tmp_path / "styles" / "noisy.h5", TextureNet(scales=3, channels=4), style="noisy")
    return tmp_path


@pytest.mark.parametrize("make", [lambda: TransformerNet(width=0.25),
                                  lambda: TransformerNet(width=0.25, norm="batch", upsample="nearest"),
                                  lambda: TextureNet(scales=4, channels=4)],
                         ids=["johnson-instance", "johnson-batch-nearest", "texture"])
@pytest.mark.parametrize("tile", [16, 40])
def test_tiled_equals_untiled_on_an_image_that_fits(make, tile):
    microst.manual_seed(1)
    model = make().eval()
    image = photo(70, 101)
    whole = stylize(model, image, seed=5)
    tiled = stylize(model, image, seed=5, tile=tile)
    assert tiled.shape == whole.shape == (3, 70, 101)
    np.testing.assert_allclose(tiled, whole, atol=0.01)


def test_tiles_of_a_large_image_have_no_seams():
    """Statistics measured on a downscaled copy (an untrained net exaggerates their error, so the
    output is not close to the untiled one here), yet no jump at the tiles' edges."""
    microst.manual_seed(2)
    model = TransformerNet(width=0.25).eval()
    image = photo(96, 128, seed=3)
    tiled = stylize_tiled(model, image, 32, stats_size=48)
    steps = np.abs(np.diff(tiled, axis=2)).mean(axis=(0, 1))  # mean horizontal step at each column boundary
    at_edges = steps[[31, 63, 95]]
    assert at_edges.max() < 2 * np.median(steps) + 1


def test_preserve_colors_keeps_chroma_and_takes_luminance():
    content, styled = photo(10, 12, seed=1), photo(10, 12, seed=2)
    out = preserve_colors(content, styled)

    def ycbcr(x):
        r, g, b = x.astype(np.float64)
        return (0.299 * r + 0.587 * g + 0.114 * b, -0.168736 * r - 0.331264 * g + 0.5 * b,
                0.5 * r - 0.418688 * g - 0.081312 * b)

    (y, cb, cr), (y_s, _, _), (_, cb_c, cr_c) = ycbcr(out), ycbcr(styled), ycbcr(content)
    inside = (out > 0.5).all(axis=0) & (out < 254.5).all(axis=0)  # not clipped
    assert inside.mean() > 0.5
    for a, b in ((y, y_s), (cb, cb_c), (cr, cr_c)):
        np.testing.assert_allclose(a[inside], b[inside], atol=1e-3)


def test_command_line_files_folders_and_formats(styles, tmp_path, capsys):
    inputs = tmp_path / "in"
    (inputs / "deeper").mkdir(parents=True)
    pixels = photo(30, 40).transpose(1, 2, 0).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotated: displayed 40 high, 30 wide
    Image.fromarray(pixels).save(inputs / "rotated.jpg", exif=exif)
    Image.fromarray(pixels[..., 0]).save(inputs / "deeper" / "gray.png")
    Image.fromarray(np.dstack([pixels, np.full((30, 40), 128, np.uint8)]), "RGBA").save(inputs / "alpha.webp")
    assert main([str(inputs), "--model", "tiny", "--out-dir", str(tmp_path / "out"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" s)\n") == 3  # one line, with the time, per image
    expected = {"rotated_tiny.jpg": ((30, 40), "JPEG"), "deeper/gray_tiny.png": ((40, 30), "PNG"),
                "alpha_tiny.webp": ((40, 30), "WEBP")}
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert written == sorted(expected)
    for name, (size, fmt) in expected.items():
        with Image.open(tmp_path / "out" / name) as im:
            assert (im.size, im.format) == (size, fmt)

    assert main([str(inputs / "rotated.jpg"), "--model", "tiny", "-o", str(tmp_path / "one.png"), "--size", "20",
                 "--preserve-color", "--tile", "8", "--device", "cpu"]) == 0
    with Image.open(tmp_path / "one.png") as im:
        assert im.size == (15, 20)


def test_noise_seed_of_a_texture_network(styles, tmp_path):
    Image.fromarray(photo(24, 24).transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "p.png")
    outputs = []
    for seed in ("1", "1", "2"):
        main([str(tmp_path / "p.png"), "--model", "noisy", "-o", str(tmp_path / f"o{len(outputs)}.png"),
              "--noise-seed", seed, "--device", "cpu"])
        outputs.append(mio.load_image(tmp_path / f"o{len(outputs)}.png"))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0] - outputs[2]).mean() > 0.5


def test_bad_input_is_one_clear_line_and_exit_2(styles, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "fake.jpg").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.h5").write_bytes(b"garbage")
    ok = str(tmp_path / "ok.png")
    cases = [
        ([ok, "--model", "starry"], "starry: no such checkpoint file and no bundled style of that name; "
                                    "bundled styles: noisy, tiny"),
        ([ok, "--model", str(tmp_path / "corrupt.h5")], "corrupt.h5: not a readable HDF5 file"),
        ([str(tmp_path / "fake.jpg"), "--model", "tiny"], "fake.jpg: cannot read this image"),
        ([str(tmp_path / "missing.jpg"), "--model", "tiny"], "missing.jpg: no such file or folder"),
        ([str(tmp_path / "empty"), "--model", "tiny"], "empty: no images in this folder"),
        ([ok, ok, "--model", "tiny", "-o", "x.png"], "names one output file but there are 2 input images"),
        ([ok, "--model", "tiny", "-o", str(tmp_path / "x.gif2")], "unknown image format"),
        ([ok, "--model", "tiny", "-o", ok], "would overwrite its own input"),
        ([ok, "--model", "tiny", "--tile", "0"], "argument --tile: '0' is not a positive number of pixels"),
        ([ok, "--model", "tiny", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            main(["--device", "cpu"] + argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)


def test_the_bundled_style_on_the_sample_photo(tmp_path, capsys):
    """What a fresh clone offers: python -m microst.stylize samples/neuschwanstein.jpg --model great_wave."""
    assert "great_wave" in mckpt.bundled_styles()
    sample = mckpt.STYLES_DIR.parent.parent / "samples" / "neuschwanstein.jpg"
    assert main([str(sample), "--model", "great_wave", "-o", str(tmp_path / "wave.jpg"), "--size", "96",
                 "--device", "cpu"]) == 0
    out = mio.load_image(tmp_path / "wave.jpg")
    assert out.shape == (3, 64, 96) and out.std() > 10


def test_the_job_loop_maps_inputs_to_outputs_and_reports_each(styles, tmp_path):
    """jobs() decides every output up front; Stylizer.run does load -> run -> save -> report per image."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.bmp", "sub/c.gif"):
        Image.fromarray(photo(12, 16).transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "in" / name)
    todo = jobs([str(tmp_path / "in"), str(tmp_path / "in" / "sub" / "c.gif")], out_dir=tmp_path / "out", style="s")
    assert [(Path(j.input).name, j.output.relative_to(tmp_path / "out").as_posix()) for j in todo] == [
        ("a.png", "a_s.png"), ("b.bmp", "sub/b_s.bmp"), ("c.gif", "c_s.jpg")]  # .gif: not a format we write
    reported = []
    results = Stylizer(microst.load_model("tiny"), "cpu", size=8, report=reported.append).run(todo).done
    assert reported == results and [(r.width, r.height) for r in results] == [(8, 6)] * 3
    assert str(results[0]).startswith(f"{todo[0].input} -> {todo[0].output} (8x6, ")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a_s.png", "b_s.bmp", "c_s.jpg", "sub"]


def test_a_failed_save_leaves_no_partial_output(styles, tmp_path, monkeypatch):
    Image.fromarray(photo(12, 16).transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "p.png")
    (tmp_path / "out.png").write_bytes(b"the previous result")

    def crash(self, fp, *args, **kwargs):
        fp.write(b"half an ima") if hasattr(fp, "write") else Path(fp).write_bytes(b"half an ima")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(UserError, match=r"out.png: cannot write it \(disk full\); choose another folder"):
        Stylizer(microst.load_model("tiny"), "cpu").run_job(Job(str(tmp_path / "p.png"), tmp_path / "out.png"))
    assert (tmp_path / "out.png").read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "p.png", "styles"]


@pytest.mark.parametrize("preserve", [False, True])
def test_strength_blends_the_stylization_with_the_photo(styles, tmp_path, preserve):
    image = photo(40, 56, seed=4)
    mio.save_image(tmp_path / "p.png", image)
    outputs = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}.png"
        argv = [str(tmp_path / "p.png"), "--model", "tiny", "-o", str(out), "--device", "cpu", "--strength", strength]
        assert main(argv + ["--preserve-color"] * preserve) == 0
        outputs[strength] = mio.load_image(out)
    model = mckpt.load_model("tiny")
    full = stylize(model, image, preserve_color=preserve)
    np.testing.assert_allclose(outputs["0"], image, atol=0.51)  # the photo (rounded to 8 bits)
    np.testing.assert_allclose(outputs["1"], np.clip(np.rint(full), 0, 255), atol=1)
    np.testing.assert_allclose(outputs["0.5"], np.rint((image + full) / 2), atol=1)
    assert np.abs(outputs["1"] - outputs["0"]).mean() > 5  # a stylization that differs from the photo


def test_strength_out_of_range_is_refused(styles, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["x.png", "--model", "tiny", "--strength", "1.5"])
    assert e.value.code == 2 and "'1.5' is not a number from 0 to 1" in capsys.readouterr().err


def test_sheet_of_all_bundled_styles(styles, tmp_path, capsys):
    """--model all --sheet: the photo and each bundled style, in order, side by side, labelled."""
    image = photo(48, 64, seed=6)
    mio.save_image(tmp_path / "p.png", image)
    sheet = tmp_path / "sheet.png"
    assert main([str(tmp_path / "p.png"), "--model", "all", "--sheet", str(sheet), "--size", "64",
                 "--device", "cpu"]) == 0
    assert "(2 styles: noisy, tiny)" in capsys.readouterr().out
    from microst.sheet import COLUMNS, GAP
    got = mio.load_image(sheet)
    assert got.shape[2] == GAP + 3 * (64 + GAP) and 3 <= COLUMNS  # three panels in one row
    panels = [got[:, GAP:GAP + 48, GAP + k * (64 + GAP):GAP + k * (64 + GAP) + 64] for k in range(3)]
    expected = [image, stylize(mckpt.load_model("noisy"), image, seed=0), stylize(mckpt.load_model("tiny"), image)]
    for panel, want in zip(panels, expected):
        np.testing.assert_allclose(panel, np.clip(np.rint(want), 0, 255), atol=1)
    labels = got[:, GAP + 48:, :]
    assert (labels < 128).any() and (labels > 250).mean() > 0.8  # dark text on white


def test_model_all_needs_a_sheet_and_one_photo(styles, tmp_path, capsys):
    mio.save_image(tmp_path / "p.png", photo(16, 16))
    for argv, message in [([str(tmp_path / "p.png"), "--model", "all"], "add --sheet"),
                          ([str(tmp_path / "p.png")] * 2 + ["--model", "all", "--sheet", "s.png"], "one photo"),
                          ([str(tmp_path / "p.png"), "--model", "all", "--sheet", "s.xyz"], "unknown image format")]:
        with pytest.raises(SystemExit) as e:
            main(argv + ["--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], (argv, err)


def test_a_texture_synthesizer_makes_textures_at_any_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mckpt, "STYLES_DIR", tmp_path / "styles")
    microst.manual_seed(0)
    mckpt.save_checkpoint(tmp_path / "styles" / "weave.h5", TextureNet(scales=3, channels=4, content=False),
                          style="weave")
    outs = {}
    for seed in ("1", "2"):
        out = tmp_path / f"t{seed}.png"
        assert main(["--model", "weave", "--texture-size", "70x45", "-o", str(out), "--noise-seed", seed,
                     "--device", "cpu"]) == 0
        outs[seed] = mio.load_image(out)
    assert outs["1"].shape == (3, 45, 70) and np.abs(outs["1"] - outs["2"]).mean() > 0.5
    assert "weave -> " in capsys.readouterr().out
    mio.save_image(tmp_path / "p.png", photo(16, 16))
    for argv, message in [([str(tmp_path / "p.png"), "--model", "weave", "-o", str(tmp_path / "o.png")],
                           "--texture-size WxH -o OUT.png"),
                          (["--model", "weave", "--texture-size", "70x45"], "give the output image with -o"),
                          (["--model", "weave", "--texture-size", "70by45", "-o", "t.png"], "is not WIDTHxHEIGHT"),
                          ([str(tmp_path / "p.png"), "--model", "weave", "--texture-size", "8x8", "-o", "t.png"],
                           "leave out the INPUT"),
                          (["--model", "weave"], "INPUT: missing")]:
        with pytest.raises(SystemExit) as e:
            main(argv + ["--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], (argv, err)
