"""Style transfer by optimization (Gatys, Ecker & Bethge 2016): the "offline" baseline.

    python -m microst.optimize --content photo.jpg --style painting.jpg -o out.png --size 512

The image itself is the variable: starting from the content image (or noise), L-BFGS (or Adam)
minimizes the perceptual loss of microst.losses (content + style + total variation on a frozen
VGG-16) with respect to the pixels. Hundreds of VGG forward and backward passes per image: this is
what the feed-forward generators of Johnson et al. and Ulyanov et al. replace by one pass.

The L-BFGS here is a small one (no SciPy): the two-loop recursion over the last `history` pairs
(s, y) gives the direction, a backtracking line search (Armijo condition, quadratic interpolation)
the step length; pairs with s·y <= 0 are skipped, so the inverse-Hessian estimate stays positive
definite. Pixels are free during the optimization and clipped to [0, 255] only when saved.

The loss weights default to microst.losses' (those of training); where the result shows
high-frequency noise, raise --tv-weight (e.g. 10).
"""
import math
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from . import cli
from . import device as devices
from . import losses
from .autograd import Tensor
from .errors import UserError, cli_main
from .io import check_image_path, load_image, save_image
from .models.vgg16 import VGG16Features
from .optim import Adam

MIN_SIDE = 16  # VGG-16 through relu4_3 pools three times


class LBFGS:
    """Minimize f over a flat vector with L-BFGS.

        opt = LBFGS(fun, x0)          # fun(x) -> (f: float, g: array like x); evaluates f(x0)
        for _ in range(100):
            if not opt.step(): break  # False once no step decreases f any more
        opt.x, opt.f

    The vectors stay on whatever array module fun works with (NumPy or CuPy) and in x0's dtype.
    """

    def __init__(self, fun, x0, history=10, c1=1e-4, max_backtracks=25):
        self.fun, self.history, self.c1, self.max_backtracks = fun, history, c1, max_backtracks
        self.x = x0.copy()
        self.f, self.g = fun(self.x)
        self.evals = 1
        self.pairs = deque(maxlen=history)  # (s, y, 1 / s·y)

    @staticmethod
    def _dot(a, b):
        return float((a * b).sum(dtype=np.float64))

    def direction(self):
        """-H g by the two-loop recursion, H0 = (s·y / y·y) I from the newest pair."""
        q = -self.g
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * self._dot(s, q)
            q = q - a * y
            alphas.append(a)
        if self.pairs:
            s, y, rho = self.pairs[-1]
            q = q * (1.0 / (rho * self._dot(y, y)))
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * self._dot(y, q)
            q = q + (a - b) * s
        return q

    def step(self):
        """One iteration: direction, line search, history update. False when it cannot decrease f.
        When the line search fails along the quasi-Newton direction, the history is dropped and
        the step retried once along the gradient."""
        if self._step():
            return True
        if not self.pairs:
            return False
        self.pairs.clear()
        return self._step()

    def _step(self):
        d = self.direction()
        gd = self._dot(self.g, d)
        if not gd < 0:  # not a descent direction (rounding): forget the history, go downhill
            self.pairs.clear()
            d, gd = -self.g, -self._dot(self.g, self.g)
            if gd == 0:
                return False
        # the first step knows no scale: move by at most 1 in the largest component, like the
        # 1/|g|_1 of PyTorch's L-BFGS but independent of the number of pixels
        t = 1.0 if self.pairs else min(1.0, 1.0 / max(float(abs(d).max()), 1e-30))
        for _ in range(self.max_backtracks):
            x_new = self.x + t * d
            f_new, g_new = self.fun(x_new)
            self.evals += 1
            if math.isfinite(f_new) and f_new <= self.f + self.c1 * t * gd:
                break
            # minimum of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t]
            denominator = 2.0 * (f_new - self.f - t * gd) if math.isfinite(f_new) else math.inf
            t_quad = -gd * t * t / denominator if denominator > 0 else 0.5 * t
            t = min(max(t_quad, 0.1 * t), 0.5 * t)
        else:
            return False
        s, y = x_new - self.x, g_new - self.g
        sy = self._dot(s, y)
        if sy > 1e-10 * self._dot(y, y):
            self.pairs.append((s, y, 1.0 / sy))
        self.x, self.f, self.g = x_new, f_new, g_new
        return True


