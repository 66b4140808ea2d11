"""Useful and issued FLOPs of a whole network, one row per layer and pass.

    python -m microst.lab flops --net johnson --size 512
    python -m microst.lab flops --net johnson --size 256 --batch 4 --train

The network runs on the cpu with every GEMM pass (conv, gram) recorded and replaced by zeros
(microst.ops.record), so that it takes seconds at any size; each pass is then counted for the
kernel version that `--device` selects (microst.ops.versions, pins included).

Counting rules:
- 2 FLOP per multiply-add, for the conv and Gram GEMMs only (norms, activations, pads and
  losses are memory-bound and not counted).
- Useful: of the GEMM's dense form, 2 * M * N * K (microst.ops.conv: a conv's taps on the zero
  padding count, as forward's im2col has them), except that a strided backward-data, and so the
  forward of a strided transposed conv, counts only the taps whose position is a multiple of the
  stride (the others multiply a zero the stride inserted).
- Issued: what the version's tiles compute, 2 * ceil(M/BM)*BM * ceil(N/BN)*BN * ceil(K/BK)*BK;
  a split backward-weight counts splits * ceil(chunk/BK)*BK for K. v0 (one thread per output,
  every tap visited) issues 2 * M * N * K.
- `--train` is one training step of the generator on B images of S x S: its forward and backward
  (no input gradient for its first layer), VGG-16 to relu4_3 on its output with backward-data
  (no weight gradients: the loss network is frozen), VGG-16 to relu2_2 on the content images, and
  Gram forward and backward at the four style layers (the style image's Grams are computed once
  before training and are not counted).

`--predict` adds a roofline estimate of each pass on an H100/H200 (not a measurement): the larger
of issued FLOPs / (the dense peak of the pass's precision x 0.5, the efficiency assumed for a
GEMM of this kind: 66.9 TFLOP/s FP32, 495 TF32, 990 BF16 on tensor cores) and the bytes of its
operands, read or written once / 4.3 TB/s, plus 3 us per launch. `--precision` (or
MICROST_PRECISION) chooses the tensor cores' precision; the `prec` column says where each pass runs.
"""
import contextlib

import numpy as np

from .. import autograd, nn
from ..ops import conv, loss, record, versions

USEFUL = {"conv": conv.useful_flops, "loss": loss.useful_flops}
PEAK_FP32, GEMM_EFFICIENCY, BANDWIDTH, LAUNCH_S = 66.9e12, 0.5, 4.3e12, 3e-6  # H100/H200 SXM, assumed
PEAK = {"fp32": PEAK_FP32, "tf32": 495e12, "bf16": 990e12}  # dense


def operand_bytes(call):
    """Bytes of a pass's operands, each read or written once (float32)."""
    if call.family == "conv":
        g = call.geometry
        x, w, y = g.N * g.Cin * g.H * g.W, g.Cout * g.Cin * g.KH * g.KW, g.N * g.Cout * g.HO * g.WO
        return 4 * (x + w + y)
    n, c, p = call.geometry
    return 4 * (n * c * p + n * c * c + (n * c * p if call.pass_ == "gram_backward" else 0))


def predicted_ms(call, issued, precision="fp32"):
    return 1e3 * (max(issued / (PEAK[precision] * GEMM_EFFICIENCY), operand_bytes(call) / BANDWIDTH) + LAUNCH_S)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"


def build(net, rng_seed=0):
    """The network as benchmarked: johnson (width 1, transposed conv, instance norm, the default),
    texture (TextureNet's defaults), vgg (VGG16Features to relu4_3, random weights)."""
    import microst
    from ..models import VGG16Features
    from ..models.johnson import TransformerNet
    from ..models.ulyanov import TextureNet
    microst.manual_seed(rng_seed)
    if net == "johnson":
        return TransformerNet()
    if net == "texture":
        return TextureNet()
    if net == "vgg":
        return random_vgg()
    raise ValueError(f"unknown net {net!r}; choose johnson, texture or vgg")


def random_vgg(layers=STYLE_LAYERS):
    from ..models import VGG16Features
    from ..models.vgg16_h5 import CONV_NAMES, CONV_SHAPES
    rng = np.random.default_rng(0)
    weights = {name: (rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.01,
                      np.zeros(cout, np.float32)) for name, (cin, cout) in ((n, CONV_SHAPES[n]) for n in CONV_NAMES)}
    return VGG16Features(layers=layers, weights=weights)


@contextlib.contextmanager
def _labelled(modules):
    """Label every recorded pass with the module path of the layer whose op ran it: Module calls
    push their path; an op keeps the label it was created under, for its backward."""
    paths = {id(m): name.rstrip(".") or "(net)" for prefix, model in modules.items()
             for name, m in model.named_modules(prefix and prefix + ".")}
    stack = []
    module_call, run = nn.Module.__call__, autograd._run

    def call(self, *args, **kwargs):
        stack.append(paths.get(id(self), stack[-1] if stack else ""))
        try:
            return module_call(self, *args, **kwargs)
        finally:
            stack.pop()

    def run_op(op, what, method, *args):
        if what == "forward":
            op.label = stack[-1] if stack else "loss"
        record.label = getattr(op, "label", "")
        return run(op, what, method, *args)

    nn.Module.__call__, autograd._run = call, run_op
    try:
        yield
    finally:
        nn.Module.__call__, autograd._run = module_call, run


