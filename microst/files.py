"""Writing a file atomically: readers see the old file or the whole new one, never half of one.

    with atomic_write(path) as tmp:     # tmp: a new name in path's folder
        write_something(tmp)            # on success tmp is renamed over path; on an error, removed

Every file microst writes (images, checkpoints, weights, history) goes through here, so that a
crash, Ctrl-C or a full disk never leaves a truncated output under the real name. The temporary
name is unique per call, so that parallel writers (processes, threads) never share one.
"""
import contextlib
import itertools
import os
from pathlib import Path

_calls = itertools.count()


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to `path` (its folder is created); rename it over `path` when the
    block succeeds, delete it when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_calls)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
