"""``assetry copy SRC DST``: copy assets, store entries, events and cursors between backends.

:func:`copy_state` is the engine. It is batched, resumable and idempotent because every step
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
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from . import plugins
from .backend import AssetRecord, EventQuery, NewEvent, StateBackend, StoreWrite
from .cli_common import CommandFailed, emit_json, err_console, json_option, print_table, state
from .config import load_settings
from .instance import Instance
from .models import AssetEvent
from .urls import render_url
from .values import canonical_json

__all__ = ["AssetCopy", "CopyReport", "copy_command", "copy_state", "open_instance", "parse_target"]

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
    report = CopyReport(ids_renumbered=not dst.capabilities.event_import)
    consumers = {c: src.get_cursors(c) for c in src.list_consumers()}
    wanted: dict[str, set[int]] = {}
    for cursors in consumers.values():
        for asset, cursor in cursors.items():
            wanted.setdefault(asset, set()).add(cursor)
    translated: dict[str, dict[int, int]] = {}
    records = src.list_assets()
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


def _store_diff(src: StateBackend, dst: StateBackend, asset: str) -> tuple[list[StoreWrite], int]:
    """The writes that make the destination's store hold the source's entries, and how
    many entries the source has."""
    writes: list[StoreWrite] = []
    total = 0
    for partition in [None, *src.store_partitions(asset)]:
        have = {e.key: _canonical(e.value_json) for e in dst.store_entries(asset, partition)}
        for entry in src.store_entries(asset, partition):
            total += 1
            if have.get(entry.key) != _canonical(entry.value_json):
                writes.append(StoreWrite(asset, entry.key, entry.value_json, partition))
    return writes, total


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
    writes, item.store_entries = _store_diff(src, dst, name)
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

    differs = existing is None or (existing.uri, existing.group, existing.extra) != (
        record.uri,
        record.group,
        record.extra,
    )
    inactive = existing is not None and not existing.active
    if differs or (inactive and (record.active or writes or events_pending)):
        dst.register_asset(
            name,
            record.uri,
            group=record.group,
            extra_json=canonical_json(record.extra),
        )
        item.registry_changed = True

    for start in range(0, len(writes), batch_size):
        chunk = writes[start : start + batch_size]
        dst.apply(chunk, [])
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
    if not record.active and current is not None and current.active:
        dst.deactivate_asset(name)
        item.registry_changed = True

    _verify_asset(src, dst, item, batch_size, importing)
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
    src: StateBackend, dst: StateBackend, item: AssetCopy, batch_size: int, importing: bool
) -> None:
    """Count the source's events and entries and how many the destination holds."""
    name = item.asset
    remaining, item.store_entries = _store_diff(src, dst, name)
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


# -- the command -------------------------------------------------------------------------------


def parse_target(text: str) -> tuple[str, str | None]:
    """``URL`` or ``backend:URL`` (or ``backend:``) -> (backend name, URL)."""
    head, sep, rest = text.partition(":")
    if sep and not rest.startswith("//") and head in plugins.backends.names():
        return head, rest or None
    if "://" not in text:
        raise click.BadParameter(
            f"{text!r} is not a state URL (sqlite:///state.db, s3://bucket/prefix, "
            "memory://name) nor backend:URL",
        )
    return plugins.backend_for_url(text), text


def open_instance(text: str, options: dict[str, Any]) -> Instance:
    """An instance on the backend ``text`` names, with only ``options`` as backend options
    (the configured ones belong to the configured backend); connections come from the
    configuration as usual."""
    name, url = parse_target(text)
    settings = load_settings(backend=name, url=url)
    settings = dataclasses.replace(
        settings,
        backend_options=dict(options),
        sources={**settings.sources, "backend_options": "argument"},
    )
    return Instance(settings=settings)


def _json_options(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint=what) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=what)
    return value


@click.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Events or store entries written per round trip.",
)
@click.option("--src-options", metavar="JSON", help="Backend options of SRC (a JSON object).")
@click.option("--dst-options", metavar="JSON", help="Backend options of DST (a JSON object).")
@json_option
def copy_command(
    src: str, dst: str, batch_size: int, src_options: str | None, dst_options: str | None
) -> None:
    """Copy assets, store entries, events and consumer cursors from SRC to DST.

    SRC and DST are state URLs (sqlite:///state.db, postgresql+psycopg://host/db,
    s3://bucket/prefix, memory://name) or backend:URL. Batched and resumable: run it again
    after an interruption and it copies only what is missing; a run on an up-to-date copy
    changes nothing. Counts are verified at the end (exit code 1 on a difference)."""
    src_opts = _json_options(src_options, "--src-options")
    dst_opts = _json_options(dst_options, "--dst-options")
    if src == dst and src_opts == dst_opts:
        raise click.UsageError("SRC and DST are the same; nothing to copy")
    as_json = state().json
    with open_instance(src, src_opts) as source, open_instance(dst, dst_opts) as target:
        if not target.backend.capabilities.event_import and not as_json:
            click.echo(
                f"note: {target.backend.describe()} cannot keep event ids; events are appended "
                "and get new ids (cursors are translated)",
                err=True,
            )
        report = _run_with_progress(source.backend, target.backend, batch_size, as_json)
    if as_json:
        emit_json({"source": render_url(src), "destination": render_url(dst), **report.to_dict()})
    else:
        _print_report(report, src, dst)
    if not report.ok:
        raise CommandFailed(
            "the copy is incomplete: "
            + "; ".join(report.problems[:3])
            + (f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else "")
        )


def _run_with_progress(
    src: StateBackend, dst: StateBackend, batch_size: int, quiet: bool
) -> CopyReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    total_assets = len(src.list_assets())
    console = err_console()
    counts = {"store": 0, "events": 0}
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=False,
    ) as bar:
        task = bar.add_task("copying assets", total=total_assets, counts="")

        def tick(kind: str, asset: str, n: int) -> None:
            if kind == "asset":
                bar.advance(task, n)
            else:
                counts[kind] += n
            bar.update(
                task,
                description=f"copying {asset}",
                counts=f"{counts['events']} events, {counts['store']} store entries",
            )

        return copy_state(src, dst, batch_size=batch_size, progress=tick)


def _print_report(report: CopyReport, src: str, dst: str) -> None:
    print_table(
        f"copy {render_url(src)} -> {render_url(dst)}",
        [
            "asset",
            "events copied",
            "events (src/found)",
            "store written",
            "store (src/found)",
            "ok",
        ],
        [
            (
                a.asset,
                a.events_copied,
                f"{a.source_events}/{a.events_found}",
                a.store_written,
                f"{a.store_entries}/{a.store_found}",
                "yes" if a.ok else "NO",
            )
            for a in report.assets
        ],
        empty="the source has no assets",
    )
    click.echo(
        f"{report.cursors_written} consumer cursor(s) written, "
        f"{report.cursors_found}/{report.cursors} verified"
    )
    if report.ids_renumbered:
        click.echo("event ids were renumbered (the destination cannot import ids)")
    if report.changed == 0:
        click.echo("the destination was already up to date; nothing changed")
    else:
        click.echo(f"done: {report.changed} write(s)")
