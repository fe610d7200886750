"""Where an asset's data lives: the fsspec filesystem, the path on it, and its kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec

#: Protocols whose single PUT (or completed multipart upload) is atomic.
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})


@dataclass(frozen=True)
class Location:
    """A resolved asset location: the fsspec filesystem, the path on it, and its kind
    (``local``, ``memory``, ``atomic-put`` object store, or ``other``)."""

    fs: fsspec.AbstractFileSystem
    path: str
    kind: str
    uri: str
    storage_options: dict[str, Any]

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def parent(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[0] or "/"

    def arrow_filesystem(self) -> Any:
        """The filesystem to hand to pyarrow: its own for local paths, else a wrapper."""
        if self.kind == "local":
            return None
        import pyarrow.fs as pafs

        if self.kind == "memory":
            return pafs.PyFileSystem(_MemoryHandler(self.fs))
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))


def _memory_handler_base() -> type:
    import pyarrow.fs as pafs

    return pafs.FSSpecHandler


class _MemoryHandler(_memory_handler_base()):  # type: ignore[misc]
    """fsspec's memory files are shared objects with one position: read them as bytes."""

    def open_input_file(self, path: str) -> Any:
        import pyarrow as pa

        return pa.BufferReader(self.fs.cat_file(path))

    def open_input_stream(self, path: str) -> Any:
        return self.open_input_file(path)


def forget_listings(loc: Location) -> None:
    """Drop the filesystem's cached listings of ``loc``, its folders and their parents.

    s3fs (and other object stores) cache directory listings per process and answer
    ``exists``/``isfile``/sizes from them: once another process overwrote the data, a
    reader would trust deleted files or miss new ones (FileNotFoundError, or a wrong
    size). Each read or write of a handle starts from what the store holds now.
    """
    cache = getattr(loc.fs, "dircache", None)
    if loc.kind in ("local", "memory") or not cache:
        return
    root = loc.fs._strip_protocol(loc.path).rstrip("/")
    for key in list(cache):
        name = str(key).rstrip("/")
        if name == root or name.startswith(root + "/") or root.startswith(name + "/"):
            cache.pop(key, None)
