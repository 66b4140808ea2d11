"""The training loop without host stalls: the loss terms stay on the device and are read every N
steps; a non-finite loss stops the run with one clear line, after no checkpoint holds weights
updated after the bad step; the batches are decoded on a background thread, their random choices
drawn on the main thread (so that resume stays exact: tests/test_train.py)."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from microst import checkpoint as mckpt
from microst.data import ImageFolder
from microst.errors import UserError
from microst.losses import PerceptualLoss
from microst.train import resolve_options, train

from test_train import ROOT, make_images, options, quiet, tiny_vgg


def _poison_the_loss_at(monkeypatch, call):
    """The loss's total becomes inf at its `call`-th evaluation (1-based)."""
    real = PerceptualLoss.__call__
    calls = []

    def poisoned(self, output, content=None, **kw):
        terms = real(self, output, content, **kw)
        calls.append(1)
        if len(calls) == call:
            terms["total"] = terms["total"] * float("inf")
        return terms
    monkeypatch.setattr(PerceptualLoss, "__call__", poisoned)


@pytest.mark.parametrize("device", ["cpu", "emu"])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, device):
    style, data = make_images(tmp_path)
    vgg = tiny_vgg()
    opts, _ = options(style, data, tmp_path / "good", "--iterations", "2", "--device", device)
    good = train(opts, vgg=vgg, log=quiet)

    _poison_the_loss_at(monkeypatch, 3)
    opts, _ = options(style, data, tmp_path / "bad", "--iterations", "6", "--checkpoint-every", "1", "--device",
                      device)
    with pytest.raises(UserError, match=r"iteration 3: the total loss is (inf|nan) \(not finite\); training stopped "
                                        r"and the last checkpoint \(.*checkpoint.h5, iteration 2\) holds the weights "
                                        r"from before it"):
        train(opts, vgg=vgg, log=quiet)
    kept = mckpt.load_checkpoint(tmp_path / "bad" / "checkpoint.h5")
    assert kept.iteration == 2 and len(kept.history) == 2
    for name, value in good["model"].state_dict().items():
        np.testing.assert_allclose(kept.state[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def train_with_lr_nan(out, *extra):
    """python -m microst.train with --lr nan on tiny settings into `out`: the CompletedProcess."""
    style, data = make_images(out.parent)
    return subprocess.run([sys.executable, "-m", "microst.train", "--style", str(style), "--data", str(data), "--out",
                           str(out), "--device", "cpu", "--lr", "nan", "--image-size", "32", "--batch-size", "1",
                           "--width", "0.125", "--no-progress", "--preview-images", "1", *extra],
                          capture_output=True, text=True, cwd=ROOT)


def test_lr_nan_is_one_line_and_exit_2_and_history_stays_json(tmp_path):
    out = tmp_path / "run"
    r = train_with_lr_nan(out, "--iterations", "4", "--preview-every", "1")
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    # the first loss is finite (it comes before the first update); the update is not
    assert len(errors) == 1 and "iteration 1: the update made the weights non-finite; training stopped" in errors[0]
    assert not list(out.glob("preview_*.png")), "a preview of non-finite weights was written"
    if (out / "history.json").exists():
        history = json.loads((out / "history.json").read_text(), parse_constant=lambda c: pytest.fail(c))
        assert all(np.isfinite(history["total"]))


def test_no_checkpoint_holds_non_finite_weights(tmp_path):
    """A checkpoint every iteration: the run stops before it writes one from NaN weights."""
    out = tmp_path / "run"
    r = train_with_lr_nan(out, "--iterations", "3", "--checkpoint-every", "1")
    assert r.returncode == 2 and "no checkpoint was written" in r.stderr, r.stderr
    assert not (out / "checkpoint.h5").exists()


def test_the_loss_is_read_every_n_steps(tmp_path, monkeypatch):
    from microst.training import Trainer
    reads = []
    real = Trainer.read
    monkeypatch.setattr(Trainer, "read", lambda self: (reads.append(self.done), real(self))[1])
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "7", "--read-every", "3", "--device", "emu",
                      "--preview-every", "0")
    result = train(opts, vgg=tiny_vgg(), log=quiet)
    assert [r for r in reads if r < 7] == [3, 6] and len(result["history"]) == 7


def test_batches_are_planned_on_the_main_thread_and_decoded_beside_it(tmp_path, monkeypatch):
    threads = {"plan": set(), "load": set()}
    real_plan, real_load = ImageFolder.plan, ImageFolder.load
    monkeypatch.setattr(ImageFolder, "plan", lambda *a: (threads["plan"].add(threading.current_thread().name),
                                                         real_plan(*a))[1])
    monkeypatch.setattr(ImageFolder, "load", lambda *a: (threads["load"].add(threading.current_thread().name),
                                                         real_load(*a))[1])
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "3")
    train(opts, vgg=tiny_vgg(), log=quiet)
    assert threads["plan"] == {"MainThread"}
    assert len(threads["load"]) == 1 and next(iter(threads["load"])).startswith("microst-data")

