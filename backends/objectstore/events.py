"""The event log of the objectstore backend: ``events/<asset>/<seq>.json`` documents
created one number after an event seen to exist, head hints, alias markers, queries,
import and deletion (tombstones).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from assetry.backend import EventQuery, NewEvent, not_found_error, utcnow
from assetry.errors import BackendUnavailableError, ConflictError
from assetry.models import AssetEvent
from assetry.values import canonical_json

from .base import (
    FETCH_CHUNK,
    HINT_INTERVAL,
    RELISTS,
    TOMBSTONE_MAX_BYTES,
    ObjectStoreBase,
    chunks,
    log,
    parse_time,
    pause_after_lost_race,
    tombstone,
    write_token,
)
from .keys import Layout, event_seq
from .storage import PreconditionFailed

__all__ = ["ObjectStoreEvents"]


class ObjectStoreEvents(ObjectStoreBase):
    """Events numbered 1..N per asset with no gap, so a cursor never skips one."""

    # -- event log ----------------------------------------------------------------------------

    def _event_from(self, key: str, doc: Mapping[str, Any], asset: str) -> AssetEvent | None:
        """The event of a document, or ``None`` for a tombstone."""
        if doc.get("deleted"):
            return None
        if doc.get("asset") != asset:
            raise self._mismatch(key, "asset", asset, doc.get("asset"))
        timestamp = parse_time(doc["timestamp"])
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
                "w": write_token(),
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
                    pause_after_lost_race(attempt - 2)
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
        for listing in range(RELISTS + 1):
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
                        and listing < RELISTS
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
        for chunk in chunks(items, query.limit if only_ids and query.limit else FETCH_CHUNK):
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
        self.storage.put_many([(key, tombstone(seq)) for seq, key in live])
        for seq, _ in live:
            self._events.pop((asset, seq))
        return len(live)
