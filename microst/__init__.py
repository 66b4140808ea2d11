"""microst: fast neural style transfer on a small autograd engine of its own."""
from .version import __version__
from .autograd import Tensor, cat, is_grad_enabled, no_grad, tensor
from .random import manual_seed
from . import functional, nn, optim
from .checkpoint import load_model

__all__ = ["Tensor", "cat", "functional", "is_grad_enabled", "load_model", "manual_seed", "nn", "no_grad", "optim",
           "tensor"]
