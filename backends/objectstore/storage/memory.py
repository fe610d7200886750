"""Memory driver: fsspec's process-wide memory filesystem behind one process-wide lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from .base import PAGE_SIZE, Blob, Listed, ObjectStorage, PreconditionFailed, md5_etag

__all__ = ["MemoryStorage"]

# -- memory -----------------------------------------------------------------------------------

_MEMORY_LOCK = threading.RLock()


class MemoryStorage(ObjectStorage):
    """Objects in fsspec's ``memory://`` filesystem (process-wide) behind one process lock."""

    multi_process = False

    def __init__(self, root: str) -> None:
        import fsspec

        self.fs = fsspec.filesystem("memory")
        self.root = "/" + root.strip("/")

    def describe(self) -> str:
        return f"memory://{self.root.lstrip('/')}"

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def get(self, key: str) -> Blob | None:
        with _MEMORY_LOCK:
            try:
                data = self.fs.cat_file(self._path(key))
            except FileNotFoundError:
                return None
        return Blob(data, md5_etag(data))

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        path = self._path(key)
        with _MEMORY_LOCK:
            if if_none_match or if_match is not None:
                try:
                    current: bytes | None = self.fs.cat_file(path)
                except FileNotFoundError:
                    current = None
                if if_none_match and current is not None:
                    raise PreconditionFailed(key)
                if if_match is not None and (current is None or md5_etag(current) != if_match):
                    raise PreconditionFailed(key)
            self.fs.pipe_file(path, data)
        return md5_etag(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        with _MEMORY_LOCK:
            try:
                current = self.fs.cat_file(path)
            except FileNotFoundError:
                if if_match is not None:
                    raise PreconditionFailed(key) from None
                return
            if if_match is not None and md5_etag(current) != if_match:
                raise PreconditionFailed(key)
            self.fs.rm_file(path)

    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        base = self._path(folder)
        cut = len(self.root) + 1
        with _MEMORY_LOCK:
            try:
                found = self.fs.find(base.rstrip("/"), detail=True)
            except FileNotFoundError:
                found = {}
        items = sorted(
            Listed(path[cut:], int(info.get("size") or 0))
            for path, info in ((("/" + p.lstrip("/")), i) for p, i in found.items())
            if path.startswith(base)
        )
        if start_after is not None:
            items = [i for i in items if i.key > start_after]
        for start in range(0, len(items), PAGE_SIZE):
            yield items[start : start + PAGE_SIZE]
