"""The stylize job loop: which image goes where, then per image load -> run -> save -> report.

    todo = jobs(inputs, output=None, out_dir="out", style="wave")   # [Job(input, output)], all checked first
    stylizer = Stylizer(model, size=1024, tile=512)                  # how each image is stylized
    results = stylizer.run(todo)                                     # the loop; run_job(job) does one image

A job is one input image and its output path. run_job loads the image, stylizes it
(microst.transfer), saves it atomically (io.save_image: a temporary file renamed over the output,
so an interrupted run never leaves half an image) and returns a Result; run loops over the jobs
and reports each result as it comes. What later work adds goes into this one loop: progress in
run, skipping bad images and a summary around run_job, other media as other jobs, workers by
mapping run_job over them. A video file is one job too: its frames stream through the same
stylize call (microst.video).
"""
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .device import free_memory
from .errors import UserError
from .files import check_writable, name_limit
from .io import IMAGE_SUFFIXES, UnreadableImage, check_image_path, find_images, load_image, save_image
from .transfer import adjusted, stylize, tiling_overlap
from .video import check_video_output, is_video, stylize_video


@dataclass(frozen=True)
class Job:
    """Stylize the image file `input` into `output`."""
    input: str
    output: Path


@dataclass(frozen=True)
class Result:
    """A job done: the image's size and the seconds the stylization itself took (not load or save;
    a video's: its frames' decoding and encoding included)."""
    job: Job
    width: int
    height: int
    seconds: float
    frames: int = 0  # a video's; 0 for an image

    def __str__(self):
        frames = f"{self.frames} frames, " if self.frames else ""
        return f"{self.job.input} -> {self.job.output} ({frames}{self.width}x{self.height}, {self.seconds:.2f} s)"


def jobs(inputs, output=None, out_dir=None, style=""):
    """The jobs for image files and folders (every image under a folder, in order): with `output`, the
    one input's output file; else OUT_DIR/[subfolder/]STEM_STYLE.EXT, EXT the input's (.jpg for other
    formats; a video keeps its own), subfolders of an input folder kept so that equal names in
    different folders do not collide. A UserError, before any work, for a missing input, an empty folder, an -o for several
    inputs, an unknown output format or an output that would overwrite its input."""
    files = _collect(inputs)
    if output is not None:
        if len(files) != 1:
            raise UserError(f"-o {output}: names one output file but there are {len(files)} input images; "
                            f"use --out-dir DIR instead")
        (check_video_output if is_video(files[0][0]) else check_image_path)(output)
        paths = [Path(output)]
    else:
        directory = Path(out_dir or ".")
        paths = []
        for f, sub in files:
            suffix = Path(f).suffix.lower()
            kept = suffix in IMAGE_SUFFIXES or is_video(f)
            paths.append(directory / sub / f"{Path(f).stem}_{style}{suffix if kept else '.jpg'}")
    todo = [Job(f, p) for (f, _), p in zip(files, paths)]
    for job in todo:
        if os.path.abspath(job.input) == os.path.abspath(job.output):
            raise UserError(f"{job.output}: would overwrite its own input; choose another output name or folder")
    return todo


