"""Registers, spills and shared memory of every kernel of every version, as NVRTC builds them for
the cuda device (microst.cuda.nvrtc; no GPU needed), as a Markdown table.

    python -m microst.lab registers [--arch sm_90]
"""
from ..cuda import nvrtc
from ..errors import UserError


def table(arch="sm_90", out=print):
    if nvrtc.library() is None:
        raise UserError("registers: NVRTC is not installed; pip install 'nvidia-cuda-nvrtc==13.0.88'")
    major, minor = nvrtc.version()
    out(f"NVRTC {major}.{minor}, {arch}: registers per thread, spills (bytes stored/loaded), static shared memory")
    out("")
    out("| file | kernel | registers | spill stores | spill loads | stack frame | shared bytes |")
    out("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for file in nvrtc.kernel_files():
        for name, r in nvrtc.compile_file(file, arch).items():
            out(f"| {file} | {name} | {r.registers} | {r.spill_stores} | {r.spill_loads} | {r.stack_frame} | {r.shared} |")
            rows.append((file, name, r))
    return rows
