"""Tensor-core code on emu (kernels/emu/include: <mma.h>, <cuda_bf16.h>, <cuda_fp16.h>,
<cuda_pipeline.h>): WMMA GEMMs equal a NumPy reference rounded as emu documents it (bit for bit:
emu sums in k order in fp32), conversions round bit-exactly, and what CUDA leaves unspecified or
forbids fails on emu: a kernel that assumes a fragment layout, a partial warp, lanes that
disagree, a read of a cp.async destination before its wait. The real build of the same kernels:
NVRTC for sm_90 with the cuda device's include path."""
from pathlib import Path

import numpy as np
import pytest

from microst import cuda, emu_memory
from microst.cuda import kernel as kernel_module
from microst.cuda import nvrtc
from microst.device import move

KERNELS = Path(__file__).resolve().parent / "emu_kernels"
i32, f32, u32 = np.int32, np.float32, np.uint32
# forward block and thread order with arrays at the end of their guarded pages, reverse at the front
ORDERS = [pytest.param("forward", "end", id="forward"), pytest.param("reverse", "front", id="reverse")]


def kernel(file, name):
    return cuda.get_kernel("emu", str(KERNELS / file), name)


def site(file, marker):
    lines = (KERNELS / file).read_text().splitlines()
    return f"tests/emu_kernels/{file}:{next(i for i, t in enumerate(lines, 1) if t.endswith('// ' + marker))}"


# --- NumPy, rounded as emu (and the GPU) round -----------------------------------------------------

def tf32_rna(x):
    """__float_to_tf32 (cvt.rna.tf32.f32): nearest, ties away from zero; low 13 bits zero."""
    b = np.asarray(x, f32).view(u32)
    r = ((b.astype(np.uint64) + 0x1000) & 0xFFFFE000).astype(u32)
    return np.where(np.isnan(x), np.asarray(x, f32), r.view(f32)).astype(f32)


def tf32_truncate(x):
    """What emu's mma_sync reads of a tf32 fragment element that was not converted."""
    return (np.asarray(x, f32).view(u32) & u32(0xFFFFE000)).view(f32)


def bf16_bits(x):
    """__float2bfloat16: nearest, ties to even; NaN -> 0x7fff."""
    b = np.asarray(x, f32).view(u32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FFF), r)


def bf16_round(x):
    return (bf16_bits(x).astype(u32) << 16).view(f32)


def matmul_in_k_order(a, b, c=None):
    """c + a @ b as emu's mma_sync computes it: exact products, fp32 sums in k order."""
    acc = np.zeros((a.shape[0], b.shape[1]), f32) if c is None else c.astype(f32)
    for k in range(a.shape[1]):
        acc = acc + a[:, k:k + 1] * b[k:k + 1, :]
    return acc


