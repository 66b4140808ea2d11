"""microst: fast neural style transfer on a small autograd engine of its own."""
__version__ = "0.1.0"

from .autograd import Tensor, cat, is_grad_enabled, no_grad, tensor
from .random import manual_seed
from . import functional, nn, optim

__all__ = ["Tensor", "cat", "functional", "is_grad_enabled", "load_model", "manual_seed", "nn", "no_grad", "optim",
           "tensor"]


def load_model(path_or_name, device="cpu"):
    """A trained generator from a checkpoint path or a bundled style's name (see microst.io)."""
    from .io import load_model as load
    return load(path_or_name, device)
