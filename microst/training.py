"""Training a generator, in three parts: setup, one step, and the loop (the command line is microst.train).

    trainer = Trainer(opts, checkpoint, vgg, log)   # setup: data, generator, loss, optimizer, resumed state
    terms = trainer.step(trainer.batch())           # one iteration: {term: 0-d array on the device}
    trainer.record(terms); trainer.read()           # count it; read what is pending (one transfer)
    interrupted = loop(trainer)                     # the loop: history, previews, checkpoints, Ctrl-C
    result = train(opts, checkpoint, vgg, log)      # all three, then the final writes (Trainer.finish)

They are apart so that what comes later has a place: a new loss term is the loss's business (its
name reaches the history, the plots and the progress bar through PerceptualLoss.terms), a new kind
of batch is batch()'s, and another loop (several devices) calls step() its own way.

Resume is bit-exact: every random draw comes from microst.random, in the same order in a run and
in its resumption (the main stream: seed, generator initialization, the generator's noise; the data
stream: each batch's crops, planned one batch ahead while the device computes), and a checkpoint
holds the generator, Adam's state and both streams' states (the data stream's before the batch
planned ahead).

The host does not wait for the device after each step: the loss terms stay on the device and are
read every `read_every` iterations (default 50), before every preview and checkpoint, at the end and
on Ctrl-C. A non-finite loss sets a flag on the device that stops Adam's update at once (so that
no weights after the bad step exist) and stops the run at the next read, with a one-line error; a
checkpoint is never written after a bad step, so the last one on disk holds good weights.
"""
import signal
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import device as devices
from . import history as histories
from . import random as mrandom
from .autograd import no_grad, tensor
from .cli import apply_precision, resolve_device
from .data import Batches, ImageFolder, load_preview_folder
from .errors import UserError
from .files import FolderLock, check_writable, folder_fingerprint, sha256_file
from .checkpoint import save_checkpoint
from .io import load_image, save_image
from .losses import PerceptualLoss
from .models import VGG16Features, build_generator
from .ops import adam as fused
from .optim import Adam

READ_EVERY = 50  # iterations between reads of the loss terms from the device


def model_config(opts):
    """The generator's architecture config from the training options."""
    if opts["model"] == "johnson":
        return {"model": "johnson", "norm": opts["norm"], "upsample": opts["upsample"], "width": opts["width"]}
    return {"model": "texture", "scales": opts["scales"], "noise_channels": opts["noise_channels"],
            "norm": opts["norm"], "content": not opts["no_content"]}


