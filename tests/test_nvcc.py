"""Every kernel source stays valid CUDA: nvcc compiles it to PTX for sm_90 (skipped without nvcc)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from microst.cuda import KERNEL_DIR

SOURCES = sorted(KERNEL_DIR.glob("*.cu")) + sorted((Path(__file__).resolve().parent / "emu_kernels").glob("*.cu"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nvcc_compiles_to_ptx(source, tmp_path):
    r = subprocess.run(["nvcc", "--ptx", "-arch=sm_90", "-std=c++17", "-I", str(KERNEL_DIR),
                        "-o", str(tmp_path / f"{source.stem}.ptx"), str(source)], capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc failed on {source}:\n{r.stderr}"
