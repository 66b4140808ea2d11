"""The one random generator microst draws from (initialization, data sampling, noise)."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Make initialization and sampling repeatable."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng():
    return _rng


def get_state():
    """A JSON-serializable snapshot of the generator (stored in training checkpoints)."""
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state
