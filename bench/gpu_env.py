"""The GPU machine's environment, for bench/gpu_check.sh: GPU, driver, CUDA, CuPy, NVRTC, torch, cuDNN
and torch's TF32 switches, printed and written as JSON.

    PYTHONPATH=. python3 bench/gpu_env.py [--out gpu_out/env.json]
"""
import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path


def report():
    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        info["nvidia-smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                                             "clocks.max.sm", "--format=csv,noheader"], capture_output=True,
                                            text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["nvidia-smi"] = f"unavailable ({e})"
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(cupy=cupy.__version__, gpu=props["name"].decode(), sm=f"{props['major']}{props['minor']}",
                    multiprocessors=props["multiProcessorCount"], cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    cuda_driver=cupy.cuda.runtime.driverGetVersion(), nvrtc=list(cupy.cuda.nvrtc.getVersion()))
    except Exception as e:  # no CuPy or no GPU: the report says so
        info["cupy"] = f"unavailable ({type(e).__name__}: {e})"
    try:
        import torch
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    except ImportError:
        info["torch"] = "not installed"
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    info = report()
    for k, v in info.items():
        print(f"{k}: {v}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
