"""The random generators microst draws from: one stream for initialization and noise ("main"), one
for the training crops ("data"), both from one seed.

The data stream is its own so that the crops of the next batch can be drawn ahead (while the
device computes this one; microst.data.Batches) without moving the main stream's draws: a run and
its resumption draw the same numbers in the same order from each stream.
"""
import zlib

import numpy as np

_seed = None
_streams = {}  # name -> Generator


def manual_seed(seed):
    """Make initialization and sampling repeatable."""
    global _seed
    _seed = seed
    _streams.clear()


def rng(stream="main"):
    if stream not in _streams:
        entropy = None if _seed is None else [int(_seed)] + ([zlib.crc32(stream.encode())] if stream != "main" else [])
        _streams[stream] = np.random.default_rng(entropy)
    return _streams[stream]


def get_state():
    """A JSON-serializable snapshot of the streams (stored in training checkpoints)."""
    return {"streams": {name: g.bit_generator.state for name, g in _streams.items()}}


def set_state(state):
    """Restore get_state()'s snapshot (or an older checkpoint's single generator, as the main stream)."""
    streams = state["streams"] if "streams" in state else {"main": state}
    for name, s in streams.items():
        rng(name).bit_generator.state = s
