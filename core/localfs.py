"""Atomic writes on a local disk: the one layer every local writer in assetry goes through.

A file is written to a temporary name on the same filesystem (fsynced when asked), then
published in one step: ``os.replace`` to replace, ``os.link`` to create only if absent (a
name that exists raises :class:`FileExistsError`), and the folder is fsynced so the new name
survives a power loss. A whole folder is built in a hidden staging folder and swapped in
with one ``renameat2(RENAME_EXCHANGE)`` where Linux has it. Writers of one path are
serialised with ``flock`` locks, which the kernel releases when a process dies.

Used by the object-storage IO manager (files and datasets on ``file://``) and by the
objectstore state backend on a local directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = [
    "StagingDir",
    "atomic_write",
    "exchange",
    "file_lock",
    "fsync_dir",
    "new_id",
    "path_lock",
    "publish",
    "swap_dir",
    "write_file",
    "write_temp",
]

#: What a writer puts in a file: its bytes, or a function writing to a binary file.
Content = bytes | Callable[[IO[bytes]], None]

#: ``errno`` values of filesystems that cannot fsync a folder (nothing to do there).
_NO_DIR_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EISDIR})

#: Attempts at creating a folder that a concurrent writer may remove when it is empty.
_MKDIR_ATTEMPTS = 5


def new_id() -> str:
    """A unique name that sorts by creation time (nanoseconds, then random)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries to disk, so a name just created or replaced in it persists."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in _NO_DIR_FSYNC:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], content: Content, *, fsync: bool = True) -> int:
    """Write ``content`` to ``path`` (created or truncated) and return its size in bytes.

    A writer function gets a native pyarrow file, so pyarrow's writers reach the disk
    without going through Python for every chunk.
    """
    if isinstance(content, bytes | bytearray | memoryview):
        with open(path, "wb") as fh:
            fh.write(content)
            size = fh.tell()
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        return int(size)
    import pyarrow as pa

    with pa.OSFile(os.fspath(path), "wb") as native:
        content(native)  # type: ignore[arg-type]
        size = native.tell()
    if fsync:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return int(size)


def _makedirs(folder: str | os.PathLike[str]) -> None:
    """``os.makedirs`` that survives a concurrent writer removing an empty parent meanwhile."""
    for attempt in range(_MKDIR_ATTEMPTS):
        try:
            # exist_ok still raises FileExistsError when a concurrent delete removes the
            # (empty) folder between mkdir finding it and checking that it is a folder
            os.makedirs(folder, exist_ok=True)
            return
        except (FileNotFoundError, FileExistsError) as exc:
            if attempt < _MKDIR_ATTEMPTS - 1:
                continue
            if isinstance(exc, FileExistsError):  # not a race: a file is in the way
                raise NotADirectoryError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder
                ) from None
            raise


def write_temp(
    folder: str | os.PathLike[str], content: Content, *, fsync: bool = True
) -> tuple[str, int]:
    """Write ``content`` to a new hidden ``.*.tmp`` file in ``folder`` (created if needed);
    return its path and size. The caller publishes or removes it."""
    for attempt in range(_MKDIR_ATTEMPTS):
        _makedirs(folder)
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
            break
        except FileNotFoundError:  # the folder was removed by a concurrent delete
            if attempt == _MKDIR_ATTEMPTS - 1:
                raise
    os.close(fd)
    try:
        size = write_file(name, content, fsync=fsync)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return name, size


def publish(
    temp: str | os.PathLike[str], target: str | os.PathLike[str], *, exclusive: bool
) -> None:
    """Give the written file ``temp`` the name ``target`` in one step: replacing what is
    there, or (``exclusive``) only if nothing is, else :class:`FileExistsError`. With
    ``exclusive`` the caller removes ``temp`` afterwards (it is a second link)."""
    if exclusive:
        os.link(temp, target)
    else:
        os.replace(temp, target)


def atomic_write(
    target: str | os.PathLike[str],
    content: Content,
    *,
    fsync: bool = True,
    exclusive: bool = False,
    staging_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Write ``target`` so that a reader sees the old content or the new, never a part.

    The temporary file lives in ``staging_dir`` (default: ``target``'s folder; it must be on
    the same filesystem). ``exclusive`` creates ``target`` only if it does not exist
    (:class:`FileExistsError` otherwise). Returns the number of bytes written.
    """
    folder = os.path.dirname(os.fspath(target)) or "."
    temp, size = write_temp(
        staging_dir if staging_dir is not None else folder, content, fsync=fsync
    )
    try:
        publish(temp, target, exclusive=exclusive)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if fsync:
        fsync_dir(folder)
    return size


# -- staging folders -----------------------------------------------------------------------------


class StagingDir:
    """A private folder under the hidden ``anchor_dir/name`` folder, for building files or
    a whole folder before publishing them (same filesystem as the target, so ``os.replace``
    and :func:`swap_dir` are atomic). Removed on exit, with the folders of writers that died
    more than ``stale_after`` seconds ago, and the hidden folder itself once empty."""

    def __init__(self, anchor_dir: str, name: str, *, stale_after: float = 3600.0) -> None:
        self.root = os.path.join(anchor_dir, name)
        self.dir = os.path.join(self.root, new_id())
        self.stale_after = stale_after

    def __enter__(self) -> StagingDir:
        _makedirs(self.dir)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        sweep_stale(self.root, self.stale_after)
        with contextlib.suppress(OSError):
            os.rmdir(self.root)


def sweep_stale(root: str, stale_after: float) -> None:
    """Remove the :func:`new_id`-named entries of ``root`` older than ``stale_after`` seconds."""
    try:
        entries = os.listdir(root)
    except OSError:
        return
    now = time.time_ns()
    for entry in entries:
        try:
            born = int(entry.split("-", 1)[0])
        except ValueError:
            continue
        if (now - born) / 1e9 > stale_after:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


_RENAME_EXCHANGE = 2
_libc: Any = None


def exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where that is unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        except OSError:
            _libc = False
    func = getattr(_libc, "renameat2", None) if _libc else None
    if func is None:
        return False
    at_fdcwd = -100
    result = func(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


def swap_dir(staged: str, target: str) -> None:
    """Make ``staged`` the folder at ``target``; what was there goes back to ``staged``."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
        try:
            os.rename(staged, target)
            os.makedirs(staged)  # keep the caller's cleanup uniform
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if exchange(staged, target):
        return
    # no atomic swap on this platform: two renames, with a brief window without the folder
    aside = staged + ".old"
    os.rename(target, aside)
    os.rename(staged, target)
    os.rename(aside, staged)


# -- locks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(lock_file: str | os.PathLike[str], *, exclusive: bool = True) -> Iterator[None]:
    """Hold an ``flock`` on ``lock_file`` (created if needed); the kernel releases it if the
    process dies. A no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def path_lock(path: str, *, exclusive: bool) -> Iterator[None]:
    """Serialise the writers of a local ``path`` through a lock file in the temporary folder
    (keyed by the real path, so the data folder holds no lock files)."""
    folder = os.path.join(tempfile.gettempdir(), "assetry-locks")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    with file_lock(os.path.join(folder, f"{digest}.lock"), exclusive=exclusive):
        yield
