"""How the object-storage IO manager publishes: writer locks, staging, one-step uploads.

Local disks go through :mod:`assetry.localfs` (staged file, ``os.replace``, folder swap);
object stores that make one PUT atomic get one upload; the rest are staged and moved.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from assetry import AssetValueError, localfs

if TYPE_CHECKING:
    import fsspec
    from assetry import Asset

    from .location import Location

CONTROL_DIR = ".assetry"  # inside a dataset on object stores: staging/ and journal/
LOCAL_STAGING_DIR = ".assetry-staging"  # beside a local file or dataset
STALE_STAGING_SECONDS = 3600.0

_memory_locks: dict[str, threading.RLock] = {}
_memory_locks_guard = threading.Lock()


@contextlib.contextmanager
def locked(loc: Location, path: str, *, exclusive: bool) -> Iterator[None]:
    """Serialise writers of ``path``: an flock on local disks (released if the process
    dies), a process lock for memory://. Object stores use conditional writes instead."""
    if loc.kind == "memory":
        with _memory_locks_guard:
            lock = _memory_locks.setdefault(path, threading.RLock())
        with lock:
            yield
        return
    if loc.kind != "local":
        yield
        return
    with localfs.path_lock(path, exclusive=exclusive):
        yield


# -- publishing ------------------------------------------------------------------------------


#: The longest file or folder name a local disk takes (255 bytes on ext4, APFS, NTFS), less
#: the ``.tmp`` suffix a file is staged under.
MAX_LOCAL_NAME_BYTES = 255 - len(".tmp")


def check_local_name(asset: Asset, name: str) -> None:
    """Refuse a path component a local disk cannot hold, before anything is written."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_LOCAL_NAME_BYTES:
        raise AssetValueError(
            f"asset {asset.name!r}: the path component {name[:40]!r}... is {size} bytes long; a "
            f"local file or folder name can be at most {MAX_LOCAL_NAME_BYTES} bytes here"
        )


def part_name() -> str:
    return f"part-{localfs.new_id()}.parquet"


def write_remote(
    fs: fsspec.AbstractFileSystem, path: str, write: Callable[[IO[bytes]], None]
) -> int:
    """One upload, committed only when ``write`` completes; discarded if it raises."""
    fh = fs.open(path, "wb")
    try:
        write(fh)
        size = fh.tell()
    except BaseException:
        with contextlib.suppress(Exception):
            fh.discard()
        with contextlib.suppress(Exception):
            fh.closed = True  # fsspec files commit on close(): skip it
        raise
    fh.close()
    return int(size)


def write_buffer(write: Callable[[IO[bytes]], None]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def local_staging(anchor_dir: str) -> localfs.StagingDir:
    """A hidden staging folder beside ``anchor_dir``'s content, on the same local disk."""
    return localfs.StagingDir(anchor_dir, LOCAL_STAGING_DIR, stale_after=STALE_STAGING_SECONDS)
