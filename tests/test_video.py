"""Video (microst[video], PyAV) on a clip generated here, a slow pan across the shipped sample photo:
frames, frame rate and audio kept; --stable lowers flicker; texture noise fixed across frames; one-line
errors for the four kinds of bad video input."""
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import microst
from microst import checkpoint as mckpt
from microst import io as mio
from microst.models import TextureNet, TransformerNet
from microst.models.generator import InstanceNorm2d, smoothed_norm_statistics
from microst.autograd import tensor
from microst.nn import Sequential
from microst.stylize import main
from microst.transfer import stylize

av = pytest.importorskip("av", reason="video needs the extra microst[video] (PyAV), which .[test] installs")
from microst.video import STABLE_MOMENTUM, flicker, pan_clip, read_frames, stylized_frames  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "neuschwanstein.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "pan.mp4"
    pan_clip(mio.load_image(SAMPLE), path, frames=12, width=96, height=64, rate=12)
    return path


def streams(path):
    with av.open(str(path)) as c:
        return [(s.type, s.average_rate if s.type == "video" else s.rate) for s in c.streams]


def test_a_clip_keeps_its_frames_rate_and_audio(clip, tmp_path, capsys):
    out = tmp_path / "styled.mp4"
    assert main([str(clip), "--model", "great_wave", "-o", str(out), "--no-progress"]) == 0
    assert "12 frames, 96x64" in capsys.readouterr().out
    assert streams(out) == streams(clip) == [("video", Fraction(12)), ("audio", 16000)]
    frames = list(read_frames(out))
    assert len(frames) == 12 and frames[0].shape == (3, 64, 96)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.demux(c.streams.audio[0])) > 10  # the tone's packets, copied
    photo = next(read_frames(clip))
    first = stylize(mckpt.load_model("great_wave"), photo)
    assert np.abs(frames[0] - first).mean() < 0.25 * np.abs(photo - first).mean()  # stylized, through a lossy codec
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".microst-")]  # renamed into place


def test_size_scales_the_frames_and_out_dir_keeps_the_suffix(clip, tmp_path):
    assert main([str(clip), "--model", "great_wave", "--out-dir", str(tmp_path), "--size", "48",
                 "--no-progress"]) == 0
    frames = list(read_frames(tmp_path / "pan_great_wave.mp4"))
    assert len(frames) == 12 and frames[0].shape == (3, 32, 48)


def test_stable_lowers_flicker(clip):
    """Flicker = mean |output[t+1] - output[t]| / mean |input[t+1] - input[t]|, measured on the
    generator's frames before encoding (the codec's own noise would blur the comparison), after
    undoing the pan's known 4 pixels a frame: on a pan, the change as the eye sees it. (Without
    undoing it, the motion dominates both figures: they differ by under 1%, either way.)"""
    model = mckpt.load_model("great_wave")
    inputs = list(read_frames(clip))
    plain = list(stylized_frames(lambda x: stylize(model, x), inputs))
    stable = list(stylized_frames(lambda x: stylize(model, x), inputs, model, stable=True))
    np.testing.assert_allclose(stable[0], plain[0], atol=1e-3)  # the first frame's own statistics
    assert flicker(inputs, stable, shift=4) < 0.95 * flicker(inputs, plain, shift=4)
    assert all(m.mode is None for _, m in model.named_modules() if isinstance(m, InstanceNorm2d))  # restored after


def test_smoothed_statistics_are_an_exponential_moving_average():
    norm = InstanceNorm2d(3, affine=False)
    r = np.random.default_rng(0)
    a, b = r.normal(2, 3, (1, 3, 5, 7)), r.normal(-1, 0.5, (1, 3, 5, 7))
    model = Sequential(norm)
    with smoothed_norm_statistics(model, STABLE_MOMENTUM):
        norm(tensor(a))
        y = norm(tensor(b)).numpy()
    mean = (1 - STABLE_MOMENTUM) * a.mean(axis=(2, 3), keepdims=True) + STABLE_MOMENTUM * b.mean(axis=(2, 3), keepdims=True)
    var = (1 - STABLE_MOMENTUM) * a.var(axis=(2, 3), keepdims=True) + STABLE_MOMENTUM * b.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(y, (b - mean) / np.sqrt(var + norm.eps), rtol=1e-4, atol=1e-5)
    assert norm.mode is None and norm.stats is None


def test_texture_noise_is_fixed_across_frames(tmp_path, monkeypatch):
    """A still clip stylized by a texture network: every output frame alike (one noise for all)."""
    monkeypatch.setattr(mckpt, "STYLES_DIR", tmp_path / "styles")
    microst.manual_seed(0)
    mckpt.save_checkpoint(tmp_path / "styles" / "noisy.h5", TextureNet(scales=3, channels=4), style="noisy")
    still = tmp_path / "still.mp4"
    pan_clip(mio.load_image(SAMPLE), still, frames=4, width=64, height=48, step=0, tone=False)
    out = tmp_path / "noisy.mp4"
    assert main([str(still), "--model", "noisy", "-o", str(out), "--no-progress"]) == 0
    frames = list(read_frames(out))
    assert len(frames) == 4
    assert max(np.abs(f - frames[0]).mean() for f in frames) < 1.5  # codec noise only


def audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        chunk.sample_rate = 16000
        out.mux(stream.encode(chunk))
        out.mux(stream.encode())


@pytest.mark.parametrize("case", ["not a video", "no video stream", "unknown codec", "unwritable output"])
def test_bad_video_input_is_one_line(case, clip, tmp_path, capsys):
    source, output = tmp_path / "in.mp4", tmp_path / "out.mp4"
    if case == "not a video":
        source.write_text("these are not the frames you are looking for\n")
        expected = "not a video FFmpeg can read"
    elif case == "no video stream":
        audio_only(source)
        expected = "has no video stream (only audio)"
    elif case == "unknown codec":
        source.write_bytes(clip.read_bytes().replace(b"avc1", b"zzz9"))  # a codec tag no FFmpeg knows
        expected = "its video codec is unknown"
    else:
        source, output = clip, tmp_path / "out.png"
        expected = "cannot write video in this format"
    with pytest.raises(SystemExit) as e:
        main([str(source), "--model", "great_wave", "-o", str(output), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not output.exists()


def test_stable_refuses_tiles(clip, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(clip), "--model", "great_wave", "-o", str(tmp_path / "o.mp4"), "--stable", "--tile", "32"])
    assert e.value.code == 2 and "--stable" in capsys.readouterr().err