def stylize(vgg, content, style, iterations=500, optimizer="lbfgs", init="content", lr=5.0,
            content_weight=losses.DEFAULT_CONTENT_WEIGHT, style_weight=losses.DEFAULT_STYLE_WEIGHT,
            tv_weight=losses.DEFAULT_TV_WEIGHT, content_layers=losses.DEFAULT_CONTENT_LAYERS,
            style_layers=losses.DEFAULT_STYLE_LAYERS, style_layer_weights=None, seed=0,
            callback=None, progress=False):
    """Optimize an image so that its VGG features match `content` and its Grams match `style`.

    content, style: (3, H, W) arrays, RGB in [0, 255]. Returns (image (3, H, W) NumPy float32, not
    clipped; history: one dict per iteration with iteration, evals, seconds, total and the loss's
    terms (PerceptualLoss.terms), starting with iteration 0 = the initial image). callback(iteration, x (3, H, W) array) after each.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if init not in ("content", "noise"):
        raise ValueError(f"init must be 'content' or 'noise', got {init!r}")
    device, dtype = vgg.device, vgg.dtype
    xp = devices.array_module(device)
    content = np.asarray(content, dtype)
    style = np.asarray(style, dtype)
    shape = (1,) + content.shape
    loss = losses.PerceptualLoss(vgg, Tensor(xp.asarray(style[None]), device=device), content_weight, style_weight,
                                 tv_weight, content_layers, style_layers, style_layer_weights)
    content_t = Tensor(xp.asarray(content[None]), device=device)
    targets = loss.content_targets(content_t)
    if init == "content":
        x0 = content.copy()
    else:
        x0 = np.random.default_rng(seed).uniform(0, 255, content.shape).astype(dtype)
    x0 = xp.asarray(x0.reshape(-1))

    last = {}
    evals = [0]

    def fun(x):
        image = Tensor(x.reshape(shape), requires_grad=True, device=device)
        terms = loss(image, content_features=targets)
        terms["total"].backward()
        last.clear()
        last.update({k: float(v.item()) for k, v in terms.items()})
        evals[0] += 1
        return last["total"], image.grad.reshape(-1)

    start = time.perf_counter()
    history = []

    def record(iteration):
        history.append(dict(iteration=iteration, evals=evals[0], seconds=time.perf_counter() - start, **last))

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=iterations, unit="it", dynamic_ncols=True, desc=optimizer)

    if optimizer == "lbfgs":
        opt = LBFGS(fun, x0)
        record(0)
        current = lambda: opt.x
    else:
        image = Tensor(x0.copy(), requires_grad=True, device=device)
        adam = Adam([image], lr=lr)
        current = lambda: image.data
        _, g = fun(image.data)
        record(0)
    for i in range(1, iterations + 1):
        if optimizer == "lbfgs":
            if not opt.step():
                if bar is not None:
                    bar.write(f"L-BFGS stopped at iteration {i - 1}: no step decreases the loss any more")
                break
        else:  # step with the gradient at the current image, then evaluate the new one
            image.grad = g
            adam.step()
            _, g = fun(image.data)
        record(i)
        if bar is not None:
            h = history[-1]
            bar.set_postfix_str(" ".join(f"{k} {h[k]:.4g}" for k in ("total",) + loss.terms), refresh=False)
            bar.update(1)
        if callback is not None:
            callback(i, devices.to_numpy(current()).reshape(content.shape))
    if bar is not None:
        bar.close()
    return np.array(devices.to_numpy(current()).reshape(content.shape), dtype=np.float32), history


# -- command line ------------------------------------------------------------------------------
def build_parser():
    p = cli.ArgumentParser(
        "python -m microst.optimize",
        description="Style transfer by optimization (Gatys et al.): optimize the pixels of an image so that "
                    "its VGG-16 features match the content image and its Gram matrices match the style image.")
    p.add_argument("--content", required=True, help="the content image (any format Pillow reads)")
    p.add_argument("--style", required=True, help="the style image")
    p.add_argument("-o", "--output", required=True, help="where to write the result (.png, .jpg, .webp)")
    cli.add_size(p, help="longest side of the content image and the result, in pixels (default 512)")
    p.add_argument("--style-size", type=cli.pixels, help="longest side the style image is resized to (default: --size)")
    p.add_argument("--iterations", type=cli.positive_int, default=500, help="optimizer iterations (default 500)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                   help="lbfgs (default; each iteration may evaluate the loss more than once) or adam")
    p.add_argument("--lr", type=float, default=5.0, help="Adam's learning rate, in pixel units (default 5)")
    p.add_argument("--init", choices=("content", "noise"), default="content",
                   help="start from the content image (default) or from uniform noise")
    p.add_argument("--content-weight", type=float, default=losses.DEFAULT_CONTENT_WEIGHT,
                   help=f"weight of the content loss (default {losses.DEFAULT_CONTENT_WEIGHT:g})")
    p.add_argument("--style-weight", type=float, default=losses.DEFAULT_STYLE_WEIGHT,
                   help=f"weight of the style loss (default {losses.DEFAULT_STYLE_WEIGHT:g}); raise it for more style")
    p.add_argument("--tv-weight", type=float, default=losses.DEFAULT_TV_WEIGHT,
                   help=f"weight of the total variation loss (default {losses.DEFAULT_TV_WEIGHT:g}; raise it, "
                        f"e.g. 10, against high-frequency noise)")
    cli.add_layers(p)
    p.add_argument("--style-layer-weights", type=cli.number_list,
                   help="one weight per style layer, comma-separated (default 1 each)")
    p.add_argument("--save-every", type=cli.non_negative_int, default=0, metavar="N",
                   help="also write a snapshot every N iterations, next to the output as NAME_0100.png")
    cli.add_vgg(p)
    cli.add_device(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the noise initialization (default 0)")
    cli.add_progress(p)
    p.set_defaults(size=512, content_layers=losses.DEFAULT_CONTENT_LAYERS, style_layers=losses.DEFAULT_STYLE_LAYERS)
    return p


def _check_size(path, image):
    if min(image.shape[1:]) < MIN_SIDE:
        raise UserError(f"{path}: only {image.shape[2]}x{image.shape[1]} pixels at this size; VGG-16 needs at "
                        f"least {MIN_SIDE} on each side: raise --size / --style-size")


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.style_layer_weights is not None and len(args.style_layer_weights) != len(args.style_layers):
        raise UserError(f"--style-layer-weights gives {len(args.style_layer_weights)} numbers for "
                        f"{len(args.style_layers)} style layers ({','.join(args.style_layers)})")
    if not args.content_layers and not args.style_layers:
        raise UserError("--content-layers and --style-layers: both empty; nothing to optimize")
    output = Path(args.output)
    check_image_path(output)
    device = cli.resolve_device(args.device)

    content = load_image(args.content, args.size)
    style = load_image(args.style, args.style_size or args.size)
    _check_size(args.content, content)
    _check_size(args.style, style)
    vgg = VGG16Features(args.vgg, layers=tuple(dict.fromkeys(args.content_layers + args.style_layers)))
    vgg.to(device)

    def snapshot(i, x):
        if args.save_every > 0 and i % args.save_every == 0:
            save_image(output.with_name(f"{output.stem}_{i:04d}{output.suffix}"), x)

    image, history = stylize(
        vgg, content, style, iterations=args.iterations, optimizer=args.optimizer, init=args.init, lr=args.lr,
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        content_layers=args.content_layers, style_layers=args.style_layers,
        style_layer_weights=args.style_layer_weights, seed=args.seed, callback=snapshot,
        progress=not args.no_progress)
    save_image(output, image)
    first, end = history[0], history[-1]
    terms = ", ".join(f"{k} {first[k]:.4g} -> {end[k]:.4g}" for k in losses.PerceptualLoss.terms)
    print(f"wrote {output} ({image.shape[2]}x{image.shape[1]}): {end['iteration']} {args.optimizer} iterations, "
          f"{end['evals']} loss evaluations, {end['seconds']:.1f} s on {device}; total {first['total']:.4g} -> "
          f"{end['total']:.4g} ({terms})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
