"""Where microst's data lies: the kernel sources and the weights.

In a clone they are the top-level folders kernels/ and weights/ beside microst/; an installed
package (a wheel, `pip install .`, or an editable install) maps them to microst._kernels and
microst._weights (pyproject.toml's package-dir: data-only namespace packages, found by the import
system), so that the same code runs from a clone, from site-packages and from any working directory.
"""
import importlib.util
from pathlib import Path

_CLONE = Path(__file__).resolve().parent.parent


def _folder(package, clone_name):
    spec = importlib.util.find_spec(package)  # None in a clone run with PYTHONPATH=. or installed editable
    if spec is not None and spec.submodule_search_locations:
        found = Path(list(spec.submodule_search_locations)[0])
        if found.is_dir():
            return found
    return _CLONE / clone_name


def kernel_dir():
    """The folder of kernels/*.cu, *.cuh and emu/."""
    return _folder("microst._kernels", "kernels")


def weights_dir():
    """The folder of vgg16.h5 and styles/."""
    return _folder("microst._weights", "weights")
