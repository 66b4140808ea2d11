"""The README's python snippet runs as written, on cpu and on emu (the device set in its first line)."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet():
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert len(blocks) == 1, "the README should hold one python snippet"
    return blocks[0]


@pytest.mark.parametrize("device", ["cpu", "emu"])
def test_the_readme_snippet_runs(device):
    code, n = re.subn(r'^device = "cpu"', f'device = "{device}"', snippet(), flags=re.M)
    assert n == 1, 'the snippet sets its device in one line: device = "cpu"  # or ...'
    scope = {}
    exec(compile(code, str(README), "exec"), scope)
    conv, norm = scope["conv"], scope["norm"]
    assert scope["x"].device == scope["y"].device == conv.weight.device == device
    for grad in (conv.weight.grad, conv.bias.grad, norm.weight.grad, norm.bias.grad):
        assert grad is not None and np.isfinite(np.asarray(grad)).all()
