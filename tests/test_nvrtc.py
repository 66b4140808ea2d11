"""The real cuda compile, without a GPU: every kernel of every version through NVRTC (the
nvidia-cuda-nvrtc wheel, which .ci/run installs) with the cuda device's options, to a CUBIN for
sm_90. ptxas's report must show no register spills."""
import pytest

from microst.cuda import nvrtc

pytestmark = pytest.mark.skipif(nvrtc.library() is None, reason="nvidia-cuda-nvrtc is not installed "
                                "(pip install 'nvidia-cuda-nvrtc==13.0.88'; .ci/run does)")


@pytest.mark.parametrize("file", nvrtc.kernel_files())
def test_nvrtc_compiles_for_sm90_without_spills(file):
    report = nvrtc.compile_file(file, "sm_90")
    assert report, f"{file}: no kernels"
    for name, r in report.items():
        assert r.spill_stores == 0 and r.spill_loads == 0, f"{file}: {name} spills ({r})"
        assert r.registers <= 255, f"{file}: {name} uses {r.registers} registers"


def test_the_report_parser_reads_ptxas():
    log = ("ptxas info    : Function properties for k_v1\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 8256 bytes smem\n")
    assert nvrtc.parse_ptxas(log) == {"k_v1": nvrtc.Resources(40, 4, 4, 8, 8256)}
