"""Nothing a user ran is lost or silently corrupted. Each fault of the durability table, injected
deterministically: two runs racing for one folder, a resumed copy, a full disk or a read-only
folder (MICROST_FAULT and patched checks), a kill in the middle of a save, SIGTERM and SIGHUP,
damaged and non-finite checkpoints, changed inputs, a folder with broken images, names too long."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import microst
from microst import checkpoint as mckpt
from microst import files
from microst.errors import UserError
from microst.models.johnson import TransformerNet
from microst.train import resolve_options, train

from test_train import ROOT, make_images, options, quiet, tiny_vgg

TRAIN = [sys.executable, "-m", "microst.train"]
SMALL = ["--device", "cpu", "--image-size", "32", "--batch-size", "1", "--width", "0.125", "--no-progress",
         "--preview-images", "1", "--seed", "3"]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)


def errors(r):
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def fault(spec):
    return {**os.environ, "MICROST_FAULT": spec}


# -- one writer per run folder -------------------------------------------------------------------------
def test_a_second_run_on_a_locked_folder_stops_at_once_naming_the_holder(tmp_path):
    style, data = make_images(tmp_path)
    lock = files.FolderLock(tmp_path / "run")
    try:
        opts, _ = options(style, data, tmp_path / "run", "--iterations", "2")
        with pytest.raises(UserError, match=rf"{tmp_path / 'run'}: another training run \(PID {os.getpid()}\) is "
                                            r"writing into this folder"):
            train(opts, vgg=tiny_vgg(), log=quiet)
    finally:
        lock.release()
    assert not (tmp_path / "run" / "checkpoint.h5").exists()


def test_two_processes_racing_for_one_folder(tmp_path):
    style, data = make_images(tmp_path)
    cmd = TRAIN + ["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"), "--iterations", "40",
                   *SMALL]
    a, b = (subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2))
    codes = sorted(p.wait(timeout=300) for p in (a, b))
    outs = a.stderr.read() + b.stderr.read()
    assert codes == [0, 2], outs
    assert "is writing into this folder" in outs
    assert mckpt.load_checkpoint(tmp_path / "run" / "checkpoint.h5").iteration == 40
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


# -- a resumed copy writes beside itself -------------------------------------------------------------
def test_resume_of_a_copied_checkpoint_writes_beside_the_copy(tmp_path):
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "original", "--iterations", "1")
    train(opts, vgg=tiny_vgg(), log=quiet)
    before = (tmp_path / "original" / "checkpoint.h5").read_bytes()
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "original" / "checkpoint.h5", tmp_path / "copy" / "checkpoint.h5")
    opts, ckpt = resolve_options(["--resume", str(tmp_path / "copy" / "checkpoint.h5"), "--iterations", "2"])
    assert opts["out"] == str(tmp_path / "copy")
    train(opts, ckpt, vgg=tiny_vgg(), log=quiet)
    assert (tmp_path / "original" / "checkpoint.h5").read_bytes() == before
    assert mckpt.load_checkpoint(tmp_path / "copy" / "checkpoint.h5").iteration == 2


# -- full disks, read-only folders, kills in a save ------------------------------------------------
@pytest.mark.parametrize("code, text", [("ENOSPC", "No space left on device"), ("EROFS", "Read-only file system")])
def test_stylize_to_a_full_or_read_only_disk_fails_with_one_line_and_no_output(tmp_path, code, text):
    r = run([sys.executable, "-m", "microst.stylize", str(ROOT / "samples" / "neuschwanstein.jpg"), "--model",
             "great_wave", "--size", "64", "--device", "cpu", "-o", str(tmp_path / "out.jpg")],
            env=fault(f"write:1:{code}"))
    advice = "free some space or choose another folder" if code == "ENOSPC" else "choose another folder"
    assert r.returncode == 2 and errors(r) == [f"error: {tmp_path / 'out.jpg'}: cannot write it ({text}); {advice}"], \
        r.stderr
    assert "->" not in r.stdout and list(tmp_path.iterdir()) == []  # no success line, no truncated file


def _file_size_limit(limit):
    """preexec_fn: the disk 'fills' at `limit` bytes per file (RLIMIT_FSIZE: a write past it fails with
    EFBIG), a real short write in every library, not a patched one."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("suffix", [".tif", ".bmp", ".png"])
