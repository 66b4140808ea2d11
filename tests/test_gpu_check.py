"""bench/gpu_check.sh, the one script a lent GPU machine runs, checked here without a GPU: the shell
script parses, and its Python parts run on emu at tiny sizes, writing what the script collects
(the environment report, the lab rows, microst's rows of compare_torch in its JSON schema, the
sanitizer's cases). Without torch the microst rows are still measured, so this never skips."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run(*args, **kw):
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_the_script_parses():
    r = subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_environment_report(tmp_path):
    run(BENCH / "gpu_env.py", "--out", tmp_path / "env.json")
    info = json.loads((tmp_path / "env.json").read_text())
    assert {"python", "cupy", "torch", "nvidia-smi"} <= set(info)


def test_lab_rows_on_emu(tmp_path):
    run(BENCH / "lab_all.py", "--device", "emu", "--families", "pad", "activation", "--repeats", "1",
        "--out", tmp_path / "lab.json")
    rows = json.loads((tmp_path / "lab.json").read_text())
    assert {r["family"] for r in rows} == {"pad", "activation"} and all(r["ok"] and r["ms"] > 0 for r in rows)


def test_compare_torch_writes_microst_rows_in_the_schema(tmp_path):
    run(BENCH / "compare_torch.py", "--device", "emu", "--tiny", "--no-torch", "--cases", "stylize-40x24",
        "train-32-b1", "--out", tmp_path / "results.json")
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["case"], r["precision"]) for r in rows] == [(c, p) for c in ("stylize-40x24", "train-32-b1")
                                                           for p in ("fp32", "tf32", "bf16")]
    for r in rows:
        assert list(r) == ["case", "precision", "torch_mode", "microst_ms", "torch_ms", "ratio", "device", "date",
                           "commit", "check"]
        assert r["microst_ms"] > 0 and r["device"] == "emu" and r["torch_ms"] is None and r["ratio"] is None


def test_sanitizer_cases_cover_every_kernel_and_pass_on_emu():
    out = run(BENCH / "sanitize_cases.py", "--device", "emu").stdout
    assert "WRONG" not in out and "arith adam_step + nonfinite_flag: ok" in out
    uncovered = [line for line in out.splitlines() if "no case launches" in line]
    assert uncovered == ["norm=v2: no case launches norm_backward_finalize_v2"], uncovered
