"""Generator checkpoints (HDF5, h5py): written atomically, verified when read.

A checkpoint is one HDF5 file:

    /                 attributes: format ("microst-generator/2"), config (JSON: the architecture,
                      enough to rebuild the net), style (the style image's name), iteration,
                      training (JSON: the training options), inputs (JSON: hashes of the style image
                      and the data folder, training checkpoints), microst_version, sha256
    /model/NAME       one dataset per parameter and buffer (state_dict keys, e.g. "conv1.conv.weight")
    /optimizer        training checkpoints only: attributes type, hyper (JSON); /optimizer/I/KEY one
                      dataset per state array of parameter I, scalars (Adam's step) as attributes
    rng_state         training checkpoints only: attribute, JSON of microst.random.get_state()
    /history          training checkpoints only: (iterations, columns) float64, the columns named in
                      its "columns" attribute (iteration, total, then the loss terms of the run)

Integrity (format 2): the `sha256` attribute is the hash of everything else in the file (every
attribute, and every dataset's name, type, shape and bytes, in name order). Reading recomputes it;
a mismatch, a damaged file or weights that are not finite are a one-line UserError naming the
file. Format 1 files (no hash) still load.

Files are written to a temporary name and renamed (microst.files.atomic_write), so a crash never
leaves a half-written checkpoint. load_model(path_or_name) rebuilds the network from the file
alone; a bundled style loads by its name (weights/styles/NAME.h5).
"""
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .files import atomic_write
from .resources import weights_dir
from .version import __version__

CHECKPOINT_FORMAT = "microst-generator/2"
READABLE_FORMATS = ("microst-generator/1", CHECKPOINT_FORMAT)
STYLES_DIR = weights_dir() / "styles"


def save_checkpoint(path, model, style=None, iteration=0, training=None, optimizer=None, rng_state=None,
                    history=None, history_columns=None, dtype=None, inputs=None):
    """Write `model` (a microst.models generator, with .config) to `path` (HDF5), atomically.

    style: the style image's name; iteration: training iterations done; training: the training
    options (a JSON-serializable dict); optimizer, rng_state, history, history_columns, inputs: the
    extra state of a training checkpoint (an Optimizer, microst.random.get_state(), a list of rows
    and the names of their columns, the hashes of its inputs). dtype: store the weights as float16 to
    halve the file (they load back as float32); default: as they are.
    """
    import h5py
    path = Path(path)
    with atomic_write(path) as tmp:
        encoded = io.BytesIO()  # HDF5 built in memory: it reports a short write as a RuntimeError
        with h5py.File(encoded, "w", track_order=True) as f:
            attrs = {"format": CHECKPOINT_FORMAT, "config": json.dumps(model.config), "style": style or "",
                     "iteration": int(iteration), "training": json.dumps(training or {}),
                     "microst_version": __version__}
            if inputs is not None:
                attrs["inputs"] = json.dumps(inputs)
            if rng_state is not None:
                attrs["rng_state"] = json.dumps(rng_state)
            f.attrs.update(attrs)
            group = f.create_group("model", track_order=True)
            for name, value in model.state_dict().items():
                _dataset(group, name, value if dtype is None else value.astype(dtype))
            if optimizer is not None:
                _save_optimizer(f, optimizer)
            if history is not None:
                _dataset(f, "history", np.asarray(history, np.float64).reshape(-1, len(history_columns)))
                f["history"].attrs["columns"] = json.dumps(list(history_columns))
            f.attrs["sha256"] = digest(f)
        tmp.write_bytes(encoded.getbuffer())
    return path


def _dataset(group, name, value):
    group.create_dataset(name, data=np.asarray(value), track_times=False)


def _save_optimizer(f, optimizer):
    state = optimizer.state_dict()
    og = f.create_group("optimizer", track_order=True)
    og.attrs.update({"type": type(optimizer).__name__, "hyper": json.dumps(state["hyper"]),
                     "count": len(state["state"])})
    for i, entry in enumerate(state["state"]):
        pg = og.create_group(str(i), track_order=True)
        for key, value in entry.items():
            if isinstance(value, np.ndarray) and value.ndim:
                _dataset(pg, key, value)
            else:
                pg.attrs[key] = value.item() if isinstance(value, np.generic) else value


def digest(f):
    """The sha256 of an open checkpoint's contents: every attribute (but sha256 itself) and every
    dataset, by name, in sorted order."""
    h = hashlib.sha256()

    def add(name, obj):
        h.update(name.encode() + b"\0")
        for key in sorted(k for k in obj.attrs if k != "sha256"):
            value = obj.attrs[key]
            h.update(key.encode() + b"=" + (value if isinstance(value, bytes) else repr(np.asarray(value).tolist())
                                            .encode()) + b"\0")
        if hasattr(obj, "dtype"):
            data = np.ascontiguousarray(obj[()])
            h.update(f"{data.dtype.str}{data.shape}".encode() + data.tobytes())

    items = []
    f.visititems(lambda name, obj: items.append((name, obj)))
    add("/", f)
    for name, obj in sorted(items, key=lambda item: item[0]):
        add(name, obj)
    return h.hexdigest()


class Checkpoint:
    """What load_checkpoint read: config, state (name -> float32 array), style, iteration,
    training (dict), optimizer (an Optimizer.state_dict() or None), rng_state (or None),
    history (list of rows, possibly empty), history_columns (their names), inputs (dict or None),
    version, format, path."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _checkpoint_error(path, what):
    return UserError(f"{path}: {what}; give a generator checkpoint written by python -m microst.train "
                     f"(or a bundled style name)")


def load_checkpoint(path):
    """Read a generator checkpoint (see the module docstring); a UserError (one line) when the file
    is missing, not HDF5, damaged or altered, holds non-finite weights, or is no microst checkpoint."""
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
            ckpt = _read(path, f)
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:  # checksums, truncation, bad JSON
        raise _checkpoint_error(path, f"damaged ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    for name, value in ckpt.state.items():
        if not np.isfinite(value).all():
            raise UserError(f"{path}: holds weights that are not finite ({name}); it cannot be used; resume from an "
                            f"earlier checkpoint or train again")
    return ckpt


def _read(path, f):
    form = f.attrs.get("format")
    if form not in READABLE_FORMATS or "model" not in f:
        raise _checkpoint_error(path, f"not a microst generator checkpoint (format attribute {form!r}, expected "
                                      f"{CHECKPOINT_FORMAT!r})")
    if form != "microst-generator/1":
        if "sha256" not in f.attrs or f.attrs["sha256"] != digest(f):
            raise UserError(f"{path}: damaged: its contents do not match their sha256 (changed after it was "
                            f"written); use another copy, or resume from an earlier checkpoint")
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
    history = f["history"][()].tolist() if "history" in f else []
    columns = tuple(json.loads(f["history"].attrs["columns"])) if "history" in f else ()
    return Checkpoint(path=path, config=json.loads(f.attrs["config"]), state=state,
                      style=str(f.attrs.get("style", "")), iteration=int(f.attrs.get("iteration", 0)),
                      training=json.loads(f.attrs.get("training", "{}")), optimizer=optimizer,
                      rng_state=json.loads(f.attrs["rng_state"]) if "rng_state" in f.attrs else None,
                      history=history, history_columns=columns,
                      inputs=json.loads(f.attrs["inputs"]) if "inputs" in f.attrs else None,
                      version=str(f.attrs.get("microst_version", "")), format=str(form))


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
