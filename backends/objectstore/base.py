"""What every part of the objectstore backend shares: the layout constants, the caches of
what this process last saw, document parsing, registry reads that writes check against,
and small helpers.

:class:`ObjectStoreBase` is the common ancestor of the registry, store, event-log and
cursor parts that :class:`~assetry.backends.objectstore.backend.ObjectStoreBackend` puts
together.
"""

from __future__ import annotations

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

from assetry.backend import AssetRecord, StateBackend, inactive_error, not_found_error
from assetry.contracts import AssetContract
from assetry.errors import BackendUnavailableError, SchemaVersionError
from assetry.retry import LOST_RACE
from assetry.values import canonical_json

from .keys import Layout, decode_component
from .storage import Blob, ObjectStorage, PreconditionFailed

__all__ = [
    "FETCH_CHUNK",
    "HINT_INTERVAL",
    "LAYOUT_VERSION",
    "LRU",
    "RELISTS",
    "TOKEN_HISTORY",
    "TOMBSTONE_MAX_BYTES",
    "UNKNOWN",
    "ObjectStoreBase",
    "SeenVersion",
    "chunks",
    "parse_time",
    "pause_after_lost_race",
    "replace_record",
    "tombstone",
    "write_token",
]

log = logging.getLogger(__name__)

#: Version of the object layout, kept in ``format.json`` under the prefix. Layout 2: asset
#: URIs (documents and ``uris/`` claims) in the normal form of :mod:`assetry.uri_normalizers`.
LAYOUT_VERSION: Final = 2
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
RELISTS: Final = 20
#: Events fetched per round when a query filters on more than the id.
FETCH_CHUNK: Final = 64

UNKNOWN: Final = object()


def _format_doc() -> bytes:
    return canonical_json({"format": "assetry-objectstore", "layout": LAYOUT_VERSION}).encode()


def write_token() -> str:
    """A random token stored in every document, so no two writes have the same bytes."""
    return os.urandom(8).hex()


def parse_time(text: str | None) -> dt.datetime | None:
    """An ISO timestamp from a document, or ``None`` when absent."""
    return dt.datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class SeenVersion:
    """What this process last saw of an object: its ETag, the version inside it, and the
    write tokens of that version and the ones before it (newest first)."""

    etag: str
    version: int
    tokens: tuple[str, ...] = ()


class LRU:
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


