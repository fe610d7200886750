"""The ``memory`` backend: dicts in the process behind one lock. For tests; the fastest."""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from assetry.backend import (
    ANY_VERSION,
    AssetRecord,
    Capabilities,
    EventQuery,
    NewEvent,
    StateBackend,
    StoreEntry,
    StoreWrite,
    conflict_for_registration,
    from_us,
    inactive_error,
    not_found_error,
    now_us,
    to_us,
    utcnow,
    version_conflict,
)
from assetry.contracts import DEFAULT_CONTRACT, AssetContract
from assetry.models import AssetEvent

__all__ = ["MemoryBackend"]

_ASSET_LEVEL = ""  # the partition slot of asset-level entries

#: A stored entry: its JSON text, version and update time in microseconds since the epoch
#: (a ``StoreEntry`` and its datetime are built when it is read, not on every write).
_Entry = tuple[str, int, int]


def _entry(key: str, partition: str | None, stored: _Entry) -> StoreEntry:
    return StoreEntry(key, stored[0], stored[1], partition or None, from_us(stored[2]))


class MemoryBackend(StateBackend):
    """State in plain dicts guarded by one re-entrant lock.

    ``MemoryBackend()`` is private to the object; ``url="memory://name"`` shares one state
    between every backend opened on the same name in this process.
    """

    name = "memory"
    url_schemes = ("memory",)
    capabilities = Capabilities(
        persistent=False,
        multi_process=False,
        atomic_batches=True,
        event_import=True,
        event_deletion=True,
        state_import=True,
    )

    _shared: dict[str, _State] = {}
    _shared_lock = threading.Lock()

    def __init__(self, url: str | None = None, **options: Any) -> None:
        if options:
            raise TypeError(f"unexpected option(s) {', '.join(sorted(options))}")
        self.url = url
        name = url.partition("://")[2].strip("/") if url else ""
        if name:
            with self._shared_lock:
                self._state = self._shared.setdefault(name, _State())
        else:
            self._state = _State()

    def describe(self) -> str:
        return f"MemoryBackend({self.url or 'private'})"

    # -- registry ----------------------------------------------------------------------------

    def register_asset(
        self,
        name: str,
        uri: str,
        *,
        group: str = "asset",
        extra_json: str = "{}",
        contract_json: str | None = None,
    ) -> AssetRecord:
        st = self._state
        with st.lock:
            existing = st.assets.get(name)
            if existing is not None and existing.uri != uri:
                raise conflict_for_registration(name, uri, existing)
            other = st.by_uri.get(uri)
            if other is not None and other != name:
                raise conflict_for_registration(name, uri, st.assets[other])
            now = utcnow()
            record = AssetRecord(
                name=name,
                uri=uri,
                group=group,
                extra=json.loads(extra_json),
                active=True,
                created_at=existing.created_at if existing else now,
                updated_at=now,
                contract=(
                    AssetContract.from_json(contract_json)
                    if contract_json is not None
                    else existing.contract
                    if existing
                    else DEFAULT_CONTRACT
                ),
            )
            st.assets[name] = record
            st.by_uri[uri] = name
            return record

    def deactivate_asset(self, name: str) -> bool:
        st = self._state
        with st.lock:
            record = st.assets.get(name)
            if record is None or not record.active:
                return False
            st.assets[name] = _replace(record, active=False, updated_at=utcnow())
            return True

    def import_asset(self, record: AssetRecord) -> AssetRecord:
        st = self._state
        with st.lock:
            existing = st.assets.get(record.name)
            if existing is not None and existing.uri != record.uri:
                raise conflict_for_registration(record.name, record.uri, existing)
            other = st.by_uri.get(record.uri)
            if other is not None and other != record.name:
                raise conflict_for_registration(record.name, record.uri, st.assets[other])
            now = utcnow()
            stored = _replace(
                record,
                created_at=record.created_at or now,
                updated_at=record.updated_at or now,
            )
            st.assets[record.name] = stored
            st.by_uri[record.uri] = record.name
            return stored

    def import_store(self, asset: str, entries: Sequence[StoreEntry]) -> int:
        st = self._state
        with st.lock:
            if asset not in st.assets:
                raise not_found_error(asset)
            for entry in entries:
                ns = st.store.setdefault(asset, {}).setdefault(entry.partition or _ASSET_LEVEL, {})
                updated = entry.updated_at
                at = to_us(updated) if updated else now_us()
                ns[entry.key] = (entry.value_json, entry.version, at)
            return len(entries)

    def get_asset(self, name: str) -> AssetRecord | None:
        return self._state.assets.get(name)

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        st = self._state
        with st.lock:
            name = st.by_uri.get(uri)
            return st.assets.get(name) if name is not None else None

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        with self._state.lock:
            records = sorted(self._state.assets.values(), key=lambda r: r.name)
        return [r for r in records if active is None or r.active == active]

    def _writable(self, name: str) -> None:
        record = self._state.assets.get(name)
        if record is None:
            raise not_found_error(name)
        if not record.active:
            raise inactive_error(name)

    # -- store -------------------------------------------------------------------------------

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        ns = self._state.store.get(asset, {}).get(partition or _ASSET_LEVEL)
        stored = ns.get(key) if ns else None
        return None if stored is None else _entry(key, partition, stored)

    def store_value(self, asset: str, key: str, partition: str | None = None) -> str | None:
        ns = self._state.store.get(asset, {}).get(partition or _ASSET_LEVEL)
        stored = ns.get(key) if ns else None
        return None if stored is None else stored[0]

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: int | Any | None = ANY_VERSION,
    ) -> int:
        st = self._state
        with st.lock:
            record = st.assets.get(asset)
            if record is None or not record.active:
                self._writable(asset)  # raises
            ns = st.store.setdefault(asset, {}).setdefault(partition or _ASSET_LEVEL, {})
            current = ns.get(key)
            if expected_version is not ANY_VERSION:
                actual = current[1] if current else None
                if actual != expected_version:
                    raise version_conflict(asset, key, expected_version, actual)
            version = current[1] + 1 if current else 1
            ns[key] = (value_json, version, now_us())
            return version

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: int | Any | None = ANY_VERSION,
    ) -> bool:
        st = self._state
        with st.lock:
            self._writable(asset)
            ns = st.store.get(asset, {}).get(partition or _ASSET_LEVEL, {})
            current = ns.get(key)
            if expected_version is not ANY_VERSION:
                actual = current[1] if current else None
                if actual != expected_version:
                    raise version_conflict(asset, key, expected_version, actual)
            return ns.pop(key, None) is not None

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        st = self._state
        with st.lock:
            self._writable(asset)
            namespaces = st.store.get(asset, {})
            if all_partitions:
                count = sum(len(ns) for ns in namespaces.values())
                namespaces.clear()
                return count
            ns = namespaces.pop(partition or _ASSET_LEVEL, {})
            return len(ns)

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        with self._state.lock:
            ns = self._state.store.get(asset, {}).get(partition or _ASSET_LEVEL, {})
            return [_entry(k, partition, ns[k]) for k in sorted(ns)]

    def store_partitions(self, asset: str) -> list[str]:
        with self._state.lock:
            return sorted(p for p, ns in self._state.store.get(asset, {}).items() if p and ns)

    # -- events ------------------------------------------------------------------------------

    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        st = self._state
        with st.lock:
            for ev in events:
                self._writable(ev.asset)
            out: list[AssetEvent] = []
            now = utcnow()
            for ev in events:
                log = st.events.setdefault(ev.asset, [])
                st.last_ids[ev.asset] = st.last_ids.get(ev.asset, 0) + 1
                event = AssetEvent(
                    id=st.last_ids[ev.asset],
                    asset_name=ev.asset,
                    asset_uri=st.assets[ev.asset].uri,
                    timestamp=ev.timestamp or now,
                    extra=json.loads(ev.extra_json),
                    partition_key=ev.partition_key,
                    source_task_id=ev.source_task_id,
                    source_run_id=ev.source_run_id,
                    aliases=ev.aliases,
                )
                log.append(event)
                for alias in ev.aliases:
                    st.alias_targets.setdefault(alias, set()).add(ev.asset)
                out.append(event)
            return out

    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        with self._state.lock:
            log = self._state.events.get(query.asset, [])
            start = bisect.bisect_right(log, query.after, key=lambda e: e.id) if query.after else 0
            stop = (
                bisect.bisect_left(log, query.before, key=lambda e: e.id)
                if query.before is not None
                else len(log)
            )
            window = log[start:stop]
        if query.descending:
            window = window[::-1]
        out: list[AssetEvent] = []
        for event in window:
            if query.matches(event):
                out.append(event)
                if query.limit is not None and len(out) >= query.limit:
                    break
        return out[: query.limit] if query.limit is not None else out

    def latest_events(self, assets: Sequence[str] | None = None) -> dict[str, AssetEvent]:
        with self._state.lock:
            names = self._state.events.keys() if assets is None else assets
            return {n: self._state.events[n][-1] for n in names if self._state.events.get(n)}

    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        latest: dict[str, AssetEvent] = {}
        with self._state.lock:
            for event in self._state.events.get(asset, []):
                if event.partition_key is not None:
                    latest[event.partition_key] = event
        return latest

    def alias_targets(self, alias: str) -> list[str]:
        with self._state.lock:
            return sorted(self._state.alias_targets.get(alias, ()))

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        st = self._state
        with st.lock:
            last: dict[str, int] = {}
            for ev in events:
                if ev.asset_name not in st.assets:
                    raise not_found_error(ev.asset_name)
                floor = last.get(ev.asset_name, st.last_ids.get(ev.asset_name, 0))
                if ev.id <= floor:
                    raise ValueError(
                        f"cannot import event {ev.id} of asset {ev.asset_name!r}: ids must be "
                        f"ascending and greater than the last id {floor}"
                    )
                last[ev.asset_name] = ev.id
            for ev in events:
                st.events.setdefault(ev.asset_name, []).append(ev)
                st.last_ids[ev.asset_name] = ev.id
                for alias in ev.aliases:
                    st.alias_targets.setdefault(alias, set()).add(ev.asset_name)
            return len(events)

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        st = self._state
        doomed = set(ids)
        with st.lock:
            log = st.events.get(asset, [])
            kept = [e for e in log if e.id not in doomed]
            st.events[asset] = kept
            return len(log) - len(kept)

    # -- cursors -----------------------------------------------------------------------------

    def get_cursors(self, consumer: str) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.cursors.get(consumer, {}))

    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        with self._state.lock:
            self._state.cursors.setdefault(consumer, {}).update(cursors)

    def list_consumers(self) -> list[str]:
        with self._state.lock:
            return sorted(c for c, v in self._state.cursors.items() if v)

    # -- maintenance ---------------------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        st = self._state
        removed = 0
        with st.lock:
            for name, record in st.assets.items():
                if not record.active and name in st.store:
                    removed += sum(len(ns) for ns in st.store.pop(name).values())
        return removed

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        st = self._state
        with st.lock:
            for name in {w.asset for w in writes} | {e.asset for e in events}:
                self._writable(name)
            for w in writes:  # every compare-and-set holds before anything is written
                if w.expected_version is not ANY_VERSION:
                    ns = st.store.get(w.asset, {}).get(w.partition or _ASSET_LEVEL, {})
                    current = ns.get(w.key)
                    actual = current[1] if current else None
                    if actual != w.expected_version:
                        raise version_conflict(w.asset, w.key, w.expected_version, actual)
            for w in writes:
                if w.value_json is None:
                    self.store_delete(w.asset, w.key, w.partition)
                else:
                    self.store_set(w.asset, w.key, w.value_json, w.partition)
            return self.append_events(events) if events else []


class _State:
    __slots__ = (
        "alias_targets",
        "assets",
        "by_uri",
        "cursors",
        "events",
        "last_ids",
        "lock",
        "store",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.assets: dict[str, AssetRecord] = {}
        self.by_uri: dict[str, str] = {}
        self.store: dict[str, dict[str, dict[str, _Entry]]] = {}
        self.events: dict[str, list[AssetEvent]] = {}
        self.last_ids: dict[str, int] = {}
        self.alias_targets: dict[str, set[str]] = {}
        self.cursors: dict[str, dict[str, int]] = {}


def _replace(record: AssetRecord, **changes: Any) -> AssetRecord:
    from dataclasses import replace

    return replace(record, **changes)