def _collect(inputs):
    """(image file, its folder relative to the folder named, or "") for the files named and every
    image found under the folders named, in order."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = find_images(item)
            if not found:
                raise UserError(f"{item}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            files += [(f, os.path.relpath(os.path.dirname(f), item)) for f in found]
        elif os.path.exists(item):
            files.append((item, ""))
        else:
            raise UserError(f"{item}: no such file or folder; check the path")
    return files


@dataclass
class Summary:
    """What a run of jobs did: done (Results), skipped ((Job, reason)), existing (Jobs left alone)."""
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    existing: list = field(default_factory=list)

    def skip(self, job, reason, warn):
        warn(f"skipped: {reason}")
        self.skipped.append((job, reason))

    def __str__(self):
        parts = [f"{len(self.done)} done"]
        if self.existing:
            parts.append(f"{len(self.existing)} left as they were (--skip-existing)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped: " + "; ".join(reason for _, reason in self.skipped))
        return ", ".join(parts)


def checked_outputs(todo, summary, warn):
    """The jobs whose output names fit their filesystem (the others skipped into `summary`, with
    warn), after checking each output folder once (writable, room for an image). Stylizer.run calls
    it; so does microst.scale before it hands the jobs to Ray workers."""
    kept, folders = [], {}
    for job in todo:
        folder = Path(job.output).parent
        if folder not in folders:
            check_writable(folder, need=1 << 20, what="the output folder")  # about one image
            folders[folder] = name_limit(folder)
        if len(Path(job.output).name) > folders[folder]:
            summary.skip(job, f"{job.output}: the output name is longer than the filesystem allows "
                              f"({folders[folder]} characters)", warn)
        else:
            kept.append(job)
    return kept


class Stylizer:
    """Stylize image files with one generator. size: resize each input so that its longest side is
    `size` (None: as it is); the other options are microst.transfer.stylize's. report(result) is
    called by run after each job (default: print its line to stdout); warn(text) says what the stylizer
    decided on its own (default: stderr). progress: bars over the jobs and over an image's tiles.

    An image stylized whole needs about model.peak_bytes(h, w) of memory at once. When that is more
    than the device has free (microst.device.free_memory) and no --tile was given, the image is
    stylized in the largest tiles that fit, and warn says so; when not even small tiles fit, a
    UserError names --size. stable: a video's instance-norm statistics smoothed over its frames
    (microst.video); strength: microst.transfer.adjusted's."""
    TILES = (4096, 2048, 1024, 512, 256)  # the tile sides tried, largest first
    USABLE = 0.8  # of the free memory

    def __init__(self, model, device=None, size=None, seed=None, tile=None, overlap=None, stats_size=1024,
                 preserve_color=False, strength=1.0, stable=False, report=None, cuda_graph=False, progress=False,
                 warn=None):
        self.model, self.device, self.size = model, device or model.device, size
        self.report = report or (lambda result: tqdm.write(str(result)))  # a line that keeps the bars whole
        self.progress, self.warn = progress, warn or (lambda text: print(text, file=sys.stderr))
        self.options = dict(seed=seed, tile=tile, overlap=overlap, stats_size=stats_size,
                            preserve_color=preserve_color, strength=strength)
        self.stable, self.graphs, self._tiles = stable, None, {}
        if stable and (tile or cuda_graph):
            raise UserError(f"--stable: smooths statistics over whole frames; leave out "
                            f"{'--tile' if tile else '--cuda-graph'}")
        if cuda_graph:
            if tile:
                raise UserError("--cuda-graph: a CUDA graph runs the whole image; leave out --tile (or --cuda-graph)")
            from .graphs import GraphRunner
            self.graphs = GraphRunner(model)

    def run(self, todo, skip_existing=False):
        """Every job in order, each reported when done; returns a Summary. Before the first image, each
        output folder is checked (writable, room for an image). An image that cannot be read, or whose
        output name is too long, is skipped with a warning and the rest go on (one job alone: its
        error is raised); skip_existing leaves out the jobs whose output exists."""
        summary = Summary()
        alone = len(todo) == 1
        todo = checked_outputs(todo, summary, (lambda _: None) if alone else self.warn)
        if alone and summary.skipped:
            raise UserError(summary.skipped[0][1])
        bar = tqdm(todo, desc="images", unit="image", disable=not self.progress or len(todo) < 2, file=sys.stderr)
        for job in bar:
            if skip_existing and Path(job.output).exists():
                summary.existing.append(job)
                continue
            try:
                result = self.run_job(job)
            except UnreadableImage as e:
                if len(todo) == 1 and not summary.skipped:
                    raise
                summary.skip(job, str(e), self.warn)
                continue
            self.report(result)
            summary.done.append(result)
        return summary

    def run_job(self, job):
        """Load, stylize and save one image (or video); returns its Result."""
        if is_video(job.input):
            start = time.perf_counter()
            count, width, height = stylize_video(lambda frame: self.stylize(job, frame, frame=True), self.model, job.input,
                                                 job.output, size=self.size, stable=self.stable,
                                                 progress=self.progress)
            return Result(job, width, height, time.perf_counter() - start, frames=count)
        image = load_image(job.input, self.size)
        start = time.perf_counter()
        output = self.stylize(job, image)
        seconds = time.perf_counter() - start
        save_image(job.output, output)
        return Result(job, image.shape[2], image.shape[1], seconds)

    def stylize(self, job, image, frame=False):
        """The stylized image (a video's frame: no bar over its tiles); running out of memory is the
        user's to fix (tiles, a smaller size)."""
        try:
            if self.graphs is not None:
                return adjusted(image, self.graphs(image), self.options["preserve_color"], self.options["strength"])
            options = dict(self.options, tile=self.tile_for(job, image))
            if self.stable and options["tile"]:
                raise UserError(f"{job.input}: its {image.shape[2]}x{image.shape[1]} frames do not fit in memory "
                                f"whole, which --stable needs; use --size to stylize them smaller")
            return stylize(self.model, image, self.device, progress=self.progress and not frame, **options)
        except MemoryError:
            raise UserError(f"{job.input}: out of memory at {image.shape[2]}x{image.shape[1]}; use --tile 512 "
                            f"(or --size to shrink it)") from None

    def tile_for(self, job, image):
        """--tile, or None to stylize whole, or the tile side that fits the free memory (see the class)."""
        if self.options["tile"]:
            return self.options["tile"]
        h, w = image.shape[1:]
        if (job, h, w) not in self._tiles:  # once per job and size: a video's frames share it
            self._tiles[job, h, w] = self._fitting_tile(job, h, w)
        return self._tiles[job, h, w]

    def _fitting_tile(self, job, h, w):
        need, free = self.model.peak_bytes(h, w), free_memory(self.device)
        if free is None or need <= self.USABLE * free:
            return None
        for tile in self.TILES:
            if tile < max(h, w) and self.tiled_bytes(h, w, tile) <= self.USABLE * free:
                self.warn(f"{job.input}: {w}x{h} needs about {need / 1e9:.1f} GB at once, more than the "
                          f"{self.USABLE * free / 1e9:.1f} GB usable ({self.USABLE:.0%} of the {free / 1e9:.1f} GB "
                          f"free): stylizing it in {tile}x{tile} tiles (as --tile {tile} would)")
                return tile
        raise UserError(f"{job.input}: {w}x{h} needs about {need / 1e9:.1f} GB, and even in {self.TILES[-1]}x"
                        f"{self.TILES[-1]} tiles more than the {free / 1e9:.1f} GB free; use --size to stylize it "
                        f"smaller")

    def tiled_bytes(self, h, w, tile):
        """Memory of a tiled pass: one tile's window, or the statistics pass on the downscaled image,
        plus the full image's input, output and weights (about 40 bytes a pixel)."""
        tile, overlap = tiling_overlap(self.model, tile, self.options["overlap"])
        window = tile + 2 * (overlap + self.model.halo)
        scale = min(1.0, self.options["stats_size"] / max(h, w))
        stats = self.model.peak_bytes(max(1, round(h * scale)), max(1, round(w * scale)))
        return max(self.model.peak_bytes(window, window), stats) + 40 * h * w
