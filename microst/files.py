"""Files that survive crashes: atomic writes, one writer per folder, checks before the work.

    with atomic_write(path) as tmp:     # tmp: a new name in path's folder
        write_something(tmp)            # on success tmp is flushed to disk and renamed over path

Every file microst writes (images, checkpoints, weights, history, plots) goes through atomic_write,
so that a crash, a kill or a full disk never leaves a truncated file under the real name: readers
see the old file or the whole new one. The temporary name is short and unique per process and
call (parallel writers never share one, and a long final name does not grow longer). A write that
fails (a full disk, a read-only folder) is a UserError naming the file, never a success. Writers
whose libraries may not report a short write (Pillow's BMP and TIFF encoders; HDF5, which reports
it as a RuntimeError) encode into memory inside the block and write the bytes to tmp themselves.

    lock = FolderLock(folder)           # one training run per folder (fcntl.flock), else a UserError
    check_writable(folder, need=bytes, names=[...])   # before the work: writable, room, names fit

Faults can be injected for tests: MICROST_FAULT="write:K:ENOSPC" (or EROFS) makes the K-th atomic
write of the process fail with that error after writing part of its file, and "kill:K" kills the
process with SIGKILL at the K-th write, after the temporary file is written and before the rename.
"""
import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import shutil
import signal
from pathlib import Path

from .errors import UserError

_calls = itertools.count(1)


def _fault(k, tmp):
    """The fault MICROST_FAULT asks for at the k-th write, if any (see the module docstring)."""
    spec = os.environ.get("MICROST_FAULT", "")
    kind, _, rest = spec.partition(":")
    at, _, code = rest.partition(":")
    if not at.isdigit() or int(at) != k:
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "write":
        with open(tmp, "r+b") as f:  # the disk filled up half way
            f.truncate(f.seek(0, os.SEEK_END) // 2)
        raise OSError(getattr(errno, code or "ENOSPC"), os.strerror(getattr(errno, code or "ENOSPC")), str(tmp))


def _fsync(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to `path` (its folder is created); when the block succeeds, flush
    it to disk and rename it over `path`; when anything fails, delete it. An OSError (no space,
    read-only, ...) becomes a one-line UserError naming `path`."""
    path = Path(path)
    k = next(_calls)
    tmp = path.with_name(f".microst-{os.getpid()}-{k}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fault(k, tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except OSError as e:
        advice = "free some space or choose another folder" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
            "choose another folder"
        raise UserError(f"{path}: cannot write it ({e.strerror or e}); {advice}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def name_limit(folder):
    """The longest file name the filesystem of `folder` (or of its nearest existing parent) allows."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable(folder, need=0, names=(), what="the output folder"):
    """Before the work: `folder` (created if missing) is a folder we can write, with at least `need`
    bytes free, and every name in `names` fits the filesystem. A UserError says which and what to do."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder; give {what} another path")
    limit = name_limit(folder)
    for name in names:
        if len(name) > limit:
            raise UserError(f"{folder / name}: the name is {len(name)} characters, more than this filesystem's "
                            f"{limit}; use a shorter name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".microst-{os.getpid()}-probe.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{folder}: cannot write into {what} ({e.strerror or e}); choose another folder") from None
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"{folder}: {free / 1e6:.1f} MB free, less than the {need / 1e6:.1f} MB the first write needs; "
                        f"free some space or choose another folder")


class FolderLock:
    """An exclusive lock on `folder` (its file .microst.lock holds the owner's PID), taken at once or a
    UserError naming the folder and the process that holds it. Released by release() or at exit."""

    def __init__(self, folder, what="training run"):
        self.path = Path(folder) / ".microst.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise UserError(f"{folder}: another {what} (PID {holder}) is writing into this folder; wait for it to "
                            f"finish or give --out another folder") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self):
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(paths, root):
    """A hash of the sorted (path relative to root, size, modification time) of files: it changes when a
    file is added, removed, replaced or edited."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        st = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()
