"""Stylizing a video: its frames stream through the generator one at a time, through PyAV (the
extra microst[video]: its wheels bundle FFmpeg, whose x264 encoder is GPL-licensed).

    python -m microst.stylize clip.mp4 --model great_wave -o clip_wave.mp4 [--stable]

The output keeps the input's frame rate and its audio streams (copied, not re-encoded); the video
is encoded with x264 at CRF 18, near transparent for a style's fine texture (VP9 for .webm), written to a temporary file and renamed into place like every
output. Memory stays bounded: one frame at a time is decoded, stylized, encoded. A texture
network's noise stays the same in every frame (one --noise-seed).

--stable reduces flicker: instance normalization then uses statistics smoothed over the frames
(an exponential moving average, weight STABLE_MOMENTUM = 0.1 for each new frame; see
microst.models.generator.smoothed_norm_statistics), the way tiling freezes them across tiles.
Flicker is measured as mean |output[t+1] - output[t]| / mean |input[t+1] - input[t]| over
consecutive frames (`flicker`); on a pan, most of that change is the motion itself, so `flicker`
can also first undo a known pan (shift=the pan's pixels a frame), leaving the change that is not
motion: what the eye sees as flicker.
"""
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import UserError
from .files import atomic_write
from .io import UnreadableImage

VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
STABLE_MOMENTUM = 0.1


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:
        raise UserError("video needs PyAV: pip install 'microst[video]' (its wheels bundle FFmpeg, including "
                        "GPL-licensed codecs such as x264)") from None
    return av


def open_video(path):
    """(container, its first video stream), or a one-line UnreadableImage (a folder of inputs goes
    on without it): not a video, no video stream, a codec FFmpeg cannot decode."""
    av = _av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise UnreadableImage(f"{path}: not a video FFmpeg can read ({getattr(e, 'strerror', None) or e}); give an "
                              f".mp4, .mov, .mkv, .webm or "
                              f".avi file") from None
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "nothing"
        container.close()
        raise UnreadableImage(f"{path}: has no video stream (only {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.codec is None:
        container.close()
        raise UnreadableImage(f"{path}: its video codec is unknown to this FFmpeg build; convert the video "
                              f"to H.264 (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)")
    return container, stream


def check_video_output(path):
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{path}: cannot write video in this format; end the name with one of "
                        f"{', '.join(VIDEO_SUFFIXES)}")


def read_frames(path):
    """A video file's frames, one at a time: (3, H, W) float32 RGB arrays in [0, 255]."""
    container, stream = open_video(path)
    try:
        yield from _decoded(container, container.demux(stream), {}, None, None)
    finally:
        container.close()


def frame_size(width, height, size=None):
    """(width, height) of the stylized frames: the longest side `size` (None: as it is), both even
    (the yuv420p the encoders take)."""
    if size is not None:
        scale = size / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    return width // 2 * 2, height // 2 * 2


def stylized_frames(stylize_frame, images, model=None, stable=False, momentum=STABLE_MOMENTUM):
    """stylize_frame(image) of each image in turn; stable: instance-norm statistics of `model`
    smoothed over the frames."""
    from .models.generator import smoothed_norm_statistics
    import contextlib
    with smoothed_norm_statistics(model, momentum) if stable else contextlib.nullcontext():
        for image in images:
            yield stylize_frame(image)


def flicker(inputs, outputs, shift=0):
    """mean |output[t+1] - output[t]| / mean |input[t+1] - input[t]| over consecutive frames, frame
    t+1 first moved back by `shift` pixels to the right (a pan's known motion; 0: as they are)."""
    def change(frames):
        return np.mean([np.abs(b[:, :, :b.shape[2] - shift] - a[:, :, shift:]).mean() for a, b in zip(frames, frames[1:])])
    return float(change(outputs) / change(inputs))


