"""Reading and writing images (Pillow) and generator checkpoints (HDF5, h5py).

Images are float32 arrays (3, H, W), RGB in [0, 255], the range VGG-16 expects. Any file Pillow
reads is accepted: EXIF orientation is applied, grayscale/palette/CMYK are converted to RGB, and
transparent pixels are composited onto white.

A generator checkpoint is one HDF5 file:

    /                 attributes: format ("microst-generator/1"), config (JSON: the architecture,
                      enough to rebuild the net), style (the style image's name), iteration,
                      training (JSON: the training options), microst_version
    /model/NAME       one dataset per parameter and buffer (state_dict keys, e.g. "conv1.conv.weight")
    /optimizer        training checkpoints only: attributes type, hyper (JSON); /optimizer/I/KEY one
                      dataset per state array of parameter I, scalars (Adam's step) as attributes
    rng_state         training checkpoints only: attribute, JSON of microst.random.get_state()
    /history          training checkpoints only: (iterations, columns) float64, the columns named in
                      its "columns" attribute (iteration, total, then the loss terms of the run)

Images and checkpoints are written atomically (microst.files.atomic_write: a temporary file in the
same folder, renamed over PATH), so a crash never leaves a half-written one. load_model(path_or_name)
rebuilds the network from the file alone; a bundled style loads by its name (weights/styles/NAME.h5).
"""
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError
from .files import atomic_write
from .version import __version__

CHECKPOINT_FORMAT = "microst-generator/1"
STYLES_DIR = Path(__file__).resolve().parent.parent / "weights" / "styles"
# the image files microst reads (folders are searched for these) and writes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def open_image(path, draft=None):
    """A Pillow RGB image: EXIF orientation applied, alpha composited onto white. With `draft`
    (a size), a JPEG may be decoded at a reduced scale that is still at least that large (fast).
    Raises Pillow's errors (see load_image for the user-facing ones)."""
    with Image.open(path) as im:
        if draft is not None and im.format == "JPEG":
            im.draft("RGB", (draft, draft))
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        else:
            im = im.convert("RGB")
        im.load()
        return im


def resize_longest(im, size):
    """A Pillow image scaled (Lanczos) so that its longest side is `size`."""
    if size is None or max(im.size) == size:
        return im
    scale = size / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)


def load_image(path, size=None):
    """(3, H, W) float32 RGB in [0, 255]; with `size`, resized so that the longest side is `size`."""
    try:
        im = resize_longest(open_image(path), size)
        array = np.asarray(im, dtype=np.float32)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot read this image ({e.__class__.__name__}: {e}); "
                        f"give a JPEG, PNG or WebP file") from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def check_image_path(path):
    """A UserError unless `path` ends with one of IMAGE_SUFFIXES (check outputs before any work)."""
    if not str(path).lower().endswith(IMAGE_SUFFIXES):
        raise UserError(f"{path}: unknown image format {Path(path).suffix!r}; end the name with one of "
                        f"{', '.join(IMAGE_SUFFIXES)}")


def save_image(path, image, quality=95):
    """Write a (3, H, W) RGB array in [0, 255] (clipped), atomically; the format follows the file's
    extension, one of IMAGE_SUFFIXES (JPEG and WebP at `quality`)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image: expected a (3, H, W) array, got shape {image.shape}")
    check_image_path(path)
    save_pillow(path, Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)), quality)


def save_pillow(path, im, quality=95):
    """Write a Pillow image atomically, in the format its file's extension names."""
    fmt = Image.registered_extensions()[Path(path).suffix.lower()]
    extra = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_write(path) as tmp:
        im.save(tmp, format=fmt, **extra)


