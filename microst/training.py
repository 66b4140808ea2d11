"""Training a generator, in three parts: setup, one step, and the loop (the command line is microst.train).

    trainer = Trainer(opts, checkpoint, vgg, log)   # setup: data, generator, loss, optimizer, resumed state
    terms = trainer.step(trainer.batch())           # one iteration: {"total": float, term: float, ...}
    interrupted = loop(trainer)                     # the loop: history, previews, checkpoints, Ctrl-C
    result = train(opts, checkpoint, vgg, log)      # all three, then the final writes (Trainer.finish)

They are apart so that what comes later has a place: a new loss term is the loss's business (its
name reaches the history, the plots and the progress bar through PerceptualLoss.terms), a new kind
of batch is batch()'s, and another loop (several devices) calls step() its own way.

Resume is bit-exact: every random draw comes from microst.random, in the same order in a run and
in its resumption (seed, generator initialization, then per iteration the batch's crops and the
generator's noise), and a checkpoint holds the generator, Adam's state and the RNG state.
"""
import signal
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import history as histories
from . import random as mrandom
from .autograd import no_grad, tensor
from .cli import resolve_device
from .data import ImageFolder, load_preview_folder
from .errors import UserError
from .io import load_image, save_checkpoint, save_image
from .losses import PerceptualLoss
from .models import VGG16Features, build_generator
from .optim import Adam


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
        self.data = None
        if not opts["no_content"]:
            hold_out = int(opts["preview_images"]) if str(opts["preview_images"]).isdigit() else 0
            self.data = ImageFolder(opts["data"], self.size, hold_out=hold_out)
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
        self.done, self.history = 0, []
        if checkpoint is not None:
            self.model.load_state_dict(checkpoint.state)
            self.optimizer.load_state_dict({"hyper": checkpoint.optimizer["hyper"],
                                            "state": checkpoint.optimizer["state"]})
            mrandom.set_state(checkpoint.rng_state)
            self.done = checkpoint.iteration
            self.history = histories.reorder(checkpoint.history, checkpoint.history_columns or self.columns,
                                             self.columns)
        self.training_options = {k: v for k, v in opts.items() if k != "resume"}

    # -- one iteration -------------------------------------------------------------------------------
    def batch(self):
        """The next batch of content crops (a Tensor on the device), or None for a texture synthesizer."""
        return None if self.data is None else tensor(self.data.sample(self.batch_size), device=self.device)

    def step(self, content):
        """One optimizer step on one batch (None: noise alone); returns the loss terms as floats."""
        if content is None:
            output = self.model(None, size=(self.size, self.size), batch=self.batch_size)
        else:
            output = self.model(content)
        terms = self.loss(output, content)
        self.optimizer.zero_grad()
        terms["total"].backward()
        self.optimizer.step()
        return {name: float(terms[name].item()) for name in self.columns[1:]}

    def record(self, terms):
        """Count the iteration just stepped and add its history row."""
        self.done += 1
        self.history.append([self.done] + [terms[name] for name in self.columns[1:]])

    # -- what a run writes ---------------------------------------------------------------------------
    def save(self):
        """checkpoint.h5: the training checkpoint (generator, optimizer and RNG state, history)."""
        return save_checkpoint(self.out / "checkpoint.h5", self.model, style=self.style_name, iteration=self.done,
                               training=self.training_options, optimizer=self.optimizer,
                               rng_state=mrandom.get_state(), history=self.history, history_columns=self.columns)

    def save_model(self):
        """STYLE.h5: the trained generator alone."""
        return save_checkpoint(self.out / f"{self.style_name}.h5", self.model, style=self.style_name,
                               iteration=self.done, training=self.training_options)

    def write_history(self):
        histories.write(self.out, self.history, self.columns)

    def write_preview(self):
        """preview_NNNNNN.png: the preview photos (top row) and the generator's output (bottom row); for a
        texture synthesizer, four samples of different noise."""
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


# -- the loop ------------------------------------------------------------------------------------------
def train(opts, checkpoint=None, vgg=None, log=print):
    """Run (or continue) a training run (see Trainer for the arguments). Returns {"history", "model",
    "checkpoint", "model_path", "interrupted", "skipped"}."""
    trainer = Trainer(opts, checkpoint, vgg, log)
    trainer.announce()
    return trainer.finish(interrupted=loop(trainer))


def loop(trainer):
    """Step until the run's iterations are done or Ctrl-C; write previews and checkpoints on the way.
    True when interrupted."""
    opts, iterations = trainer.opts, trainer.opts["iterations"]
    bar = tqdm(total=iterations, initial=trainer.done, disable=opts["no_progress"], dynamic_ncols=True,
               desc=trainer.style_name, unit="it", file=sys.stderr)
    with _Interrupt() as stop:
        while trainer.done < iterations and not stop.requested:
            terms = trainer.step(trainer.batch())
            trainer.record(terms)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()}, refresh=False)
            done = trainer.done
            if opts["preview_every"] and done % opts["preview_every"] == 0 and done < iterations:
                trainer.write_preview()
                trainer.write_history()
            if done % opts["checkpoint_every"] == 0 and done < iterations:
                trainer.save()
    bar.close()
    return stop.requested and trainer.done < iterations


def _mean_total(rows):
    return float(np.mean([r[1] for r in rows])) if rows else float("nan")


class _Interrupt:
    """Ctrl-C sets a flag that the loop checks after each iteration; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: finishing this iteration and writing a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


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
