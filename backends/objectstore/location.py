"""Where the objectstore backend keeps its documents: a URL and a connection turned into
an :class:`~assetry.backends.objectstore.storage.ObjectStorage` driver (S3, a local
directory or memory), with the URL to show (secrets masked).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from assetry.config import storage_options_for
from assetry.errors import ConfigurationError
from assetry.retry import Backoff
from assetry.uri import uri_scheme
from assetry.urls import render_url

from .keys import MAX_PREFIX_BYTES
from .storage import (
    LocalStorage,
    MemoryStorage,
    ObjectStorage,
    S3Storage,
    single_send_session_class,
)

__all__ = ["Location", "open_location"]

_S3_SCHEMES: Final = frozenset({"s3", "s3a"})
_UNSUPPORTED: Final = frozenset({"gs", "gcs", "az", "abfs", "abfss"})


@dataclass(frozen=True, slots=True)
class Location:
    """An opened state location: its scheme, its storage driver and the URL to show."""

    scheme: str
    storage: ObjectStorage
    url: str


def open_location(
    url: str,
    *,
    conn_id: str | None,
    storage_options: dict[str, Any],
    retry: Backoff,
    fsync: bool,
    concurrency: int,
    create: bool = True,
) -> Location:
    """The storage a URL points to, with the connection's storage options."""
    scheme = uri_scheme(url) if "://" in url else "file"
    rest = url.split("://", 1)[1] if "://" in url else url
    shown = render_url(url)
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"objectstore URL {shown!r} must not have a query or fragment; put options in "
            "storage_options or in a connection (ASSETRY_CONN_<ID>)"
        )
    if scheme in _UNSUPPORTED:
        raise ConfigurationError(
            f"the objectstore backend cannot use {scheme}:// yet: it needs conditional writes, "
            "implemented for s3://, file:// and memory://; use one of those or the sql backend"
        )
    if scheme not in _S3_SCHEMES | {"file", "memory"}:
        raise ConfigurationError(
            f"the objectstore backend does not serve {scheme}:// URLs ({shown!r}); "
            "use s3://bucket/prefix, file:///path or memory://name"
        )
    if scheme == "file":
        if not rest:
            raise ConfigurationError(f"objectstore URL {shown!r} needs a directory")
        storage = LocalStorage(os.path.expanduser(rest), fsync=fsync, create=create)
        return Location(scheme, storage, storage.describe())
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if "@" in bucket:  # user-info is never a bucket: credentials belong in a connection
        raise ConfigurationError(
            f"objectstore URL {shown!r} must not carry credentials; put them in a connection "
            "(ASSETRY_CONN_<ID>) or in storage_options"
        )
    if not bucket:
        raise ConfigurationError(
            f"objectstore URL {shown!r} needs a bucket: {scheme}://bucket/prefix"
        )
    segments = prefix.split("/") if prefix else []
    if any(s in ("", ".", "..") for s in segments) or any(ord(c) < 32 for c in prefix):
        raise ConfigurationError(
            f"objectstore URL {shown!r} has an empty, '.' or '..' segment or a control "
            "character in its prefix"
        )
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise ConfigurationError(
            f"the prefix of objectstore URL {shown!r} is longer than {MAX_PREFIX_BYTES} bytes; "
            "S3 keys are at most 1,024 bytes"
        )
    if scheme == "memory":
        return Location(scheme, MemoryStorage(f"{bucket}/{prefix}".rstrip("/")), shown)
    options = _storage_options(scheme, conn_id, storage_options)
    try:
        import s3fs
    except ImportError:  # pragma: no cover - s3fs is a dependency
        raise ConfigurationError(
            "the objectstore backend needs s3fs for s3://: pip install s3fs"
        ) from None
    config = dict(options.get("config_kwargs") or {})
    # this backend retries with its own bounded backoff (and knows which writes are safe to
    # repeat), so botocore's retries are off unless the connection sets them
    config.setdefault("retries", {"total_max_attempts": 1})
    session_class = single_send_session_class()
    if session_class is not None:
        config.setdefault("http_session_cls", session_class)
    options["config_kwargs"] = config
    fs = s3fs.S3FileSystem(**options)
    return Location(
        "s3",
        S3Storage(fs, bucket, prefix, url=shown, retry=retry, concurrency=concurrency),
        shown,
    )


def _storage_options(
    scheme: str, conn_id: str | None, explicit: Mapping[str, Any]
) -> dict[str, Any]:
    """The named (or the scheme's default) connection's storage options, overridden by
    explicit ones."""
    options = storage_options_for(f"{scheme}://", conn_id)
    options.update(explicit)
    return options
