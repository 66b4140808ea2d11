"""Kernel versions: which version of each family's kernels runs on emu and cuda.

A family (conv, norm, loss, pool, pad, activation, arith: the modules of microst/ops) holds
numbered versions, v0 (the simplest correct one, for reading), v1, v2, ... Each family module
declares its versions with `declare`; a version names one kernel per role (a pass: "forward",
"backward_data", ... or a kernel's own name), in one file per family version
(kernels/conv_v1.cu), and may reuse an earlier version's kernel for a role.

DEFAULTS is the one table that selects the version per family and device. A pin overrides it on
every kernel device: MICROST_KERNELS="conv=v0,loss=v1" in the environment, or in Python

    microst.ops.use_kernels(conv="v0")          # from now on
    with microst.ops.use_kernels(conv="v0"):    # inside the block only
        ...

A pin that names no family or no version is an error that lists what exists.

Precision (microst/ops/precision.py): a version computes its GEMMs in fp32 (SIMT) or on tensor
cores in tf32 and bf16 (`precisions`; None: the family has no GEMM, any precision). Unpinned, a
family whose DEFAULTS version cannot compute at the precision asked runs its newest version that
can; a pinned version that cannot is an error, unless it computes in fp32 and no precision was
chosen (then the pin is the choice: MICROST_KERNELS=conv=v2 on cuda runs FP32 as before).
"""
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from . import precision as precisions

DEFAULTS = {  # family -> {device: version}
    "conv": {"emu": "v2", "cuda": "v3"},  # at fp32 (emu's default), a tensor-core version yields to v2
    "norm": {"emu": "v2", "cuda": "v2"},
    "loss": {"emu": "v2", "cuda": "v3"},
    "pool": {"emu": "v1", "cuda": "v1"},
    "pad": {"emu": "v1", "cuda": "v1"},
    "activation": {"emu": "v1", "cuda": "v1"},
    "arith": {"emu": "v2", "cuda": "v2"},
}
FAMILIES = tuple(DEFAULTS)


@dataclass(frozen=True)
class Version:
    """One version of a family: role -> (kernel file, kernel name), a one-line summary of what it
    changes from the previous version, and `launcher`, the family's Python launch code for this
    version when versions differ in more than their kernels (grids, tiles, FLOPs issued)."""
    family: str
    name: str
    summary: str
    kernels: dict
    launcher: Any = field(default=None, compare=False)
    precisions: Any = None  # the precisions its GEMMs compute in, e.g. ("fp32",); None: no GEMM, any

    def computes_in(self, precision):
        return self.precisions is None or precision in self.precisions

    def kernel(self, role):
        """(file, kernel name) for ops.base.launch."""
        return self.kernels[role]


def kernels_of(file, roles, version):
    """{role: (file, role + "_" + version)} for the kernels of one file."""
    return {role: (file, f"{role}_{version}") for role in roles}


_versions = {family: {} for family in FAMILIES}  # family -> {name: Version}
_pins = {}  # family -> version name, set by use_kernels
_env_pins = {}  # MICROST_KERNELS value -> its parsed pins


def declare(*versions):
    """Register a family's versions (called once by each family module); returns {name: Version}."""
    for v in versions:
        if v.family not in _versions:
            raise ValueError(f"unknown kernel family {v.family!r}")
        _versions[v.family][v.name] = v
    return {v.name: v for v in versions}


def versions(family):
    """{name: Version} of a family, in order."""
    _check_family(family, "")
    return dict(sorted(_versions[family].items(), key=lambda kv: int(kv[0][1:])))


def _check_family(family, where):
    if family not in _versions:
        raise UserError(f"{where}unknown kernel family {family!r}; families: {', '.join(FAMILIES)}")


def _check_pins(pins, where):
    for family, version in pins.items():
        _check_family(family, where)
        if version not in _versions[family]:
            known = ", ".join(versions(family)) or "none"
            raise UserError(f"{where}{family} has no kernel version {version!r}; versions of {family}: {known}")


def _environment_pins():
    text = os.environ.get("MICROST_KERNELS", "").strip()
    if text not in _env_pins:
        pins = {}
        for item in filter(None, (piece.strip() for piece in text.split(","))):
            family, sep, version = (s.strip() for s in item.partition("="))
            if not sep:
                raise UserError(f"MICROST_KERNELS={text!r}: {item!r} is not FAMILY=VERSION (e.g. conv=v0,loss=v1)")
            pins[family] = version
        _check_pins(pins, f"MICROST_KERNELS={text!r}: ")
        _env_pins[text] = pins
    return _env_pins[text]


def selected(family, device):
    """The Version of `family` that runs on `device` ("emu" or "cuda") at its current precision."""
    wanted = precisions.current(device)
    pinned = _pins.get(family) or _environment_pins().get(family)
    version = _versions[family][pinned or DEFAULTS[family][device]]
    if version.computes_in(wanted):
        return version
    if pinned and version.computes_in("fp32") and not precisions.chosen():
        return version  # an FP32 version pinned where only the device's default asked for tensor cores
    able = [v for v in versions(family).values() if v.computes_in(wanted)]
    if pinned or not able:
        names = ", ".join(f"{family}={v.name}" for v in able) or "none"
        raise UserError(f"{family}={version.name} computes in {'/'.join(version.precisions)}, not at precision "
                        f"{wanted}; pin a version that does ({names}) or choose another --precision")
    return able[-1]


def selection(device):
    """{family: version name} for a device, pins included."""
    return {family: selected(family, device).name for family in FAMILIES}


class use_kernels:
    """Pin kernel versions by family, e.g. use_kernels(conv="v0", loss="v1"): a call that holds
    from now on, or a context manager that restores the previous pins on exit."""

    def __init__(self, **pins):
        _check_pins(pins, "use_kernels: ")
        self.previous = dict(_pins)
        _pins.update(pins)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _pins.clear()
        _pins.update(self.previous)
