"""One module per op family: forward and backward for every device, the family's kernel
versions and its cases. `use_kernels` pins versions (see microst.ops.versions), `use_precision`
sets the precision of their GEMMs (microst.ops.precision)."""
from . import activation, arith, conv, loss, norm, pad, pool
from .precision import PRECISIONS, use_precision
from .versions import FAMILIES, selected, use_kernels

FAMILY_MODULES = {"activation": activation, "arith": arith, "conv": conv, "loss": loss, "norm": norm, "pad": pad,
                  "pool": pool}


def cases(family):
    """The family's Case list (microst.ops.base.Case)."""
    return FAMILY_MODULES[family].cases()


__all__ = ["FAMILIES", "FAMILY_MODULES", "PRECISIONS", "cases", "selected", "use_kernels", "use_precision"]
