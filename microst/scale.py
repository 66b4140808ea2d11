"""Stylizing folders of images on Ray (the extra microst[ray]: Ray Data), on one laptop or a cluster.

    python -m microst.stylize photos/ --model great_wave --out-dir out/ --ray [--ray-address HOST:6379]

The driver (the command's own process) decides every job as local mode does (microst.jobs: the
output names, the folder checks, --skip-existing) and hands Ray the jobs' file paths
(ray.data.from_items). A fixed pool of actors (map_batches with StylizeWorker), one GPU each on
cuda and one CPU each otherwise, loads the model once per actor and runs the job loop's
Stylizer.run_job on each image it is given: microst's own loader, the stylization, the atomic save.
An actor returns each image's size and time, or why it was skipped (an image that cannot be read),
and the driver shows the bar, the lines and the summary of local mode, plus images/s.

Inputs and outputs are paths that every worker must see (a shared filesystem, mounted at the same
place on every node); the model travels in Ray's object store, so workers need microst installed
but not the checkpoint. The driver's MICROST_* variables (kernels, precision, faults for tests) are
set on the workers too. Ray Data's own log lines go to its log file under /tmp/ray/session_*/logs.
"""
import contextlib
import logging
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import UserError
from .io import UnreadableImage
from .jobs import Job, Result, Stylizer, Summary, checked_outputs

INSTALL = 'pip install "microst[ray]"'
DEFAULT_PORT = 6379  # ray start --head's
BATCHES_PER_WORKER = 4  # default --images-per-batch: about this many batches per worker, for an even finish
MAX_BATCH = 16  # ... and no more images than this per batch, so that results come back steadily
CONNECT_TIMEOUT = 5.0  # seconds to reach --ray-address before calling it unreachable


