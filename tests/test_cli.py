"""Every command line answers a bad option value, an unknown option or a bad $MICROST_DEVICE with one
line, `error: ...`, and exit status 2 (no usage dump, no traceback), in a real process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# each command with what it requires, then a wrong value of an option it has
GIVEN = {"train": ["--style", "s.jpg", "--data", "d"], "stylize": ["x.jpg", "--model", "m"],
         "optimize": ["--content", "c.jpg", "--style", "s.jpg", "-o", "o.png"], "weights": ["check", "w.h5"],
         "lab": []}
BAD_VALUES = {
    "train": (["--device", "foo"], "argument --device: invalid choice: 'foo'"),
    "stylize": (["--device", "foo"], "argument --device: invalid choice: 'foo'"),
    "optimize": (["--iterations", "0"], "argument --iterations: '0' is not a positive whole number"),
    "weights": (["import-onnx", "m.onnx", "-o", "w.h5", "--blocks", "9"], "argument --blocks: invalid choice: 9"),
    "lab": (["--size", "0"], "argument --size: '0' is not a positive number of pixels"),
}

def run(command, argv, **env):
    return subprocess.run([sys.executable, "-m", f"microst.{command}", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT), **env))


def assert_one_line(result, message):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("command", sorted(BAD_VALUES))
def test_a_bad_value_is_one_line_and_exit_2(command):
    argv, message = BAD_VALUES[command]
    result = run(command, (GIVEN[command] if command != "weights" else []) + argv)
    assert_one_line(result, message)
    assert f"see python -m microst.{command}" in result.stderr  # where to read more


@pytest.mark.parametrize("command", sorted(BAD_VALUES))
def test_an_unknown_option_is_one_line_and_exit_2(command):
    assert_one_line(run(command, GIVEN[command] + ["--frobnicate"]), "unrecognized arguments: --frobnicate")


@pytest.mark.parametrize("command", ["train", "stylize", "optimize"])
def test_the_device_comes_from_the_environment(command):
    assert_one_line(run(command, GIVEN[command], MICROST_DEVICE="foo"), "$MICROST_DEVICE: unknown device 'foo'")
