"""The cpu conv's fast paths (microst/ops/conv_cpu.py: gemm, winograd) against its plain im2col path
(reference), on every conv case (microst.ops.conv.cases()): output and every input gradient, in
float64 and float32, in bands of any size; their float64 gradient checks; Winograd against
float64; the sub-pixel forms (strided backward-data, upsample_conv2d) on more shapes; and the
workspace the fast paths reuse never holding a result or what backward keeps."""
import numpy as np
import pytest

import microst
import microst.functional as F
from microst.gradcheck import check_backward
from microst.ops import conv as conv_ops
from microst.ops import blas_kernels, conv_cpu, conv_gemm, workspace
from microst.ops.base import Case

CASES = conv_ops.cases()
FAST = ("gemm", "winograd")


def run(case, arrays, path):
    """[output, gradient of every input] of the case on cpu under `path`."""
    xs = [microst.tensor(a, requires_grad=True) for a in arrays]
    with conv_cpu.use_path(path):
        y = case.fn(F, *xs)
        y.backward(np.random.default_rng(7).standard_normal(y.shape).astype(arrays[0].dtype))
    return [y.numpy()] + [x.grad for x in xs]


def assert_matches(got, expected, rtol):
    for i, (g, e) in enumerate(zip(got, expected)):
        what = "output" if i == 0 else f"gradient of input {i - 1}"
        assert g.dtype == e.dtype and g.shape == e.shape, what
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * float(np.abs(e).max()), err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fast_path_matches_reference(case, path, dtype):
    arrays = case.inputs(dtype=dtype, seed=3)
    assert_matches(run(case, arrays, path), run(case, arrays, "reference"), 1e-11 if dtype == np.float64 else 2e-5)


@pytest.mark.parametrize("band", [1, 200])
@pytest.mark.parametrize("path", FAST)
def test_fast_paths_in_small_bands(path, band, monkeypatch):
    """A band of one output (or tile) row at a time, and a few rows: the same results as in one band."""
    expected = {c.name: run(c, c.inputs(dtype=np.float64, seed=4), "reference") for c in CASES}
    monkeypatch.setattr(conv_cpu, "BAND_ELEMENTS", band)
    for case in CASES:
        assert_matches(run(case, case.inputs(dtype=np.float64, seed=4), path), expected[case.name], 1e-11)


