"""Copying state between backends: the engine behind ``assetry copy SRC DST``.

:func:`copy_state` copies assets, store entries, events and consumer cursors. It is batched, resumable and idempotent because every step
compares before it writes:

- assets are registered in the destination when missing or different (name, URI, group,
  extra) and given the source's active flag;
- store entries (asset level and every partition) are written where the destination lacks
  the key or holds another value, in batches through :meth:`StateBackend.apply`;
- events are copied after the destination's last event of the asset, in batches. With
  ``capabilities.event_import`` they keep their ids; otherwise they are appended (ids are
  renumbered) and the copied prefix is found again by matching content (timestamp,
  partition, sources, aliases, extra), which is stored with the events themselves, so an
  interrupted copy resumes without duplicates;
- consumer cursors are written last, translated to the destination's ids;
- finally every source event, entry and cursor is looked up in the destination.

Before anything is written, every source asset is checked against the destination's
registry: a name registered there with another URI, or a URI registered under another
name, stops the copy with a :class:`ConflictError` naming each conflicting asset.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backend import AssetRecord, EventQuery, NewEvent, StateBackend, StoreEntry, StoreWrite
from .errors import ConflictError
from .models import AssetEvent
from .values import canonical_json

__all__ = [
    "AssetCopy",
    "CopyPlan",
    "CopyReport",
    "Progress",
    "conflict_message",
    "copy_state",
    "find_conflicts",
    "plan_copy",
]

Progress = Callable[[str, str, int], None]
"""``progress(kind, asset, n)``: kind is ``asset`` (one asset done), ``store`` or ``events``
(``n`` more copied)."""


def _canonical(value_json: str) -> str:
    """JSON text in one form (sorted keys, compact), so equal values compare equal across
    backends that re-serialise JSON (e.g. PostgreSQL's jsonb)."""
    return canonical_json(json.loads(value_json), sort_keys=True)


def _fingerprint(event: AssetEvent) -> tuple[Any, ...]:
    """What identifies an event apart from its id."""
    return (
        event.timestamp,
        event.partition_key,
        event.source_task_id,
        event.source_run_id,
        tuple(event.aliases),
        canonical_json(event.extra, sort_keys=True),
    )


def _iter_events(backend: StateBackend, asset: str, batch_size: int) -> Iterator[AssetEvent]:
    after: int | None = None
    while True:
        page = backend.query_events(EventQuery(asset, after=after, limit=batch_size))
        yield from page
        if len(page) < batch_size:
            return
        after = page[-1].id


@dataclass
class AssetCopy:
    """What the copy did to one asset, and what verification found."""

    asset: str
    registry_changed: bool = False
    store_written: int = 0
    events_copied: int = 0
    source_events: int = 0
    events_found: int = 0
    extra_destination_events: int = 0
    store_entries: int = 0
    store_found: int = 0

    @property
    def ok(self) -> bool:
        return self.events_found == self.source_events and self.store_found == self.store_entries

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclass
class CopyReport:
    """The outcome of :func:`copy_state`."""

    assets: list[AssetCopy] = field(default_factory=list)
    cursors_written: int = 0
    cursors: int = 0
    cursors_found: int = 0
    ids_renumbered: bool = False
    #: Store versions, update times and the assets' timestamps kept as in the source
    #: (``capabilities.state_import`` of the destination).
    versions_kept: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """How many writes the copy made (0 when the destination was already a copy)."""
        return self.cursors_written + sum(
            a.store_written + a.events_copied + int(a.registry_changed) for a in self.assets
        )

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "changed": self.changed,
            "ids_renumbered": self.ids_renumbered,
            "versions_kept": self.versions_kept,
            "assets": [a.to_dict() for a in self.assets],
            "cursors": self.cursors,
            "cursors_written": self.cursors_written,
            "cursors_found": self.cursors_found,
            "problems": self.problems,
        }


class _IdMap:
    """Source id -> destination id for the cursor values that need translating: for each
    wanted source id, the destination id of the newest copied event at or below it."""

    def __init__(self, wanted: Sequence[int]) -> None:
        self.result: dict[int, int] = dict.fromkeys(wanted, 0)

    def see(self, src_id: int, dst_id: int) -> None:
        for wanted in self.result:
            if src_id <= wanted:
                self.result[wanted] = dst_id