class Trainer:
    """One training run: what setup built, one step, and what a run writes.

    opts: as microst.train.resolve_options returns them; checkpoint: the training checkpoint to
    continue (or None); vgg: a VGG16Features to use instead of loading opts["vgg"] (tests pass a tiny
    one); log: where messages go. After setup, `done` iterations are done and `history` holds their
    rows (columns `columns`)."""

    def __init__(self, opts, checkpoint=None, vgg=None, log=print):
        self.opts, self.log = opts, log
        self.device = device = resolve_device(opts["device"])
        apply_precision(opts.get("precision"), device)
        content_layers, style_layers = tuple(opts["content_layers"]), tuple(opts["style_layers"])
        self.style_name = Path(opts["style"]).stem
        style_image = load_image(opts["style"], opts["style_size"] or opts["image_size"])
        self.out = Path(opts["out"])
        self.size, self.batch_size = opts["image_size"], opts["batch_size"]

        mrandom.manual_seed(opts["seed"])  # first: the generator's initialization draws from it
        self.config = model_config(opts)
        try:
            self.model = build_generator(self.config)
        except ValueError as e:
            raise UserError(f"generator options: {e}") from None
        self.data = self.batches = None
        if not opts["no_content"]:
            hold_out = int(opts["preview_images"]) if str(opts["preview_images"]).isdigit() else 0
            self.data = ImageFolder(opts["data"], self.size, hold_out=hold_out)
            self.batches = Batches(self.data, self.batch_size)
        self.previews = _previews(opts, self.data, self.size)

        if vgg is None:
            vgg = VGG16Features(path=opts["vgg"], layers=tuple(dict.fromkeys(content_layers + style_layers)))
        self.loss = PerceptualLoss(vgg.to(device), tensor(style_image[None], device=device),
                                   content_weight=opts["content_weight"], style_weight=opts["style_weight"],
                                   tv_weight=opts["tv_weight"], content_layers=content_layers,
                                   style_layers=style_layers)
        self.columns = histories.columns(self.loss.terms)
        self.model.to(device).train()
        self.optimizer = Adam(self.model.parameters(), lr=opts["lr"])
        self.done, self.history, self.pending, self.saved_at = 0, [], [], None
        self.read_every = opts.get("read_every") or READ_EVERY
        self.flag = fused.nonfinite_flag(device) if device != "cpu" else None  # set by a non-finite loss
        if checkpoint is not None:
            self.model.load_state_dict(checkpoint.state)
            self.optimizer.load_state_dict({"hyper": checkpoint.optimizer["hyper"],
                                            "state": checkpoint.optimizer["state"]})
            mrandom.set_state(checkpoint.rng_state)
            self.done = self.saved_at = checkpoint.iteration
            self.history = histories.reorder(checkpoint.history, checkpoint.history_columns or self.columns,
                                             self.columns)
        self.training_options = {k: v for k, v in opts.items() if k not in ("resume", "allow_changed_data")}
        self.inputs = self._fingerprints()
        if checkpoint is not None and checkpoint.inputs and not opts.get("allow_changed_data"):
            self._check_inputs(checkpoint.inputs)
        params = sum(p.size for p in self.model.parameters())
        check_writable(self.out, need=2 * (3 * 4 * params + 8 * 8 * opts["iterations"]) + (1 << 20),
                       names=[f"{self.style_name}.h5", "checkpoint.h5", "history.json", "loss.png",
                              f"preview_{opts['iterations']:06d}.png"], what="--out")
        self.lock = FolderLock(self.out)  # before iteration 1: one run per folder

    def _fingerprints(self):
        """The hashes of what the run learns from: the style image's bytes, the photos' list."""
        data = None
        if self.data is not None:
            data = folder_fingerprint(self.data.files + self.data.held_out, self.opts["data"])
        return {"style_sha256": sha256_file(self.opts["style"]), "data": data}

    def _check_inputs(self, recorded):
        if recorded.get("style_sha256") not in (None, self.inputs["style_sha256"]):
            raise UserError(f"{self.opts['style']}: the style image changed since this run began; resume with the "
                            f"image it began with, or give --allow-changed-data to go on with this one")
        if recorded.get("data") not in (None, self.inputs["data"]):
            raise UserError(f"{self.opts['data']}: the photos changed since this run began (files added, removed or "
                            f"edited); resume with the same photos, or give --allow-changed-data")

    # -- one iteration -------------------------------------------------------------------------------
    def batch(self):
        """The next batch of content crops (a Tensor on the device), or None for a texture synthesizer."""
        return None if self.data is None else tensor(self.batches.next(), device=self.device)

    def step(self, content):
        """One optimizer step on one batch (None: noise alone); returns the loss terms, 0-d arrays on
        the device (not waited for). On cpu a non-finite loss stops here, before the update."""
        if content is None:
            output = self.model(None, size=(self.size, self.size), batch=self.batch_size)
        else:
            output = self.model(content)
        terms = self.loss(output, content)
        total = terms["total"].data
        if self.flag is None:
            if not np.isfinite(total):
                self._stop(self.done + 1, _not_finite("total", float(total)))
        else:
            fused.check_finite(self.device, total, self.flag)
        self.optimizer.zero_grad()
        terms["total"].backward()
        self.optimizer.step(skip=self.flag)
        return {name: terms[name].data for name in self.columns[1:]}

    def record(self, terms):
        """Count the iteration just stepped; its history row comes with the next read()."""
        self.done += 1
        self.pending.append((self.done, terms))

    def read(self):
        """Read the pending iterations' loss terms from the device (one transfer) into the history;
        {term: float} of the last one (None when nothing was pending). A non-finite row stops the run."""
        if not self.pending:
            return None
        names = self.columns[1:]
        xp = devices.array_module(self.device)
        values = devices.to_numpy(xp.stack([xp.stack([xp.reshape(t[name], ()) for name in names])
                                            for _, t in self.pending])).astype(np.float64)
        pending, self.pending = self.pending, []
        for (iteration, _), row in zip(pending, values):
            bad = [(name, v) for name, v in zip(names, row) if not np.isfinite(v)]
            if bad:
                self._stop(iteration, _not_finite(*bad[0]))
            self.history.append([iteration] + row.tolist())
        if self.flag is not None and int(devices.to_numpy(self.flag)[0]):  # a total seen only on the device
            self._stop(pending[-1][0], _not_finite("total", float("nan")))
        # a finite loss can still be followed by an update that is not (a NaN or huge --lr): nothing that
        # read() precedes (checkpoint, preview, model) may be written from such weights
        params = [p.data for p in self.model.parameters()]
        if not devices.to_numpy(xp.stack([xp.isfinite(p).all() for p in params]).all(keepdims=True))[0]:
            self._stop(pending[-1][0], "the update made the weights non-finite")
        return dict(zip(names, values[-1].tolist()))

    def _stop(self, iteration, what):
        kept = (f"the last checkpoint ({self.out / 'checkpoint.h5'}, iteration {self.saved_at}) holds the weights "
                f"from before it") if self.saved_at else "no checkpoint was written"
        raise UserError(f"iteration {iteration}: {what}; training stopped and {kept}; lower --lr or check the style "
                        f"image and the data")

    def close(self):
        if self.batches is not None:
            self.batches.close()
        self.lock.release()

    # -- what a run writes ---------------------------------------------------------------------------
    def save(self):
        """checkpoint.h5: the training checkpoint (generator, optimizer and RNG state, history), after
        reading what is pending (a bad step stops the run before anything is written)."""
        self.read()
        rng_state = mrandom.get_state()
        if self.batches is not None:  # the data stream as it was before the batch planned ahead
            rng_state["streams"]["data"] = self.batches.resume_state()
        path = save_checkpoint(self.out / "checkpoint.h5", self.model, style=self.style_name, iteration=self.done,
                               training=self.training_options, optimizer=self.optimizer, rng_state=rng_state,
                               history=self.history, history_columns=self.columns, inputs=self.inputs)
        self.saved_at = self.done
        return path

    def save_model(self):
        """STYLE.h5: the trained generator alone."""
        return save_checkpoint(self.out / f"{self.style_name}.h5", self.model, style=self.style_name,
                               iteration=self.done, training=self.training_options)

    def write_history(self):
        self.read()
        histories.write(self.out, self.history, self.columns)

    def write_preview(self):
        """preview_NNNNNN.png: the preview photos (top row) and the generator's output (bottom row); for a
        texture synthesizer, four samples of different noise."""
        self.read()
        model, size = self.model, self.size
        model.eval()
        try:
            with no_grad():
                if self.previews is None:
                    rows = [np.concatenate([model(None, seed=s, size=(size, size)).numpy()[0] for s in range(4)],
                                           axis=2)]
                else:
                    x = tensor(self.previews, device=self.device)
                    y = model(x, seed=0) if model.kind == "texture" else model(x)
                    rows = [np.concatenate(list(self.previews), axis=2), np.concatenate(list(y.numpy()), axis=2)]
        finally:
            model.train()
        path = self.out / f"preview_{self.done:06d}.png"
        save_image(path, np.concatenate(rows, axis=1))
        return path


    def announce(self):
        """Log what the run trains on, where, and for how long."""
        opts, data = self.opts, self.data
        if data is not None:
            self.log(f"data: {len(data)} training images under {opts['data']}, {len(data.held_out)} held out for "
                     f"previews" + (f", {len(data.skipped)} unreadable files skipped" if data.skipped else ""))
            if data.previews_from_training:
                self.log(f"previews: {len(data)} photos are too few to hold {data.requested_previews} out (at most 10% "
                         f"are), so the previews show training photos")
        self.log(f"training {self.config['model']} on {self.device}: {opts['iterations']} iterations"
                 + (f" (resuming at {self.done})" if self.done else "")
                 + f", batch {self.batch_size}, {self.size}x{self.size}, output in {self.out}/")

    def finish(self, interrupted):
        """Write the checkpoint and history; unless interrupted, the last preview and STYLE.h5 too. Returns
        train()'s result."""
        ckpt_path = self.save()
        self.write_history()
        model_path = None
        if interrupted:
            self.log(f"interrupted at iteration {self.done}; checkpoint written to {ckpt_path}; continue with "
                     f"python -m microst.train --resume {ckpt_path}")
        else:
            self.write_preview()
            model_path = self.save_model()
            first, last = _mean_total(self.history[:10]), _mean_total(self.history[-10:])
            self.log(f"done: {self.done} iterations; total loss {first:.4g} (first 10) -> {last:.4g} (last 10); "
                     f"model in {model_path}")
        skipped = [] if self.data is None else list(self.data.skipped)
        if skipped:
            self.log(f"{len(skipped)} unreadable files were skipped, e.g. {skipped[0]}")
        return {"history": self.history, "model": self.model, "checkpoint": ckpt_path, "model_path": model_path,
                "interrupted": interrupted, "skipped": skipped}