def require_ray():
    """The ray module, or a one-line UserError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"--ray needs Ray Data: {INSTALL}") from None
    return ray


def check_folders(inputs):
    """--ray stylizes folders: a UserError for an input that is a file (a missing one is jobs()'s to report)."""
    for item in inputs:
        if os.path.exists(item) and not os.path.isdir(item):
            raise UserError(f"{item}: is a file; --ray stylizes folders of images: give its folder, or leave out "
                            f"--ray to stylize single images here")


@dataclass
class PoolSummary(Summary):
    """A Summary, and how fast the pool went: done images per second of the whole run (actors' start-up
    included)."""
    workers: int = 0
    seconds: float = 0.0

    def __str__(self):
        rate = len(self.done) / self.seconds if self.seconds else 0.0
        return (f"{super().__str__()}; {rate:.2f} images/s on {self.workers} worker{'s' * (self.workers != 1)} "
                f"({self.seconds:.1f} s)")


class StylizeWorker:
    """A Ray actor: loads the generator once (from the checkpoint file's bytes, which Ray Data keeps in
    its object store), then stylizes every batch of jobs Ray gives it with Stylizer.run_job. A batch
    is columns: index, input, output (absolute paths). A UserError comes back as data, in the column
    "error", and ends the batch: raised, Ray would pass on its traceback but not its one line."""

    def __init__(self, checkpoint, name, device, precision, options):
        from . import cli
        from .checkpoint import load_model
        self.notes, self.error = [], ""  # notes: what the stylizer decides on its own (tiling)
        try:
            device = cli.resolve_device(device)
            cli.apply_precision(precision, device)
            with tempfile.TemporaryDirectory() as folder:  # the checkpoint loader reads a file
                path = Path(folder) / name
                path.write_bytes(checkpoint)
                model = load_model(path, device=device)
            self.stylizer = Stylizer(model, device, warn=self.notes.append, progress=False, **options)
        except UserError as e:  # this worker cannot run (no GPU here, ...): its first batch says why
            self.error = f"worker on {socket.gethostname()}: {e}"

    def __call__(self, batch):
        rows = {"index": [], "width": [], "height": [], "seconds": [], "skipped": [], "notes": [], "error": []}
        for index, source, target in zip(batch["index"], batch["input"], batch["output"]):
            self.notes.clear()
            size, seconds, skipped, error = (0, 0), 0.0, "", self.error
            try:
                if not error:
                    result = self.stylizer.run_job(Job(str(source), Path(str(target))))
                    size, seconds = (result.width, result.height), result.seconds
            except UnreadableImage as e:  # skipped and reported, as in local mode
                skipped = str(e)
            except UserError as e:  # stops the run, as in local mode
                error = str(e)
            for column, value in zip(rows, (int(index), *size, seconds, skipped, "\n".join(self.notes), error)):
                rows[column].append(value)
            if error:
                break
        return rows


def stylize_on_ray(todo, model_path, options, device=None, precision=None, address=None, workers=None,
                   images_per_batch=None, skip_existing=False, progress=True):
    """Run the jobs on a pool of Ray actors; returns a PoolSummary. model_path: the checkpoint file;
    options: Stylizer's (size, tile, ...); device: the workers' (None or "auto": cuda if the cluster
    has GPUs, else cpu); address: the cluster's (None: see connect); workers, images_per_batch: None
    for defaults from the cluster's resources (one worker per GPU on cuda, per CPU otherwise). A
    worker's UserError (a full disk, ...) is raised here and stops the run; the images done until then
    stay done."""
    ray = require_ray()
    warn = lambda text: tqdm.write(text, file=sys.stderr)  # noqa: E731 (a line that keeps the bar whole)
    if address not in (None, "auto", "local"):
        check_reachable(address)  # before any output folder is made
    summary = PoolSummary()
    todo = checked_outputs(todo, summary, warn)
    if skip_existing:
        summary.existing = [job for job in todo if Path(job.output).exists()]
        todo = [job for job in todo if not Path(job.output).exists()]
    if not todo:
        return summary
    started_here = connect(ray, address)
    try:
        resources = ray.cluster_resources()
        if device in (None, "auto"):
            device = "cuda" if resources.get("GPU", 0) >= 1 else "cpu"
        summary.workers = pool_size(resources, device, workers)
        batch = images_per_batch or max(1, min(MAX_BATCH, len(todo) // (BATCHES_PER_WORKER * summary.workers)))
        start = time.perf_counter()
        with _quiet_ray_data(ray):
            rows = _dataset(ray, todo, model_path, options, device, precision, summary.workers, batch)
            _collect(rows, todo, summary, progress, warn)
        summary.seconds = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    return summary


def connect(ray, address):
    """Join the Ray cluster at `address` ("auto": the one `ray start` runs on this machine; None: this
    process's Ray if initialized, else $RAY_ADDRESS's, else a new local one). Returns whether Ray was
    started here (then the caller shuts it down); a UserError if Ray cannot join."""
    if address is None and ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")  # Ray's own default
    local = {"include_dashboard": False} if address is None else {}  # a dashboard is `ray start --head`'s
    try:
        ray.init(address=address, logging_level=logging.ERROR, **local)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if address is None:
            raise UserError(f"--ray: cannot start a local Ray ({str(e).splitlines()[0]})") from None
        token = "" if os.environ.get("RAY_AUTH_MODE") else (" (a cluster with token authentication also needs "
                                                            "RAY_AUTH_MODE=token and its token in ~/.ray/auth_token)")
        raise UserError(f"--ray-address {address}: cannot join a Ray cluster there ({str(e).splitlines()[0]}); "
                        f"start one with `ray start --head`, or check the address{token}") from None
    return True


def check_reachable(address):
    """A TCP connection to HOST:PORT (PORT 6379 when left out; a scheme such as ray:// is passed over),
    or a UserError: Ray itself would keep retrying for a minute."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not port.isdigit():
        host, port = address.split("://")[-1], DEFAULT_PORT
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                        f"with `ray start --head` on that machine, or check the address") from None


def pool_size(resources, device, workers=None):
    """The number of actors: `workers`, or one per GPU (cuda) or per CPU; a UserError when the cluster
    has too few (a fixed pool larger than the cluster would wait for ever)."""
    unit = "GPU" if device == "cuda" else "CPU"
    have = int(resources.get(unit, 0))
    if have < 1:
        raise UserError(f"--device {device}: the Ray cluster has no {unit}; add {unit} workers (ray start "
                        f"--address=HEAD:6379 on such a machine) or choose another --device")
    if workers and workers > have:
        raise UserError(f"--workers {workers}: the Ray cluster has {have} {unit}{'s' * (have != 1)} and each worker "
                        f"takes one; "
                        f"use --workers {have} or fewer")
    return workers or have


def _dataset(ray, todo, model_path, options, device, precision, workers, batch):
    """The lazy dataset of results: the jobs' paths, one block per batch, mapped by a fixed pool of
    StylizeWorkers."""
    items = [{"index": i, "input": os.path.abspath(job.input), "output": os.path.abspath(job.output)}
             for i, job in enumerate(todo)]
    environment = {k: v for k, v in os.environ.items() if k.startswith("MICROST_")}
    worker = dict(checkpoint=Path(model_path).read_bytes(), name=Path(model_path).name, device=device,
                  precision=precision, options=options)
    return ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch)).map_batches(
        StylizeWorker, fn_constructor_kwargs=worker, batch_size=batch,
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, **({"num_gpus": 1} if device == "cuda" else {}),
        **({"runtime_env": {"env_vars": environment}} if environment else {}))


def _collect(rows, todo, summary, progress, warn):
    """Take the workers' rows as they come: report each image (its line, the bar) into `summary`."""
    bar = tqdm(total=len(todo), desc="images", unit="image", disable=not progress or len(todo) < 2, file=sys.stderr)
    with bar, contextlib.closing(iter(rows.iter_rows())) as results:  # closed: Ray Data stops its workers at once
        for row in results:
            job = todo[int(row["index"])]
            as_given = lambda text: text.replace(os.path.abspath(job.input), str(job.input))  # noqa: E731
            if row["error"]:
                raise UserError(as_given(str(row["error"])))
            for note in filter(None, str(row["notes"]).split("\n")):
                warn(as_given(note))
            if row["skipped"]:
                summary.skip(job, as_given(str(row["skipped"])), warn)
            else:
                result = Result(job, int(row["width"]), int(row["height"]), float(row["seconds"]))
                tqdm.write(str(result))
                summary.done.append(result)
            bar.update()


class _quiet_ray_data:
    """Ray Data's console lines (execution plans, its own bars' notices, a task's traceback) off while
    the pool runs: the command prints its own; Ray Data's log file keeps them all."""

    def __init__(self, ray):
        self.context = ray.data.DataContext.get_current()
        self.handlers = [h for h in logging.getLogger("ray.data").handlers if h.get_name() == "console"]

    def __enter__(self):
        self.bars, self.levels = self.context.enable_progress_bars, [h.level for h in self.handlers]
        self.context.enable_progress_bars = False
        for h in self.handlers:
            h.setLevel(logging.CRITICAL + 1)

    def __exit__(self, *exc):
        self.context.enable_progress_bars = self.bars
        for h, level in zip(self.handlers, self.levels):
            h.setLevel(level)