def copy_state(
    src: StateBackend,
    dst: StateBackend,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every asset, store entry, event and consumer cursor of ``src`` into ``dst``.

    Safe to interrupt and run again: each run copies only what the destination lacks.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    tick = progress or (lambda kind, asset, n: None)
    records = src.list_assets()
    conflicts = find_conflicts(records, dst)
    if conflicts:
        raise ConflictError(conflict_message(conflicts))
    report = CopyReport(
        ids_renumbered=not dst.capabilities.event_import,
        versions_kept=dst.capabilities.state_import,
    )
    consumers = {c: src.get_cursors(c) for c in src.list_consumers()}
    wanted: dict[str, set[int]] = {}
    for cursors in consumers.values():
        for asset, cursor in cursors.items():
            wanted.setdefault(asset, set()).add(cursor)
    translated: dict[str, dict[int, int]] = {}
    for record in records:
        item, ids = _copy_asset(
            src, dst, record, batch_size, sorted(wanted.get(record.name, ())), tick
        )
        report.assets.append(item)
        translated[record.name] = ids
        if not item.ok:
            report.problems.append(_asset_problem(item))
        tick("asset", record.name, 1)
    known = {r.name for r in records}
    for consumer, cursors in consumers.items():
        target = {
            asset: translated[asset].get(cursor, cursor)
            for asset, cursor in cursors.items()
            if asset in known
        }
        skipped = sorted(set(cursors) - known)
        if skipped:
            report.problems.append(
                f"consumer {consumer!r} has cursors on unregistered asset(s) "
                f"{', '.join(map(repr, skipped))}; they were not copied"
            )
        have = dst.get_cursors(consumer)
        changed = {a: c for a, c in target.items() if have.get(a) != c}
        if changed:
            dst.set_cursors(consumer, changed)
            report.cursors_written += len(changed)
        report.cursors += len(target)
        after = dst.get_cursors(consumer)
        report.cursors_found += sum(1 for a, c in target.items() if after.get(a) == c)
    if report.cursors_found != report.cursors:
        report.problems.append(
            f"{report.cursors - report.cursors_found} consumer cursor(s) differ in the destination"
        )
    return report


def find_conflicts(records: Sequence[AssetRecord], dst: StateBackend) -> list[str]:
    """Why each source asset cannot be copied into ``dst`` (empty when all can): its name is
    registered there with another URI, or its URI under another name."""
    found = []
    for record in records:
        existing = dst.get_asset(record.name)
        if existing is not None and existing.uri != record.uri:
            found.append(
                f"asset {record.name!r} is registered in the destination with uri "
                f"{existing.uri!r}, in the source with {record.uri!r}"
            )
            continue
        other = dst.get_asset_by_uri(record.uri)
        if other is not None and other.name != record.name:
            found.append(
                f"asset {record.name!r}: its uri {record.uri!r} is registered in the "
                f"destination as asset {other.name!r}"
            )
    return found


def conflict_message(conflicts: Sequence[str]) -> str:
    shown = "; ".join(conflicts[:5])
    more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
    return (
        f"nothing was copied: {len(conflicts)} asset(s) conflict with the destination: "
        f"{shown}{more}; rename or remove them in one of the two"
    )


@dataclass
class CopyPlan:
    """What :func:`copy_state` would write for one asset (``--dry-run``)."""

    asset: str
    register: bool
    store_writes: int
    events: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_copy(
    src: StateBackend, dst: StateBackend | None, *, batch_size: int = 500
) -> list[CopyPlan]:
    """What a copy of ``src`` into ``dst`` (``None``: no state there yet) would write, asset by
    asset, writing nothing; conflicts raise :class:`ConflictError` as in the copy."""
    records = src.list_assets()
    if dst is None:
        return [
            CopyPlan(
                r.name,
                True,
                sum(
                    len(src.store_entries(r.name, p)) for p in [None, *src.store_partitions(r.name)]
                ),
                sum(1 for _ in _iter_events(src, r.name, batch_size)),
            )
            for r in records
        ]
    conflicts = find_conflicts(records, dst)
    if conflicts:
        raise ConflictError(conflict_message(conflicts))
    plans = []
    for record in records:
        exact = dst.capabilities.state_import
        existing = dst.get_asset(record.name)
        register = not _registry_same(existing, record, exact) or (
            existing is not None and existing.active != record.active
        )
        writes, _total = _store_diff(src, dst, record.name, exact)
        if dst.capabilities.event_import:
            dst_latest = dst.latest_events([record.name]).get(record.name)
            after = dst_latest.id if dst_latest is not None else None
            events = sum(
                1 for e in _iter_events(src, record.name, batch_size) if e.id > (after or 0)
            )
        else:
            events = sum(1 for _ in _align(src, dst, record.name, batch_size, _IdMap(()))[1])
        plans.append(CopyPlan(record.name, register, len(writes), events))
    return plans


def _asset_problem(item: AssetCopy) -> str:
    parts = []
    if item.events_found != item.source_events:
        parts.append(
            f"{item.source_events - item.events_found} of {item.source_events} events are "
            "missing or different in the destination (it has other events under the same ids?)"
        )
    if item.store_found != item.store_entries:
        parts.append(
            f"{item.store_entries - item.store_found} of {item.store_entries} store entries "
            "differ in the destination (written there during the copy?)"
        )
    return f"asset {item.asset!r}: " + "; ".join(parts)


def _store_diff(
    src: StateBackend, dst: StateBackend, asset: str, exact: bool = False
) -> tuple[list[StoreEntry], int]:
    """The source's entries the destination lacks or holds differently (``exact``: also
    another version or update time), and how many entries the source has."""
    missing: list[StoreEntry] = []
    total = 0

    def same(entry: StoreEntry) -> tuple[Any, ...]:
        value = _canonical(entry.value_json)
        return (value, entry.version, entry.updated_at) if exact else (value,)

    for partition in [None, *src.store_partitions(asset)]:
        have = {e.key: same(e) for e in dst.store_entries(asset, partition)}
        for entry in src.store_entries(asset, partition):
            total += 1
            if have.get(entry.key) != same(entry):
                missing.append(dataclasses.replace(entry, partition=partition))
    return missing, total


def _registry_same(existing: AssetRecord | None, record: AssetRecord, exact: bool) -> bool:
    """Whether the destination's record already is the source's (``exact``: with its active
    flag and timestamps)."""
    if existing is None:
        return False
    fields = ("uri", "group", "extra", "contract") + (
        ("active", "created_at", "updated_at") if exact else ()
    )
    return all(getattr(existing, f) == getattr(record, f) for f in fields)


def _copy_asset(
    src: StateBackend,
    dst: StateBackend,
    record: AssetRecord,
    batch_size: int,
    cursor_ids: Sequence[int],
    tick: Progress,
) -> tuple[AssetCopy, dict[int, int]]:
    name = record.name
    item = AssetCopy(name)
    existing = dst.get_asset(name)
    exact = dst.capabilities.state_import
    writes, item.store_entries = _store_diff(src, dst, name, exact)
    importing = dst.capabilities.event_import
    ids = _IdMap(cursor_ids)
    after: int | None = None
    pending: Iterator[AssetEvent] = iter(())
    if importing:
        for cursor in cursor_ids:
            ids.result[cursor] = cursor
        src_latest = src.latest_events([name]).get(name)
        dst_latest = dst.latest_events([name]).get(name)
        after = dst_latest.id if dst_latest is not None else None
        events_pending = src_latest is not None and src_latest.id > (after or 0)
    else:
        rest = _align(src, dst, name, batch_size, ids)[1]
        first = next(rest, None)
        events_pending = first is not None
        if first is not None:
            pending = itertools.chain([first], rest)

    differs = not _registry_same(existing, record, exact=False)
    inactive = existing is not None and not existing.active
    if exact:
        appending = events_pending and not importing  # appending needs an active asset
        if differs or (appending and inactive):
            dst.import_asset(dataclasses.replace(record, active=record.active or appending))
            item.registry_changed = True
    elif differs or (inactive and (record.active or writes or events_pending)):
        dst.register_asset(
            name,
            record.uri,
            group=record.group,
            extra_json=canonical_json(record.extra),
            contract_json=None if record.contract.is_default else record.contract.to_json(),
        )
        item.registry_changed = True

    for start in range(0, len(writes), batch_size):
        chunk = writes[start : start + batch_size]
        if exact:
            dst.import_store(name, chunk)
        else:
            dst.apply([StoreWrite(name, e.key, e.value_json, e.partition) for e in chunk], [])
        item.store_written += len(chunk)
        tick("store", name, len(chunk))

    if importing:
        while events_pending:
            page = src.query_events(EventQuery(name, after=after, limit=batch_size))
            if not page:
                break
            dst.import_events(page)
            item.events_copied += len(page)
            tick("events", name, len(page))
            if len(page) < batch_size:
                break
            after = page[-1].id
    else:
        batch: list[AssetEvent] = []
        for event in pending:
            batch.append(event)
            if len(batch) >= batch_size:
                item.events_copied += _append(dst, batch, ids)
                tick("events", name, len(batch))
                batch = []
        if batch:
            item.events_copied += _append(dst, batch, ids)
            tick("events", name, len(batch))

    current = dst.get_asset(name)
    if exact and not _registry_same(current, record, exact=True):
        dst.import_asset(record)  # the source's active flag and timestamps, last
        item.registry_changed = True
    elif not exact and not record.active and current is not None and current.active:
        dst.deactivate_asset(name)
        item.registry_changed = True

    _verify_asset(src, dst, item, batch_size, importing, exact)
    return item, ids.result


def _append(dst: StateBackend, events: list[AssetEvent], ids: _IdMap) -> int:
    """Append copies of ``events`` (new ids) and record the id mapping."""
    written = dst.append_events(
        [
            NewEvent(
                asset=e.asset_name,
                extra_json=canonical_json(e.extra),
                partition_key=e.partition_key,
                source_task_id=e.source_task_id,
                source_run_id=e.source_run_id,
                aliases=tuple(e.aliases),
                timestamp=e.timestamp,
            )
            for e in events
        ]
    )
    for original, copy in zip(events, written, strict=True):
        ids.see(original.id, copy.id)
    return len(written)


def _align(
    src: StateBackend, dst: StateBackend, asset: str, batch_size: int, ids: _IdMap
) -> tuple[int, Iterator[AssetEvent]]:
    """Match the destination's events to the source's in order, by content.

    Returns how many source events the destination already holds, and an iterator over
    the source events it still lacks (in id order). Destination events that match nothing
    (written there by something else) are skipped.
    """
    source = _iter_events(src, asset, batch_size)
    pending = next(source, None)
    matched = 0
    if pending is not None:
        for event in _iter_events(dst, asset, batch_size):
            if _fingerprint(event) == _fingerprint(pending):
                ids.see(pending.id, event.id)
                matched += 1
                pending = next(source, None)
                if pending is None:
                    break

    def rest() -> Iterator[AssetEvent]:
        if pending is not None:
            yield pending
            yield from source

    return matched, rest()


def _verify_asset(
    src: StateBackend,
    dst: StateBackend,
    item: AssetCopy,
    batch_size: int,
    importing: bool,
    exact: bool,
) -> None:
    """Count the source's events and entries and how many the destination holds."""
    name = item.asset
    remaining, item.store_entries = _store_diff(src, dst, name, exact)
    item.store_found = item.store_entries - len(remaining)
    item.source_events = sum(1 for _ in _iter_events(src, name, batch_size))
    if not importing:
        item.events_found = _align(src, dst, name, batch_size, _IdMap(()))[0]
        return
    found = extra = 0
    theirs = _iter_events(dst, name, batch_size)
    other = next(theirs, None)
    for event in _iter_events(src, name, batch_size):
        while other is not None and other.id < event.id:
            extra += 1
            other = next(theirs, None)
        if other is not None and other.id == event.id:
            found += _fingerprint(other) == _fingerprint(event)
            other = next(theirs, None)
    item.events_found = found
    item.extra_destination_events = extra + sum(1 for _ in theirs) + (other is not None)