def test_an_image_that_does_not_fit_is_an_error_in_every_format(tmp_path, suffix):
    # Pillow's TIFF and BMP encoders do not all report a short write: images are encoded in memory
    out = tmp_path / f"out{suffix}"
    r = run([sys.executable, "-m", "microst.stylize", str(ROOT / "samples" / "neuschwanstein.jpg"), "--model",
             "great_wave", "--size", "160", "--device", "cpu", "-o", str(out)], preexec_fn=_file_size_limit(20000))
    assert r.returncode == 2 and errors(r) == [f"error: {out}: cannot write it (File too large); choose another "
                                               f"folder"], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_does_not_fit_is_an_error_and_no_file(tmp_path):
    # HDF5 reports a failed flush as a RuntimeError: checkpoints are built in memory, then written
    code = ("import sys; from microst import checkpoint; from microst.errors import UserError; "
            "from microst.models.johnson import TransformerNet\n"
            "try: checkpoint.save_checkpoint(sys.argv[1], TransformerNet(width=0.5))\n"
            "except UserError as e: print(e); sys.exit(2)")
    r = run([sys.executable, "-c", code, str(tmp_path / "c.h5")], preexec_fn=_file_size_limit(200000))
    assert r.returncode == 2 and "c.h5: cannot write it (File too large)" in r.stdout, r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_kill_in_the_middle_of_a_save_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    r = run([sys.executable, "-m", "microst.stylize", str(ROOT / "samples" / "neuschwanstein.jpg"), "--model",
             "great_wave", "--size", "48", "--device", "cpu", "-o", str(out)], env=fault("kill:1"))
    assert r.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"the previous result"


def test_a_kill_while_the_loss_plot_is_rewritten_keeps_the_good_one(tmp_path):
    style, data = make_images(tmp_path)
    cmd = TRAIN + ["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"), *SMALL,
                   "--preview-every", "1"]
    assert run(cmd + ["--iterations", "1"]).returncode == 0
    plot = (tmp_path / "run" / "loss.png").read_bytes()
    # resumed: the writes are the preview, history.json, loss.png: the kill lands in the third
    r = run(TRAIN + ["--resume", str(tmp_path / "run" / "checkpoint.h5"), "--iterations", "3", "--no-progress"],
            env=fault("kill:3"))
    assert r.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / "loss.png").read_bytes() == plot
    Image.open(tmp_path / "run" / "loss.png").verify()


def test_a_training_run_on_a_full_disk_stops_with_one_line(tmp_path):
    style, data = make_images(tmp_path)
    r = run(TRAIN + ["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"), *SMALL,
                     "--iterations", "3", "--checkpoint-every", "1", "--preview-every", "0"], env=fault("write:2:ENOSPC"))
    assert r.returncode == 2 and len(errors(r)) == 1 and "checkpoint.h5: cannot write it (No space left" in r.stderr
    assert "done:" not in r.stderr
    assert mckpt.load_checkpoint(tmp_path / "run" / "checkpoint.h5").iteration == 1  # the last good one


def test_an_unwritable_or_full_output_folder_is_found_before_the_work(tmp_path, monkeypatch):
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "2")
    real = Path.write_bytes

    def read_only(self, data):
        if self.name.endswith("probe.tmp"):
            raise OSError(30, "Read-only file system")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(UserError, match=r"run: cannot write into --out \(Read-only file system\)"):
        train(opts, vgg=tiny_vgg(), log=quiet)
    monkeypatch.setattr(Path, "write_bytes", real)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 1000))
    with pytest.raises(UserError, match=r"run: 0.0 MB free, less than the .* MB the first write needs"):
        train(opts, vgg=tiny_vgg(), log=quiet)
    (tmp_path / "file").write_text("x")
    opts, _ = options(style, data, tmp_path / "file", "--iterations", "2")
    with pytest.raises(UserError, match=r"file: is a file, not a folder; give --out another path"):
        train(opts, vgg=tiny_vgg(), log=quiet)


def test_a_long_style_name_trains_to_the_end(tmp_path):
    """A 251-character style name used to train fully, then fail writing NAME.h5 + .tmp: temporary
    names are short now."""
    style, data = make_images(tmp_path)
    long_style = tmp_path / ("s" * 251 + ".png")
    shutil.copy(style, long_style)
    opts, _ = options(long_style, data, tmp_path / "run", "--iterations", "1")
    assert train(opts, vgg=tiny_vgg(), log=quiet)["model_path"].name == "s" * 251 + ".h5"


def test_names_that_do_not_fit_are_refused_before_the_work(tmp_path):
    with pytest.raises(UserError, match=r"the name is 256 characters, more than this filesystem's 255; use a shorter"):
        files.check_writable(tmp_path / "out", names=["x" * 256])
    assert not (tmp_path / "out").exists()


# -- signals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_write_a_checkpoint_and_say_how_to_resume(tmp_path, sig):
    style, data = make_images(tmp_path)
    p = subprocess.Popen(TRAIN + ["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"), *SMALL,
                                  "--iterations", "100000", "--checkpoint-every", "100000"],
                         cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / ".microst.lock").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # some iterations
    p.send_signal(sig)
    code, err = p.wait(timeout=120), p.stderr.read()
    assert code == 128 + sig, err
    assert f"--resume {tmp_path / 'run' / 'checkpoint.h5'}" in err
    assert mckpt.load_checkpoint(tmp_path / "run" / "checkpoint.h5").iteration >= 1


