"""microst: fast neural style transfer on a small autograd engine of its own."""
__version__ = "0.1.0"

from .autograd import Tensor, cat, is_grad_enabled, no_grad, tensor
from .random import manual_seed
from . import functional, nn, optim

__all__ = ["Tensor", "cat", "functional", "is_grad_enabled", "manual_seed", "nn", "no_grad", "optim", "tensor"]