def _not_finite(name, value):
    return f"the {name} loss is {value} (not finite)"


# -- the loop ------------------------------------------------------------------------------------------
def train(opts, checkpoint=None, vgg=None, log=print):
    """Run (or continue) a training run (see Trainer for the arguments). Returns {"history", "model",
    "checkpoint", "model_path", "interrupted", "skipped"}."""
    trainer = Trainer(opts, checkpoint, vgg, log)
    try:
        trainer.announce()
        return trainer.finish(interrupted=loop(trainer))
    finally:
        trainer.close()


def loop(trainer):
    """Step until the run's iterations are done or a signal (Ctrl-C, SIGTERM, SIGHUP); write previews
    and checkpoints on the way. The signal's number when interrupted, else 0."""
    opts, iterations = trainer.opts, trainer.opts["iterations"]
    bar = tqdm(total=iterations, initial=trainer.done, disable=opts["no_progress"], dynamic_ncols=True,
               desc=trainer.style_name, unit="it", file=sys.stderr)
    with _Interrupt() as stop:
        while trainer.done < iterations and not stop.requested:
            trainer.record(trainer.step(trainer.batch()))
            bar.update(1)
            done = trainer.done
            if done % trainer.read_every == 0:
                bar.set_postfix({k: f"{v:.4g}" for k, v in trainer.read().items()}, refresh=False)
            if opts["preview_every"] and done % opts["preview_every"] == 0 and done < iterations:
                trainer.write_preview()
                trainer.write_history()
            if done % opts["checkpoint_every"] == 0 and done < iterations:
                trainer.save()
    bar.close()
    return stop.requested if trainer.done < iterations else 0


def _mean_total(rows):
    return float(np.mean([r[1] for r in rows])) if rows else float("nan")


class _Interrupt:
    """Ctrl-C, SIGTERM or SIGHUP set `requested` (the signal's number) for the loop to check after each
    iteration; a second one stops at once."""
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.requested = 0
        self.previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:  # not the main thread
                break
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signum
        print(f"\ninterrupted ({signal.Signals(signum).name}): finishing this iteration and writing a checkpoint "
              f"(again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def _previews(opts, data, size):
    """The preview content images (n, 3, size, size), or None for a texture synthesizer."""
    if opts["no_content"]:
        return None
    spec = str(opts["preview_images"])
    if spec.isdigit():
        return data.previews(size) if int(spec) > 0 else data.previews(size)[:1]
    if not Path(spec).is_dir():
        raise UserError(f"--preview-images {spec}: neither a number nor a folder; give e.g. 4 or a folder of images")
    images = load_preview_folder(spec, size)
    if not len(images):
        raise UserError(f"--preview-images {spec}: no readable images in this folder")
    return images
