"""What the CPU benchmarks share: medians with the engines taking turns, and a per-op profile of microst.

    times = interleaved_times({"microst": fn, "torch": fn2}, repeats)   # {name: median seconds}
    with op_profile() as totals:                                       # {"conv2d (16, 256, 256) w... backward": s}
        step()
    print_profile(totals, total_seconds)
    profile_once(step, "one step")                                     # both: a warm-up, then one timed run
"""
import contextlib
import time


def interleaved_times(runs, repeats):
    """Median seconds of each function, run in turn in every repeat (so that a busy machine slows all
    alike), after one warm-up each."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _label(op, what, arrays):
    """An op's name; for convs also the input's (C, H, W) and the weight's shape, one line per layer shape."""
    if not op.name.startswith("conv"):
        return f"{op.name} {what}"
    x, w = (arrays[0], arrays[1]) if what == "forward" else (op.x, op.w)
    return f"{op.name} {tuple(x.shape[1:])} w{tuple(w.shape)} {what}"


@contextlib.contextmanager
def op_profile():
    """Within the block, every op's forward and backward is timed: {label: seconds} (autograd._run is the
    one place both pass through)."""
    from microst import autograd
    totals, real_run = {}, autograd._run

    def timed(op, what, method, *args):
        start = time.perf_counter()
        out = real_run(op, what, method, *args)
        label = _label(op, what, args)
        totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
        return out

    autograd._run = timed
    try:
        yield totals
    finally:
        autograd._run = real_run


def print_profile(totals, total, top=40):
    """The `top` most expensive labels, with their share of `total` seconds, and the rest summed."""
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    for name, seconds in ranked[:top]:
        print(f"  {name:64s} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
    rest = sum(s for _, s in ranked[top:])
    if rest:
        print(f"  {'(the other ops)':64s} {rest:7.3f} s  {100 * rest / total:5.1f}%")
    outside = total - sum(totals.values())
    print(f"  {'(outside the ops: autograd, Python, optimizer)':64s} {outside:7.3f} s  {100 * outside / total:5.1f}%")


def profile_once(fn, what):
    """Run fn once to warm up, then once under op_profile, and print where the time went."""
    fn()
    with op_profile() as totals:
        start = time.perf_counter()
        fn()
        total = time.perf_counter() - start
    print(f"\nprofile of {what}: {total:.3f} s")
    print_profile(totals, total)
    print()
