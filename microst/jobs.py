"""The stylize job loop: which image goes where, then per image load -> run -> save -> report.

    todo = jobs(inputs, output=None, out_dir="out", style="wave")   # [Job(input, output)], all checked first
    stylizer = Stylizer(model, size=1024, tile=512)                  # how each image is stylized
    results = stylizer.run(todo)                                     # the loop; run_job(job) does one image

A job is one input image and its output path. run_job loads the image, stylizes it
(microst.transfer), saves it atomically (io.save_image: a temporary file renamed over the output,
so an interrupted run never leaves half an image) and returns a Result; run loops over the jobs
and reports each result as it comes. What later work adds goes into this one loop: progress in
run, skipping bad images and a summary around run_job, other media as other jobs, workers by
mapping run_job over them.
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .io import IMAGE_SUFFIXES, check_image_path, find_images, load_image, save_image
from .transfer import stylize


@dataclass(frozen=True)
class Job:
    """Stylize the image file `input` into `output`."""
    input: str
    output: Path


@dataclass(frozen=True)
class Result:
    """A job done: the image's size and the seconds the stylization itself took (not load or save)."""
    job: Job
    width: int
    height: int
    seconds: float

    def __str__(self):
        return f"{self.job.input} -> {self.job.output} ({self.width}x{self.height}, {self.seconds:.2f} s)"


def jobs(inputs, output=None, out_dir=None, style=""):
    """The jobs for image files and folders (every image under a folder, in order): with `output`, the
    one input's output file; else OUT_DIR/[subfolder/]STEM_STYLE.EXT, EXT the input's (.jpg for other
    formats), subfolders of an input folder kept so that equal names in different folders do not
    collide. A UserError, before any work, for a missing input, an empty folder, an -o for several
    inputs, an unknown output format or an output that would overwrite its input."""
    files = _collect(inputs)
    if output is not None:
        if len(files) != 1:
            raise UserError(f"-o {output}: names one output file but there are {len(files)} input images; "
                            f"use --out-dir DIR instead")
        check_image_path(output)
        paths = [Path(output)]
    else:
        directory = Path(out_dir or ".")
        paths = []
        for f, sub in files:
            suffix = Path(f).suffix.lower()
            paths.append(directory / sub / f"{Path(f).stem}_{style}{suffix if suffix in IMAGE_SUFFIXES else '.jpg'}")
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


class Stylizer:
    """Stylize image files with one generator. size: resize each input so that its longest side is
    `size` (None: as it is); the other options are microst.transfer.stylize's. report(result) is
    called by run after each job (default: print its line)."""

    def __init__(self, model, device=None, size=None, seed=None, tile=None, overlap=None, stats_size=1024,
                 preserve_color=False, report=print):
        self.model, self.device, self.size, self.report = model, device or model.device, size, report
        self.options = dict(seed=seed, tile=tile, overlap=overlap, stats_size=stats_size,
                            preserve_color=preserve_color)

    def run(self, todo):
        """Every job in order, each reported when done; returns the Results."""
        results = []
        for job in todo:
            result = self.run_job(job)
            self.report(result)
            results.append(result)
        return results

    def run_job(self, job):
        """Load, stylize and save one image; returns its Result."""
        image = load_image(job.input, self.size)
        start = time.perf_counter()
        output = self.stylize(job, image)
        seconds = time.perf_counter() - start
        save_image(job.output, output)
        return Result(job, image.shape[2], image.shape[1], seconds)

    def stylize(self, job, image):
        """The stylized image; running out of memory is the user's to fix (tiles, a smaller size)."""
        try:
            return stylize(self.model, image, self.device, **self.options)
        except MemoryError:
            raise UserError(f"{job.input}: out of memory at {image.shape[2]}x{image.shape[1]}; use --tile 512 "
                            f"(or --size to shrink it)") from None
