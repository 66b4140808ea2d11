"""One training step (generator forward, VGG-16 perceptual loss, backward, Adam) on a microst device,
against the same step in PyTorch (bench/torch_twin.py: the generator, VGG-16 and the loss, with
microst's weights and semantics) when torch is importable.

    python bench/bench_train.py [--device cpu] [--threads 2] [--configs 128x2 256x4] [--repeats 3]
                                [--width 0.5] [--upsample nearest] [--profile 256x4]

A config is SIZExBATCH: batch random content crops of SIZE², the style image weights/styles/
great_wave.jpg at 256 (the bundled style's options: width 0.5, nearest upsampling, instance norm,
Johnson's layers and loss weights, style weight 2.5, Adam 1e-3). Before timing, the loss terms and
every parameter's gradient of one step are compared (max |microst - torch| / max |torch|). Medians
of --repeats steps after a warm-up, the engines taking turns in every repeat; both keep stepping
their own copy of the same initial weights. --profile SIZExBATCH prints microst's time per op
(forward and backward) of one step. Both libraries get the same number of threads.

Results: bench/RESULTS.md.
"""
import argparse
import sys
from pathlib import Path

from threads import blas_kernels, set_threads
from timing import interleaved_times, profile_once

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STYLE = ROOT / "weights" / "styles" / "great_wave.jpg"


def config(text):
    size, _, batch = text.partition("x")
    return int(size), int(batch or 1)


class MicrostStep:
    """Trainer.step's work without the Trainer: model, loss and Adam of microst."""

    def __init__(self, microst, model, loss, device):
        self.microst, self.model, self.loss, self.device = microst, model, loss, device
        self.optimizer = microst.optim.Adam(model.parameters(), lr=1e-3)

    def __call__(self, content, step=True):
        content = self.microst.tensor(content, device=self.device)
        terms = self.loss(self.model(content), content)
        self.optimizer.zero_grad()
        terms["total"].backward()
        if step:
            self.optimizer.step()
        return terms


class TorchStep:
    def __init__(self, torch, twin, loss):
        self.torch, self.twin, self.loss = torch, twin, loss
        self.optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)

    def __call__(self, content, step=True):
        content = self.torch.from_numpy(content)
        terms = self.loss(self.twin(content), content)
        self.optimizer.zero_grad()
        terms["total"].backward()
        if step:
            self.optimizer.step()
        return terms


def compare(np, ours, theirs, content, params, twin_params):
    """Loss terms and gradients of one step (no update), printed as relative differences."""
    terms, twin_terms = ours(content, step=False), theirs(content, step=False)
    print("loss terms, relative |microst - torch|: " + ", ".join(
        f"{name} {abs(terms[name].item() - twin_terms[name].item()) / abs(twin_terms[name].item()):.1e}"
        for name in ("content", "style", "tv", "total")))
    # A conv bias followed by instance norm has a gradient that is 0 in exact arithmetic (the norm takes
    # the mean out): its rounding noise is measured against the largest gradient of the network.
    grads = [(name, p.grad, q.grad.numpy()) for (name, p), q in zip(params, twin_params)]
    largest = max(abs(g).max() for _, _, g in grads)
    worst = max((abs(a - g).max() / max(abs(g).max(), 1e-3 * largest), name) for name, a, g in grads)
    total = np.sqrt(sum(((a - g) ** 2).sum() for _, a, g in grads) / sum((g ** 2).sum() for _, _, g in grads))
    print(f"gradients of {len(params)} parameters: |microst - torch| / |torch| = {total:.1e} (all together); "
          f"worst parameter {worst[1]}: max |difference| / max |torch| = {worst[0]:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", type=config, nargs="+", default=[(128, 2), (256, 4)], metavar="SIZExBATCH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--upsample", default="nearest")
    parser.add_argument("--profile", type=config, metavar="SIZExBATCH", help="microst's per-op time of one step")
    args = parser.parse_args()
    torch = set_threads(args.threads)

    import numpy as np
    import microst
    from microst.io import load_image
    from microst.losses import PerceptualLoss
    from microst.models import TransformerNet, VGG16Features
    if torch is not None:
        from torch_twin import johnson_twin, perceptual_twin

    device = microst.device.resolve(args.device)
    microst.manual_seed(0)
    model = TransformerNet(upsample=args.upsample, width=args.width).train().to(device)
    style = load_image(STYLE, 256)[None]
    loss = PerceptualLoss(VGG16Features().to(device), microst.tensor(style, device=device), style_weight=2.5)
    print(f"TransformerNet {model.config}, {sum(p.size for p in model.parameters())} parameters; "
          f"VGG-16 to {loss.layers[-1]}; style {STYLE.name} at {style.shape[2]}x{style.shape[3]}")
    print(f"device {device}, {args.threads} threads, median of {args.repeats} steps after a warm-up")
    print(f"NumPy's BLAS: {blas_kernels()}")

    rng = np.random.default_rng(0)
    # a copy for torch before microst steps: both engines start from the same weights
    twin = johnson_twin(model).train() if torch is not None else None
    ours = MicrostStep(microst, model, loss, device)
    theirs = TorchStep(torch, twin, perceptual_twin(loss, style)) if twin is not None else None
    if theirs is not None:
        params = list(model.named_parameters())
        twin_params = dict(twin.named_parameters())
        compare(np, ours, theirs, (rng.random((2, 3, 64, 64)) * 255).astype(np.float32), params,
                [twin_params[name] for name, _ in params])
    else:
        print("torch is not installed: microst times only (pip install torch to compare)")

    if args.profile:
        size, batch = args.profile
        content = (rng.random((batch, 3, size, size)) * 255).astype(np.float32)
        profile_once(lambda: ours(content), f"one step at {size}x{size}, batch {batch}")

    print(f"{'size':>6s} {'batch':>5s} {'microst s':>10s}" + (f" {'torch s':>8s} {'microst/torch':>13s}" if theirs else ""))
    for size, batch in args.configs:
        content = (rng.random((batch, 3, size, size)) * 255).astype(np.float32)
        runs = {"microst": lambda: ours(content)}
        if theirs is not None:
            runs["torch"] = lambda: theirs(content)
        times = interleaved_times(runs, args.repeats)
        line = f"{size:>5d}² {batch:5d} {times['microst']:10.3f}"
        if theirs is not None:
            line += f" {times['torch']:8.3f} {times['microst'] / times['torch']:13.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
