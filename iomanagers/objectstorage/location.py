"""Where an asset's data lives: the fsspec filesystem, the path on it, and its kind."""

from __future__ import annotations

import functools
import os
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
        """The filesystem to hand to pyarrow: its own for local paths and S3, else a wrapper
        of the fsspec filesystem.

        S3 is read through pyarrow's native ``S3FileSystem`` built from the same options:
        through ``PyFileSystem(FSSpecHandler)`` Arrow's I/O threads call back into Python,
        and one still doing so when the interpreter exits is ended by ``pthread_exit``,
        whose unwinding through Arrow's C++ frames aborts the process ("terminate called
        without an active exception", SIGABRT) after the data was read correctly.
        """
        if self.kind == "local":
            return None
        import pyarrow.fs as pafs

        if self.kind == "memory":
            return pafs.PyFileSystem(_MemoryHandler(self.fs))
        if _protocol(self.fs) in {"s3", "s3a"}:
            native = native_s3_filesystem(self.storage_options, self.path.split("/", 1)[0])
            if native is not None:
                return native
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


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


#: s3fs options that only tune s3fs itself (caches, loop): nothing pyarrow needs to know.
_S3FS_ONLY = frozenset(
    {
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "cache_regions",
        "asynchronous",
        "loop",
        "fixed_upload_size",
    }
)


def native_s3_filesystem(options: dict[str, Any], bucket: str) -> Any:
    """pyarrow's ``S3FileSystem`` with the credentials, endpoint and region of s3fs's
    ``options``; None when they hold something it cannot express (a profile, extra request
    arguments, ...), in which case the caller keeps the fsspec wrapper."""
    import pyarrow.fs as pafs

    options = dict(options)
    client = dict(options.pop("client_kwargs", None) or {})
    args: dict[str, Any] = {}
    for ours, boto, theirs in (
        ("key", "aws_access_key_id", "access_key"),
        ("secret", "aws_secret_access_key", "secret_key"),
        ("token", "aws_session_token", "session_token"),
    ):
        value = options.pop(ours, None) or client.pop(boto, None)
        if value:
            args[theirs] = value
    if options.pop("anon", False):
        args["anonymous"] = True
    endpoint = options.pop("endpoint_url", None) or client.pop("endpoint_url", None)
    region = client.pop("region_name", None) or options.pop("region_name", None)
    use_ssl = options.pop("use_ssl", True)
    for name in _S3FS_ONLY:
        options.pop(name, None)
    if options or client:
        return None  # options only s3fs understands: keep reading through it
    if endpoint:
        scheme, _, rest = str(endpoint).partition("://")
        if not rest:
            scheme, rest = ("https" if use_ssl else "http"), scheme
        args["endpoint_override"] = rest.rstrip("/")
        args["scheme"] = scheme
    elif not use_ssl:
        args["scheme"] = "http"
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region and not endpoint:
        region = _bucket_region(bucket)
        if region is None:
            return None
    if region:
        args["region"] = region
    return pafs.S3FileSystem(**args)


@functools.lru_cache(maxsize=256)
def _bucket_region(bucket: str) -> str | None:
    """The AWS region of ``bucket`` (s3fs finds it by itself; pyarrow needs it given)."""
    import pyarrow.fs as pafs

    try:
        return str(pafs.resolve_s3_region(bucket))
    except (OSError, ValueError):
        return None
