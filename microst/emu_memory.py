"""emu's device memory: every array a kernel on emu may touch, with guard regions that trap.

Each array gets its own mapping: readable pages for its data, aligned to ALIGNMENT bytes, between
two PROT_NONE guard regions at least as large as the array (address space only, no memory), so
that a kernel that reads or writes out of bounds faults at once, and the emu runtime reports the
kernel, the block and thread, and the address (microst.cuda names the argument it lies next to).
AddressSanitizer would see the same, but a trap costs nothing while kernels run.

The data sits at the end of its pages (`end`, the default: an access past the end traps, to the
byte when the size is a multiple of ALIGNMENT) or at their start (`front`: an access before the
start traps, e.g. a negative index); MICROST_EMU_GUARD=front or `guard("front")` picks it.
"""
import contextlib
import ctypes
import mmap
import os
import threading

import numpy as np

ALIGNMENT = 64  # bytes: a cache line, and more than any vector type the kernels load
PAGE = mmap.PAGESIZE
GUARD_CAP = 1 << 30  # guard regions grow with the array up to this many bytes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
_PROT_NONE = 0  # mmap has PROT_READ and PROT_WRITE only
_state = threading.local()


class Block:
    """One mapping: the bytes of one array and its guards. numpy keeps it as the array's base,
    and the mapping goes when the last array on it goes."""

    base = None

    def __init__(self, nbytes, placement):
        self.nbytes = nbytes
        self.guard = min(GUARD_CAP, max(PAGE, _round_up(nbytes, PAGE)))
        self.data_pages = max(PAGE, _round_up(_round_up(nbytes, ALIGNMENT), PAGE))
        self.size = 2 * self.guard + self.data_pages
        base = _libc.mmap(None, self.size, _PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if base in (None, _MAP_FAILED):
            raise MemoryError(f"emu: cannot map {self.size} bytes (errno {ctypes.get_errno()})")
        self.base = base
        pages = base + self.guard
        if _libc.mprotect(pages, self.data_pages, mmap.PROT_READ | mmap.PROT_WRITE):
            self.close()
            raise MemoryError(f"emu: cannot map {nbytes} bytes read-write (errno {ctypes.get_errno()})")
        start = pages if placement == "front" else pages + self.data_pages - _round_up(nbytes, ALIGNMENT)
        self.start = start
        self.__array_interface__ = {"data": (start, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}

    def close(self):
        if self.base is not None:
            _libc.munmap(self.base, self.size)
            self.base = None

    __del__ = close

    def offset(self, address):
        """The byte offset of `address` from the array's start when it lies in this block (its
        data or guards), else None."""
        return address - self.start if self.base <= address < self.base + self.size else None


def _round_up(n, m):
    return -(-n // m) * m


def placement():
    return getattr(_state, "placement", None) or os.environ.get("MICROST_EMU_GUARD", "end")


@contextlib.contextmanager
def guard(where):
    """Arrays allocated inside (in this thread) sit at the `end` or `front` of their pages."""
    if where not in ("end", "front"):
        raise ValueError(f"emu guard placement must be end or front, got {where!r}")
    saved = getattr(_state, "placement", None)
    _state.placement = where
    try:
        yield
    finally:
        _state.placement = saved


def empty(shape, dtype=np.float32):
    """A C-contiguous NumPy array in emu memory (ALIGNMENT-byte aligned, guarded)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    where = placement()
    if where not in ("end", "front"):
        raise ValueError(f"MICROST_EMU_GUARD must be end or front, got {where!r}")
    return np.asarray(Block(nbytes, where)).view(dtype).reshape(shape)


def block_of(array):
    """The Block under an array (or a view of one), or None when it is not emu memory."""
    root = array
    while isinstance(root, np.ndarray):
        root = root.base
    return root if isinstance(root, Block) else None
