"""ObjectStoreBackend: assetry's state as JSON documents on S3, a local directory or memory.

See the package docstring for the layout and the concurrency argument.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from assetry.backend import (
    ANY_VERSION,
    AssetRecord,
    Capabilities,
    EventQuery,
    NewEvent,
    StateBackend,
    StoreEntry,
    conflict_for_registration,
    inactive_error,
    not_found_error,
    utcnow,
    version_conflict,
)
from assetry.config import storage_options_for
from assetry.errors import (
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    SchemaVersionError,
)
from assetry.models import AssetEvent
from assetry.retry import LOST_RACE, Backoff
from assetry.uri import mask_url, uri_scheme
from assetry.values import canonical_json

from .keys import MAX_PREFIX_BYTES, Layout, decode_component, event_seq
from .storage import (
    Blob,
    LocalStorage,
    MemoryStorage,
    ObjectStorage,
    PreconditionFailed,
    S3Storage,
    single_send_session_class,
)

__all__ = ["LAYOUT_VERSION", "ObjectStoreBackend"]

log = logging.getLogger(__name__)

#: Version of the object layout, kept in ``format.json`` under the prefix.
LAYOUT_VERSION: Final = 1
#: A writer refreshes an asset's head hint once the log has grown this much past it (a
#: cold start then lists at most this many keys: one LIST page).
HINT_INTERVAL: Final = 100
#: Deleted events leave a tombstone (``{"id":N,"deleted":true}``, under 40 bytes) so their
#: ids stay taken; every live event document is far larger, so listings tell them apart.
TOMBSTONE_MAX_BYTES: Final = 64
#: Write tokens a store entry keeps (its own and its predecessors'), so a writer whose
#: answer was lost can tell whether its write landed after a few more writes went over it.
TOKEN_HISTORY: Final = 8
#: How many times a query lists an event log again after finding the listing missed one.
_RELISTS: Final = 20
#: Events fetched per round when a query filters on more than the id.
_FETCH_CHUNK: Final = 64

_S3_SCHEMES: Final = frozenset({"s3", "s3a"})
_UNSUPPORTED: Final = frozenset({"gs", "gcs", "az", "abfs", "abfss"})
_UNKNOWN: Final = object()


def _token() -> str:
    """A random token stored in every document, so no two writes have the same bytes."""
    return os.urandom(8).hex()


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class _Version:
    """What this process last saw of an object: its ETag, the version inside it, and the
    write tokens of that version and the ones before it (newest first)."""

    etag: str
    version: int
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Location:
    scheme: str
    storage: ObjectStorage
    url: str


class _LRU:
    """A small thread-safe bounded mapping; the entry written longest ago goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = value
            while len(self._data) > self.size:
                del self._data[next(iter(self._data))]

    def pop(self, key: Any) -> None:
        with self._lock:
            self._data.pop(key, None)