def stylize_video(stylize_frame, model, source, output, size=None, stable=False, progress=True):
    """Stylize the video file `source` into `output` (see the module docstring), each frame scaled
    so that its longest side is `size`; returns (frames, width, height)."""
    av = _av()
    check_video_output(output)
    container, stream = open_video(source)
    fmt = VIDEO_SUFFIXES[Path(output).suffix.lower()]
    width, height = frame_size(stream.codec_context.width, stream.codec_context.height, size)
    count = 0
    try:
        with atomic_write(output) as tmp:
            out = av.open(str(tmp), "w", format=fmt)
            try:
                encoder = _encoder(av, fmt)
                video = out.add_stream(encoder, rate=stream.average_rate or 25,
                                       options={"crf": "18"} if encoder == "libx264" else {})  # styles are fine detail
                video.width, video.height, video.pix_fmt = width, height, "yuv420p"
                audio = {a: out.add_stream_from_template(a) for a in container.streams.audio}
                bar = tqdm(total=stream.frames or None, desc=Path(source).name, unit="frame", disable=not progress,
                           file=sys.stderr)
                decoded = _decoded(container, container.demux(stream, *audio), audio, out, (width, height))
                for y in stylized_frames(stylize_frame, decoded, model, stable):
                    rgb = np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(1, 2, 0)
                    for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                        out.mux(packet)
                    count += 1
                    bar.update(1)
                bar.close()
                if count == 0:
                    raise UnreadableImage(f"{source}: no frame of its video could be decoded")
                for packet in video.encode():
                    out.mux(packet)
            finally:
                out.close()
    except av.error.FFmpegError as e:
        raise UserError(f"{output}: cannot write this video ({e})") from None
    finally:
        container.close()
    return count, width, height


def _decoded(container, packets, audio, out, shape):
    """The video frames among `packets`, decoded (scaled to shape=(width, height) when given); the
    packets of the `audio` streams met on the way copied as they come into `out`'s streams audio[s]."""
    av = _av()
    size = dict(width=shape[0], height=shape[1]) if shape else {}
    try:
        for packet in packets:
            if packet.stream in audio:
                if packet.dts is not None:  # the demuxer's flush packets carry none
                    packet.stream = audio[packet.stream]
                    out.mux(packet)
                continue
            for frame in packet.decode():
                yield frame.to_ndarray(format="rgb24", **size).transpose(2, 0, 1).astype(np.float32)
    except av.error.FFmpegError as e:
        raise UnreadableImage(f"{container.name}: cannot decode its video ({e})") from None


def _encoder(av, fmt):
    wanted = ("libvpx-vp9", "libvpx") if fmt == "webm" else ("libx264", "h264", "mpeg4")
    for name in wanted:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not in this FFmpeg build
            continue
    raise UserError(f"this FFmpeg build has no encoder for {fmt} ({', '.join(wanted)})")


def pan_clip(photo, path, frames=24, width=128, height=96, rate=12, step=4, tone=True):
    """Write a test clip to `path`: a slow pan (`step` pixels a frame; 4, the generators' downsampling,
    lets a consistent stylization move with the picture) across the photo `photo`
    ((3, H, W) in [0, 255], at least `height` high), H.264 at `rate` frames a second, with a 440 Hz
    tone as AAC audio unless not `tone`. The tests and bench/flicker.py measure on it."""
    av = _av()
    from PIL import Image
    im = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    im = im.resize((max(width + step * frames, round(im.width * height / im.height)), height), Image.LANCZOS)
    pixels = np.asarray(im)
    with av.open(str(path), "w", format=VIDEO_SUFFIXES.get(Path(path).suffix.lower(), "mp4")) as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono") if tone else None
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[:, k * step:k * step + width]), "rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None:
            t = np.arange(16000 * frames // rate) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for i in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), "fltp", "mono")
                chunk.sample_rate = 16000
                out.mux(audio.encode(chunk))
            out.mux(audio.encode())