def find_images(folder):
    """Every image file under `folder` (recursively), sorted."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


# -- generator checkpoints ---------------------------------------------------------------------
def save_checkpoint(path, model, style=None, iteration=0, training=None, optimizer=None, rng_state=None,
                    history=None, history_columns=None, dtype=None):
    """Write `model` (a microst.models generator, with .config) to `path` (HDF5), atomically.

    style: the style image's name; iteration: training iterations done; training: the training
    options (a JSON-serializable dict); optimizer, rng_state, history, history_columns: the extra
    state of a training checkpoint (an Optimizer, microst.random.get_state(), a list of rows and the
    names of their columns). dtype: store the weights as float16 to halve the file (they load back
    as float32); default: as they are.
    """
    import h5py
    path = Path(path)
    with atomic_write(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["config"] = json.dumps(model.config)
        f.attrs["style"] = style or ""
        f.attrs["iteration"] = int(iteration)
        f.attrs["training"] = json.dumps(training or {})
        f.attrs["microst_version"] = __version__
        group = f.create_group("model", track_order=True)
        for name, value in model.state_dict().items():
            group.create_dataset(name, data=value if dtype is None else value.astype(dtype), track_times=False)
        if optimizer is not None:
            state = optimizer.state_dict()
            og = f.create_group("optimizer", track_order=True)
            og.attrs["type"] = type(optimizer).__name__
            og.attrs["hyper"] = json.dumps(state["hyper"])
            og.attrs["count"] = len(state["state"])
            for i, entry in enumerate(state["state"]):
                pg = og.create_group(str(i), track_order=True)
                for key, value in entry.items():
                    if isinstance(value, np.ndarray) and value.ndim:
                        pg.create_dataset(key, data=value, track_times=False)
                    else:
                        pg.attrs[key] = value.item() if isinstance(value, np.generic) else value
        if rng_state is not None:
            f.attrs["rng_state"] = json.dumps(rng_state)
        if history is not None:
            rows = np.asarray(history, np.float64).reshape(-1, len(history_columns))
            f.create_dataset("history", data=rows, track_times=False)
            f["history"].attrs["columns"] = json.dumps(list(history_columns))
    return path


class Checkpoint:
    """What load_checkpoint read: config, state (name -> float32 array), style, iteration,
    training (dict), optimizer (an Optimizer.state_dict() or None), rng_state (or None),
    history (list of rows, possibly empty), history_columns (their names), version, path."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _checkpoint_error(path, what):
    return UserError(f"{path}: {what}; give a generator checkpoint written by python -m microst.train "
                     f"(or a bundled style name)")


def load_checkpoint(path):
    """Read a generator checkpoint (see the module docstring); a UserError (one line) when the file
    is missing, not HDF5, truncated, or not a microst generator checkpoint."""
    import h5py
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; give the path of a .h5 checkpoint (or a bundled style name)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a checkpoint file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _checkpoint_error(path, f"not a readable HDF5 file ({str(e).splitlines()[0]})") from None
    try:
        with f:
            if f.attrs.get("format") != CHECKPOINT_FORMAT or "model" not in f:
                raise _checkpoint_error(path, f"not a microst generator checkpoint (format attribute "
                                              f"{f.attrs.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
            config = json.loads(f.attrs["config"])
            state = {name: np.asarray(d[()], dtype=np.float32) for name, d in f["model"].items()}
            optimizer = None
            if "optimizer" in f:
                og = f["optimizer"]
                entries = []
                for i in range(int(og.attrs["count"])):
                    pg = og[str(i)]
                    entry = {k: np.asarray(d[()]) for k, d in pg.items()}
                    entry.update({k: (v.item() if isinstance(v, np.generic) else v) for k, v in pg.attrs.items()})
                    entries.append(entry)
                optimizer = {"type": og.attrs["type"], "hyper": json.loads(og.attrs["hyper"]), "state": entries}
            rng_state = json.loads(f.attrs["rng_state"]) if "rng_state" in f.attrs else None
            history = f["history"][()].tolist() if "history" in f else []
            columns = tuple(json.loads(f["history"].attrs["columns"])) if "history" in f else ()
            return Checkpoint(path=path, config=config, state=state, style=str(f.attrs.get("style", "")),
                              iteration=int(f.attrs.get("iteration", 0)),
                              training=json.loads(f.attrs.get("training", "{}")), optimizer=optimizer,
                              rng_state=rng_state, history=history, history_columns=columns,
                              version=str(f.attrs.get("microst_version", "")))
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:  # truncated data, bad JSON, ...
        raise _checkpoint_error(path, f"damaged ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None


def bundled_styles():
    """Names of the styles in weights/styles/ (NAME.h5)."""
    return sorted(p.stem for p in STYLES_DIR.glob("*.h5")) if STYLES_DIR.is_dir() else []


def resolve_model_path(path_or_name):
    """A checkpoint path, or a bundled style's file when the argument names one (no suffix, no slash)."""
    text = str(path_or_name)
    candidate = Path(text)
    if candidate.exists() or text.endswith(".h5") or os.sep in text or "/" in text:
        return candidate
    bundled = STYLES_DIR / f"{text}.h5"
    if bundled.exists():
        return bundled
    names = bundled_styles()
    raise UserError(f"{text}: no such checkpoint file and no bundled style of that name; bundled styles: "
                    f"{', '.join(names) if names else '(none)'}; or give the path of a .h5 checkpoint")


def load_model(path_or_name, device="cpu"):
    """The generator stored in a checkpoint (a path, or a bundled style's name), in eval mode, on
    `device`. model.checkpoint holds what else the file says (style, iteration, training options)."""
    from .models import build_generator
    ckpt = load_checkpoint(resolve_model_path(path_or_name))
    try:
        model = build_generator(ckpt.config)
        model.load_state_dict(ckpt.state)
    except (TypeError, ValueError, KeyError) as e:
        raise _checkpoint_error(ckpt.path, f"does not match its architecture config "
                                           f"({str(e).splitlines()[0]})") from None
    model.checkpoint = ckpt
    return model.eval().to(device)