def run_gemm(name, a, b, *extra, file="wmma.cu"):
    m, k = a.shape
    n = b.shape[1]
    da, db = move(a, "emu"), move(b, "emu")
    with cuda.poisoned():
        c = cuda.empty("emu", (m, n))
    kernel(file, name)((n // 16, m // 32), 64, (da, db, c, i32(m), i32(n), i32(k), *extra))
    return c


# --- right results -------------------------------------------------------------------------------

@pytest.mark.parametrize("order, guard", ORDERS)
@pytest.mark.parametrize("m, n, k", [(32, 32, 32), (64, 48, 24)])
def test_tf32_gemm_equals_the_rounded_reference(order, guard, m, n, k, rng):
    a, b = rng.standard_normal((m, k), f32), rng.standard_normal((k, n), f32)
    with cuda.emu_order(order), emu_memory.guard(guard):
        c = run_gemm("wmma_gemm_tf32", a, b, f32(0.5))
    # the kernel scales every x[i] of the accumulator: element-wise work needs no layout
    np.testing.assert_array_equal(c, matmul_in_k_order(tf32_rna(a), tf32_rna(b)) * f32(0.5))
    assert np.abs(c - 0.5 * a.astype(np.float64) @ b).max() < 1e-2  # and it is a matrix product
    assert kernel("wmma.cu", "wmma_gemm_tf32").uses_fibers


@pytest.mark.parametrize("order, guard", ORDERS)
def test_col_major_fragments_and_unconverted_tf32_inputs(order, guard, rng):
    m, n, k = 32, 32, 16
    a, b, c0 = (rng.standard_normal(s, f32) for s in ((m, k), (k, n), (m, n)))
    with cuda.emu_order(order), emu_memory.guard(guard):
        at, bt, dc0 = move(np.ascontiguousarray(a.T), "emu"), move(np.ascontiguousarray(b.T), "emu"), move(c0, "emu")
        with cuda.poisoned():
            dt = cuda.empty("emu", (n, m))
        kernel("wmma.cu", "wmma_gemm_tf32_colmajor")((n // 16, m // 32), 64, (at, bt, dc0, dt, i32(m), i32(n), i32(k)))
    want = matmul_in_k_order(tf32_truncate(a), tf32_truncate(b), c0)
    np.testing.assert_array_equal(dt.T, want)  # emu truncates what was not converted ...
    assert (dt.T != matmul_in_k_order(tf32_rna(a), tf32_rna(b), c0)).any()  # ... which rounding would not give


@pytest.mark.parametrize("order, guard", ORDERS)
def test_bf16_gemm_equals_the_rounded_reference(order, guard, rng):
    a, b = rng.standard_normal((64, 48), f32), rng.standard_normal((48, 32), f32)
    with cuda.emu_order(order), emu_memory.guard(guard):
        c = run_gemm("wmma_gemm_bf16", a, b)
    np.testing.assert_array_equal(c, matmul_in_k_order(bf16_round(a), bf16_round(b)))


def test_rounding_is_bit_exact(rng):
    def floats(*bits):
        return np.array(bits, u32).view(f32)

    special = floats(
        0x3F800000, 0x3F801000, 0x3F803000, 0x3F802FFF, 0x3F801001,  # tf32: ties (away from zero) and around
        0xBF801000, 0xBF803000, 0xBF800FFF,                          # negative ties
        0x3F808000, 0x3F818000, 0x3F818001, 0x3F817FFF,              # bf16: ties (to even) and around
        0xBF808000, 0xBF818000,                                      # negative
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FF000, 0x7F800000, 0xFF800000,  # the largest floats, infinities
        0x7FC00000, 0xFFFFFFFF, 0x7F800001,                          # NaNs
        0x00000000, 0x80000000, 0x00000001, 0x00400000, 0x807FFFFF,  # zeros, subnormal floats
        0x477FEFFF, 0x477FF000, 0x477FE000, 0xC77FF000,              # fp16: around 65504 / 65520
        0x33000000, 0x33000001, 0x33400000, 0x387FC000, 0x38800000,  # fp16: subnormal halves, 2^-25 tie
        0x387FE000, 0x34C00000, 0xB4C00000)
    scaled = rng.standard_normal(2000, f32) * f32(10.0) ** rng.integers(-8, 8, 2000).astype(f32)
    x = np.concatenate([special, scaled, rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(u32).view(f32)])
    n = len(x)
    dx = move(x, "emu")
    tf32, bf16, fp16 = (cuda.empty("emu", n, u32) for _ in range(3))
    bf16_back, fp16_back = cuda.empty("emu", n), cuda.empty("emu", n)
    kernel("wmma.cu", "round_bits")((n + 127) // 128, 128, (dx, tf32, bf16, fp16, bf16_back, fp16_back, i32(n)))
    nan = np.isnan(x)
    np.testing.assert_array_equal(tf32[~nan], tf32_rna(x).view(u32)[~nan])
    assert np.isnan(tf32.view(f32)[nan]).all() and not (tf32[nan] & 0x1FFF).any()
    assert tf32_rna(floats(0x3F801000, 0xBF801000)).view(u32).tolist() == [0x3F802000, 0xBF802000]  # the ties
    np.testing.assert_array_equal(bf16, bf16_bits(x))
    assert bf16_bits(floats(0x3F808000, 0x3F818000)).tolist() == [0x3F80, 0x3F82]
    np.testing.assert_array_equal(bf16_back.view(u32), bf16.astype(u32) << 16)
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)  # NumPy rounds to nearest even, with subnormals and overflow to inf
    np.testing.assert_array_equal(fp16[~nan], half.view(np.uint16)[~nan])
    assert (fp16[nan] == 0x7FFF).all()
    np.testing.assert_array_equal(fp16_back[~nan], half.astype(f32)[~nan])


# --- what emu makes fail ---------------------------------------------------------------------------

def small_operands(rng):
    return move(rng.standard_normal((16, 8), f32), "emu"), move(rng.standard_normal((8, 16), f32), "emu")


def test_code_that_assumes_a_fragment_layout_fails(rng):
    a, b = small_operands(rng)
    with cuda.poisoned():
        c = cuda.empty("emu", (16, 16))
    kernel("wmma.cu", "wmma_store_by_hand")(1, 32, (a, b, c))
    want = matmul_in_k_order(tf32_truncate(a), tf32_truncate(b))
    assert (c != want).mean() > 0.9  # nearly every value in the wrong place ...
    np.testing.assert_array_equal(np.sort(c, None), np.sort(want, None))  # ... of the right values


@pytest.mark.parametrize("order, guard", ORDERS)
def test_wmma_misuse_is_an_error(order, guard, rng):
    misuse = kernel("wmma.cu", "wmma_misuse")
    with cuda.emu_order(order), emu_memory.guard(guard):
        a, b = small_operands(rng)
        c = cuda.empty("emu", (16, 16))
        misuse(1, 64, (a, b, c, i32(0)))  # right: two warps computing the same tile
        np.testing.assert_array_equal(c, matmul_in_k_order(tf32_truncate(a), tf32_truncate(b)))
        with pytest.raises(RuntimeError, match=rf"wmma_misuse, block \(0,0,0\): warp \d: wmma::load_matrix_sync: "
                                               rf"lane 5 \({site('wmma.cu', 'misuse A')}\) passed .* every lane of the "
                                               rf"warp must pass the same fragment type, pointer, ldm and layout"):
            misuse(1, 64, (a, b, c, i32(1)))
        with pytest.raises(RuntimeError, match=rf"load_matrix_sync \({site('wmma.cu', 'misuse B')}\): pointer "
                                               r"0x[0-9a-f]+, ldm 8: the pointer must be 256-bit \(32-byte\) aligned"):
            misuse(1, 64, (a, b, c, i32(2)))
        # half of each warp at mma_sync, the other half at store_matrix_sync
        with pytest.raises(RuntimeError, match=r"lane \d+ of warp \d is at wmma::\w+ .* while lane \d+ is at") as e:
            misuse(1, 64, (a, b, c, i32(3)))
        assert f"wmma::mma_sync ({site('wmma.cu', 'misuse C')})" in str(e.value)
        with pytest.raises(RuntimeError, match=r"called wmma::load_matrix_sync \(.*wmma\.cu:\d+\) in warp 0, which "
                                               r"has only 16 threads: WMMA functions are collective over a full warp"):
            misuse(1, 16, (a, b, c, i32(0)))
        misuse(1, 32, (a, b, c, i32(4)))  # an accumulator never filled: NaN
        assert np.isnan(c).all()


def test_a_fragment_load_out_of_bounds_names_the_argument(rng):
    a, b = move(rng.standard_normal((32, 24), f32), "emu"), move(rng.standard_normal((32, 16), f32), "emu")
    c = cuda.empty("emu", (32, 16))
    with pytest.raises(RuntimeError, match=r"wmma_gemm_tf32, .*out-of-bounds read .*: element \d+ of argument 0 \(A, "
                                           r"float32 \(32, 24\)"):
        kernel("wmma.cu", "wmma_gemm_tf32")(1, 64, (a, b, c, i32(32), i32(16), i32(32), f32(1)))  # K is 24


# --- cp.async ------------------------------------------------------------------------------------

@pytest.mark.parametrize("order, guard", ORDERS)
def test_cp_async_pipeline_needs_its_waits(order, guard, rng):
    a, b = rng.standard_normal((64, 40), f32), rng.standard_normal((40, 32), f32)
    want = matmul_in_k_order(tf32_rna(a), tf32_rna(b))
    with cuda.emu_order(order), emu_memory.guard(guard):
        for drain in (0, 1):
            c = run_gemm("wmma_gemm_tf32_async", a, b, i32(1), i32(drain), file="wmma_async.cu")
            np.testing.assert_array_equal(c, want)
        # no wait, or "all but the newest 2": the tile is read before its copy happened
        assert np.isnan(run_gemm("wmma_gemm_tf32_async", a, b, i32(-1), i32(1), file="wmma_async.cu")).all()
        assert np.isnan(run_gemm("wmma_gemm_tf32_async", a, b, i32(2), i32(1), file="wmma_async.cu")).all()
        with pytest.raises(RuntimeError, match=r"wmma_gemm_tf32_async, block \(\d,\d,0\): thread \(\d+,0,0\) exited "
                                               r"with \d cp.async copies that no __pipeline_wait_prior covered \(the "
                                               rf"first issued at {site('wmma_async.cu', 'copy A')}\); wait for them"):
            run_gemm("wmma_gemm_tf32_async", a, b, i32(2), i32(0), file="wmma_async.cu")


def test_cp_async_without_barriers_runs_in_a_plain_loop(rng):
    copy = kernel("wmma_async.cu", "async_copy_plain")
    assert not copy.uses_fibers
    src = move(rng.standard_normal(2 * 64 * 4, f32), "emu")
    for zfill in (0, 8):
        before, after = cuda.empty("emu", 256), cuda.empty("emu", 256)
        copy(1, 64, (src, before, after, i32(zfill)), shared_mem=64 * 16)
        assert np.isnan(before).all()  # the destination before the wait: poison, not the earlier copy's data
        want = src[256:].reshape(64, 4).copy()
        want[:, 4 - zfill // 4:] = 0
        np.testing.assert_array_equal(after.reshape(64, 4), want)


def test_cp_async_misuse_is_an_error(rng):
    misuse = kernel("wmma_async.cu", "async_copy_misuse")
    src, dst = move(rng.standard_normal(64 * 4 + 4, f32), "emu"), cuda.empty("emu", 256)
    for how, message in ((1, rf"__pipeline_memcpy_async\(0x[0-9a-f]+, 0x[0-9a-f]+, 16, 0\) "
                              rf"\({site('wmma_async.cu', 'misuse D')}\): the destination .* must be shared memory"),
                         (2, r"size_and_align must be 4, 8 or 16"),
                         (3, r"both pointers must be aligned to size_and_align"),
                         (4, rf"exited with 1 cp.async copies .* \(the first issued at "
                             rf"{site('wmma_async.cu', 'misuse E')}, never committed\)")):
        with pytest.raises(RuntimeError, match=message) as e:
            misuse(1, 64, (src, dst, i32(how)))
        assert str(e.value).startswith("emu: kernel async_copy_misuse, block (0,0,0): thread (0,0,0)"), how
    misuse(1, 64, (src, dst, i32(0)))  # the module runs on after its errors


# --- the real build --------------------------------------------------------------------------------

def test_cuda_include_path():
    dirs = kernel_module.cuda_include_dirs()
    if not dirs:
        pytest.skip("no CUDA headers here: set CUDA_PATH, or pip install nvidia-cuda-runtime nvidia-cuda-crt")
    for header in ("mma.h", "crt/mma.h", "cuda_pipeline.h", "cuda_bf16.h", "cuda_fp16.h"):
        assert any((Path(d) / header).is_file() for d in dirs), header
    assert all(f"-I{d}" in kernel_module.cuda_options() for d in dirs)


@pytest.mark.skipif(nvrtc.library() is None, reason="nvidia-cuda-nvrtc is not installed")
@pytest.mark.parametrize("file", ["wmma.cu", "wmma_async.cu"])
def test_nvrtc_compiles_the_tensor_core_kernels_for_sm90(file):
    if not kernel_module.cuda_include_dirs():
        pytest.skip("no CUDA headers (<mma.h>, <cuda_pipeline.h>) here: set CUDA_PATH, or pip install "
                    "nvidia-cuda-runtime nvidia-cuda-crt")
    report = nvrtc.compile_file(str(KERNELS / file), "sm_90")  # a report for every kernel, or an error
    for name, r in report.items():
        assert r.spill_stores == 0 and r.spill_loads == 0, f"{file}: {name} spills ({r})"
