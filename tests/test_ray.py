"""python -m microst.stylize --ray (microst.scale) on a local Ray instance, started once for this module:
the same pixels as local mode, a corrupt image skipped and reported, an interrupted job resumed with
--skip-existing, and one-line errors for bad input (those without starting Ray). Local mode never
imports ray."""
import contextlib
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import microst
from microst import checkpoint as mckpt
from microst.models import TransformerNet
from microst.stylize import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray Data's own settings

ROOT = Path(__file__).resolve().parent.parent
IMAGES = 20
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A folder of IMAGES small photos (32 to 48 pixels, some in a subfolder) and one corrupt file, and a
    tiny random TransformerNet checkpoint."""
    root = tmp_path_factory.mktemp("collection")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    r = np.random.default_rng(5)
    for i in range(IMAGES):
        h, w = 32 + 8 * (i % 3), 48 - 8 * (i % 2)
        small = (r.random((4, 5, 3)) * 255).astype(np.uint8)
        name = f"{'sub/' if i % 4 == 0 else ''}{i:02d}.{'jpg' if i % 5 == 0 else 'png'}"
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(photos / name)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    microst.manual_seed(0)
    model = mckpt.save_checkpoint(root / "tiny.h5", TransformerNet(width=0.125), style="tiny")
    return photos, model


def command(collection, out, *options, inputs=None, device="cpu"):
    photos, model = collection
    return [*(inputs or [str(photos)]), "--model", str(model), "--out-dir", str(out), "--no-progress",
            *(["--device", device] if device else []), *options]


def run(argv):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
    return status, out.getvalue(), err.getvalue()


def outputs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*.*"))


def images(folder):
    """The outputs without temporary files: a worker killed while saving leaves its .microst-*.tmp
    (never a truncated file under an image's name)."""
    return [name for name in outputs(folder) if not Path(name).name.startswith(".microst-")]


def settled_images(folder, seconds=20):
    """{name: mtime} of the images once no save is in flight (a worker that was saving when the run
    stopped finishes its image): the same names and times twice, 0.5 s apart."""
    previous = None
    for _ in range(int(seconds / 0.5)):
        try:
            now = {name: (folder / name).stat().st_mtime_ns for name in images(folder)}
        except FileNotFoundError:  # renamed between the listing and its stat
            now = None
        if now is not None and now == previous:
            return now
        previous = now
        time.sleep(0.5)
    raise AssertionError(f"the images still change after {seconds} s: {sorted(previous or ())}")


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im)


# -- local mode, for reference: one BLAS thread, as each Ray worker (num_cpus=1) has ------------------
@pytest.fixture(scope="module")
def local(collection, tmp_path_factory):
    """Local mode's run of the collection in a fresh process: (its folder, exit status, stderr, whether
    it imported ray)."""
    out = tmp_path_factory.mktemp("local")
    script = ("import sys; from microst.stylize import main; status = main(sys.argv[1:]); "
              "print('ray imported' if 'ray' in sys.modules else 'no ray'); sys.exit(status)")
    r = subprocess.run([sys.executable, "-c", script, *command(collection, out)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, **ONE_THREAD}, timeout=120)
    return out, r.returncode, r.stderr, r.stdout.splitlines()[-1]


def test_local_mode_never_imports_ray(local):
    assert local[3] == "no ray"


