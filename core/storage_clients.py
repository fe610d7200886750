"""Clients on one storage location: ``ObjectStoragePath`` (files) and ``DatabaseClient``
(tables), the seeds' lower-level entry points.

Both take an asset URI and an optional connection id; credentials and endpoints come from
the named connection (or the scheme's default one), never from the URI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .config import active_settings, load_settings, resolve_connection, storage_options_for
from .current import current_or_none
from .models import Asset
from .uri import normalize_uri, uri_scheme
from .urls import render_url

if TYPE_CHECKING:
    from upath import UPath

    from .iomanager import AssetHandle, IOManagerDispatcher

__all__ = [
    "DatabaseClient",
    "ObjectStoragePath",
    "active_settings",
    "resolve_connection",
    "storage_options_for",
]


def ObjectStoragePath(uri: str, conn_id: str | None = None, **storage_options: Any) -> UPath:
    """A universal-pathlib path for ``uri`` carrying its connection's storage options.

    ``ObjectStoragePath("s3://bucket/example.csv", conn_id="aws_default").open("rb")``;
    explicit ``storage_options`` override the connection's.
    """
    from upath import UPath

    if not isinstance(uri, str):
        raise TypeError(f"ObjectStoragePath() needs a URI string, not {type(uri).__name__}")
    normalized = normalize_uri(uri)
    if not uri_scheme(normalized):
        raise ValueError(
            f"ObjectStoragePath() needs a URI with a scheme (s3://, file://, ...), got {uri!r}"
        )
    options = storage_options_for(normalized, conn_id)
    options.update(storage_options)
    return UPath(normalized, **options)


class DatabaseClient:
    """A client on one table URI: ``with client.connect() as t: t.insert(df)``.

    ``connect()`` yields the same handle as ``io_manager.connect(Asset(uri=uri))``, through
    the current instance's IO managers when one is current (so writes are reported the same
    way), else through IO managers this client owns (closed by :meth:`close`).
    """

    def __init__(self, uri: str, conn_id: str | None = None) -> None:
        if not isinstance(uri, str):
            raise TypeError(f"DatabaseClient() needs a URI string, not {type(uri).__name__}")
        self.asset = Asset(uri=uri)
        self.uri = self.asset.uri
        self.conn_id = conn_id
        self._own: IOManagerDispatcher | None = None

    def __repr__(self) -> str:
        return f"DatabaseClient({render_url(self.uri)!r}, conn_id={self.conn_id!r})"

    def _dispatcher(self) -> IOManagerDispatcher:
        from .iomanager import IOManagerDispatcher

        instance = current_or_none()
        if instance is not None:
            return instance.io_manager
        if self._own is None:
            self._own = IOManagerDispatcher(load_settings())
        return self._own

    @contextmanager
    def connect(self, partition: str | None = None) -> Iterator[AssetHandle]:
        """A handle on the table (and ``partition``), closed when the block ends."""
        with self._dispatcher().connect(self.asset, partition, conn_id=self.conn_id) as handle:
            yield handle

    def close(self) -> None:
        """Close the connections this client opened itself."""
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> DatabaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
