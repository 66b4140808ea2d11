"""Images per second of python -m microst.stylize on a folder: local mode against --ray with 1 and 2
workers (a local Ray started by the command, as on a laptop), every worker on one BLAS thread.

    python bench/bench_scale.py [--images 24] [--size 256] [--model great_wave] [--workers 1 2]
                                [--images-per-batch 1]

Each mode runs the real command in a fresh process on the same generated photos (--size x 3/4 of it),
its stdout read as it comes, so that the time of each output line is known. Printed per mode: the
whole command's wall time (imports, Ray's start and stop, model loads included); when the first
image came back; the steady rate, from the first image to the last (actors started, model loaded);
and the compute of one image (the mean of the times the lines print: the stylization alone). The
difference between workers x (1 / steady rate) and the compute is what each image costs besides its
compute: loading, saving, and on Ray its share of a task's overhead.

Results: bench/RESULTS.md ("Scale-out (Ray)").
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_photos(folder, count, size):
    """`count` smooth random photos, size x 3/4 size, as PNG."""
    r = np.random.default_rng(0)
    for i in range(count):
        small = (r.random((6, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((size, size * 3 // 4), Image.BICUBIC).save(folder / f"{i:03d}.png")


def timed_run(argv):
    """Run the command; (wall seconds, [seconds after start at which each output line came], [the
    seconds each line reports], the last line of stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}  # each line as it is printed
    start = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "microst.stylize", *argv], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    arrivals, computes = [], []
    for line in p.stdout:
        found = re.search(r", ([0-9.]+) s\)$", line.strip())
        if found:
            arrivals.append(time.perf_counter() - start)
            computes.append(float(found.group(1)))
    err = p.stderr.read()
    if p.wait() != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}\n{err}")
    return time.perf_counter() - start, arrivals, computes, err.strip().splitlines()[-1] if err.strip() else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=256, help="longest side of the photos")
    parser.add_argument("--model", default="great_wave")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images-per-batch", type=int, default=1,
                        help="--ray's (default 1: every image comes back alone, so that the steady rate is per image "
                             "and includes a whole task's overhead; 0: the command's default)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{args.images} images of {args.size}x{args.size * 3 // 4}, model {args.model}, cpu, 1 BLAS thread per "
          f"worker, {os.cpu_count()} CPUs, load average {load:.1f} before the runs")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        make_photos(photos, args.images, args.size)
        modes = [("local", [])]
        batch = ["--images-per-batch", str(args.images_per_batch)] if args.images_per_batch else []
        modes += [(f"--ray, {n} worker{'s' * (n > 1)}", ["--ray", "--workers", str(n), *batch]) for n in args.workers]
        print("| mode | wall s | first image at s | steady images/s | compute s/image | other s/image | summary |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for i, (name, extra) in enumerate(modes):
            out = Path(tmp) / f"out{i}"
            wall, arrivals, computes, last = timed_run([str(photos), "--model", args.model, "--out-dir", str(out),
                                                        "--device", "cpu", "--no-progress", *extra])
            workers = int(extra[2]) if extra else 1
            first = sum(a - arrivals[0] < 0.05 for a in arrivals)  # Ray returns a batch's lines together
            steady = (len(arrivals) - first) / (arrivals[-1] - arrivals[0]) if len(arrivals) > first else float("nan")
            compute = sum(computes) / len(computes)
            other = workers / steady - compute
            summary = last.split("; ")[-1] if extra else "-"
            print(f"| {name} | {wall:.1f} | {arrivals[0]:.1f} | {steady:.2f} | {compute:.3f} | {other:.3f} | "
                  f"{summary} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after the runs")


if __name__ == "__main__":
    main()