def prepare(net, size, batch=1, train=False, device="cpu"):
    """({name: module}, run): run() does one inference or training step of `net` on `device`, as
    microst.training.Trainer.step does it (the loss's style Grams are computed here, once)."""
    from .. import ops
    from ..autograd import no_grad, tensor
    from ..losses import PerceptualLoss
    from ..optim import Adam
    model = build(net).to(device)
    x = tensor(np.zeros((batch, 3, size, size), np.float32), device=device)
    if not train:
        def run():
            with no_grad():
                model(x) if net == "vgg" else model(x, seed=0)
        return {"": model}, run
    if net == "vgg":
        xg = tensor(np.zeros((batch, 3, size, size), np.float32), requires_grad=True, device=device)

        def run():
            features = list(model(xg).values())
            total = features[0].mean()
            for f in features[1:]:
                total = total + f.mean()
            total.backward()
        return {"": model}, run
    vgg = random_vgg(STYLE_LAYERS).to(device)
    loss = PerceptualLoss(vgg, tensor(np.zeros((1, 3, 16, 16), np.float32), device=device),
                          content_layers=(CONTENT_LAYER,), style_layers=STYLE_LAYERS)
    optimizer = Adam(model.parameters())
    flag = ops.adam.nonfinite_flag(device) if device != "cpu" else None

    def run():
        model.train()
        terms = loss(model(x, seed=None) if net == "texture" else model(x), x)
        if flag is not None:
            ops.adam.check_finite(device, terms["total"].data, flag)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step(skip=flag)
    return {"": model, "vgg": vgg}, run


def record_passes(net, size, batch=1, train=False):
    """The recorded GEMM passes (microst.ops.record.Call) of one inference or training step."""
    modules, run = prepare(net, size, batch, train)
    with record.recording(dry=True) as calls, _labelled(modules):
        run()
    return calls


def count_launches(net, size, batch=1, train=False):
    """The kernel launches of one step on emu, by kernel name (dry: checked, not run)."""
    from .. import cuda
    _, run = prepare(net, size, batch, train, "emu")
    with cuda.counting(dry=True) as launches:
        run()
    return launches


def rows(calls, device="cuda"):
    """[(label, pass, geometry text, useful, issued, predicted ms, precision)] for the versions selected
    on `device`."""
    out = []
    for c in calls:
        launcher = versions.selected(c.family, device).launcher
        issued = launcher.issued_flops(c.pass_, c.geometry)
        prec = launcher.precision_of(c.pass_, c.geometry) if hasattr(launcher, "precision_of") else "fp32"
        out.append((c.label, c.pass_, describe(c), USEFUL[c.family](c.pass_, c.geometry), issued,
                    predicted_ms(c, issued, prec), prec))
    return out


def describe(call):
    if call.family == "conv":
        g = call.geometry
        return f"{g.KH}x{g.KW}/{g.SH} {g.Cin}->{g.Cout} {g.H}x{g.W} b{g.N}"
    n, c, p = call.geometry
    return f"gram C{c} P{p} b{n}"


def report(net, size, batch=1, train=False, device="cuda", out=print, predict=False, launches=True):
    table = rows(record_passes(net, size, batch, train), device)
    selection = ", ".join(f"{f}={v}" for f, v in versions.selection(device).items() if f in ("conv", "loss"))
    out(f"{net} {'training step' if train else 'inference'} at {size}x{size}, batch {batch}; kernels for "
        f"{device}: {selection}")
    out(f"{'layer':<24} {'pass':<16} {'shape':<28} {'useful GFLOP':>13} {'issued GFLOP':>13} {'issued/useful':>14}"
        f" {'prec':>5}" + (f" {'pred ms':>8}" if predict else ""))
    for label, pass_, shape, useful, issued, ms, prec in table:
        out(f"{label:<24} {pass_:<16} {shape:<28} {useful / 1e9:>13.3f} {issued / 1e9:>13.3f} "
            f"{issued / useful:>14.2f} {prec:>5}" + (f" {ms:>8.3f}" if predict else ""))
    useful, issued = sum(r[3] for r in table), sum(r[4] for r in table)
    if predict:
        out(f"predicted GEMM time {sum(r[5] for r in table):.2f} ms (H100/H200 roofline, see --help)")
    if launches:
        counted = count_launches(net, size, batch, train)
        kinds = {}
        for name in counted:
            kinds[name] = kinds.get(name, 0) + 1
        top = ", ".join(f"{name} {n}" for name, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:6])
        out(f"kernel launches per {'training step' if train else 'forward pass'}: {len(counted)} "
            f"(counted on emu, the selected versions; most: {top})")
    out(f"total useful GFLOP {useful / 1e9:.1f} issued GFLOP {issued / 1e9:.1f}")
    return useful, issued
