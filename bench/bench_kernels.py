"""Every kernel on `cuda`, at the shapes of Johnson's network (batch 4, 256x256 input): first
validated against the `cpu` path, then timed with CUDA events (warm-up, median of --repeats),
and compared with the same op in PyTorch (cuDNN) in the same process when torch is importable.

    python bench/bench_kernels.py [--repeats 20] [--only conv]

Prints, per op: our time, GFLOP/s (GEMMs) or GB/s (memory-bound ops), torch's time, ours/torch.
"""
import argparse

import numpy as np

from microst.ops import activation, conv, loss, norm, pad, pool


def make(op_class, device, needs=(True, True, True), **params):
    op = op_class(**params)
    op.device, op.needs_grad = device, needs
    return op


# name, inputs (shapes), ours(device, *arrays) -> array or tuple, torch(*tensors), work (flops or bytes), unit
def conv_cases():
    out = []
    for name, (n, cin, h, w), cout, k, s, p in [
            ("9x9 3->32 @336", (4, 3, 336, 336), 32, 9, 1, 4),
            ("3x3 32->64 s2 @336", (4, 32, 336, 336), 64, 3, 2, 1),
            ("3x3 64->128 s2 @168", (4, 64, 168, 168), 128, 3, 2, 1),
            ("3x3 128->128 @84 (residual)", (4, 128, 84, 84), 128, 3, 1, 0),
            ("9x9 32->3 @256", (4, 32, 256, 256), 3, 9, 1, 4)]:
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        flops = 2 * n * cout * ho * wo * cin * k * k
        x_shape, w_shape, y_shape = (n, cin, h, w), (cout, cin, k, k), (n, cout, ho, wo)
        out += [
            (f"conv2d fwd {name}", [x_shape, w_shape],
             lambda d, x, wt, s=s, p=p: conv.conv2d_forward(d, x, wt, None, (s, s), (p, p)),
             lambda F, x, wt, s=s, p=p: F.conv2d(x, wt, None, s, p), flops, "GFLOP/s"),
            (f"conv2d bwd-data {name}", [y_shape, w_shape],
             lambda d, dy, wt, s=s, p=p, xs=x_shape: conv.conv2d_backward_data(d, dy, wt, xs, (s, s), (p, p)),
             lambda F, dy, wt, s=s, p=p, xs=x_shape: _torch_grad_input(xs, wt, dy, s, p), flops, "GFLOP/s"),
            (f"conv2d bwd-weight {name}", [y_shape, x_shape],
             lambda d, dy, x, s=s, p=p, ws=w_shape: conv.conv2d_backward_weight(d, dy, x, ws, (s, s), (p, p)),
             lambda F, dy, x, s=s, p=p, ws=w_shape: _torch_grad_weight(x, ws, dy, s, p), flops, "GFLOP/s"),
        ]
    return out


def _torch_grad_input(x_shape, w, dy, s, p):
    import torch
    return torch.nn.grad.conv2d_input(x_shape, w, dy, s, p)


def _torch_grad_weight(x, w_shape, dy, s, p):
    import torch
    return torch.nn.grad.conv2d_weight(x, w_shape, dy, s, p)


def norm_cases():
    out = []
    for shape in [(4, 32, 336, 336), (4, 128, 84, 84)]:
        c = shape[1]
        bytes_fwd = 3 * 4 * np.prod(shape)  # two reads (stats, normalize) and a write, at least
        out.append((f"instance_norm fwd {shape}", [shape, (c,), (c,)],
                    lambda d, x, w, b: make(norm.InstanceNorm, d, eps=1e-5).forward(x, w, b),
                    lambda F, x, w, b: F.instance_norm(x, weight=w, bias=b), bytes_fwd, "GB/s"))
        out.append((f"instance_norm fwd+bwd {shape}", [shape, (c,), (c,), shape],
                    lambda d, x, w, b, dy: _forward_backward(make(norm.InstanceNorm, d, eps=1e-5), dy, x, w, b),
                    lambda F, x, w, b, dy: _torch_forward_backward(lambda x, w, b: F.instance_norm(x, weight=w, bias=b), dy, x, w, b),
                    7 * 4 * np.prod(shape), "GB/s"))
    return out


def _forward_backward(op, dy, *xs):
    op.forward(*xs)
    return op.backward(dy)[0]


