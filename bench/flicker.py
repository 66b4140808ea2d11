"""Flicker of a stylized video, without and with --stable, on the clip the tests generate (a slow pan
across the shipped sample photo, microst.video.pan_clip), here larger: 320x240, 24 frames.

    python bench/flicker.py [--model great_wave] [--width 320 --height 240 --frames 24]

Prints mean |output[t+1] - output[t]| / mean |input[t+1] - input[t]| over consecutive frames of the
generator's output (before encoding): as it is, and after undoing the pan's known motion (what is
left is the change the eye sees as flicker). The README quotes these figures.
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microst.checkpoint import load_model  # noqa: E402
from microst.io import load_image  # noqa: E402
from microst.transfer import stylize  # noqa: E402
from microst.video import STABLE_MOMENTUM, flicker, pan_clip, read_frames, stylized_frames  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="great_wave")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--step", type=int, default=4, help="pan, pixels a frame")
    args = p.parse_args()
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        pan_clip(load_image(ROOT / "samples" / "neuschwanstein.jpg"), clip, frames=args.frames, width=args.width,
                 height=args.height, step=args.step, tone=False)
        inputs = list(read_frames(clip))
    print(f"{args.model}, {args.width}x{args.height}, {args.frames} frames, pan {args.step} px/frame")
    print("                                  as it is   motion undone")
    for name, stable in (("without --stable", False), (f"--stable (momentum {STABLE_MOMENTUM})", True)):
        outputs = list(stylized_frames(lambda x: stylize(model, x), inputs, model, stable))
        print(f"{name:32}  {flicker(inputs, outputs):9.3f}   {flicker(inputs, outputs, args.step):13.2f}")


if __name__ == "__main__":
    main()
