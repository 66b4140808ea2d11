"""Recording the GEMM passes (conv, gram) that a computation runs, for microst.lab flops.

    with record.recording() as calls:       # dry: the passes return zeros instead of computing
        loss = model(x) ...; loss.backward()
    calls -> [Call(family, pass_, geometry, label), ...]

The passes call `note`, which costs one check when nothing records. `label` is whatever the
recorder's owner sets (microst.lab sets the network layer an op belongs to).
"""
import contextlib
from typing import Any, NamedTuple

import numpy as np

from ..device import array_module


class Call(NamedTuple):
    family: str
    pass_: str
    geometry: Any   # conv: ConvGeometry; gram: (batch, channels, positions)
    label: str


_recorders = []
label = ""


def note(family, pass_, geometry, out_shape, device):
    """Record a pass; inside a dry recording, return zeros of its output shape to use instead."""
    if not _recorders:
        return None
    calls, dry = _recorders[-1]
    calls.append(Call(family, pass_, geometry, label))
    return array_module(device).zeros(out_shape, np.float32) if dry else None


def active():
    """Whether something records now (a fused op then runs the passes it fuses, so that they are noted)."""
    return bool(_recorders)


@contextlib.contextmanager
def recording(dry=True):
    calls = []
    _recorders.append((calls, dry))
    try:
        yield calls
    finally:
        _recorders.pop()
