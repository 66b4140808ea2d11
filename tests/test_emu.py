"""microst.cuda and the emu device: the test kernels of tests/emu_kernels/ against NumPy, on emu
(always) and cuda (marked gpu), and what emu must catch: deadlocks, races (through the block and
thread order), uninitialised shared memory, stack overflows, inline PTX, bad arguments."""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from microst import cuda
from microst.device import move, to_numpy

KERNELS = Path(__file__).resolve().parent / "emu_kernels"
DEVICES = ["emu", pytest.param("cuda", marks=pytest.mark.gpu)]
i32, f32 = np.int32, np.float32


def kernel(device, file, name):
    return cuda.get_kernel(device, str(KERNELS / file), name)


def on(device, *arrays):
    return [move(np.array(a), device) for a in arrays]  # copies: kernels write into some


def site(marker):
    """'tests/emu_kernels/faults.cu:LINE' of the line with the comment `marker`."""
    lines = (KERNELS / "faults.cu").read_text().splitlines()
    return f"tests/emu_kernels/faults.cu:{next(i for i, t in enumerate(lines, 1) if t.endswith('// ' + marker))}"


def blocks(n, per_block):
    return (n + per_block - 1) // per_block


# --- results against NumPy ----------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_saxpy_grid_stride_loop(device, rng):
    x, y = rng.standard_normal(1000, f32), rng.standard_normal(1000, f32)
    dx, dy = on(device, x, y)
    kernel(device, "elementwise.cu", "saxpy")(3, 64, (dx, dy, f32(2.5), i32(1000)))  # 192 threads, 1000 items
    np.testing.assert_allclose(to_numpy(dy), 2.5 * x + y, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_3d_grid_of_3d_blocks(device):
    nx, ny, nz = 13, 7, 5
    with cuda.poisoned():
        out = cuda.empty(device, (nz, ny, nx), np.int32)
    block = (4, 3, 2)
    grid = (blocks(nx, 4), blocks(ny, 3), blocks(nz, 2))
    kernel(device, "elementwise.cu", "coords")(grid, block, (out, i32(nx), i32(ny), i32(nz)))
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    np.testing.assert_array_equal(to_numpy(out), x + 1000 * y + 1000000 * z)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_and_every_scalar_type(device, rng):
    x = rng.standard_normal(100)
    dx, dy = on(device, x, np.zeros(100))
    kernel(device, "elementwise.cu", "scale_f64")(blocks(100, 32), 32, (dx, dy, np.float64(1.0 / 3), i32(100)))
    np.testing.assert_allclose(to_numpy(dy), x / 3, rtol=1e-15)
    (out,) = on(device, np.zeros(7))
    args = (out, i32(-7), np.uint32(4_000_000_000), f32(1.5), np.float64(2.25), np.int64(-2**40),
            np.uint64(2**40 + 3), np.bool_(True))
    kernel(device, "elementwise.cu", "pack_scalars")(1, 32, args)
    np.testing.assert_array_equal(to_numpy(out), [-7, 4e9, 1.5, 2.25, -2.0**40, 2.0**40 + 3, 1])


@pytest.mark.parametrize("device", DEVICES)
def test_float4_templates_math(device, rng):
    n4 = 37
    x = rng.uniform(-2, 2, (n4, 4)).astype(f32)
    dx, = on(device, x)
    y, z = cuda.empty(device, (n4, 4)), cuda.empty(device, (n4, 8))
    kernel(device, "elementwise.cu", "features")(blocks(n4, 16), 16, (dx, y, z, i32(n4), f32(0.5)))
    a, b, c, d = x.T.astype(np.float64)
    i = np.arange(n4)
    want_y = np.stack([np.maximum(a, 0) * 0.5, np.tanh(b) + np.exp(-abs(b)), 1 / np.sqrt(abs(c) + 1),
                       1 + 0.5 * d + 0.25 * d * d + np.clip(i, 2, 7)], 1)
    want_z = np.stack([np.exp(0.1 * a), np.log(abs(b) + 1), (abs(c) + 1) ** 1.5, d / 3, 1 / (a + 10),
                       a * b + c, -d, np.sqrt(abs(a)) + np.minimum(b, c) + np.maximum(a, 0.25)], 1)
    np.testing.assert_allclose(to_numpy(y), want_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(z), want_z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m, n, k", [(70, 33, 45), (16, 16, 16), (1, 1, 1), (5, 40, 17)])
def test_tiled_matmul(device, m, n, k, rng):
    a, b = rng.standard_normal((m, k), f32), rng.standard_normal((k, n), f32)
    da, db = on(device, a, b)
    with cuda.poisoned():
        c = cuda.empty(device, (m, n))
    kernel(device, "matmul.cu", "matmul")((blocks(n, 16), blocks(m, 16)), (16, 16), (da, db, c, i32(m), i32(n), i32(k)))
    np.testing.assert_allclose(to_numpy(c), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threads", [64, 256])
def test_row_stats_block_reduction(device, threads, rng):
    x = rng.standard_normal((5, 1000), f32) + 3
    dx, = on(device, x)
    mean, rstd = cuda.empty(device, 5), cuda.empty(device, 5)
    kernel(device, "reduce.cu", "row_stats")(5, threads, (dx, mean, rstd, i32(1000), f32(1e-5)))
    np.testing.assert_allclose(to_numpy(mean), x.mean(1), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(rstd), 1 / np.sqrt(x.var(1) + 1e-5), rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_warp_functions(device, rng):
    x = rng.integers(0, 100, 128).astype(np.int32)
    dx, = on(device, x)
    out = cuda.empty(device, (128, 12), np.int32)
    kernel(device, "reduce.cu", "warp_ops")(2, 64, (dx, out))
    w = x.reshape(-1, 32)  # warps
    lane = np.arange(32)

    def take(src):
        return w[:, src].reshape(-1)

    ballot = ((w & 1).astype(np.uint64) << lane.astype(np.uint64)).sum(1).astype(np.uint32).view(np.int32)
    want = np.stack([
        take(np.full(32, 3)),
        take((lane & ~7) | ((lane + 1) & 7)),
        take(np.where(lane >= 2, lane - 2, lane)),
        take(np.where((lane & 15) + 5 < 16, lane + 5, lane)),
        take(lane ^ 1),
        np.repeat(ballot, 32),
        np.repeat((w > 90).any(1), 32),
        np.ones(128),
        take(lane ^ 16),
        take(lane ^ 4),
        np.repeat(w.sum(1), 32),
        np.repeat((x.reshape(2, 64) & 1).sum(1), 64),
    ], 1)
    np.testing.assert_array_equal(to_numpy(out), want)


@pytest.mark.parametrize("device", DEVICES)
def test_ballot_in_a_partial_warp(device, rng):
    x = rng.integers(0, 100, 96).astype(np.int32)
    dx, = on(device, x)
    out = cuda.empty(device, 96, np.uint32)
    kernel(device, "reduce.cu", "partial_warp_ballot")(2, 48, (dx, out))
    want = []
    for blk in x.reshape(2, 48):
        for warp in (blk[:32], blk[32:]):
            bits = int(sum(int(v & 1) << i for i, v in enumerate(warp)))
            want += [bits] * len(warp)
    np.testing.assert_array_equal(to_numpy(out), want)


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_shared_memory(device, rng):
    x = rng.standard_normal(1000, f32)
    dx, = on(device, x)
    y = cuda.empty(device, 1000)
    kernel(device, "reduce.cu", "reverse_chunks")(blocks(1000, 128), 128, (dx, y, i32(1000)), shared_mem=128 * 4)
    j = np.arange(1000)
    i = (j // 128) * 128 + 127 - j % 128  # y[j] = x[i], the mirror position in its block (0 past the end)
    np.testing.assert_array_equal(to_numpy(y), np.where(i < 1000, x[np.minimum(i, 999)], 0))

    v = rng.standard_normal((64, 4), f32)
    dv, = on(device, v)
    r = cuda.empty(device, (64, 4))
    kernel(device, "reduce.cu", "rotate_float4")(2, 32, (dv, r), shared_mem=32 * 16)
    nxt = v.reshape(2, 32, 4)[:, (np.arange(32) + 1) % 32].reshape(64, 4)
    np.testing.assert_array_equal(to_numpy(r), nxt[:, [3, 0, 1, 2]])


@pytest.mark.parametrize("device", DEVICES)
def test_atomics(device, rng):
    x = rng.integers(-3, 20, 5000).astype(np.int32)
    dx, bins = on(device, x, np.zeros(16, np.int32))
    kernel(device, "atomics.cu", "histogram")(8, 128, (dx, bins, i32(5000), i32(16)))
    np.testing.assert_array_equal(to_numpy(bins), np.bincount(np.clip(x, 0, 15), minlength=16))

    n = 3000
    f, v = rng.standard_normal(n, f32), rng.integers(-1000, 1000, n).astype(np.int32)
    args = on(device, f, v, np.zeros(1, f32), np.zeros(1), np.full(1, -2**31, np.int32),
              np.full(1, 2**31 - 1, np.int32), np.zeros(1, np.uint32), np.full(1, -1, np.int32), np.zeros(1, f32))
    kernel(device, "atomics.cu", "atomic_misc")(blocks(n, 256), 256, (*args, i32(n)))
    fsum, dsum, imax, imin, count, claimed, last = (to_numpy(a)[0] for a in args[2:])
    assert fsum == pytest.approx(f.sum(dtype=np.float64), abs=1e-2)
    assert dsum == pytest.approx(f.sum(dtype=np.float64), rel=1e-9)
    assert (imax, imin, count) == (v.max(), v.min(), n)
    assert 0 <= claimed < n and last in f


# --- what emu makes visible ------------------------------------------------------------------------

def test_uninitialised_shared_memory_reads_nan():
    for name, shared in (("uninit_shared", 0), ("uninit_dynamic", 64 * 4)):
        out = cuda.empty("emu", (3, 64))
        kernel("emu", "faults.cu", name)(3, 64, (out,), shared_mem=shared)
        assert (out[0] > 0).all() and (out[1:, :32] > 0).all(), name
        # Block 0 wrote the whole array; blocks 1 and 2 must not see it: every block starts with 0xFF.
        assert np.isnan(out[1:, 32:]).all(), name


def test_deadlock_at_a_divergent_barrier():
    out = np.zeros(32, f32)
    with pytest.raises(RuntimeError) as e:
        kernel("emu", "faults.cu", "divergent_barrier")(2, 32, (out,))
    msg = str(e.value)
    assert "kernel divergent_barrier, block (0,0,0): deadlock" in msg
    assert f"threads 0-15 wait at __syncthreads ({site('barrier A')})" in msg
    assert "threads 16-31 have exited" in msg


def test_deadlock_at_two_different_barriers():
    with pytest.raises(RuntimeError) as e:
        kernel("emu", "faults.cu", "two_barriers")(1, 8, (np.zeros(8, f32),))
    assert f"threads 0, 2, 4, 6 wait at __syncthreads ({site('barrier C')})" in str(e.value)
    assert f"threads 1, 3, 5, 7 wait at __syncthreads ({site('barrier B')})" in str(e.value)


def test_deadlock_at_a_shuffle_with_exited_lanes():
    with pytest.raises(RuntimeError) as e:
        kernel("emu", "faults.cu", "exited_lanes_shuffle")(1, 32, (np.zeros(32, f32),))
    assert f"threads 0-15 wait at __shfl_xor_sync with mask 0xffffffff ({site('shuffle D')})" in str(e.value)
    assert "threads 16-31 have exited" in str(e.value)
    # The module works on after an error.
    out = np.zeros(32, f32)
    kernel("emu", "faults.cu", "missing_barrier")(1, 32, (out,))
    np.testing.assert_array_equal(out, 2 * np.r_[np.arange(1, 32), 0])


def test_stack_overflow_is_an_error(monkeypatch):
    out = np.zeros(32, np.int32)
    hog = kernel("emu", "faults.cu", "stack_hog")
    with pytest.raises(RuntimeError, match=r"stack_hog.*thread \(\d+,0,0\) overflowed its 128 KiB stack.*"
                                           r"MICROST_EMU_STACK_KIB"):
        hog(1, 32, (out, i32(100)))  # 400 KiB deep
    hog(1, 32, (out, i32(5)))
    assert (out == 6).all()
    monkeypatch.setenv("MICROST_EMU_STACK_KIB", "1024")
    hog(1, 32, (out, i32(100)))
    assert (out == 101).all()


def test_block_order_shows_a_race_between_blocks():
    race = kernel("emu", "faults.cu", "block_race")

    def run():
        with cuda.poisoned():
            tmp, out = cuda.empty("emu", 8), cuda.empty("emu", 8)
        race(8, 32, (tmp, out))
        return out

    np.testing.assert_array_equal(run(), np.arange(8))  # looks right in the default order
    with cuda.emu_order("reverse"):
        out = run()
    assert out[0] == 0 and np.isnan(out[1:]).all()
    with cuda.emu_order("random", seed=3):
        assert np.isnan(run()).any()


def test_thread_order_shows_races_within_a_block():
    last = kernel("emu", "faults.cu", "last_writer")  # a plain loop
    out = np.zeros(4, np.int32)
    last(4, 64, (out,))
    assert (out == 63).all()
    with cuda.emu_order("reverse"):
        last(4, 64, (out,))
    assert (out == 0).all()
    with cuda.emu_order("random", seed=1):
        last(4, 64, (out,))
    assert (out != 63).any()

    missing = kernel("emu", "faults.cu", "missing_barrier")  # fibers
    right = 2 * np.r_[np.arange(1, 32), 0]
    out = np.zeros(32, f32)
    missing(1, 32, (out,))
    np.testing.assert_array_equal(out, right)
    for order in ("reverse", "random"):
        with cuda.emu_order(order):
            missing(1, 32, (out,))
        assert (out != right).any(), order


def test_order_from_the_environment(monkeypatch):
    out = np.zeros(2, np.int32)
    monkeypatch.setenv("MICROST_EMU_ORDER", "reverse")
    kernel("emu", "faults.cu", "last_writer")(2, 64, (out,))
    assert (out == 0).all()
    monkeypatch.setenv("MICROST_EMU_ORDER", "backwards")
    with pytest.raises(ValueError, match="MICROST_EMU_ORDER"):
        kernel("emu", "faults.cu", "last_writer")(2, 64, (out,))
    with pytest.raises(ValueError, match="forward, reverse, random"):
        with cuda.emu_order("sideways"):
            pass


def test_inline_ptx_is_refused_unless_guarded():
    with pytest.raises(cuda.CompileError, match=r"emu cannot run inline PTX in tests/emu_kernels/ptx\.cu line 4; "
                                                r"guard it with #ifdef __CUDA_ARCH__"):
        kernel("emu", "ptx.cu", "lane_ids_ptx")
    out = np.zeros(64, np.uint32)
    kernel("emu", "ptx_guarded.cu", "lane_ids")(1, 64, (out,))
    np.testing.assert_array_equal(out, np.arange(64) % 32)


def test_poisoned_empty(monkeypatch):
    with cuda.poisoned():
        assert np.isnan(cuda.empty("emu", 3)).all()
        assert (cuda.empty("emu", 3, np.int32) == 2**31 - 1).all()
        assert (cuda.empty("emu", 3, np.uint8) == 255).all()
        assert cuda.empty("emu", (2, 3), np.float64).shape == (2, 3)
    assert not cuda.poisoning()
    monkeypatch.setenv("MICROST_POISON", "1")
    assert cuda.poisoning() and np.isnan(cuda.empty("emu", 2)).all()


# --- arguments and launch configuration --------------------------------------------------------------

def test_argument_errors():
    saxpy = kernel("emu", "elementwise.cu", "saxpy")
    x, y = np.zeros(8, f32), np.zeros(8, f32)
    with pytest.raises(TypeError, match=r"saxpy takes 4 arguments \(x, y, a, n\), got 3"):
        saxpy(1, 8, (x, y, f32(1)))
    with pytest.raises(TypeError, match=r"argument 3 \(int n\) is a Python int: wrap it as numpy.int32"):
        saxpy(1, 8, (x, y, f32(1), 8))
    with pytest.raises(TypeError, match=r"argument 2 \(float a\) is a Python float"):
        saxpy(1, 8, (x, y, 1.0, i32(8)))
    with pytest.raises(TypeError, match=r"argument 2 \(float a\) must be a numpy.float32 scalar, got numpy.float64"):
        saxpy(1, 8, (x, y, np.float64(1), i32(8)))
    with pytest.raises(ValueError, match=r"argument 0 \(const float\* __restrict__ x\) must be C-contiguous"):
        saxpy(1, 8, (np.zeros(16, f32)[::2], y, f32(1), i32(8)))
    with pytest.raises(TypeError, match=r"argument 1 \(float\* __restrict__ y\) must be a float32 array, got float64"):
        saxpy(1, 8, (x, np.zeros(8), f32(1), i32(8)))
    with pytest.raises(TypeError, match=r"argument 0 .* must be a NumPy array on emu, got builtins.list"):
        saxpy(1, 8, ([0.0] * 8, y, f32(1), i32(8)))
    readonly = np.zeros(8, f32)
    readonly.flags.writeable = False
    saxpy(1, 8, (readonly, y, f32(1), i32(8)))  # x is const
    with pytest.raises(ValueError, match=r"argument 1 .* is read-only"):
        saxpy(1, 8, (x, readonly, f32(1), i32(8)))
    with pytest.raises(TypeError, match="args must be a tuple"):
        saxpy(1, 8, x)
    with pytest.raises(ValueError, match=r"block \(2048, 1, 1\) has 2048 threads"):
        saxpy(1, 2048, (x, y, f32(1), i32(8)))
    with pytest.raises(ValueError, match="CUDA refuses empty launches"):
        saxpy(0, 8, (x, y, f32(1), i32(8)))
    with pytest.raises(TypeError, match="grid must be an int or a tuple of 1-3 ints"):
        saxpy((1, 1, 1, 1), 8, (x, y, f32(1), i32(8)))
    with pytest.raises(ValueError, match="shared_mem"):
        saxpy(1, 8, (x, y, f32(1), i32(8)), shared_mem=300_000)
    with pytest.raises(ValueError, match="aligned"):
        kernel("emu", "elementwise.cu", "features")(1, 1, (np.zeros(9, f32)[1:], np.zeros(8, f32), np.zeros(16, f32),
                                                           i32(1), f32(1)))


def test_kernel_lookup_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no extern \"C\" __global__ kernel 'nope' in tests/emu_kernels/"
                                         r"elementwise\.cu \(found: saxpy, coords"):
        kernel("emu", "elementwise.cu", "nope")
    with pytest.raises(ValueError, match="kernels run on 'cuda' or 'emu'"):
        cuda.get_kernel("cpu", "x.cu", "k")
    with pytest.raises(FileNotFoundError):
        cuda.get_kernel("emu", str(tmp_path / "missing.cu"), "k")
    src = tmp_path / "templated.cu"
    src.write_text("template <int N> __global__ void twice(float* x) { x[threadIdx.x] *= N; }\n"
                   "extern \"C\" __global__ void ok(float* x) { twice<2>(x); }\n")
    with pytest.raises(ValueError, match=r"templated\.cu:1: kernel twice must be declared extern \"C\""):
        cuda.get_kernel("emu", str(src), "twice")


def test_compile_error_shows_the_compiler_messages(tmp_path):
    src = tmp_path / "broken.cu"
    src.write_text('#include "helper.cuh"\n\nextern "C" __global__ void broken(float* x) {\n'
                   '    x[threadIdx.x] = undefined_name;\n}\n')
    (tmp_path / "helper.cuh").write_text("#pragma once\n__device__ inline float twice(float v) { return 2 * v; }\n")
    with pytest.raises(cuda.CompileError) as e:
        cuda.get_kernel("emu", str(src), "broken")
    assert "could not compile" in str(e.value) and "broken.cu:4" in str(e.value) and "undefined_name" in str(e.value)
    (tmp_path / "bad_include.cu").write_text('#include "nowhere.cuh"\n')
    with pytest.raises(FileNotFoundError, match=r'bad_include\.cu:1: cannot find the included "nowhere.cuh"'):
        cuda.get_kernel("emu", str(tmp_path / "bad_include.cu"), "k")


def test_barriers_found_through_helpers_and_macros(tmp_path):
    (tmp_path / "sync.cuh").write_text("#pragma once\n#define BLOCK_SYNC() __syncthreads()\n"
                                       "__device__ inline void wait_all() { BLOCK_SYNC(); }\n")
    (tmp_path / "scan.cu").write_text(textwrap.dedent('''\
        #include "sync.cuh"
        struct Acc { __device__ float twice(float v) const { return 2 * v; } };
        struct WarpSum {
            __device__ float operator()(float v) const { return v + __shfl_xor_sync(0xffffffffu, v, 1); }
        };
        __device__ float helper(float v) { wait_all(); return v; }
        extern "C" __global__ void via_helper(float* x) { x[threadIdx.x] = helper(x[threadIdx.x]); }
        extern "C" __global__ void via_macro(float* x) { BLOCK_SYNC(); }
        extern "C" { __global__ void plain(float* x) { x[threadIdx.x] = Acc().twice(x[threadIdx.x]); } }
        extern "C" __global__ void via_functor(float* x) { x[threadIdx.x] = WarpSum()(x[threadIdx.x]); }
        '''))
    k = cuda.get_kernel("emu", str(tmp_path / "scan.cu"), "via_helper")
    assert k.uses_fibers and cuda.get_kernel("emu", str(tmp_path / "scan.cu"), "via_macro").uses_fibers
    functor = cuda.get_kernel("emu", str(tmp_path / "scan.cu"), "via_functor")
    assert functor.uses_fibers
    plain = cuda.get_kernel("emu", str(tmp_path / "scan.cu"), "plain")
    assert not plain.uses_fibers
    x = np.arange(4, dtype=f32)
    plain(1, 4, (x,))
    k(1, 4, (x,))
    np.testing.assert_array_equal(x, 2 * np.arange(4))
    y = np.arange(32, dtype=f32)
    functor(1, 32, (y,))
    np.testing.assert_array_equal(y, np.arange(32) + (np.arange(32) ^ 1))


def test_build_cache_across_processes(tmp_path):
    (tmp_path / "k.cu").write_text('#include "value.cuh"\n'
                                   'extern "C" __global__ void fill(float* x) { x[threadIdx.x] = VALUE; }\n')
    (tmp_path / "value.cuh").write_text("#define VALUE 1.5f\n")
    script = ("import numpy as np; from microst import cuda; "
              f"k = cuda.get_kernel('emu', {str(tmp_path / 'k.cu')!r}, 'fill'); x = np.zeros(2, np.float32); "
              "k(1, 2, (x,)); print(cuda.emu_compiles, x[0])")
    env = dict(os.environ, MICROST_CACHE=str(tmp_path / "cache"))

    def run():
        return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    assert run() == ["1", "1.5"]
    assert run() == ["0", "1.5"]  # a fresh process finds it in the cache
    (tmp_path / "value.cuh").write_text("#define VALUE 2.5f\n")
    assert run() == ["1", "2.5"]  # an edit of an included file makes a new key


def test_portable_ucontext_fibers(monkeypatch, rng):
    monkeypatch.setenv("MICROST_EMU_CXXFLAGS", "-DMICROST_EMU_UCONTEXT")
    a, b = rng.standard_normal((20, 30), f32), rng.standard_normal((30, 18), f32)
    c = np.zeros((20, 18), f32)
    kernel("emu", "matmul.cu", "matmul")((2, 2), (16, 16), (a, b, c, i32(20), i32(18), i32(30)))
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="deadlock"):
        kernel("emu", "faults.cu", "divergent_barrier")(1, 32, (np.zeros(32, f32),))


def test_launches_from_several_threads(rng):
    a, b = rng.standard_normal((40, 40), f32), rng.standard_normal((40, 40), f32)
    matmul = kernel("emu", "matmul.cu", "matmul")
    results = [np.zeros((40, 40), f32) for _ in range(4)]

    def work(c):
        for _ in range(3):
            matmul((3, 3), (16, 16), (a, b, c, i32(40), i32(40), i32(40)))

    threads = [threading.Thread(target=work, args=(c,)) for c in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in results:
        np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_cuda_refuses_numpy_arrays():
    with pytest.raises(TypeError, match="must be a CuPy array on cuda"):
        kernel("cuda", "elementwise.cu", "saxpy")(1, 8, (np.zeros(8, f32), np.zeros(8, f32), f32(1), i32(8)))


@pytest.mark.gpu
def test_cuda_sync_mode(monkeypatch):
    monkeypatch.setenv("MICROST_CUDA_SYNC", "1")
    x, y = on("cuda", np.ones(8, f32), np.ones(8, f32))
    kernel("cuda", "elementwise.cu", "saxpy")(1, 8, (x, y, f32(2), i32(8)))
    cuda.synchronize("cuda")
    np.testing.assert_array_equal(to_numpy(y), 3)