class ObjectStoreBase(StateBackend):
    """Storage, caches and shared reads of the objectstore backend (see ``ObjectStoreBackend``)."""

    url: str
    registry_ttl: float
    scheme: str
    storage: ObjectStorage
    _display_url: str
    _versions: LRU
    _events: LRU
    _registry: dict[str, tuple[AssetRecord, float]]
    _cursor_docs: dict[str, tuple[str, dict[str, int]]]
    _heads: dict[str, int]
    _hints: dict[str, int]
    _markers: set[tuple[str, str]]
    _format_checked: bool
    _lock: threading.Lock
    _concurrency: int

    # -- lifecycle ----------------------------------------------------------------------------

    def describe(self) -> str:
        return f"ObjectStoreBackend({self._display_url})"

    def close(self) -> None:
        self.storage.close()

    def upgrade(self) -> None:
        """Write the layout marker (``format.json``) if missing, bring an older layout to this
        one (layout 2: asset URIs normalised again, :mod:`assetry.uri_upgrade`); refuse a
        newer layout."""
        self._format_checked = False
        self._ensure_format(upgrade_older=True)

    def exists(self) -> bool:
        """Whether the layout marker (``format.json``, written with the first asset) is
        stored; only read, so a missing folder or prefix stays missing."""
        return self.storage.get(Layout.FORMAT) is not None

    def schema_status(self) -> dict[str, str | None]:
        """The stored object layout (``format.json``; none before the first registration)
        and the one this code writes."""
        blob = self.storage.get(Layout.FORMAT)
        current = None
        if blob is not None:
            current = str(self._parse(Layout.FORMAT, blob).get("layout"))
        return {"current": current, "head": str(LAYOUT_VERSION)}

    def _ensure_format(self, *, upgrade_older: bool = False) -> None:
        """Write the layout marker if missing; an older layout is upgraded when
        ``upgrade_older`` (:meth:`upgrade`), else refused with advice to upgrade."""
        if self._format_checked:
            return
        while True:
            blob = self.storage.get(Layout.FORMAT)
            if blob is None:
                try:
                    self.storage.put(Layout.FORMAT, _format_doc(), if_none_match=True)
                except PreconditionFailed:
                    continue
                break
            found = self._layout_of(blob)
            if found < LAYOUT_VERSION:
                if not upgrade_older:
                    raise self._older_layout(found)
                self._upgrade_layout(found)
                try:
                    self.storage.put(Layout.FORMAT, _format_doc(), if_match=blob.etag)
                except PreconditionFailed:
                    continue  # the marker changed meanwhile: read it again
            break
        self._format_checked = True

    def _check_layout(self) -> None:
        """Before a read that depends on the layout: refuse an older or newer one; write
        nothing (no marker yet: nothing is stored, so nothing to misread)."""
        if self._format_checked:
            return
        blob = self.storage.get(Layout.FORMAT)
        if blob is None:
            return
        found = self._layout_of(blob)
        if found < LAYOUT_VERSION:
            raise self._older_layout(found)
        self._format_checked = True

    def _layout_of(self, blob: Blob) -> int:
        found = self._parse(Layout.FORMAT, blob).get("layout")
        if not isinstance(found, int) or isinstance(found, bool) or found > LAYOUT_VERSION:
            raise SchemaVersionError(
                f"the state at {self._display_url} uses object layout {found!r}, newer than "
                f"this assetry understands ({LAYOUT_VERSION}); upgrade assetry"
            )
        return found

    def _older_layout(self, found: int) -> SchemaVersionError:
        return SchemaVersionError(
            f"the state at {self._display_url} uses object layout {found}, older than this "
            f"assetry's {LAYOUT_VERSION}: run Instance(...).upgrade() or `assetry db upgrade` "
            "(or set auto_upgrade = true)"
        )

    def _upgrade_layout(self, found: int) -> None:
        """The data steps from layout ``found`` to :data:`LAYOUT_VERSION`, each safe to run
        again after an interruption (the marker is written only once all are done)."""
        if found < 2:
            self._renormalise_uris()

    def _renormalise_uris(self) -> int:
        """Layout 2: stored asset URIs in this version's normal form (the registry's)."""
        raise NotImplementedError

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
        self._versions.put(key, SeenVersion(etag, version, tokens))

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
            created_at=parse_time(doc.get("created_at")),
            updated_at=parse_time(doc.get("updated_at")),
            contract=AssetContract.from_dict(doc.get("contract")),
        )

    @staticmethod
    def _asset_doc(record: AssetRecord) -> bytes:
        doc = record.to_dict()
        doc["w"] = write_token()
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

    def _map(self, fn: Callable[[str], Any], names: Sequence[str]) -> list[Any]:
        if len(names) <= 1:
            return [fn(n) for n in names]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(names))) as pool:
            return list(pool.map(fn, names))


# -- helpers ------------------------------------------------------------------------------------


def tombstone(seq: int) -> bytes:
    """The document left in place of deleted event ``seq``, so its id stays taken."""
    data = canonical_json({"id": seq, "deleted": True}).encode()
    assert len(data) <= TOMBSTONE_MAX_BYTES
    return data


def replace_record(record: AssetRecord, **changes: Any) -> AssetRecord:
    """``record`` with ``changes`` applied (a new frozen record)."""
    from dataclasses import replace

    return replace(record, **changes)


def pause_after_lost_race(attempt: int) -> None:
    """Jittered backoff after losing a race (none after the first loss)."""
    if attempt > 1:
        LOST_RACE.sleep(attempt)


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size``."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
