"""Ship a trained style: weights/styles/NAME.h5 (float16 when that changes no output by more than a
level), with its style image beside it.

    python bench/bundle_style.py runs/x/x.h5 --style-image STYLE.jpg --photos A.jpg B.jpg C.jpg [--size 256]

The model is stylized on --photos at --size with its float32 weights and again with them rounded
to float16; if no output pixel moves by more than one level (0..255, after rounding to 8 bits) the
float16 file is kept (half the size), else the float32 one. Prints both sizes and the difference.
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microst.autograd import no_grad  # noqa: E402
from microst.checkpoint import load_model, save_checkpoint  # noqa: E402
from microst.io import load_image  # noqa: E402
from microst.transfer import stylize  # noqa: E402

STYLES = ROOT / "weights" / "styles"


def outputs(model, photos):
    """8-bit outputs on the photos; a texture synthesizer's (no content): textures of the photos' sizes."""
    if model.kind == "texture" and not model.config.get("content", True):
        with no_grad():
            made = [model(None, seed=0, size=p.shape[1:]).numpy()[0] for p in photos]
    else:
        made = [stylize(model, p, seed=0) for p in photos]
    return [np.clip(np.rint(y), 0, 255) for y in made]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--style-image", type=Path, required=True)
    p.add_argument("--photos", nargs="+", type=Path, required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--name", help="the style's name (default: the model's)")
    p.add_argument("--data-note", required=True,
                   help="what the training photos were, recorded instead of this machine's path")
    args = p.parse_args()
    model = load_model(args.model)
    name = args.name or model.checkpoint.style or args.model.stem
    photos = [load_image(ph, args.size) for ph in args.photos]
    # the record of how it was trained, without this machine's paths
    training = {k: v for k, v in model.checkpoint.training.items() if k not in ("out", "resume")}
    training.update(style=f"weights/styles/{args.style_image.name}", data=args.data_note,
                    vgg="weights/vgg16.h5")
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / f"{name}.h5"
        save_checkpoint(half, model, style=name, iteration=model.checkpoint.iteration,
                        training=training, dtype=np.float16)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(outputs(model, photos),
                                                                outputs(load_model(half), photos)))
        target = STYLES / f"{name}.h5"
        if moved <= 1:
            shutil.copyfile(half, target)
        else:
            save_checkpoint(target, model, style=name, iteration=model.checkpoint.iteration, training=training)
    image = STYLES / args.style_image.name
    if not image.exists():
        shutil.copyfile(args.style_image, image)
    print(f"{name}: float16 moves outputs by at most {moved:.0f} level(s): stored as "
          f"{'float16' if moved <= 1 else 'float32'}, {target.stat().st_size / 1e6:.2f} MB "
          f"(float32 {args.model.stat().st_size / 1e6:.2f} MB) -> {target}")


if __name__ == "__main__":
    main()
