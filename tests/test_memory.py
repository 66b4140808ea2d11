"""Stylizing a photo larger than the free memory: the memory is estimated before running
(model.peak_bytes against microst.device.free_memory, patched here rather than a real 8000x6000
photo), and the image is tiled automatically with a message, or refused naming --size."""
import numpy as np
import pytest
from PIL import Image

import microst
import microst.transfer
from microst import device as devices
from microst import jobs
from microst.errors import UserError
from microst.models.johnson import TransformerNet


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "big.png"
    small = (np.random.default_rng(0).random((4, 5, 3)) * 255).astype(np.uint8)  # smooth, like a photo
    Image.fromarray(small).resize((128, 96), Image.BICUBIC).save(path)
    return path


def _stylizer(monkeypatch, free, **kw):
    monkeypatch.setattr(jobs, "free_memory", lambda device: free)
    microst.manual_seed(0)
    model = TransformerNet(width=0.125).eval()
    warnings = []
    return model, warnings, jobs.Stylizer(model, report=lambda r: None, warn=warnings.append, **kw)


def test_the_estimate_grows_with_the_image():
    model = TransformerNet()
    assert model.peak_bytes(6000, 8000) > 20e9 > model.peak_bytes(512, 512) > 1e8  # the measured 21.5 GB


def test_an_image_that_fits_is_stylized_whole(monkeypatch, photo, tmp_path):
    model, warnings, stylizer = _stylizer(monkeypatch, free=64e9)
    stylizer.run([jobs.Job(str(photo), tmp_path / "out.png")])
    assert warnings == []


def test_an_image_too_large_is_tiled_and_says_so(monkeypatch, photo, tmp_path):
    monkeypatch.setattr(jobs.Stylizer, "TILES", (32,))  # a tile small enough for a small test image
    model = TransformerNet(width=0.125).eval()
    free = 1.05 * jobs.Stylizer(model, stats_size=48).tiled_bytes(96, 128, 32) / jobs.Stylizer.USABLE
    assert model.peak_bytes(96, 128) > jobs.Stylizer.USABLE * free  # whole, it would not fit
    model, warnings, stylizer = _stylizer(monkeypatch, free=free, stats_size=48)
    stylizer.run([jobs.Job(str(photo), tmp_path / "out.png")])
    assert len(warnings) == 1 and "128x96 needs about" in warnings[0] and "in 32x32 tiles (as --tile 32 would)" in \
        warnings[0], warnings
    explicit = microst.transfer.stylize(model, microst.io.load_image(photo), tile=32, stats_size=48)
    np.testing.assert_array_equal(microst.io.load_image(tmp_path / "out.png"), np.clip(np.rint(explicit), 0, 255))


def test_an_image_that_fits_in_no_tile_is_refused_naming_size(monkeypatch, photo, tmp_path):
    model, warnings, stylizer = _stylizer(monkeypatch, free=1e6)
    with pytest.raises(UserError, match=r"big.png: 128x96 needs about .* GB, and even in 256x256 tiles more than the "
                                        r"0.0 GB free; use --size"):
        stylizer.run([jobs.Job(str(photo), tmp_path / "out.png")])


def test_free_memory_reads_meminfo():
    free = devices.free_memory("cpu")
    assert free is None or free > 1e8