# -- integrity ----------------------------------------------------------------------------------------
def _checkpoint(tmp_path):
    microst.manual_seed(0)
    return mckpt.save_checkpoint(tmp_path / "c.h5", TransformerNet(width=0.125), style="s")


def _data_offset(path):
    with h5py.File(path, "r") as f:
        return f["model/conv1.conv.weight"].id.get_offset()


@pytest.mark.parametrize("damage", ["flip", "garbage"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    path = _checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    at = _data_offset(path)
    if damage == "flip":
        data[at + 17] ^= 0x10
    else:
        data[at:at + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"^{path}: damaged") as e:
        microst.load_model(path)
    assert "\n" not in str(e.value)


def test_non_finite_weights_are_refused(tmp_path):
    microst.manual_seed(0)
    net = TransformerNet(width=0.125)
    net.conv1.conv.weight.data[0, 0, 0, 0] = np.nan
    path = mckpt.save_checkpoint(tmp_path / "nan.h5", net)
    with pytest.raises(UserError, match=rf"^{path}: holds weights that are not finite \(conv1.conv.weight\)"):
        microst.load_model(path)


def test_format_1_checkpoints_still_load(tmp_path):
    path = _checkpoint(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = "microst-generator/1"
        del f.attrs["sha256"]
    assert microst.load_model(path).checkpoint.format == "microst-generator/1"


def test_the_bundled_styles_are_format_2():
    for name in mckpt.bundled_styles():
        assert microst.load_model(name).checkpoint.format == mckpt.CHECKPOINT_FORMAT, name


# -- resume checks its inputs -------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["style", "photos"])
def test_resume_after_the_inputs_changed_is_refused_unless_allowed(tmp_path, change):
    style, data = make_images(tmp_path)
    opts, _ = options(style, data, tmp_path / "run", "--iterations", "1")
    train(opts, vgg=tiny_vgg(), log=quiet)
    if change == "style":
        Image.open(style).rotate(90).save(style)
    else:
        (data / "p0.jpg").unlink()
    resume = ["--resume", str(tmp_path / "run" / "checkpoint.h5"), "--iterations", "2"]
    opts, ckpt = resolve_options(resume)
    with pytest.raises(UserError, match="changed since this run began" + (".*--allow-changed-data")):
        train(opts, ckpt, vgg=tiny_vgg(), log=quiet)
    opts, ckpt = resolve_options(resume + ["--allow-changed-data"])
    assert len(train(opts, ckpt, vgg=tiny_vgg(), log=quiet)["history"]) == 2


def test_one_photo_whose_output_name_does_not_fit_is_one_error_line(tmp_path):
    photo = tmp_path / ("n" * 246 + ".jpg")
    Image.fromarray(np.full((16, 20, 3), 128, np.uint8)).save(photo)
    r = run([sys.executable, "-m", "microst.stylize", str(photo), "--model", "great_wave", "--device", "cpu",
             "--out-dir", str(tmp_path / "out")])
    assert r.returncode == 2 and len(errors(r)) == 1 and "longer than the filesystem allows" in errors(r)[0], r.stderr
    assert "skipped" not in r.stderr


# -- folders keep going ----------------------------------------------------------------------------
def test_a_folder_with_broken_images_goes_on_and_sums_up(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    r = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray((r.random((16, 20, 3)) * 255).astype(np.uint8)).save(photos / f"{i:02d}.jpg")
    data = (photos / "10.jpg").read_bytes()
    (photos / "10.jpg").write_bytes(data[:len(data) // 3])  # truncated
    Image.new("L", (1, 1)).save(photos / "bomb.png")
    with open(photos / "bomb.png", "r+b") as f:  # a header that claims 100000 x 100000 pixels, its CRC right
        header = bytearray(f.read(33))
        header[16:24] = (100000).to_bytes(4, "big") * 2
        header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")
        f.seek(0)
        f.write(header)
    Image.fromarray((r.random((16, 20, 3)) * 255).astype(np.uint8)).save(photos / ("n" * 242 + ".jpg"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "microst.stylize", str(photos), "--model", "great_wave", "--device", "cpu",
           "--out-dir", str(out), "--no-progress"]
    r = run(cmd)
    assert r.returncode == 2, r.stderr
    done = sorted(p.name for p in out.iterdir())
    assert len(done) == 19 and "10_great_wave.jpg" not in done  # 20 good ones but 10, and the long-named one
    summary = r.stderr.strip().splitlines()[-1]
    assert "bomb.png: too many pixels to open safely" in summary, r.stderr
    assert summary.startswith("19 done, 3 skipped: ") and "10.jpg" in summary and "bomb.png" in summary and \
        "longer than the filesystem allows" in summary, r.stderr
    (out / "00_great_wave.jpg").write_bytes(b"kept")
    r = run(cmd + ["--skip-existing"])
    assert (out / "00_great_wave.jpg").read_bytes() == b"kept" and "19 left as they were" in r.stderr