@pytest.mark.parametrize("path", FAST)
def test_fast_paths_one_channel_at_a_time(path, monkeypatch):
    """Layout copies and interleaves go through the channels a cache-sized block at a time
    (workspace.channel_blocks); one channel per block gives the same results as all in one."""
    expected = {c.name: run(c, c.inputs(dtype=np.float64, seed=4), "reference") for c in CASES}
    monkeypatch.setattr(workspace, "PLANES_BYTES", 1)
    assert workspace.channel_blocks(3, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    for case in CASES:
        assert_matches(run(case, case.inputs(dtype=np.float64, seed=4), path), expected[case.name], 1e-11)


@pytest.mark.parametrize("band", [None, 1, 200])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_by_rows_on_every_case(dtype, band, monkeypatch):
    """The gemm path's stride-1 forward by output rows (ops/conv_gemm.py; by default where kh * Cin >=
    ROWS_K), here on every case, so on every stride-1 forward and backward-data: the same as the
    reference, in one band, one output row at a time, and a few."""
    expected = {c.name: run(c, c.inputs(dtype=dtype, seed=8), "reference") for c in CASES}
    monkeypatch.setattr(conv_gemm, "ROWS_K", 1)
    if band is not None:
        monkeypatch.setattr(conv_cpu, "BAND_ELEMENTS", band)
    for case in CASES:
        assert_matches(run(case, case.inputs(dtype=dtype, seed=8), "gemm"), expected[case.name],
                       1e-11 if dtype == np.float64 else 2e-5)


def test_forward_by_rows_where_the_rows_are_wide_enough(monkeypatch):
    """By default the forward by rows takes the convs with kh * Cin >= ROWS_K (a wrong row or tap
    order there fails against the reference), and the others keep im2col."""
    taken = []
    original = conv_gemm._forward_by_rows
    monkeypatch.setattr(conv_gemm, "_forward_by_rows", lambda *a: taken.append(a[1].shape) or original(*a))
    rng = np.random.default_rng(0)
    for cin, cout, k, padding in ((32, 16, 3, (1, 1)), (16, 3, 9, (4, 3)), (16, 32, 3, (1, 1)), (3, 16, 9, (4, 4))):
        x, w, b = rng.standard_normal((2, cin, 14, 11)), rng.standard_normal((cout, cin, k, k)), rng.standard_normal(cout)
        with conv_cpu.use_path("reference"):
            expected = conv_cpu.forward(x, w, b, (1, 1), padding)
        with conv_cpu.use_path("gemm"):
            np.testing.assert_allclose(conv_cpu.forward(x, w, b, (1, 1), padding), expected, rtol=1e-11, atol=1e-11)
    assert taken == [(16, 32, 3, 3), (3, 16, 9, 9)]


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fast_path_gradient_check(case, path):
    with conv_cpu.use_path(path):
        check_backward(lambda *xs: case.fn(F, *xs), case.inputs(dtype=np.float64, seed=5))


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_winograd_is_as_accurate_as_im2col(padding):
    """Against float64, Winograd's float32 forward and backward-data are within 2x the error of the
    float32 reference (its transforms only add, subtract and halve)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 48, 23, 18)), rng.standard_normal((40, 48, 3, 3)) / 20
    dy = rng.standard_normal((2, 40, 23 + 2 * padding - 2, 18 + 2 * padding - 2))
    stride, pad = (1, 1), (padding, padding)

    def passes(path, dtype):
        with conv_cpu.use_path(path):
            return (conv_cpu.forward(x.astype(dtype), w.astype(dtype), None, stride, pad),
                    conv_cpu.backward_data(dy.astype(dtype), w.astype(dtype), x.shape, stride, pad))

    exact = passes("reference", np.float64)
    for got, plain, truth in zip(passes("winograd", np.float32), passes("reference", np.float32), exact):
        scale = np.abs(truth).max()
        assert np.abs(got - truth).max() / scale <= 2 * np.abs(plain - truth).max() / scale + 1e-7


def test_the_blas_kernels_are_known_where_numpy_runs_openblas(monkeypatch):
    """The probe finds the OpenBLAS NumPy loaded (its wheels bundle one) and reads its kernels' name."""
    if not blas_kernels.loaded_openblas():
        pytest.skip("no OpenBLAS loaded, or no /proc/self/maps: the probe answers None and Winograd starts at 128")
    assert blas_kernels.openblas_core()
    for core, avx512 in (("SkylakeX", True), ("Cooperlake", True), ("Haswell", False), ("Zen", False), (None, False)):
        monkeypatch.setattr(blas_kernels, "openblas_core", lambda: core)
        assert blas_kernels.avx512_gemm() is avx512


@pytest.mark.parametrize("avx512", [False, True])
def test_default_choice(avx512, monkeypatch):
    """Winograd for the wide stride-1 3x3 convs (128 channels and more, 256 with AVX-512 GEMMs), gemm for
    other stride-1 convs, im2col for strided ones."""
    monkeypatch.setattr(blas_kernels, "avx512_gemm", lambda: avx512)
    wide = 256 if avx512 else 128
    w3, narrow = (wide, wide, 3, 3), (2 * wide, wide // 2, 3, 3)
    assert conv_cpu._path(w3, (1, 1), (1, 1)) == "winograd"
    assert conv_cpu._path(narrow, (1, 1), (0, 0)) == "gemm"
    assert conv_cpu._path((wide // 2, 2 * wide, 3, 3), (1, 1), (0, 0)) == "gemm"
    assert conv_cpu._path((3, 32, 9, 9), (1, 1), (4, 4)) == "gemm"
    assert conv_cpu._path((16, 3, 3, 3), (1, 1), (1, 1)) == "gemm"
    assert conv_cpu._path(w3, (2, 2), (1, 1)) == "gemm"  # (its forward is the reference's im2col)
    with conv_cpu.use_path("reference"):
        assert conv_cpu._path(w3, (1, 1), (1, 1)) == "reference"
    with pytest.raises(ValueError, match="unknown conv path"):
        with conv_cpu.use_path("fast"):
            pass


@pytest.mark.parametrize("path", FAST)
def test_workspace_holds_no_result(path):
    """Outputs, gradients and what the ops keep for backward are never workspace memory, which the
    next conv overwrites."""
    x = microst.tensor(np.random.default_rng(1).standard_normal((2, 40, 12, 10)).astype(np.float32), requires_grad=True)
    conv = microst.nn.Conv2d(40, 40, 3, padding=1)
    out = microst.nn.Conv2d(40, 3, 5, padding=2)
    with conv_cpu.use_path(path):
        h = conv(x)
        y = out(F.relu(h))
        kept = [h.data, y.data] + [a for t in (h, y) for a in vars(t._op).values() if isinstance(a, np.ndarray)]
        y.backward(np.ones(y.shape, np.float32))
    results = kept + [x.grad] + [p.grad for p in conv.parameters() + out.parameters()]
    assert workspace.buffers(), "the fast path used no workspace"
    for a in results:
        assert not any(np.shares_memory(a, buffer) for buffer in workspace.buffers())


@pytest.mark.parametrize("cout", [3, 16, 32])
@pytest.mark.parametrize("height", [13, 24, 25])
@pytest.mark.parametrize("padding", [(4, 4), (0, 2), (2, 0)])
def test_wide_kernel_by_column_taps(cout, height, padding, monkeypatch):
    """The 9x9 conv from RGB reads kw shifted copies of its input rows (ops/conv_gemm.py): any number of
    rows, any padding, in bands of any size (a band's rows overlap the next's), the same as the
    reference."""
    rng = np.random.default_rng(height)
    x, w, b = rng.standard_normal((2, 3, height, 11)), rng.standard_normal((cout, 3, 9, 9)), rng.standard_normal(cout)
    with conv_cpu.use_path("reference"):
        expected = conv_cpu.forward(x, w, b, (1, 1), padding)
    calls = []
    by_column_taps = conv_gemm._forward_by_column_taps
    monkeypatch.setattr(conv_gemm, "_forward_by_column_taps", lambda *a: calls.append(a[4]) or by_column_taps(*a))
    bands = (conv_cpu.BAND_ELEMENTS, 3000, 300)
    for band in bands:
        monkeypatch.setattr(conv_cpu, "BAND_ELEMENTS", band)
        with conv_cpu.use_path("gemm"):
            np.testing.assert_allclose(conv_cpu.forward(x, w, b, (1, 1), padding), expected, rtol=1e-11, atol=1e-11)
    assert calls == list(bands)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), (3, 2, 0), (4, 2, 1), (5, 3, 2), (2, 3, 0), (1, 2, 0),
                                                     (3, (2, 1), (1, 0)), (5, 2, 4)])
@pytest.mark.parametrize("size", [(1, 1), (7, 8), (10, 5)])
def test_strided_backward_data_as_one_conv(kernel, stride, padding, size):
    """Strided backward-data as a stride-1 conv whose channels interleave (ops/conv_subpixel.py): any
    kernel, stride, padding and input size, phases with no tap (kernel < stride) included."""
    stride, padding = conv_ops.pair(stride, "", ""), conv_ops.pair(padding, "", "")
    h, w = size[0] + 2 * padding[0], size[1] + 2 * padding[1]
    if h < kernel or w < kernel:
        h, w = h + kernel, w + kernel
    x_shape = (2, 5, h - 2 * padding[0], w - 2 * padding[1])
    rng = np.random.default_rng(sum(size) + kernel)
    weight = rng.standard_normal((6, 5, kernel, kernel))
    dy = rng.standard_normal((2, 6) + tuple(conv_cpu.conv_output_size(n, kernel, s, p)
                                            for n, s, p in zip(x_shape[2:], stride, padding)))
    with conv_cpu.use_path("reference"):
        expected = conv_cpu.backward_data(dy, weight, x_shape, stride, padding)
    with conv_cpu.use_path("gemm"):
        got = conv_cpu.backward_data(dy, weight, x_shape, stride, padding)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


UPSAMPLE_CASES = [c for c in CASES if c.op is conv_ops.UpsampleConv2d]
assert UPSAMPLE_CASES, "microst.ops.conv.cases() has no upsample_conv2d case"


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=[c.name for c in UPSAMPLE_CASES])
def test_upsample_conv_is_interpolate_then_conv(case, path):
    """upsample_conv2d's sub-pixel form against what it fuses, F.conv2d(F.interpolate(x, 2), padding=1)
    written out: output and every gradient, in float64 (on the reference path the op is that)."""
    arrays = case.inputs(dtype=np.float64, seed=6)

    def unfused(F, x, w, *b):
        return F.conv2d(F.interpolate(x, scale_factor=2), w, b[0] if b else None, padding=1)

    expected = run(Case(case.name, unfused, case.shapes), arrays, "reference")
    assert_matches(run(case, arrays, path), expected, 1e-12)