# -- errors before any work: no Ray started ----------------------------------------------------------
def one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_ray_without_ray_installed_names_the_extra(collection, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert 'pip install "microst[ray]"' in one_error_line(command(collection, tmp_path, "--ray"), capsys)


def test_bad_input_with_ray_is_one_line(collection, tmp_path, capsys):
    pytest.importorskip("ray")
    photos, _ = collection
    start = time.perf_counter()
    cases = [
        ([str(photos / "01.png"), "--ray"], "01.png: is a file; --ray stylizes folders of images"),
        (["--ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: no Ray cluster answers there"),
        (["--ray", "--texture-size", "8x8"], "--ray: stylizes folders into --out-dir DIR; leave out --texture-size"),
        (["--workers", "2"], "--workers: sets up --ray's workers; add --ray"),
        (["--ray", "--workers", "0"], "argument --workers: '0' is not a positive whole number"),
    ]
    for extra, message in cases:
        inputs = [extra.pop(0)] if not extra[0].startswith("-") else None  # a file instead of the folder
        assert message in one_error_line(command(collection, tmp_path / "out", *extra, inputs=inputs), capsys), extra
    assert time.perf_counter() - start < 10  # refused at once, not after Ray's retries
    assert not (tmp_path / "out").exists()


# -- on a local Ray instance -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """One small local Ray for this module (2 CPUs, no dashboard, an 80 MB object store); --ray joins it.
    Its workers inherit one BLAS thread, as local mode's reference run has."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as env:
        for name, value in ONE_THREAD.items():
            env.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 << 20, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def on_ray(ray_cluster, collection, tmp_path_factory):
    """The collection stylized with --ray by the default pool (2 workers): (folder, status, stdout, stderr)."""
    out = tmp_path_factory.mktemp("ray")
    return (out, *run(command(collection, out, "--ray")))


def test_outputs_equal_local_mode_pixel_for_pixel(local, on_ray):
    (local_out, *_), (ray_out, *_) = local, on_ray
    assert outputs(ray_out) == outputs(local_out) and len(outputs(ray_out)) == IMAGES
    assert "sub/00_tiny.jpg" in outputs(ray_out)  # subfolders and formats kept, as in local mode
    for name in outputs(ray_out):
        np.testing.assert_array_equal(pixels(ray_out / name), pixels(local_out / name), err_msg=name)


def test_a_corrupt_image_is_skipped_and_reported_as_in_local_mode(local, on_ray):
    (_, local_status, local_err, _), (_, status, printed, err) = local, on_ray
    assert status == local_status == 2
    assert printed.count(" s)\n") == IMAGES  # a line per image, with its time
    local_summary, summary = local_err.strip().splitlines()[-1], err.strip().splitlines()[-1]
    assert local_summary.startswith(f"{IMAGES} done, 1 skipped: ") and "broken.png: cannot read" in local_summary
    assert summary.startswith(local_summary + "; ") and summary.endswith(" s)") and "images/s on 2 workers" in summary
    assert [line for line in err.splitlines() if line.startswith("skipped: ")] == \
        [line for line in local_err.splitlines() if line.startswith("skipped: ")]


def test_an_interrupted_job_resumes_with_skip_existing(ray_cluster, collection, tmp_path, monkeypatch):
    """A full disk at a worker's 6th save (MICROST_FAULT, passed on to the workers) stops the run; the
    rerun with --skip-existing does only what is left."""
    monkeypatch.setenv("MICROST_FAULT", "write:6:ENOSPC")
    status, _, err = run(command(collection, tmp_path, "--ray", "--workers", "1", "--images-per-batch", "1"))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and "cannot write it (No space left on device)" in errors[0], err
    for _ in range(100):  # the stopped worker is gone once its CPU is free again
        if ray_cluster.available_resources().get("CPU") == 2:
            break
        time.sleep(0.1)
    done = settled_images(tmp_path)
    assert 5 <= len(done) < IMAGES

    monkeypatch.delenv("MICROST_FAULT")
    status, printed, err = run(command(collection, tmp_path, "--ray", "--skip-existing"))
    assert status == 2 and printed.count(" s)\n") == IMAGES - len(done)
    assert err.strip().splitlines()[-1].startswith(f"{IMAGES - len(done)} done, {len(done)} left as they were "
                                                   f"(--skip-existing), 1 skipped: ")
    assert len(images(tmp_path)) == IMAGES
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in done} == done  # not redone


def test_a_pool_larger_than_the_cluster_is_refused(ray_cluster, collection, tmp_path, capsys):
    for extra, message in ((["--workers", "3"], "--workers 3: the Ray cluster has 2 CPUs and each worker takes one"),
                           (["--device", "cuda"], "--device cuda: the Ray cluster has no GPU")):
        assert message in one_error_line(command(collection, tmp_path, "--ray", *extra, device=None), capsys)
    assert outputs(tmp_path) == []
