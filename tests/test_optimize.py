"""Style transfer by optimization: the L-BFGS on known problems, stylize() on a tiny network, and
python -m microst.optimize end to end (real weights, tiny images) including bad input."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from microst import optimize as O
from microst.io import load_image
from microst.models import VGG16Features

from test_losses import tiny_weights

R = np.random.default_rng(9)


# -- L-BFGS --------------------------------------------------------------------------------------
def rosenbrock(x):
    a, b = x[0], x[1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return float(f), g


def test_lbfgs_solves_rosenbrock():
    opt = O.LBFGS(rosenbrock, np.array([-1.2, 1.0]))
    values = [opt.f]
    for _ in range(100):
        if not opt.step():
            break
        values.append(opt.f)
    assert np.all(np.diff(values) <= 0), "the line search must never let f increase"
    np.testing.assert_allclose(opt.x, [1.0, 1.0], atol=1e-5)


def test_lbfgs_on_an_ill_conditioned_quadratic_beats_gradient_descent():
    n = 200
    q, _ = np.linalg.qr(R.standard_normal((n, n)))
    eigenvalues = np.logspace(0, 4, n)  # condition number 1e4
    a = (q * eigenvalues) @ q.T
    b = R.standard_normal(n)
    fun = lambda x: (float(0.5 * x @ a @ x - b @ x), a @ x - b)
    best = fun(np.linalg.solve(a, b))[0]
    opt = O.LBFGS(fun, np.zeros(n), history=10)
    for _ in range(300):
        assert opt.step()
    x = np.zeros(n)
    for _ in range(300):  # gradient descent with the best fixed step, 1 / largest eigenvalue
        x -= fun(x)[1] / eigenvalues[-1]
    gap_lbfgs, gap_gd, gap_start = opt.f - best, fun(x)[0] - best, -best
    assert gap_lbfgs < 1e-4 * gap_start and gap_lbfgs < 1e-3 * gap_gd
    assert opt.evals < 330  # the unit step is accepted almost always


def test_lbfgs_stops_when_no_step_decreases():
    opt = O.LBFGS(lambda x: (float(x @ x), 2 * x), np.zeros(3))
    assert opt.step() is False  # at the minimum: zero gradient


# -- stylize on a tiny VGG-shaped network --------------------------------------------------------
@pytest.mark.parametrize("optimizer, init", [("lbfgs", "content"), ("lbfgs", "noise"), ("adam", "content")])
def test_stylize_decreases_the_loss(optimizer, init):
    vgg = VGG16Features(weights=tiny_weights(dtype=np.float32))
    content = R.uniform(0, 255, (3, 16, 20)).astype(np.float32)
    style = R.uniform(0, 255, (3, 24, 24)).astype(np.float32)
    seen = []
    image, history = O.stylize(vgg, content, style, iterations=15, optimizer=optimizer, init=init,
                               style_weight=1e-3, tv_weight=1e-2, lr=10.0,
                               callback=lambda i, x: seen.append((i, x.shape)))
    assert image.shape == (3, 16, 20) and image.dtype == np.float32
    assert [h["iteration"] for h in history] == list(range(16))
    assert seen == [(i, (3, 16, 20)) for i in range(1, 16)]
    assert history[-1]["total"] < 0.5 * history[0]["total"]
    assert set(history[0]) >= {"iteration", "evals", "seconds", "content", "style", "tv", "total"}
    if init == "content":
        assert history[0]["content"] == 0.0


def test_stylize_rejects_unknown_options():
    vgg = VGG16Features(weights=tiny_weights(dtype=np.float32))
    x = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="optimizer must be"):
        O.stylize(vgg, x, x, optimizer="sgd")
    with pytest.raises(ValueError, match="init must be"):
        O.stylize(vgg, x, x, init="zeros")


# -- the command line, with the real weights on tiny images ---------------------------------------
def photo(path, size=(40, 32), mode="RGB", exif_rotation=None):
    """Write a small synthetic image (gradients and a square) in any Pillow mode."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([255 * xx / w, 255 * yy / h, 128 + 0 * xx], -1)
    rgb[h // 4:h // 2, w // 4:w // 2] = (250, 30, 30)
    im = Image.fromarray(rgb.astype(np.uint8))
    if mode == "RGBA":
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray((255 * (xx > w // 2)).astype(np.uint8)))
    elif mode != "RGB":
        im = im.convert(mode)
    kwargs = {}
    if exif_rotation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_rotation  # orientation
        kwargs["exif"] = exif.tobytes()
    im.save(path, **kwargs)
    return path


def run(capsys, *argv):
    try:
        O.main([str(a) for a in argv])
        status = 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_writes_the_result_and_snapshots(capsys, tmp_path):
    content, style = photo(tmp_path / "c.png"), photo(tmp_path / "s.jpg", (24, 24))
    status, out, err = run(capsys, "--content", content, "--style", style, "-o", tmp_path / "out.png",
                           "--size", 24, "--iterations", 2, "--save-every", 1, "--device", "cpu",
                           "--style-weight", 1e-2)
    assert status == 0, err
    assert Image.open(tmp_path / "out.png").size == (24, 19)
    assert (tmp_path / "out_0001.png").exists() and (tmp_path / "out_0002.png").exists()
    assert "wrote" in out and "total" in out and "->" in out


def test_cli_adam_noise_and_custom_layers(capsys, tmp_path):
    content, style = photo(tmp_path / "c.png"), photo(tmp_path / "s.png", (24, 24))
    status, out, err = run(capsys, "--content", content, "--style", style, "-o", tmp_path / "o.jpg",
                           "--size", 24, "--iterations", 2, "--optimizer", "adam", "--init", "noise",
                           "--content-layers", "relu1_2", "--style-layers", "relu1_1,relu2_1",
                           "--style-layer-weights", "1,0.5", "--no-progress")
    assert status == 0, err
    assert Image.open(tmp_path / "o.jpg").size == (24, 19)


@pytest.mark.parametrize("mode, exif, expected", [
    ("RGBA", None, (24, 19)), ("L", None, (24, 19)), ("CMYK", None, (24, 19)), ("P", None, (24, 19)),
    ("RGB", 6, (19, 24)),  # EXIF "rotate 90": the result is upright, portrait
])
def test_cli_converts_odd_images(capsys, tmp_path, mode, exif, expected):
    suffix = ".jpg" if mode in ("CMYK", "L") or exif else ".png"
    content = photo(tmp_path / f"c{suffix}", mode=mode, exif_rotation=exif)
    style = photo(tmp_path / f"s{suffix}", (24, 24), mode=mode, exif_rotation=exif)
    status, out, err = run(capsys, "--content", content, "--style", style, "-o", tmp_path / "o.png",
                           "--size", 24, "--iterations", 1, "--no-progress")
    assert status == 0, err
    assert Image.open(tmp_path / "o.png").size == expected
    assert load_image(content, 24).shape == (3, expected[1], expected[0])


def assert_one_line_error(capsys, argv, pattern):
    status, out, err = run(capsys, *argv)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and len([l for l in lines if l.startswith("error")]) == 1, err
    assert all(l.startswith(("error: ", "microst: device")) for l in lines), err
    import re
    assert re.search(pattern, lines[-1]), lines[-1]


def _bad_h5(path, kind):
    if kind == "truncated":
        data = (Path(__file__).resolve().parent.parent / "weights" / "vgg16.h5").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    else:
        with h5py.File(path, "w") as f:
            f["dense/kernel:0"] = np.zeros((4, 4), np.float32)
    return path


@pytest.mark.parametrize("case, pattern", [
    ("missing content", r"nope\.jpg: no such file"),
    ("unreadable content", r"c\.jpg: cannot read this image"),
    ("missing style", r"nope\.png: no such file"),
    ("missing weights", r"none\.h5: no such file"),
    ("truncated weights", r"cut\.h5: .*truncated"),
    ("not vgg weights", r"other\.h5: no layer block1_conv1: this is not a VGG-16 weight file"),
    ("bad layer", r"argument --style-layers: unknown VGG-16 layer 'relu9_1'"),
    ("bad layer weights", r"--style-layer-weights gives 2 numbers for 4 style layers"),
    ("too small", r"only 8x6 pixels at this size; VGG-16 needs at least 16"),
    ("bad output", r"out\.xyz: unknown image format"),
    ("bad device", r"argument --device: invalid choice: 'tpu'"),
    ("bad size", r"argument --size: '0' is not a positive number of pixels"),
])
def test_cli_bad_input(capsys, tmp_path, case, pattern):
    good = photo(tmp_path / "good.png")
    argv = {"--content": good, "--style": good, "-o": tmp_path / "o.png", "--size": 24, "--iterations": 1,
            "--no-progress": None}
    if case == "missing content":
        argv["--content"] = tmp_path / "nope.jpg"
    elif case == "unreadable content":
        (tmp_path / "c.jpg").write_text("this is not a JPEG")
        argv["--content"] = tmp_path / "c.jpg"
    elif case == "missing style":
        argv["--style"] = tmp_path / "nope.png"
    elif case == "missing weights":
        argv["--vgg"] = tmp_path / "none.h5"
    elif case == "truncated weights":
        argv["--vgg"] = _bad_h5(tmp_path / "cut.h5", "truncated")
    elif case == "not vgg weights":
        argv["--vgg"] = _bad_h5(tmp_path / "other.h5", "other")
    elif case == "bad layer":
        argv["--style-layers"] = "relu1_2,relu9_1"
    elif case == "bad layer weights":
        argv["--style-layer-weights"] = "1,2"
    elif case == "too small":
        argv["--size"] = 8
    elif case == "bad output":
        argv["-o"] = tmp_path / "out.xyz"
    elif case == "bad device":
        argv["--device"] = "tpu"
    elif case == "bad size":
        argv["--size"] = 0
    flat = []
    for k, v in argv.items():
        flat += [k] if v is None else [k, v]
    assert_one_line_error(capsys, flat, pattern)
    assert not (tmp_path / "o.png").exists()


def test_cli_exit_status_in_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "microst.optimize", "--content", str(tmp_path / "x.jpg"),
                             "--style", str(tmp_path / "y.jpg"), "-o", str(tmp_path / "o.png")],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "x.jpg: no such file" in result.stderr
    assert "Traceback" not in result.stderr