class ObjectStoreBackend(StateBackend):
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
    ``concurrency`` (parallel reads), ``cache_size`` (versions and events remembered).
    """

    name = "objectstore"
    url_schemes = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file")
    capabilities = Capabilities(
        persistent=True,
        multi_process=True,
        atomic_batches=False,
        event_import=True,
        event_deletion=True,
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
        location = _open(
            url,
            conn_id=conn_id,
            storage_options=dict(storage_options or {}),
            retry=Backoff(base=retry_base_delay, cap=5.0, max_attempts=max_attempts),
            fsync=fsync,
            concurrency=concurrency,
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
        )
        self._versions = _LRU(cache_size)
        self._events = _LRU(cache_size)
        self._registry: dict[str, tuple[AssetRecord, float]] = {}
        self._cursor_docs: dict[str, tuple[str, dict[str, int]]] = {}
        self._heads: dict[str, int] = {}
        self._hints: dict[str, int] = {}
        self._markers: set[tuple[str, str]] = set()
        self._format_checked = False
        self._lock = threading.Lock()
        self._concurrency = max(1, concurrency)

    # -- lifecycle ----------------------------------------------------------------------------

    def describe(self) -> str:
        return f"ObjectStoreBackend({self._display_url})"

    def close(self) -> None:
        self.storage.close()

    def upgrade(self) -> None:
        """Write the layout marker (``format.json``) if missing; refuse a newer layout."""
        self._format_checked = False
        self._ensure_format()

    def schema_status(self) -> dict[str, str | None]:
        """The stored object layout (``format.json``; none before the first registration)
        and the one this code writes."""
        blob = self.storage.get(Layout.FORMAT)
        current = None
        if blob is not None:
            current = str(self._parse(Layout.FORMAT, blob).get("layout"))
        return {"current": current, "head": str(LAYOUT_VERSION)}

    def _ensure_format(self) -> None:
        if self._format_checked:
            return
        while True:
            blob = self.storage.get(Layout.FORMAT)
            if blob is None:
                doc = {"format": "assetry-objectstore", "layout": LAYOUT_VERSION}
                try:
                    self.storage.put(
                        Layout.FORMAT, canonical_json(doc).encode(), if_none_match=True
                    )
                except PreconditionFailed:
                    continue
                break
            found = self._parse(Layout.FORMAT, blob).get("layout")
            if not isinstance(found, int) or found > LAYOUT_VERSION:
                raise SchemaVersionError(
                    f"the state at {self._display_url} uses object layout {found!r}, newer than "
                    f"this assetry understands ({LAYOUT_VERSION}); upgrade assetry"
                )
            break
        self._format_checked = True

    # -- documents ----------------------------------------------------------------------------

    def _parse(self, key: str, blob: Blob) -> dict[str, Any]:
        try:
            doc = json.loads(blob.data)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise BackendUnavailableError(
                f"object {key!r} in {self._display_url} is not an assetry JSON document; "
                "remove it or restore it from a backup"
            )
        return doc

    def _mismatch(self, key: str, what: str, want: Any, found: Any) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"object {key!r} in {self._display_url} holds {what} {found!r}, not {want!r}: two "
            "long names hash to one key (SHA-256 collision) or the object was edited by hand"
        )

    def _remember(self, key: str, etag: str, version: int, tokens: tuple[str, ...] = ()) -> None:
        self._versions.put(key, _Version(etag, version, tokens))

    def _forget(self, key: str) -> None:
        self._versions.pop(key)

    # -- asset registry -----------------------------------------------------------------------

    @staticmethod
    def _record(doc: Mapping[str, Any]) -> AssetRecord:
        return AssetRecord(
            name=doc["name"],
            uri=doc["uri"],
            group=doc.get("group", "asset"),
            extra=doc.get("extra") or {},
            active=bool(doc.get("active", True)),
            created_at=_time(doc.get("created_at")),
            updated_at=_time(doc.get("updated_at")),
        )

    @staticmethod
    def _asset_doc(record: AssetRecord) -> bytes:
        doc = record.to_dict()
        doc["w"] = _token()
        return canonical_json(doc).encode()

    def _read_asset(self, name: str) -> tuple[AssetRecord, str] | None:
        key = Layout.asset(name)
        blob = self.storage.get(key)
        if blob is None:
            with self._lock:
                self._registry.pop(name, None)
            return None
        doc = self._parse(key, blob)
        if doc.get("name") != name:
            raise self._mismatch(key, "asset", name, doc.get("name"))
        record = self._record(doc)
        self._cache_record(record)
        return record, blob.etag

    def _cache_record(self, record: AssetRecord) -> None:
        with self._lock:
            self._registry[record.name] = (record, time.monotonic())

    def _check_writable(self, name: str) -> AssetRecord:
        with self._lock:
            cached = self._registry.get(name)
        if (
            cached is not None
            and cached[0].active
            and time.monotonic() - cached[1] < self.registry_ttl
        ):
            return cached[0]
        found = self._read_asset(name)
        if found is None:
            raise not_found_error(name)
        if not found[0].active:
            raise inactive_error(name)
        return found[0]

    def register_asset(
        self, name: str, uri: str, *, group: str = "asset", extra_json: str = "{}"
    ) -> AssetRecord:
        self._ensure_format()
        key = Layout.asset(name)
        extra = json.loads(extra_json)
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(name)
            if current is not None and current[0].uri != uri:
                raise conflict_for_registration(name, uri, current[0])
            self._claim_uri(name, uri)
            now = utcnow()
            record = AssetRecord(
                name=name,
                uri=uri,
                group=group,
                extra=extra,
                active=True,
                created_at=current[0].created_at if current else now,
                updated_at=now,
            )
            try:
                if current is None:
                    etag = self.storage.put(key, self._asset_doc(record), if_none_match=True)
                else:
                    etag = self.storage.put(key, self._asset_doc(record), if_match=current[1])
            except PreconditionFailed:
                _pause(attempt)
                continue  # registered or changed meanwhile: read again and decide
            owner = self._claim_owner(uri)
            if owner != name:
                # the claim was taken while our document did not exist yet: the other wins
                if current is None:
                    with contextlib.suppress(PreconditionFailed):
                        self.storage.delete(key, if_match=etag)
                    self._read_asset(name)
                other = self._read_asset(owner) if owner else None
                raise conflict_for_registration(
                    name, uri, other[0] if other else AssetRecord(name=owner or "?", uri=uri)
                )
            self._cache_record(record)
            return record

    def _claim_doc(self, name: str, uri: str) -> bytes:
        return canonical_json({"uri": uri, "name": name, "w": _token()}).encode()

    def _claim_owner(self, uri: str) -> str | None:
        key = Layout.uri(uri)
        blob = self.storage.get(key)
        if blob is None:
            return None
        doc = self._parse(key, blob)
        if doc.get("uri") != uri:
            raise self._mismatch(key, "uri", uri, doc.get("uri"))
        return str(doc["name"])

    def _claim_uri(self, name: str, uri: str) -> None:
        """Make ``uris/<uri>`` name ``name``, or raise ConflictError if another asset has it."""
        key = Layout.uri(uri)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.storage.put(key, self._claim_doc(name, uri), if_none_match=True)
                return
            except PreconditionFailed:
                pass
            blob = self.storage.get(key)
            if blob is None:
                continue
            doc = self._parse(key, blob)
            if doc.get("uri") != uri:
                raise self._mismatch(key, "uri", uri, doc.get("uri"))
            if doc["name"] == name:
                return
            owner = self._read_asset(doc["name"])
            if owner is not None and owner[0].uri == uri:
                raise conflict_for_registration(name, uri, owner[0])
            # a stale claim: its asset is gone or was registered with another URI
            try:
                self.storage.put(key, self._claim_doc(name, uri), if_match=blob.etag)
                return
            except PreconditionFailed:
                _pause(attempt)

    def deactivate_asset(self, name: str) -> bool:
        key = Layout.asset(name)
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(name)
            if current is None or not current[0].active:
                return False
            record = _replace(current[0], active=False, updated_at=utcnow())
            try:
                self.storage.put(key, self._asset_doc(record), if_match=current[1])
            except PreconditionFailed:
                _pause(attempt)
                continue
            self._cache_record(record)
            return True

    def get_asset(self, name: str) -> AssetRecord | None:
        found = self._read_asset(name)
        return found[0] if found else None

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        owner = self._claim_owner(uri)
        if owner is None:
            return None
        record = self.get_asset(owner)
        return record if record is not None and record.uri == uri else None

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        keys = self.storage.list(f"{Layout.ASSETS}/")
        records: list[AssetRecord] = []
        for key, blob in zip(keys, self.storage.get_many(keys), strict=True):
            if blob is None:
                continue  # deleted between listing and reading
            record = self._record(self._parse(key, blob))
            self._cache_record(record)
            records.append(record)
        records.sort(key=lambda r: r.name)
        return [r for r in records if active is None or r.active == active]

    # -- asset store --------------------------------------------------------------------------

    def _entry(self, key: str, doc: Mapping[str, Any], asset: str) -> StoreEntry:
        if doc.get("asset") != asset:
            raise self._mismatch(key, "asset", asset, doc.get("asset"))
        return StoreEntry(
            key=doc["key"],
            value_json=canonical_json(doc["value"]),
            version=int(doc["version"]),
            partition=doc.get("partition"),
            updated_at=_time(doc.get("updated_at")),
        )

    @staticmethod
    def _entry_doc(
        asset: str,
        key: str,
        partition: str | None,
        version: int,
        value_json: str,
        tokens: tuple[str, ...],
    ) -> bytes:
        """An entry's document; ``tokens`` are this write's token and its predecessors'."""
        head = canonical_json(
            {
                "asset": asset,
                "key": key,
                "partition": partition,
                "version": version,
                "updated_at": utcnow().isoformat(),
                "w": tokens[0],
                "h": list(tokens[1:TOKEN_HISTORY]),
            }
        )
        # the value is already canonical JSON: embed it as is, so the document stays readable
        return f'{head[:-1]},"value":{value_json}}}'.encode()

    @staticmethod
    def _tokens(doc: Mapping[str, Any]) -> tuple[str, ...]:
        """The write tokens of an entry document, newest first."""
        return (str(doc.get("w", "")), *(str(t) for t in doc.get("h") or ()))

    def _landed(
        self, asset: str, key: str, partition: str | None, path: str, token: str, version: int
    ) -> bool:
        """After a write whose answer was lost and whose resend was refused: whether the
        write (``token``, making ``version``) is in the entry's history. Raises when the
        history no longer reaches back to ``version``."""
        blob = self.storage.get(path)
        doc = self._parse(path, blob) if blob is not None else None
        tokens = self._tokens(doc) if doc is not None else ()
        if token in tokens:
            return True
        current = int(doc["version"]) if doc is not None else 0
        if 0 <= current - version < len(tokens):
            return False  # the history covers that version, and it was another writer's
        raise BackendUnavailableError(
            f"the write of asset {asset!r} key {key!r} in {self._display_url} lost its answer "
            "and the entry has changed too much since to tell whether it was applied; read "
            "the key again before retrying"
        )

    def _read_entry(
        self, asset: str, key: str, partition: str | None, path: str
    ) -> tuple[StoreEntry, _Version] | None:
        blob = self.storage.get(path)
        if blob is None:
            self._forget(path)
            return None
        doc = self._parse(path, blob)
        entry = self._entry(path, doc, asset)
        if entry.key != key or entry.partition != partition:
            raise self._mismatch(path, "key", (partition, key), (entry.partition, entry.key))
        seen = _Version(blob.etag, entry.version, self._tokens(doc))
        self._versions.put(path, seen)
        return entry, seen

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        found = self._read_entry(asset, key, partition, Layout.store_entry(asset, key, partition))
        return found[0] if found else None

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> int:
        self._check_writable(asset)
        path = Layout.store_entry(asset, key, partition)
        state: Any = self._versions.get(path, _UNKNOWN)
        deadline = time.monotonic() + 60.0
        attempt = 0
        while True:
            attempt += 1
            if expected_version is None:
                tokens = (_token(),)
                try:
                    etag = self.storage.put(
                        path,
                        self._entry_doc(asset, key, partition, 1, value_json, tokens),
                        if_none_match=True,
                    )
                except PreconditionFailed as exc:
                    if getattr(exc, "ambiguous", False) and self._landed(
                        asset, key, partition, path, tokens[0], 1
                    ):
                        self._forget(path)
                        return 1
                    found = self._read_entry(asset, key, partition, path)
                    if found is None:
                        continue  # deleted meanwhile: try again
                    raise version_conflict(asset, key, None, found[0].version) from None
                self._remember(path, etag, 1, tokens)
                return 1
            fresh = False
            if state is _UNKNOWN:
                found = self._read_entry(asset, key, partition, path)
                state = found[1] if found else None
                fresh = True
            if expected_version is not ANY_VERSION:
                actual = state.version if state is not None else None
                if actual != expected_version:
                    if fresh:
                        raise version_conflict(asset, key, expected_version, actual)
                    state = _UNKNOWN  # what we remember disagrees: read before deciding
                    continue
            version = 1 if state is None else state.version + 1
            tokens = (_token(), *(state.tokens if state is not None else ()))[:TOKEN_HISTORY]
            data = self._entry_doc(asset, key, partition, version, value_json, tokens)
            try:
                if state is None:
                    etag = self.storage.put(path, data, if_none_match=True)
                else:
                    etag = self.storage.put(path, data, if_match=state.etag)
            except PreconditionFailed as exc:
                if getattr(exc, "ambiguous", False) and self._landed(
                    asset, key, partition, path, tokens[0], version
                ):
                    self._forget(path)  # it landed, and others may have written since
                    return version
                # someone else wrote: read again and decide
                state = _UNKNOWN
                if time.monotonic() > deadline:
                    raise ConflictError(
                        f"write of asset {asset!r} key {key!r} lost {attempt} races in 60s; "
                        "the key is too contended"
                    ) from None
                _pause(attempt)
                continue
            self._remember(path, etag, version, tokens)
            return version

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> bool:
        self._check_writable(asset)
        path = Layout.store_entry(asset, key, partition)
        state: Any = self._versions.get(path, _UNKNOWN)
        attempt = 0
        while True:
            attempt += 1
            fresh = False
            if state is _UNKNOWN:
                found = self._read_entry(asset, key, partition, path)
                state = found[1] if found else None
                fresh = True
            if expected_version is not ANY_VERSION:
                actual = state.version if state is not None else None
                if actual != expected_version:
                    if fresh:
                        raise version_conflict(asset, key, expected_version, actual)
                    state = _UNKNOWN
                    continue
            if state is None:
                return False
            try:
                self.storage.delete(path, if_match=state.etag)
            except PreconditionFailed:
                state = _UNKNOWN
                _pause(attempt)
                continue
            self._forget(path)
            return True

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        self._check_writable(asset)
        folder = (
            Layout.store_root(asset) if all_partitions else Layout.store_namespace(asset, partition)
        )
        keys = self.storage.list(folder)
        self.storage.delete_many(keys)
        for key in keys:
            self._forget(key)
        return len(keys)

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        keys = self.storage.list(Layout.store_namespace(asset, partition))
        entries: list[StoreEntry] = []
        for path, blob in zip(keys, self.storage.get_many(keys), strict=True):
            if blob is None:
                continue
            doc = self._parse(path, blob)
            entry = self._entry(path, doc, asset)
            self._remember(path, blob.etag, entry.version, self._tokens(doc))
            entries.append(entry)
        entries.sort(key=lambda e: e.key)
        return entries

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        """Keys from the listing alone; only hashed (very long) keys need their document."""
        paths = self.storage.list(Layout.store_namespace(asset, partition))
        return sorted(self._names(paths, "key"))

    def store_partitions(self, asset: str) -> list[str]:
        root = Layout.store_partitions_root(asset)
        first_key: dict[str, str] = {}
        for path in self.storage.list(root):
            component = path[len(root) :].split("/", 1)[0]
            first_key.setdefault(component, path)
        names: set[str] = set()
        hashed: list[str] = []
        for component, path in first_key.items():
            name = decode_component(component)
            if name is None:
                hashed.append(path)
            else:
                names.add(name)
        for path, blob in zip(hashed, self.storage.get_many(hashed), strict=True):
            if blob is not None:
                names.add(self._parse(path, blob)["partition"])
        return sorted(names)

    def _names(self, paths: Sequence[str], field: str) -> list[str]:
        """Names of objects from their keys, reading the documents of hashed ones."""
        names: list[str] = []
        hashed: list[str] = []
        for path in paths:
            name = decode_component(Layout.leaf(path))
            if name is None:
                hashed.append(path)
            else:
                names.append(name)
        for path, blob in zip(hashed, self.storage.get_many(hashed), strict=True):
            if blob is not None:
                names.append(str(self._parse(path, blob)[field]))
        return names

    # -- event log ----------------------------------------------------------------------------

    def _event_from(self, key: str, doc: Mapping[str, Any], asset: str) -> AssetEvent | None:
        """The event of a document, or ``None`` for a tombstone."""
        if doc.get("deleted"):
            return None
        if doc.get("asset") != asset:
            raise self._mismatch(key, "asset", asset, doc.get("asset"))
        timestamp = _time(doc["timestamp"])
        assert timestamp is not None
        return AssetEvent(
            id=int(doc["id"]),
            asset_name=asset,
            asset_uri=doc["uri"],
            timestamp=timestamp,
            extra=doc.get("extra") or {},
            partition_key=doc.get("partition_key"),
            source_task_id=doc.get("source_task_id"),
            source_run_id=doc.get("source_run_id"),
            aliases=tuple(doc.get("aliases") or ()),
        )

    @staticmethod
    def _event_doc(event: AssetEvent, extra_json: str) -> bytes:
        head = canonical_json(
            {
                "id": event.id,
                "asset": event.asset_name,
                "uri": event.asset_uri,
                "timestamp": event.timestamp.isoformat(),
                "partition_key": event.partition_key,
                "source_task_id": event.source_task_id,
                "source_run_id": event.source_run_id,
                "aliases": list(event.aliases),
                "w": _token(),
            }
        )
        return f'{head[:-1]},"extra":{extra_json}}}'.encode()

    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not events:
            return []
        records = {
            name: self._check_writable(name) for name in dict.fromkeys(e.asset for e in events)
        }
        for ev in events:
            for alias in ev.aliases:
                self._ensure_alias_marker(alias, ev.asset)
        now = utcnow()
        return [self._append_one(ev, records[ev.asset].uri, now) for ev in events]

    def _append_one(self, ev: NewEvent, uri: str, now: dt.datetime) -> AssetEvent:
        """Create ``events/<asset>/<head+1>``; on a lost race, find the new head and retry.

        A writer only tries seq k+1 after seeing seq k taken, and a taken seq stays taken
        (deleting an event leaves a tombstone), so a reader that lists after its cursor
        never misses an event and ids are never reused.
        """
        asset = ev.asset
        with self._lock:
            head = self._heads.get(asset)
        if head is None:
            head = self._discover_head(asset)[0]
        extra = json.loads(ev.extra_json)
        attempt = 0
        while True:
            attempt += 1
            event = AssetEvent(
                id=head + 1,
                asset_name=asset,
                asset_uri=uri,
                timestamp=ev.timestamp or now,
                extra=extra,
                partition_key=ev.partition_key,
                source_task_id=ev.source_task_id,
                source_run_id=ev.source_run_id,
                aliases=ev.aliases,
            )
            try:
                self.storage.put(
                    Layout.event(asset, event.id),
                    self._event_doc(event, ev.extra_json),
                    if_none_match=True,
                )
            except PreconditionFailed:
                head = self._scan_head(asset, event.id)[0]
                if attempt > 2:
                    _pause(attempt - 2)
                continue
            self._set_head(asset, event.id)
            self._events.put((asset, event.id), event)
            self._maybe_write_hint(asset, event.id)
            return event

    def _set_head(self, asset: str, seq: int) -> None:
        with self._lock:
            if seq > self._heads.get(asset, 0):
                self._heads[asset] = seq

    def _scan_head(self, asset: str, known: int) -> tuple[int, int]:
        """(newest taken seq, newest live seq listed) given that ``known`` is taken (0: none
        known); lists from ``known`` on, so a live ``known`` counts."""
        newest = known
        newest_live = 0
        start = Layout.event(asset, known - 1) if known > 1 else None
        for page in self.storage.list_pages(Layout.events_root(asset), start_after=start):
            for item in page:
                seq = event_seq(item.key.rsplit("/", 1)[-1])
                if seq is None:
                    continue
                newest = max(newest, seq)
                if item.size > TOMBSTONE_MAX_BYTES:
                    newest_live = max(newest_live, seq)
        self._set_head(asset, newest)
        return newest, newest_live

    def _read_hint(self, asset: str) -> int:
        key = Layout.head(asset)
        blob = self.storage.get(key)
        hint = 0
        if blob is not None:
            doc = self._parse(key, blob)
            if doc.get("asset") == asset:
                hint = int(doc.get("id") or 0)
        with self._lock:
            self._hints[asset] = max(hint, self._hints.get(asset, 0))
        return hint

    def _discover_head(self, asset: str) -> tuple[int, int]:
        """:meth:`_scan_head` from the head hint (a lower bound): a short listing."""
        hint = self._read_hint(asset)
        with self._lock:
            cached = self._heads.get(asset, 0)
        return self._scan_head(asset, max(hint, cached))

    def _maybe_write_hint(self, asset: str, seq: int) -> None:
        with self._lock:
            if seq - self._hints.get(asset, 0) < HINT_INTERVAL:
                return
            self._hints[asset] = seq
        self._write_hint(asset, seq)

    def _write_hint(self, asset: str, seq: int) -> None:
        try:
            self.storage.put(
                Layout.head(asset), canonical_json({"asset": asset, "id": seq}).encode()
            )
        except BackendUnavailableError as exc:  # the events are committed; the hint is optional
            log.warning("could not refresh the head hint of asset %r: %s", asset, exc)

    def _ensure_alias_marker(self, alias: str, asset: str) -> None:
        with self._lock:
            if (alias, asset) in self._markers:
                return
        doc = canonical_json({"alias": alias, "asset": asset}).encode()
        self.storage.put(Layout.alias_marker(alias, asset), doc)
        with self._lock:
            self._markers.add((alias, asset))

    def _event_keys(self, query: EventQuery) -> Iterator[tuple[int, str]]:
        """(seq, key) of the asset's live events in the query's id range, ascending, lazily;
        tombstones are recognised by their size and never read.

        Ids are taken in order and never freed, so a gap in a listing is either a gap an
        import left (the object does not exist) or an object the listing missed: a local
        directory read while writers add files is no snapshot, and can show seq k+1 but
        not k. The first missing object of a gap is looked up; if it exists, the listing
        starts again after the last seq handed out, so a cursor never skips it.
        """
        asset = query.asset
        after = query.after if query.after is not None and query.after > 0 else 0
        for listing in range(_RELISTS + 1):
            start = Layout.event(asset, after) if after else None
            missed = False
            for page in self.storage.list_pages(Layout.events_root(asset), start_after=start):
                for item in page:
                    seq = event_seq(item.key.rsplit("/", 1)[-1])
                    if seq is None or seq <= after:
                        continue
                    if query.before is not None and seq >= query.before:
                        return
                    if (
                        seq > after + 1
                        and listing < _RELISTS
                        and self._event_exists(asset, after + 1)
                    ):
                        missed = True
                        break
                    after = seq
                    if item.size > TOMBSTONE_MAX_BYTES:
                        yield seq, item.key
                if missed:
                    break
            if not missed:
                return

    def _event_exists(self, asset: str, seq: int) -> bool:
        """Whether event ``seq`` (or its tombstone) exists, asked of the object itself."""
        if self._events.get((asset, seq)) is not None:
            return True
        return self.storage.get(Layout.event(asset, seq)) is not None

    def _load_events(self, asset: str, items: Sequence[tuple[int, str]]) -> list[AssetEvent]:
        """The events of ``items``, from the cache (an event never changes; a deleted one is
        no longer listed as live) or from storage."""
        found: dict[int, AssetEvent] = {}
        missing: list[tuple[int, str]] = []
        for seq, path in items:
            cached = self._events.get((asset, seq))
            if cached is not None:
                found[seq] = cached
            else:
                missing.append((seq, path))
        blobs = self.storage.get_many([path for _, path in missing])
        for (seq, path), blob in zip(missing, blobs, strict=True):
            if blob is None:
                continue
            event = self._event_from(path, self._parse(path, blob), asset)
            if event is None:
                continue  # deleted between listing and reading
            self._events.put((asset, seq), event)
            found[seq] = event
        return [found[seq] for seq, _ in items if seq in found]

    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        if query.limit is not None and query.limit <= 0:
            return []
        only_ids = (
            query.since is None
            and query.until is None
            and query.partition_key is None
            and query.alias is None
        )
        items: Iterable[tuple[int, str]] = self._event_keys(query)
        if query.descending:
            items = list(items)[::-1]
        out: list[AssetEvent] = []
        for chunk in _chunks(items, query.limit if only_ids and query.limit else _FETCH_CHUNK):
            for event in self._load_events(query.asset, chunk):
                if query.matches(event):
                    out.append(event)
                    if query.limit is not None and len(out) >= query.limit:
                        return out
        return out

    def _latest(self, asset: str) -> AssetEvent | None:
        newest, live = self._discover_head(asset)
        if newest == 0:
            return None
        if live:
            events = self._load_events(asset, [(live, Layout.event(asset, live))])
            if events:
                return events[0]
        # the newest events were deleted: walk back to the newest live one
        newest_first = self.query_events(EventQuery(asset, limit=1, descending=True))
        return newest_first[0] if newest_first else None

    def latest_events(self, assets: Sequence[str] | None = None) -> dict[str, AssetEvent]:
        names = list(assets) if assets is not None else [r.name for r in self.list_assets()]
        results = self._map(self._latest, names)
        return {n: e for n, e in zip(names, results, strict=True) if e is not None}

    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        latest: dict[str, AssetEvent] = {}
        for event in self.query_events(EventQuery(asset)):
            if event.partition_key is not None:
                latest[event.partition_key] = event
        return latest

    def alias_targets(self, alias: str) -> list[str]:
        paths = self.storage.list(Layout.alias_root(alias))
        return sorted(set(self._names(paths, "asset")))

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        """Write events with their own ids (copying a log). Per asset the ids must ascend and
        be above its newest id; everything is checked before anything is written. Do not
        append to an asset while importing into it: an appender could take an id inside a
        gap of the imported ids after a reader has seen a higher one."""
        if not events:
            return 0
        for name in dict.fromkeys(e.asset_name for e in events):
            if self._read_asset(name) is None:
                raise not_found_error(name)
        last: dict[str, int] = {}
        for ev in events:
            floor = last.get(ev.asset_name)
            if floor is None:
                floor = self._discover_head(ev.asset_name)[0]
            if ev.id <= floor:
                raise ValueError(
                    f"cannot import event {ev.id} of asset {ev.asset_name!r}: ids must be "
                    f"ascending and greater than the last id {floor}"
                )
            last[ev.asset_name] = ev.id
        for ev in events:
            for alias in ev.aliases:
                self._ensure_alias_marker(alias, ev.asset_name)
        for ev in events:
            try:
                self.storage.put(
                    Layout.event(ev.asset_name, ev.id),
                    self._event_doc(ev, canonical_json(ev.extra)),
                    if_none_match=True,
                )
            except PreconditionFailed:
                raise ConflictError(
                    f"event {ev.id} of asset {ev.asset_name!r} was taken while importing: "
                    "stop the writers of this asset and import again after its last id"
                ) from None
            self._events.put((ev.asset_name, ev.id), ev)
            self._set_head(ev.asset_name, ev.id)
        for name, seq in last.items():
            self._write_hint(name, seq)
        return len(events)

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        """Replace the given live events by tombstones (a few bytes each) and return how
        many there were. The keys stay taken, so no id is ever handed out again."""
        doomed = sorted({int(i) for i in ids if int(i) > 0})
        if not doomed:
            return 0
        wanted = set(doomed)
        live: list[tuple[int, str]] = []
        start = Layout.event(asset, doomed[0] - 1) if doomed[0] > 1 else None
        for page in self.storage.list_pages(Layout.events_root(asset), start_after=start):
            seqs = [(event_seq(i.key.rsplit("/", 1)[-1]), i) for i in page]
            live += [
                (seq, item.key)
                for seq, item in seqs
                if seq in wanted and item.size > TOMBSTONE_MAX_BYTES
            ]
            if any(seq is not None and seq >= doomed[-1] for seq, _ in seqs):
                break
        self.storage.put_many([(key, _tombstone(seq)) for seq, key in live])
        for seq, _ in live:
            self._events.pop((asset, seq))
        return len(live)

    def _map(self, fn: Callable[[str], Any], names: Sequence[str]) -> list[Any]:
        if len(names) <= 1:
            return [fn(n) for n in names]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(names))) as pool:
            return list(pool.map(fn, names))

    # -- consumer cursors ---------------------------------------------------------------------

    def _read_cursors(self, consumer: str) -> tuple[dict[str, int], str] | None:
        key = Layout.cursor(consumer)
        blob = self.storage.get(key)
        if blob is None:
            return None
        doc = self._parse(key, blob)
        if doc.get("consumer") != consumer:
            raise self._mismatch(key, "consumer", consumer, doc.get("consumer"))
        cursors = {str(k): int(v) for k, v in (doc.get("cursors") or {}).items()}
        with self._lock:
            self._cursor_docs[consumer] = (blob.etag, cursors)
        return cursors, blob.etag

    def get_cursors(self, consumer: str) -> dict[str, int]:
        found = self._read_cursors(consumer)
        return dict(found[0]) if found else {}

    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        if not cursors:
            return
        key = Layout.cursor(consumer)
        with self._lock:
            known = self._cursor_docs.get(consumer)
        state: Any = known if known is not None else _UNKNOWN
        attempt = 0
        while True:
            attempt += 1
            if state is _UNKNOWN:
                found = self._read_cursors(consumer)
                state = (found[1], found[0]) if found else None
            merged = {**(state[1] if state else {}), **{k: int(v) for k, v in cursors.items()}}
            data = canonical_json({"consumer": consumer, "cursors": merged, "w": _token()}).encode()
            try:
                if state is None:
                    etag = self.storage.put(key, data, if_none_match=True)
                else:
                    etag = self.storage.put(key, data, if_match=state[0])
            except PreconditionFailed:
                state = _UNKNOWN
                _pause(attempt)
                continue
            with self._lock:
                self._cursor_docs[consumer] = (etag, merged)
            return

    def list_consumers(self) -> list[str]:
        return sorted(self._names(self.storage.list(f"{Layout.CURSORS}/"), "consumer"))

    # -- maintenance --------------------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        """Delete the store objects of inactive assets, ``batch_size`` at a time, checking
        before each batch that the asset is still inactive. Events are kept: they are the
        history consumers' cursors point into."""
        batch_size = max(1, batch_size)
        removed = 0
        for record in self.list_assets(active=False):
            root = Layout.store_root(record.name)
            while True:
                batch: list[str] = []
                for page in self.storage.list_pages(root):
                    batch.extend(item.key for item in page[: batch_size - len(batch)])
                    if len(batch) >= batch_size:
                        break
                if not batch:
                    break
                current = self._read_asset(record.name)
                if current is None or current[0].active:
                    break  # reactivated (or removed) meanwhile: leave its store alone
                self.storage.delete_many(batch)
                for key in batch:
                    self._forget(key)
                removed += len(batch)
        return removed


# -- helpers ------------------------------------------------------------------------------------


def _tombstone(seq: int) -> bytes:
    data = canonical_json({"id": seq, "deleted": True}).encode()
    assert len(data) <= TOMBSTONE_MAX_BYTES
    return data


def _replace(record: AssetRecord, **changes: Any) -> AssetRecord:
    from dataclasses import replace

    return replace(record, **changes)


def _pause(attempt: int) -> None:
    """Jittered backoff after losing a race (none after the first loss)."""
    if attempt > 1:
        LOST_RACE.sleep(attempt)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open(
    url: str,
    *,
    conn_id: str | None,
    storage_options: dict[str, Any],
    retry: Backoff,
    fsync: bool,
    concurrency: int,
) -> _Location:
    """The storage a URL points to, with the connection's storage options."""
    scheme = uri_scheme(url) if "://" in url else "file"
    rest = url.split("://", 1)[1] if "://" in url else url
    shown = mask_url(url)
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
        storage = LocalStorage(os.path.expanduser(rest), fsync=fsync)
        return _Location(scheme, storage, storage.describe())
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
        return _Location(scheme, MemoryStorage(f"{bucket}/{prefix}".rstrip("/")), shown)
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
    return _Location(
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
