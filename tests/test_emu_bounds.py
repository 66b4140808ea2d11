"""emu traps out-of-bounds accesses: every emu array sits between PROT_NONE guard regions
(microst/emu_memory.py), and the fault becomes an error that names the kernel, the thread and
the argument. A read past the end whose value lands in a discarded column (a wrong tile bound)
passes every comparison of outputs; only a trap on the access can show it."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import microst
import microst.functional as F
from microst import cuda, emu_memory, ops
from microst.cuda import kernel as kernel_module
from microst.cuda import source as source_module
from microst.device import emu_empty

KERNELS = Path(__file__).resolve().parent / "emu_kernels"
i32 = np.int32


def fault_kernel(name):
    return cuda.get_kernel("emu", str(KERNELS / "faults.cu"), name)


@pytest.mark.parametrize("name", ["read_past_end", "read_past_end_synced"])
def test_a_read_past_the_end_names_the_kernel_and_the_argument(name):
    x, y = emu_empty(256), emu_empty(256)
    with pytest.raises(RuntimeError, match=rf"emu: kernel {name}, block \(3,0,0\): thread \(\d+,0,0\): out-of-bounds "
                                           rf"read at address 0x[0-9a-f]+: element 256 of argument 0 \(x, "
                                           rf"float32 \(256,\): elements 0 to 255\) of {name}"):
        fault_kernel(name)(4, 64, (x, y, i32(256), i32(1)))


def test_a_write_past_the_end_names_the_kernel():
    y = emu_empty(128)
    with pytest.raises(RuntimeError, match=r"kernel write_past_end, .*out-of-bounds write at address 0x[0-9a-f]+: "
                                           r"element 1\d\d of argument 0 \(y, float32 \(128,\): elements 0 to 127\)"):
        fault_kernel("write_past_end")(2, 64, (y, i32(128), i32(16)))


def test_a_negative_index_traps_when_arrays_sit_at_the_front_of_their_pages():
    with emu_memory.guard("front"):
        x, y = emu_empty(100), emu_empty(100)
    with pytest.raises(RuntimeError, match=r"kernel read_past_end, block \(0,0,0\): thread \(0,0,0\): out-of-bounds read "
                                           r".*: element -1 of argument 0 \(x, float32 \(100,\)"):
        fault_kernel("read_past_end")(1, 128, (x, y, i32(100), i32(-1)))


def test_in_bounds_accesses_still_run_after_a_fault():
    x, y = emu_empty(64), emu_empty(64)
    x[...] = np.arange(64)
    with pytest.raises(RuntimeError):
        fault_kernel("read_past_end")(1, 64, (x, y, i32(64), i32(64)))
    fault_kernel("read_past_end")(1, 64, (x, y, i32(64), i32(0)))
    np.testing.assert_array_equal(y, np.arange(64))


def test_a_wrong_tile_bound_in_the_gemm_core_fails(tmp_path, monkeypatch):
    """The mutation that passed every comparison of outputs: gemm.cuh's B-tile bound
    `n0 + n < N` changed to `<=` reads one column past the matrix."""
    mutant = tmp_path / "kernels"
    shutil.copytree(source_module.KERNEL_DIR, mutant)
    gemm = (mutant / "gemm.cuh").read_text()
    assert gemm.count("n0 + n < N && k0 + k < k_end") == 1
    (mutant / "gemm.cuh").write_text(gemm.replace("n0 + n < N && k0 + k < k_end", "n0 + n <= N && k0 + k < k_end"))
    monkeypatch.setattr(kernel_module, "KERNEL_DIR", mutant)
    monkeypatch.setattr(source_module, "KERNEL_DIR", mutant)
    monkeypatch.setattr(kernel_module, "_kernels", {})
    monkeypatch.setattr(kernel_module, "_modules", {})
    rng = np.random.default_rng(0)
    x = microst.tensor(rng.standard_normal((2, 5, 9, 11)).astype(np.float32), device="emu")
    w = microst.tensor(rng.standard_normal((7, 5, 3, 3)).astype(np.float32), device="emu")
    with ops.use_kernels(conv="v1", loss="v1"):
        with pytest.raises(RuntimeError, match=r"kernel conv2d_forward_v1, .*out-of-bounds read .*of argument 0 \(x"):
            F.conv2d(x, w, padding=1)
        with pytest.raises(RuntimeError, match=r"kernel gram_forward_v1, .*out-of-bounds read .*of argument 0 \(f"):
            F.gram(x)
