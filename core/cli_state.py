"""``assetry assets|store|events|gc``: inspect and edit the registry, the asset store and
the event log of the configured backend."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .backend import AssetRecord, EventQuery, StateBackend
from .cli_common import (
    CommandFailed,
    emit_json,
    json_option,
    parse_when,
    print_table,
    state,
)
from .contracts import AssetContract
from .errors import StoreValueError
from .instance import Instance
from .models import AssetEvent, validate_name
from .retention import (
    PruneResult,
    RetentionPolicy,
    VacuumResult,
    parse_duration,
    prune_events,
)
from .values import canonical_json, encode_value, validate_key, validate_partition_key

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add the state commands to the ``assetry`` group."""
    main.add_command(assets)
    main.add_command(store)
    main.add_command(events)
    main.add_command(gc)
    main.add_command(vacuum)


# -- shared helpers ----------------------------------------------------------------------------


@contextmanager
def _bad_input(param_hint: str) -> Iterator[None]:
    """Turn a validation error of user input into a usage error (exit code 2)."""
    try:
        yield
    except (StoreValueError, ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None


def _asset_name(name: str) -> str:
    with _bad_input("ASSET"):
        return validate_name(name)


def _partition(partition: str | None) -> str | None:
    if partition is None:
        return None
    with _bad_input("--partition"):
        return validate_partition_key(partition)


def _record(backend: StateBackend, name: str) -> AssetRecord:
    """The registry record of ``name``, or a failure saying how to find the right name."""
    record = backend.get_asset(_asset_name(name))
    if record is None:
        raise CommandFailed(
            f"asset {name!r} is not registered; `assetry assets list` shows the registered ones"
        )
    return record


def _compact(value: Any) -> str:
    return canonical_json(value)


def _when(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _where(asset: str, partition: str | None) -> str:
    return f"asset {asset!r}" + (f" partition {partition!r}" if partition is not None else "")


# -- assets ------------------------------------------------------------------------------------


@click.group()
def assets() -> None:
    """List, inspect and deactivate registered assets."""


@assets.command("list")
@click.option(
    "--active/--inactive",
    "active",
    default=None,
    help="Only active, or only inactive, assets (default: all).",
)
@json_option
def assets_list(active: bool | None) -> None:
    """Registered assets with their newest event."""
    backend = state().instance().backend
    records = backend.list_assets(active=active)
    latest = backend.latest_events([r.name for r in records]) if records else {}
    if state().json:
        emit_json(
            [
                {
                    **r.to_dict(),
                    "latest_event": latest[r.name].to_dict() if r.name in latest else None,
                }
                for r in records
            ]
        )
        return
    rows = [
        (
            r.name,
            r.uri,
            r.group,
            "yes" if r.active else "no",
            latest[r.name].id if r.name in latest else "",
            _when(latest[r.name].timestamp) if r.name in latest else "",
        )
        for r in records
    ]
    print_table(
        None,
        ["name", "uri", "group", "active", "last event", "last event at"],
        rows,
        empty="no assets are registered",
    )


def _contract_rows(contract: AssetContract) -> list[tuple[str, str]]:
    """The rows of a declared contract: extra schema, schema evolution, freshness."""
    fresh = contract.freshness
    return [
        ("extra schema", _compact(contract.extra_schema) if contract.extra_schema else "none"),
        ("schema evolution", contract.schema_evolution),
        (
            "freshness",
            f"every {fresh.max_age}{' per partition' if fresh.per_partition else ''}"
            if fresh
            else "none",
        ),
    ]


@assets.command("show")
@click.argument("name")
@json_option
def assets_show(name: str) -> None:
    """One asset: its record, store namespaces, newest events and consumer cursors."""
    backend = state().instance().backend
    record = _record(backend, name)
    namespaces: dict[str, int] = {"": len(backend.store_entries(record.name))}
    for part in backend.store_partitions(record.name):
        namespaces[part] = len(backend.store_entries(record.name, part))
    latest = backend.latest_events([record.name]).get(record.name)
    partitions = backend.latest_partition_events(record.name)
    cursors = {
        consumer: cursor
        for consumer in backend.list_consumers()
        if (cursor := backend.get_cursors(consumer).get(record.name)) is not None
    }
    if state().json:
        emit_json(
            {
                **record.to_dict(),
                "store": [{"partition": k or None, "keys": n} for k, n in namespaces.items()],
                "latest_event": latest.to_dict() if latest else None,
                "latest_partition_events": {k: e.to_dict() for k, e in partitions.items()},
                "consumer_cursors": cursors,
            }
        )
        return
    print_table(
        f"asset {record.name}",
        ["field", "value"],
        [
            ("uri", record.uri),
            ("group", record.group),
            ("active", "yes" if record.active else "no (store read-only until `assetry gc`)"),
            ("extra", _compact(record.extra)),
            *_contract_rows(record.contract),
            ("created", _when(record.created_at)),
            ("updated", _when(record.updated_at)),
            ("latest event", f"#{latest.id} at {_when(latest.timestamp)}" if latest else "none"),
        ],
    )
    print_table(
        "store",
        ["partition", "keys"],
        [(k or "(asset level)", n) for k, n in namespaces.items()],
    )
    if partitions:
        print_table(
            "latest event per partition",
            ["partition", "event", "at"],
            [(k, e.id, _when(e.timestamp)) for k, e in sorted(partitions.items())],
        )
    if cursors:
        print_table("consumer cursors", ["consumer", "last event seen"], sorted(cursors.items()))


@assets.command("deactivate")
@click.argument("name")
@json_option
def assets_deactivate(name: str) -> None:
    """Deactivate an asset: its store turns read-only and `assetry gc` removes it."""
    backend = state().instance().backend
    record = _record(backend, name)
    changed = backend.deactivate_asset(record.name)
    if state().json:
        emit_json({"asset": record.name, "active": False, "changed": changed})
    elif changed:
        click.echo(f"deactivated asset {record.name!r}; `assetry gc` removes its store entries")
    else:
        click.echo(f"asset {record.name!r} was already inactive")


# -- store -------------------------------------------------------------------------------------


@click.group()
def store() -> None:
    """Read and write asset-store entries (values are JSON)."""


def _entry_dict(asset: str, entry: Any) -> dict[str, Any]:
    return {
        "asset": asset,
        "partition": entry.partition,
        "key": entry.key,
        "value": entry.value,
        "version": entry.version,
        "updated_at": entry.updated_at.isoformat() if entry.updated_at else None,
    }


@store.command("list")
@click.argument("asset")
@click.option("--partition", help="Entries of this partition (default: asset level).")
@click.option(
    "--all-partitions", is_flag=True, help="Entries of the asset level and every partition."
)
@json_option
def store_list(asset: str, partition: str | None, all_partitions: bool) -> None:
    """Entries of an asset's store: key, value, version."""
    if partition is not None and all_partitions:
        raise click.UsageError("give --partition or --all-partitions, not both")
    backend = state().instance().backend
    record = _record(backend, asset)
    parts: list[str | None] = (
        [None, *backend.store_partitions(record.name)]
        if all_partitions
        else [_partition(partition)]
    )
    entries = [e for p in parts for e in backend.store_entries(record.name, p)]
    if state().json:
        emit_json([_entry_dict(record.name, e) for e in entries])
        return
    print_table(
        None,
        ["partition", "key", "value", "version", "updated"],
        [(e.partition or "", e.key, e.value_json, e.version, _when(e.updated_at)) for e in entries],
        empty=f"the store of {_where(record.name, parts[0] if not all_partitions else None)} is empty",
    )


@store.command("get")
@click.argument("asset")
@click.argument("key")
@click.option("--partition", help="Read the entry of this partition.")
@json_option
def store_get(asset: str, key: str, partition: str | None) -> None:
    """Print the value of KEY as JSON (exit code 1 when it is not set)."""
    backend = state().instance().backend
    record = _record(backend, asset)
    with _bad_input("KEY"):
        validate_key(key)
    entry = backend.store_get(record.name, key, _partition(partition))
    if entry is None:
        raise CommandFailed(
            f"key {key!r} is not set in {_where(record.name, partition)}; "
            f"`assetry store list {record.name}` shows the keys"
        )
    if state().json:
        emit_json(_entry_dict(record.name, entry))
    else:
        click.echo(entry.value_json)


def _read_value(value: str, as_string: bool) -> Any:
    """The value to store: JSON text, ``-`` for standard input, or a plain string."""
    if value == "-":
        value = click.get_text_stream("stdin").read()
        if not as_string:
            value = value.strip()
    if as_string:
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{value[:60]!r} is not JSON ({exc.msg}); quote strings as JSON "
            """('"2024-06-01"') or pass --string""",
            param_hint="VALUE",
        ) from None


@store.command("set")
@click.argument("asset")
@click.argument("key")
@click.argument("value")
@click.option("--partition", help="Write the entry of this partition.")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@click.option("--if-absent", is_flag=True, help="Write only if KEY is not set yet.")
@click.option(
    "--expected-version",
    type=click.IntRange(min=1),
    help="Write only if KEY is at this version (compare-and-set).",
)
@json_option
def store_set(
    asset: str,
    key: str,
    value: str,
    partition: str | None,
    as_string: bool,
    if_absent: bool,
    expected_version: int | None,
) -> None:
    """Set KEY to VALUE (JSON, or - to read standard input). Same rules as the Python API:
    no null, no NaN/Infinity, bounded size."""
    if if_absent and expected_version is not None:
        raise click.UsageError("give --if-absent or --expected-version, not both")
    inst: Instance = state().instance()
    decoded = _read_value(value, as_string)
    with _bad_input("KEY"):
        validate_key(key)
    with _bad_input("VALUE"):
        encode_value(decoded, max_bytes=inst.max_value_bytes)
    part = _partition(partition)
    record = _record(inst.backend, asset)
    target = inst.asset_store(record.name)
    if part is not None:
        target = target.partition(part)
    if if_absent or expected_version is not None:
        version = target.compare_and_set(
            key, decoded, expected_version=None if if_absent else expected_version
        )
    else:
        version = target.set(key, decoded)
    if state().json:
        emit_json({"asset": record.name, "partition": partition, "key": key, "version": version})
    else:
        click.echo(f"set {key!r} in {_where(record.name, partition)} (version {version})")


@store.command("delete")
@click.argument("asset")
@click.argument("key")
@click.option("--partition", help="Delete the entry of this partition.")
@json_option
def store_delete(asset: str, key: str, partition: str | None) -> None:
    """Delete KEY (deleting a key that is not set is a no-op)."""
    backend = state().instance().backend
    record = _record(backend, asset)
    with _bad_input("KEY"):
        validate_key(key)
    existed = backend.store_delete(record.name, key, _partition(partition))
    if state().json:
        emit_json({"asset": record.name, "partition": partition, "key": key, "deleted": existed})
    elif existed:
        click.echo(f"deleted {key!r} from {_where(record.name, partition)}")
    else:
        click.echo(f"{key!r} was not set in {_where(record.name, partition)}; nothing to delete")


@store.command("clear")
@click.argument("asset")
@click.option("--partition", help="Clear only this partition (default: the whole asset).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def store_clear(asset: str, partition: str | None, yes: bool) -> None:
    """Delete every key of an asset (asset level and all partitions) or of one partition."""
    backend = state().instance().backend
    record = _record(backend, asset)
    part = _partition(partition)
    if not yes:
        click.confirm(f"delete every key of {_where(record.name, part)}?", abort=True)
    if part is None:
        count = backend.store_clear(record.name, all_partitions=True)
    else:
        count = backend.store_clear(record.name, part)
    if state().json:
        emit_json({"asset": record.name, "partition": part, "deleted": count})
    else:
        click.echo(f"deleted {count} key(s) from {_where(record.name, part)}")


# -- events ------------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """List, follow and prune asset events."""


def _event_row(event: AssetEvent) -> tuple[Any, ...]:
    source = "/".join(s for s in (event.source_task_id, event.source_run_id) if s)
    return (
        event.id,
        event.timestamp.isoformat(),
        event.partition_key or "",
        source,
        ",".join(event.aliases),
        _compact(event.extra),
    )


_EVENT_COLUMNS = ["id", "timestamp", "partition", "source", "aliases", "extra"]


@events.command("list")
@click.argument("asset")
@click.option("--partition", help="Only events of this partition.")
@click.option("--alias", help="Only events emitted through this alias.")
@click.option("--since", help="Only events at or after: ISO time or a duration ago (2h, 7d).")
@click.option("--until", help="Only events before: ISO time or a duration ago.")
@click.option("--after", type=click.IntRange(min=0), help="Only events with an id above this.")
@click.option("--before", type=click.IntRange(min=1), help="Only events with an id below this.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many events (0: all).",
)
@click.option("--desc", is_flag=True, help="Newest first.")
@json_option
def events_list(
    asset: str,
    partition: str | None,
    alias: str | None,
    since: str | None,
    until: str | None,
    after: int | None,
    before: int | None,
    limit: int,
    desc: bool,
) -> None:
    """Events of an asset, filtered by partition, alias, time range and id range."""
    since_at = parse_when(since, "--since") if since else None
    until_at = parse_when(until, "--until") if until else None
    backend = state().instance().backend
    record = _record(backend, asset)
    query = EventQuery(
        record.name,
        after=after,
        before=before,
        since=since_at,
        until=until_at,
        partition_key=_partition(partition),
        alias=alias,
        limit=limit + 1 if limit else None,
        descending=desc,
    )
    found = backend.query_events(query)
    more = bool(limit) and len(found) > limit
    found = found[:limit] if limit else found
    if state().json:
        emit_json([e.to_dict() for e in found])
        return
    print_table(
        None, _EVENT_COLUMNS, map(_event_row, found), empty=f"no events of asset {record.name!r}"
    )
    if more:
        click.echo(f"(first {limit} shown; --limit 0 shows all)", err=True)


def _print_stream_event(event: AssetEvent, as_json: bool) -> None:
    if as_json:
        click.echo(canonical_json(event.to_dict()))
        return
    part = f" [{event.partition_key}]" if event.partition_key is not None else ""
    click.echo(
        f"{event.timestamp.isoformat()} {event.asset_name}#{event.id}{part} {_compact(event.extra)}"
    )


@events.command("tail")
@click.argument("asset_names", metavar="[ASSET]...", nargs=-1)
@click.option("--partition", help="Only events of this partition.")
@click.option(
    "-n",
    "--last",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Print this many existing events of each asset first.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many new events.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@json_option
def events_tail(
    asset_names: tuple[str, ...],
    partition: str | None,
    last: int,
    interval: float,
    count: int | None,
    timeout: float | None,
) -> None:
    """Follow new events of some assets (default: every asset) until interrupted.
    With --json, one JSON object per line."""
    as_json = state().json
    backend = state().instance().backend
    part = _partition(partition)
    names = [_record(backend, n).name for n in asset_names] or None
    watched = names if names is not None else [r.name for r in backend.list_assets()]
    newest = backend.latest_events(watched) if watched else {}
    cursors = {name: newest[name].id if name in newest else 0 for name in watched}
    if last:
        backlog = [
            e
            for name in watched
            for e in backend.query_events(
                EventQuery(name, partition_key=part, limit=last, descending=True)
            )
        ]
        for event in sorted(backlog, key=lambda e: (e.timestamp, e.asset_name, e.id)):
            _print_stream_event(event, as_json)
    sys.stdout.flush()
    deadline = time.monotonic() + timeout if timeout is not None else None
    printed = 0
    try:
        while (count is None or printed < count) and (
            deadline is None or time.monotonic() < deadline
        ):
            time.sleep(
                interval
                if deadline is None
                else max(0.0, min(interval, deadline - time.monotonic()))
            )
            fresh: list[AssetEvent] = []
            for name, latest in backend.latest_events(names).items():
                seen = cursors.get(name, 0)
                if latest.id <= seen:
                    continue
                fresh.extend(
                    backend.query_events(
                        EventQuery(name, after=seen, before=latest.id + 1, partition_key=part)
                    )
                )
                cursors[name] = latest.id
            for event in sorted(fresh, key=lambda e: (e.timestamp, e.asset_name, e.id)):
                if count is not None and printed >= count:
                    break
                _print_stream_event(event, as_json)
                printed += 1
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def _policy_from(
    keep_last: int | None, older_than: str | None, configured: RetentionPolicy | None
) -> RetentionPolicy:
    if keep_last is None and older_than is None:
        if configured is None:
            raise click.UsageError(
                "give --keep-last and/or --older-than, or configure "
                '[tool.assetry] retention = {keep_last = 1000, older_than = "30d"}'
            )
        return configured
    with _bad_input("--older-than"):
        age = parse_duration(older_than) if older_than is not None else None
    return RetentionPolicy(keep_last=keep_last, older_than=age)


def _print_prune(results: list[PruneResult], policy: RetentionPolicy, dry_run: bool) -> None:
    verb = "would delete" if dry_run else "deleted"
    print_table(
        None,
        ["asset", "examined", verb, "kept for consumers"],
        [(r.asset, r.examined, r.deleted, r.kept_for_consumers) for r in results],
        empty="no assets to prune",
    )
    total = sum(r.deleted for r in results)
    click.echo(f"{verb} {total} event(s) of {len(results)} asset(s); policy: {policy}")


@events.command("prune")
@click.option(
    "--keep-last",
    type=click.IntRange(min=1),
    help="Keep the newest N events of each asset and partition.",
)
@click.option(
    "--older-than", metavar="DURATION", help="Delete only events older than this (30d, 12h)."
)
@click.option("--asset", "asset_names", multiple=True, help="Only this asset (repeatable).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
def events_prune(
    keep_last: int | None, older_than: str | None, asset_names: tuple[str, ...], dry_run: bool
) -> None:
    """Delete old events by a retention policy (the options, else the configured one).

    Never touches the asset store, never deletes the newest event of an asset or of a
    partition, and never deletes an event a consumer has not seen yet."""
    inst = state().instance()
    policy = _policy_from(keep_last, older_than, inst.settings.retention)
    names = [_record(inst.backend, n).name for n in asset_names] or None
    results = prune_events(inst.backend, policy, assets=names, dry_run=dry_run)
    if state().json:
        emit_json(
            {
                "policy": policy.to_dict(),
                "dry_run": dry_run,
                "deleted": sum(r.deleted for r in results),
                "assets": [r.to_dict() for r in results],
            }
        )
    else:
        _print_prune(results, policy, dry_run)


# -- vacuum ------------------------------------------------------------------------------------


def _print_vacuum(results: list[VacuumResult], dry_run: bool) -> None:
    verb = "would expire" if dry_run else "expired"
    print_table(
        None,
        ["asset", "versions pinned by events", f"versions {verb}"],
        [(r.asset, len(r.kept), len(r.expired)) for r in results],
        empty="no table-format asset has an event pinning a version",
    )
    total = sum(len(r.expired) for r in results)
    click.echo(f"{verb} {total} table version(s) of {len(results)} asset(s)")


@click.command()
@click.option("--asset", "asset_names", multiple=True, help="Only this asset (repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would be expired; expire nothing.")
@json_option
def vacuum(asset_names: tuple[str, ...], dry_run: bool) -> None:
    """Expire table versions (Delta, Iceberg) older than the oldest one a live event pins.

    Every event left in the log still reads its data (``connect(asset, as_of=event)``), and
    pruning never deletes an event a consumer has not read; run ``assetry events prune``
    first to let more versions go."""
    inst = state().instance()
    names = [_record(inst.backend, n).name for n in asset_names] or None
    results = inst.vacuum(names, dry_run=dry_run)
    if state().json:
        emit_json(
            {
                "dry_run": dry_run,
                "expired": sum(len(r.expired) for r in results),
                "assets": [r.to_dict() for r in results],
            }
        )
    else:
        _print_vacuum(results, dry_run)


# -- gc ----------------------------------------------------------------------------------------


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@json_option
def gc(dry_run: bool) -> None:
    """Remove the store entries of inactive assets (the orphan sweep), and apply the
    configured event retention, if any."""
    inst = state().instance()
    backend = inst.backend
    policy = inst.settings.retention
    if policy is not None and not dry_run and not backend.capabilities.event_deletion:
        raise CommandFailed(
            f"retention is configured but {backend.describe()} cannot delete events; "
            "remove the retention setting or use a backend that can"
        )
    inactive = backend.list_assets(active=False)
    if dry_run:
        swept = sum(
            len(backend.store_entries(r.name, p))
            for r in inactive
            for p in [None, *backend.store_partitions(r.name)]
        )
    else:
        swept = backend.sweep()
    pruned = prune_events(backend, policy, dry_run=dry_run) if policy is not None else []
    deleted_events = sum(r.deleted for r in pruned)
    if state().json:
        emit_json(
            {
                "dry_run": dry_run,
                "inactive_assets": [r.name for r in inactive],
                "store_entries_removed": swept,
                "retention": policy.to_dict() if policy else None,
                "events_deleted": deleted_events,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {swept} store entr{'y' if swept == 1 else 'ies'} of "
        f"{len(inactive)} inactive asset(s)"
    )
    if policy is not None:
        click.echo(
            f"{'would delete' if dry_run else 'deleted'} {deleted_events} event(s) "
            f"by the configured retention ({policy})"
        )