def _torch_forward_backward(fn, dy, *xs):
    import torch
    xs = [x.detach().requires_grad_() for x in xs]
    return torch.autograd.grad(fn(*xs), xs[0], dy)[0]


def other_cases():
    relu_shape, up_shape, pool_shape = (4, 32, 336, 336), (4, 128, 64, 64), (4, 64, 256, 256)
    return [
        ("gram fwd relu1_2 (4,64,256,256)", [(4, 64, 256, 256)],
         lambda d, x: make(loss.Gram, d).forward(x), lambda F, x: _torch_gram(x), 2 * 4 * 64 * 64 * 256 * 256, "GFLOP/s"),
        ("gram fwd relu4_3 (4,512,32,32)", [(4, 512, 32, 32)],
         lambda d, x: make(loss.Gram, d).forward(x), lambda F, x: _torch_gram(x), 2 * 4 * 512 * 512 * 32 * 32, "GFLOP/s"),
        (f"relu fwd {relu_shape}", [relu_shape], lambda d, x: make(activation.Relu, d).forward(x),
         lambda F, x: F.relu(x), 2 * 4 * np.prod(relu_shape), "GB/s"),
        ("pad reflect 40 (4,3,256,256)", [(4, 3, 256, 256)],
         lambda d, x: make(pad.Pad, d, pad=(40, 40, 40, 40), mode="reflect", value=0).forward(x),
         lambda F, x: F.pad(x, (40, 40, 40, 40), mode="reflect"), 4 * (4 * 3 * (256 * 256 + 336 * 336)), "GB/s"),
        (f"upsample x2 fwd {up_shape}", [up_shape], lambda d, x: make(pool.UpsampleNearest, d, scale=2).forward(x),
         lambda F, x: F.interpolate(x, scale_factor=2, mode="nearest"), 5 * 4 * np.prod(up_shape), "GB/s"),
        (f"max_pool2d fwd {pool_shape}", [pool_shape], lambda d, x: make(pool.MaxPool2d, d, kernel_size=2, stride=None).forward(x),
         lambda F, x: F.max_pool2d(x, 2), 1.5 * 4 * np.prod(pool_shape), "GB/s"),
        (f"mse_loss fwd {pool_shape}", [pool_shape, pool_shape], lambda d, a, b: make(loss.MseLoss, d).forward(a, b),
         lambda F, a, b: F.mse_loss(a, b), 2 * 4 * np.prod(pool_shape), "GB/s"),
    ]


def _torch_gram(x):
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def first(result):
    return result[0] if isinstance(result, tuple) else result


def time_cuda(fn, repeats, new_event, elapsed_ms):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = new_event(), new_event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(elapsed_ms(start, end))
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", default="", help="run only the ops whose name contains this")
    args = parser.parse_args()
    import cupy
    try:
        import torch
        import torch.nn.functional as TF
        torch.backends.cudnn.benchmark = True
    except ImportError:
        torch = None

    rng = np.random.default_rng(0)
    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}; median of {args.repeats}")
    print(f"{'op':48s} {'ours ms':>9s} {'rate':>14s} {'torch ms':>9s} {'ours/torch':>10s}")
    for name, shapes, ours, theirs, work, unit in conv_cases() + norm_cases() + other_cases():
        if args.only not in name:
            continue
        host = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        dev = [cupy.asarray(a) for a in host]
        got = cupy.asnumpy(first(ours("cuda", *dev)))
        expected = first(ours("cpu", *host))
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(expected).max()))):
            print(f"{name:48s} INVALID vs cpu: max |diff| {np.abs(got - expected).max():.3g}; not timed")
            continue
        ms = time_cuda(lambda: ours("cuda", *dev), args.repeats, cupy.cuda.Event, cupy.cuda.get_elapsed_time)
        rate = work / ms / 1e6  # work per ms -> per s, in G
        line = f"{name:48s} {ms:9.3f} {rate:9.1f} {unit:>4s}"
        if torch is not None:
            tdev = [torch.as_tensor(a, device="cuda") for a in host]
            ref = theirs(TF, *tdev).detach().cpu().numpy()
            scale = max(1.0, float(np.abs(ref).max()))
            if not np.allclose(got, ref, rtol=1e-3, atol=1e-3 * scale):
                line += f"  MISMATCH vs torch: max |diff| {np.abs(got - ref).max():.3g}"
            tms = time_cuda(lambda: theirs(TF, *tdev), args.repeats,
                            lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b))
            line += f" {tms:9.3f} {ms / tms:10.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
