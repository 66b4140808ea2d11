"""python -m microst.train on `cpu`: the loss drops, resume is exact (also after Ctrl-C), the outputs
(checkpoints, previews, history) are written, unreadable photos are skipped, and bad input is one
clear line with exit status 2. Photos and style images are generated here; the 30-iteration run
uses the real weights/vgg16.h5, the others a tiny random VGG-16 of the same layout."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import microst
from microst import checkpoint as mckpt
from microst.data import Batches, ImageFolder
from microst.models import VGG16Features
from microst.train import main, resolve_options, train

ROOT = Path(__file__).resolve().parent.parent


def make_images(folder, n=6, size=(80, 64), seed=0):
    """n smooth random colour photos (jpg, png, webp; some in a subfolder) and a striped style image."""
    r = np.random.default_rng(seed)
    (folder / "photos" / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = (r.random((4, 5, 3)) * 255).astype(np.uint8)
        ext = ("jpg", "png", "webp")[i % 3]
        Image.fromarray(small).resize(size, Image.BICUBIC).save(folder / "photos" / ("sub" if i % 2 else "") /
                                                                f"p{i}.{ext}")
    yy, xx = np.mgrid[0:64, 0:64]
    style = np.stack([(np.sin(xx / 3 + yy / 5) > 0) * 200 + 30, (np.sin(yy / 2) > 0) * 180 + 40,
                      ((xx // 8 + yy // 8) % 2) * 220 + 20], -1).astype(np.uint8)
    Image.fromarray(style).save(folder / "style.png")
    return folder / "style.png", folder / "photos"


def tiny_vgg():
    """VGG16Features with 4-8 channels per layer and random He-initialized weights (fast)."""
    r = np.random.default_rng(0)
    widths = {1: 4, 2: 6, 3: 8, 4: 8}
    weights, cin = {}, 3
    for block, n in ((1, 2), (2, 2), (3, 3), (4, 3)):
        for k in range(1, n + 1):
            cout = widths[block]
            weights[f"block{block}_conv{k}"] = (r.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin)) / 10,
                                                np.zeros(cout))
            cin = cout
    return VGG16Features(weights={k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in weights.items()})


def options(style, data, out, *extra):
    return resolve_options(["--style", str(style), "--data", str(data), "--out", str(out), "--device", "cpu",
                            "--seed", "3", "--no-progress", "--image-size", "32", "--batch-size", "2",
                            "--width", "0.125", "--preview-images", "1", *extra])


def quiet(*args):
    pass


def test_thirty_iterations_at_64_reduce_the_loss_clearly(tmp_path):
    """The real VGG-16: 30 iterations of a small TransformerNet at 64x64 cut the total loss at least 2x."""
    style, data = make_images(tmp_path)
    opts, _ = resolve_options(["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"),
                               "--iterations", "30", "--image-size", "64", "--batch-size", "1", "--width", "0.25",
                               "--device", "cpu", "--seed", "0", "--no-progress", "--preview-images", "1",
                               "--preview-every", "15"])
    result = train(opts, log=quiet)
    total = np.array(result["history"])[:, 1]
    assert len(total) == 30
    assert total[-5:].mean() < 0.5 * total[:5].mean(), total
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == [".microst.lock", "checkpoint.h5", "history.json", "loss.png",
                                                     "preview_000015.png", "preview_000030.png", "style.h5"]
    history = json.loads((out / "history.json").read_text())
    assert history["iteration"] == list(range(1, 31)) and np.allclose(history["total"], total)
    with Image.open(out / "preview_000030.png") as im:
        assert im.size == (64, 128)  # one held-out photo over its stylization
    model = microst.load_model(out / "style.h5")
    assert model.config == {"model": "johnson", "norm": "instance", "upsample": "transpose", "width": 0.25,
                            "residual_blocks": 5}
    assert model.checkpoint.training["iterations"] == 30 and model.checkpoint.style == "style"


@pytest.mark.parametrize("model_options", [("--norm", "batch"), ("--model", "texture", "--scales", "3")],
                         ids=["johnson-batchnorm", "texture"])
def test_resume_continues_exactly(tmp_path, model_options):
    """6 iterations in one go == 3, then --resume, then 3 more: the same weights, bit for bit."""
    style, data = make_images(tmp_path)
    vgg = tiny_vgg()
    opts, _ = options(style, data, tmp_path / "whole", "--iterations", "6", *model_options)
    whole = train(opts, vgg=vgg, log=quiet)

    opts, _ = options(style, data, tmp_path / "halves", "--iterations", "3", *model_options)
    train(opts, vgg=vgg, log=quiet)
    opts, ckpt = resolve_options(["--resume", str(tmp_path / "halves" / "checkpoint.h5"), "--iterations", "6"])
    assert ckpt.iteration == 3
    resumed = train(opts, ckpt, vgg=vgg, log=quiet)

    assert resumed["history"] == whole["history"]
    for (name, a), (_, b) in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, monkeypatch):
    style, data = make_images(tmp_path)
    vgg = tiny_vgg()
    opts, _ = options(style, data, tmp_path / "whole", "--iterations", "5")
    whole = train(opts, vgg=vgg, log=quiet)

    calls = []
    real_next = Batches.next

    def next_then_interrupt(self):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during iteration 2
        return real_next(self)

    monkeypatch.setattr(Batches, "next", next_then_interrupt)
    messages = []
    opts, _ = options(style, data, tmp_path / "cut", "--iterations", "5")
    cut = train(opts, vgg=vgg, log=messages.append)
    monkeypatch.setattr(Batches, "next", real_next)
    assert cut["interrupted"] and len(cut["history"]) == 2 and cut["model_path"] is None
    assert "interrupted at iteration 2" in messages[-1] and "--resume" in messages[-1]

    opts, ckpt = resolve_options(["--resume", str(tmp_path / "cut" / "checkpoint.h5")])
    resumed = train(opts, ckpt, vgg=vgg, log=quiet)
    assert resumed["history"] == whole["history"]
    for (name, a), (_, b) in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_texture_synthesizer_from_noise_alone(tmp_path):
    style, _ = make_images(tmp_path)
    opts, _ = resolve_options(["--style", str(style), "--model", "texture", "--no-content", "--scales", "3",
                               "--out", str(tmp_path / "tex"), "--iterations", "2", "--image-size", "32",
                               "--batch-size", "1", "--device", "cpu", "--no-progress", "--seed", "0"])
    result = train(opts, vgg=tiny_vgg(), log=quiet)
    assert result["model"].config["content"] is False
    assert all(row[2] == 0 for row in result["history"])  # no content term
    with Image.open(tmp_path / "tex" / "preview_000002.png") as im:
        assert im.size == (4 * 32, 32)  # four noise samples


def test_unreadable_photos_are_skipped_and_counted(tmp_path):
    style, data = make_images(tmp_path)
    (data / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    good = (data / "p0.jpg").read_bytes()
    (data / "truncated.jpg").write_bytes(good[:len(good) * 4 // 5])  # a valid header, data cut short
    (data / "notes.txt").write_text("not an image suffix: ignored")
    messages = []
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "6", "--batch-size", "4",
                      "--preview-images", "0")
    result = train(opts, vgg=tiny_vgg(), log=messages.append)
    assert str(data / "broken.jpg") in result["skipped"]
    assert any("unreadable files skipped" in m for m in messages)
    folder = ImageFolder(str(data), 32)
    assert len(folder) == 7 and folder.skipped == [str(data / "broken.jpg")]  # its header is not an image
    for _ in range(5):
        assert folder.sample(4).shape == (4, 3, 32, 32)  # the truncated file fails only when decoded
    assert str(data / "truncated.jpg") in folder.skipped and len(folder.skipped) == 2


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys):
    style, data = make_images(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.jpg").write_text("text")
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    cases = [
        (["--style", str(tmp_path / "nope.jpg"), "--data", str(data)], "nope.jpg: no such file"),
        (["--style", str(tmp_path / "fake.jpg"), "--data", str(data)], "fake.jpg: cannot read this image"),
        (["--style", str(style), "--data", str(tmp_path / "empty")], "empty: no images in it"),
        (["--style", str(style), "--data", str(tmp_path / "absent")], "absent: no such folder"),
        (["--data", str(data)], "--style: missing"),
        (["--resume", str(tmp_path / "corrupt.h5")], "corrupt.h5: not a readable HDF5 file"),
        (["--style", str(style), "--data", str(data), "--style-layers", "relu9_9"],
         "argument --style-layers: unknown VGG-16 layer 'relu9_9'"),
        (["--style", str(style), "--data", str(data), "--iterations", "0"],
         "argument --iterations: '0' is not a positive whole number"),
        (["--style", str(style), "--data", str(data), "--device", "foo"], "argument --device: invalid choice: 'foo'"),
        (["--style", str(style), "--data", str(data), "--model", "johnson", "--no-content"], "--no-content"),
        (["--style", str(tmp_path / "All.jpg"), "--data", str(data)], "a style cannot be called 'all'"),
    ]
    shutil.copy(style, tmp_path / "All.jpg")
    for argv, message in cases:
        code, err = run_main(["--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"] + argv, capsys)
        assert code == 2, argv
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)


def test_resume_refuses_changed_options(tmp_path, capsys):
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "1")
    train(opts, vgg=tiny_vgg(), log=quiet)
    code, err = run_main(["--resume", str(tmp_path / "run" / "checkpoint.h5"), "--lr", "0.5"], capsys)
    assert code == 2 and len(err) == 1 and "--lr 0.5 differs from the resumed run's 0.001" in err[0]
    code, err = run_main(["--resume", str(tmp_path / "run" / "style.h5")], capsys)
    assert code == 2 and "no training state" in err[0]


def test_command_line_end_to_end(tmp_path):
    """The real command in a fresh process (real VGG-16): train 2 iterations, then stylize with the result."""
    style, data = make_images(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "microst.train", "--style", str(style), "--data", str(data),
                          "--iterations", "2", "--image-size", "32", "--batch-size", "1", "--width", "0.125",
                          "--out", "run", "--device", "cpu", "--preview-images", "1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "done: 2 iterations" in run.stderr and "2/2" in run.stderr  # the summary and tqdm's bar
    run = subprocess.run([sys.executable, "-m", "microst.stylize", str(data / "p0.jpg"), "--model", "run/style.h5",
                          "-o", "out.png", "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "p0.jpg -> out.png (80x64," in run.stdout
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (80, 64)


def test_setup_step_and_loop_are_apart(tmp_path):
    """Driving a Trainer by hand (batch, step, record, read) is train()'s loop: the same history and
    weights; the history's columns are the loss's terms."""
    from microst.losses import PerceptualLoss
    from microst.training import Trainer
    style, data = make_images(tmp_path)
    vgg = tiny_vgg()
    opts, _ = options(style, data, tmp_path / "loop", "--iterations", "2")
    looped = train(opts, vgg=vgg, log=quiet)

    opts, _ = options(style, data, tmp_path / "hand", "--iterations", "2")
    trainer = Trainer(opts, vgg=vgg, log=quiet)
    assert trainer.columns == ("iteration", "total") + PerceptualLoss.terms
    for _ in range(2):
        terms = trainer.step(trainer.batch())
        assert set(terms) == set(trainer.columns[1:])
        trainer.record(terms)
    assert trainer.history == [] and trainer.read()["total"] == looped["history"][-1][1]  # read: one transfer
    trainer.close()
    assert trainer.history == looped["history"] and trainer.done == 2
    for (name, a), (_, b) in zip(looped["model"].state_dict().items(), trainer.model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    written = json.loads((tmp_path / "loop" / "history.json").read_text())
    assert tuple(written) == trainer.columns
    assert mckpt.load_checkpoint(tmp_path / "loop" / "checkpoint.h5").history_columns == trainer.columns


def test_resume_reads_the_layer_options_of_older_checkpoints(tmp_path):
    """Checkpoints written before layers were lists hold them as comma-separated strings."""
    import h5py
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "1")
    train(opts, vgg=tiny_vgg(), log=quiet)
    path = tmp_path / "run" / "checkpoint.h5"
    with h5py.File(path, "r+") as f:
        training = json.loads(f.attrs["training"])
        assert training["style_layers"] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
        training.update(content_layers="relu2_2", style_layers="relu1_2,relu2_2,relu3_3,relu4_3")
        f.attrs["training"] = json.dumps(training)
        f.attrs["format"] = "microst-generator/1"  # as such checkpoints were: no hash
        del f.attrs["sha256"]
    opts, ckpt = resolve_options(["--resume", str(path), "--iterations", "2", "--style-layers",
                                  "relu1_2,relu2_2,relu3_3,relu4_3"])
    assert opts["content_layers"] == ("relu2_2",) and len(train(opts, ckpt, vgg=tiny_vgg(), log=quiet)["history"]) == 2
