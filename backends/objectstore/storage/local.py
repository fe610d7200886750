"""Local-directory driver: :mod:`assetry.localfs`'s atomic write (create or replace) under
a striped file lock, so compare-and-set is atomic across processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from assetry import localfs
from assetry.errors import BackendUnavailableError

from .base import PAGE_SIZE, Blob, Listed, ObjectStorage, PreconditionFailed, md5_etag

__all__ = ["LocalStorage"]

# -- local directory --------------------------------------------------------------------------

_LOCK_STRIPES = 64
_LOCK_DIR = "_locks"


class LocalStorage(ObjectStorage):
    """Objects as files under a directory, safe across processes on one machine.

    Writes land in a temporary file in the target's folder, fsynced, then ``os.link``-ed
    (create: fails if the name exists) or ``os.replace``-d (replace) into place, under an
    ``fcntl.flock`` on one of 64 lock files chosen by the key: the check of the current
    ETag and the write are one atomic step for every process that uses the directory.
    Readers take no lock: they see the old file or the new one, never a partial one.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, create: bool = True
    ) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self._lock_dir_ready = False
        if not create:  # open existing state only: the folder is made by the first write
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only parent: fine for readers if the folder exists
            if not self.root.is_dir():
                raise self._fail("open", "", exc) from None

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _fail(self, what: str, key: str, exc: OSError) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"object store {self.describe()} failed {what} {key!r}: {exc.strerror or exc}; "
            "check the directory's permissions and free space"
        )

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        if not self._lock_dir_ready:
            (self.root / _LOCK_DIR).mkdir(parents=True, exist_ok=True)
            self._lock_dir_ready = True
        stripe = int(md5_etag(key.encode())[:8], 16) % _LOCK_STRIPES
        with localfs.file_lock(self.root / _LOCK_DIR / f"{stripe:02d}.lock"):
            yield

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get(self, key: str) -> Blob | None:
        try:
            data = self._read(self._path(key))
        except OSError as exc:
            raise self._fail("GET", key, exc) from None
        return None if data is None else Blob(data, md5_etag(data))

    def _sync_dir(self, folder: Path) -> None:
        if self.fsync:
            localfs.fsync_dir(folder)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        path = self._path(key)
        try:
            with self._locked(key):
                if if_match is not None:
                    current = self._read(path)
                    if current is None or md5_etag(current) != if_match:
                        raise PreconditionFailed(key)
                try:
                    localfs.atomic_write(path, data, fsync=self.fsync, exclusive=if_none_match)
                except FileExistsError:
                    if if_none_match:
                        raise PreconditionFailed(key) from None
                    raise
        except OSError as exc:
            raise self._fail("PUT", key, exc) from None
        return md5_etag(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        try:
            with self._locked(key):
                if if_match is not None:
                    current = self._read(path)
                    if current is None or md5_etag(current) != if_match:
                        raise PreconditionFailed(key)
                try:
                    path.unlink()
                except FileNotFoundError:
                    return
                self._sync_dir(path.parent)
        except OSError as exc:
            raise self._fail("DELETE", key, exc) from None
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty (a concurrent writer recreates what it needs)."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        items: list[Listed] = []
        pending = [folder.rstrip("/")]
        try:
            while pending:
                rel = pending.pop()
                try:
                    entries = list(os.scandir(self._path(rel)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(f"{rel}/{entry.name}")
                    elif entry.name.endswith(".json"):
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:  # deleted while listing
                            continue
                        items.append(Listed(f"{rel}/{entry.name}", size))
        except OSError as exc:
            raise self._fail("LIST", folder, exc) from None
        items.sort()
        if start_after is not None:
            items = [i for i in items if i.key > start_after]
        for start in range(0, len(items), PAGE_SIZE):
            yield items[start : start + PAGE_SIZE]
