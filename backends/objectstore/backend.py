"""ObjectStoreBackend: assetry's state as JSON documents on S3, a local directory or memory.

See the package docstring for the layout and the concurrency argument. The class is put
together from one part per responsibility: ``base`` (storage, caches, documents, registry
reads), ``registry`` (assets and URI claims), ``store`` (entries, sweep), ``events`` (event
log, head hints, aliases), ``cursors`` (consumer cursors); ``location`` opens the storage a
URL points to, ``storage`` holds the drivers' interface.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from assetry.backend import AssetRecord, Capabilities
from assetry.errors import ConfigurationError
from assetry.retry import Backoff

from .base import LRU
from .cursors import ObjectStoreCursors
from .events import ObjectStoreEvents
from .location import open_location
from .registry import ObjectStoreRegistry
from .store import ObjectStoreStore

__all__ = ["ObjectStoreBackend"]


class ObjectStoreBackend(
    ObjectStoreRegistry, ObjectStoreStore, ObjectStoreEvents, ObjectStoreCursors
):
    """State as one JSON document per asset, store key, event and consumer on fsspec storage.

    ``url`` is ``s3://bucket/prefix`` (``s3a://`` too), ``file:///path`` (or a plain path) or
    ``memory://bucket/prefix``. Credentials and endpoints come from the named connection
    ``conn_id`` (default per scheme, e.g. ``aws_default`` for s3, read from
    ``ASSETRY_CONN_<ID>`` / the config file) as fsspec storage options, overridden by
    explicit ``storage_options``.

    Options: ``registry_ttl`` (seconds this object trusts a cached "asset is active" before
    a write re-reads the registry; a deactivation by another process can take that long to
    stop its writes, and the sweep removes anything written meanwhile), ``max_attempts`` and
    ``retry_base_delay`` (backoff on throttling and 5xx), ``fsync`` (local directories),
    ``concurrency`` (parallel reads), ``cache_size`` (versions and events remembered),
    ``create`` (``False``: a ``file://`` folder is not made on open; for reading).
    """

    name = "objectstore"
    url_schemes = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file")
    capabilities = Capabilities(
        persistent=True,
        multi_process=True,
        atomic_batches=False,
        event_import=True,
        event_deletion=True,
        state_import=True,
    )

    def __init__(
        self,
        url: str | None = None,
        conn_id: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        *,
        registry_ttl: float = 5.0,
        max_attempts: int = 8,
        retry_base_delay: float = 0.05,
        fsync: bool = True,
        concurrency: int = 16,
        cache_size: int = 10_000,
        create: bool = True,
    ) -> None:
        if not url or not isinstance(url, str):
            raise ConfigurationError(
                "the objectstore backend needs a URL such as s3://bucket/prefix, "
                "file:///var/lib/assetry or memory://state"
            )
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        self.url = url
        self.registry_ttl = float(registry_ttl)
        location = open_location(
            url,
            conn_id=conn_id,
            storage_options=dict(storage_options or {}),
            retry=Backoff(base=retry_base_delay, cap=5.0, max_attempts=max_attempts),
            fsync=fsync,
            concurrency=concurrency,
            create=bool(create),
        )
        self.scheme = location.scheme
        self.storage = location.storage
        self._display_url = location.url
        self.capabilities = Capabilities(
            persistent=True,
            multi_process=self.storage.multi_process,
            atomic_batches=False,
            event_import=True,
            event_deletion=True,
            state_import=True,
        )
        self._versions = LRU(cache_size)
        self._events = LRU(cache_size)
        self._registry: dict[str, tuple[AssetRecord, float]] = {}
        self._cursor_docs: dict[str, tuple[str, dict[str, int]]] = {}
        self._heads: dict[str, int] = {}
        self._hints: dict[str, int] = {}
        self._markers: set[tuple[str, str]] = set()
        self._format_checked = False
        self._lock = threading.Lock()
        self._concurrency = max(1, concurrency)
