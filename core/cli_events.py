"""``assetry events|gc|vacuum``: the event log of the configured backend: list, follow,
record and prune events; sweep inactive assets; expire table versions."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .backend import EventQuery
from .cli_common import (
    MAX_ID,
    CommandFailed,
    asset_name,
    bad_input,
    compact,
    confirm_destructive,
    dry_run_option,
    emit_json,
    json_option,
    parse_age,
    parse_when,
    partition_arg,
    print_table,
    read_json_argument,
    record_of,
    state,
    yes_option,
)
from .models import AssetEvent
from .retention import PruneResult, RetentionPolicy, VacuumResult, prune_events
from .values import canonical_json

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add ``events``, ``gc`` and ``vacuum`` to the ``assetry`` group."""
    main.add_command(events)
    main.add_command(gc)
    main.add_command(vacuum)


# -- events ------------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """List, follow, record and prune asset events."""


def _event_row(event: AssetEvent) -> tuple[Any, ...]:
    source = "/".join(s for s in (event.source_task_id, event.source_run_id) if s)
    return (
        event.id,
        event.timestamp.isoformat(),
        event.partition_key or "",
        source,
        ",".join(event.aliases),
        compact(event.extra),
    )


_EVENT_COLUMNS = ["id", "timestamp", "partition", "source", "aliases", "extra"]


@events.command("list")
@click.argument("asset")
@click.option("--partition", help="Only events of this partition.")
@click.option("--alias", help="Only events emitted through this alias.")
@click.option("--since", help="Only events at or after: ISO time or a duration ago (2h, 7d).")
@click.option("--until", help="Only events before: ISO time or a duration ago.")
@click.option("--after", type=click.IntRange(0, MAX_ID), help="Only events with an id above this.")
@click.option("--before", type=click.IntRange(1, MAX_ID), help="Only events with an id below this.")
@click.option(
    "--limit",
    type=click.IntRange(0, MAX_ID),
    default=100,
    show_default=True,
    help="At most this many events (0: all).",
)
@click.option(
    "--oldest",
    is_flag=True,
    help="The oldest events of the range instead of the newest (like head, not tail).",
)
@click.option("--desc", is_flag=True, help="Print newest first.")
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
    oldest: bool,
    desc: bool,
) -> None:
    """Events of an asset, filtered by partition, alias, time range and id range: the newest
    LIMIT of them (like `tail`; --oldest for the other end), printed oldest first unless
    --desc."""
    since_at = parse_when(since, "--since") if since else None
    until_at = parse_when(until, "--until") if until else None
    backend = state().instance(create=False).backend
    record = record_of(backend, asset)
    if alias is not None:
        asset_name(alias, "--alias")
    query = EventQuery(
        record.name,
        after=after,
        before=before,
        since=since_at,
        until=until_at,
        partition_key=partition_arg(partition),
        alias=alias,
        limit=limit + 1 if limit else None,
        descending=not oldest,
    )
    found = backend.query_events(query)
    more = bool(limit) and len(found) > limit
    found = found[:limit] if limit else found
    if (not oldest) != desc:  # fetched newest first; printed oldest first unless --desc
        found.reverse()
    if state().json:
        emit_json([e.to_dict() for e in found])
        return
    print_table(
        None, _EVENT_COLUMNS, map(_event_row, found), empty=f"no events of asset {record.name!r}"
    )
    if more:
        end = "oldest" if oldest else "newest"
        click.echo(f"({end} {limit} shown; --limit 0 shows all)", err=True)


@events.command("record")
@click.argument("asset")
@click.option("--extra", metavar="JSON", help="The event's extra (a JSON object; - reads stdin).")
@click.option("--partition", help="The partition the event is about.")
@json_option
def events_record(asset: str, extra: str | None, partition: str | None) -> None:
    """Record an event of ASSET (say that it was updated), as a task does: consumers and
    watchers scheduled on it see it."""
    inst = state().instance()
    record = record_of(inst.backend, asset)
    metadata = read_json_argument(extra, "--extra", object_only=True) if extra else None
    part = partition_arg(partition)
    if not record.active:
        raise CommandFailed(
            f"asset {record.name!r} is inactive: its events cannot be written; "
            f"`assetry assets reactivate {record.name}` reactivates it"
        )
    with bad_input("--extra"):
        from .values import encode_extra

        encode_extra(metadata, max_bytes=inst.max_value_bytes)
    event = inst.record_event(record.name, metadata, part)
    if state().json:
        emit_json(event.to_dict())
    else:
        click.echo(
            f"recorded event #{event.id} of asset {record.name!r}"
            + (f" partition {part!r}" if part is not None else "")
        )


def _print_stream_event(event: AssetEvent, as_json: bool) -> None:
    if as_json:
        click.echo(canonical_json(event.to_dict()))
        return
    part = f" [{event.partition_key}]" if event.partition_key is not None else ""
    click.echo(
        f"{event.timestamp.isoformat()} {event.asset_name}#{event.id}{part} {compact(event.extra)}"
    )


@events.command("tail")
@click.argument("asset_names", metavar="[ASSET]...", nargs=-1)
@click.option("--partition", help="Only events of this partition.")
@click.option(
    "-n",
    "--last",
    type=click.IntRange(0, MAX_ID),
    default=10,
    show_default=True,
    help="Print this many existing events of each asset first.",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.01, 86400),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option("--count", type=click.IntRange(1, MAX_ID), help="Stop after this many new events.")
@click.option("--timeout", type=click.FloatRange(0, 10**9), help="Stop after this many seconds.")
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
    backend = state().instance(create=False).backend
    part = partition_arg(partition)
    names = [record_of(backend, n).name for n in asset_names] or None
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
    age = parse_age(older_than, "--older-than") if older_than is not None else None
    with bad_input("--older-than"):
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
    type=click.IntRange(1, MAX_ID),
    help="Keep the newest N events of each asset and partition.",
)
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Delete only events older than this: 90s, 30min, 12h, 30d, 2w or ISO 8601 (P1D).",
)
@click.option("--asset", "asset_names", multiple=True, help="Only this asset (repeatable).")
@yes_option
@dry_run_option
@json_option
def events_prune(
    keep_last: int | None,
    older_than: str | None,
    asset_names: tuple[str, ...],
    yes: bool,
    dry_run: bool,
) -> None:
    """Delete old events by a retention policy (the options, else the configured one).

    Never touches the asset store, never deletes the newest event of an asset or of a
    partition, and never deletes an event a consumer has not seen yet. Asks first on a
    terminal; without one it needs --yes."""
    inst = state().instance(create=not dry_run)
    policy = _policy_from(keep_last, older_than, inst.settings.retention)
    names = [record_of(inst.backend, n).name for n in asset_names] or None
    if not dry_run:
        planned = prune_events(inst.backend, policy, assets=names, dry_run=True)
        total = sum(r.deleted for r in planned)
        if total:  # nothing to delete needs no consent
            confirm_destructive(
                f"delete {total} event(s) of {sum(1 for r in planned if r.deleted)} "
                f"asset(s) ({policy})",
                yes=yes,
            )
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
@yes_option
@click.option("--dry-run", is_flag=True, help="List what would be expired; expire nothing.")
@json_option
def vacuum(asset_names: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Expire table versions (Delta, Iceberg) older than the oldest one a live event pins.

    Every event left in the log still reads its data (``connect(asset, as_of=event)``), and
    pruning never deletes an event a consumer has not read; run ``assetry events prune``
    first to let more versions go. Asks first on a terminal; without one it needs --yes."""
    inst = state().instance()
    names = [record_of(inst.backend, n).name for n in asset_names] or None
    if not dry_run:
        planned = inst.vacuum(names, dry_run=True)
        total = sum(len(r.expired) for r in planned)
        if total:  # nothing to expire needs no consent
            confirm_destructive(
                f"expire {total} table version(s) of "
                f"{sum(1 for r in planned if r.expired)} asset(s)",
                yes=yes,
            )
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
@yes_option
@dry_run_option
@json_option
def gc(yes: bool, dry_run: bool) -> None:
    """Remove the store entries of inactive assets (the orphan sweep), and apply the
    configured event retention, if any. Asks first on a terminal; without one it needs
    --yes."""
    inst = state().instance(create=not dry_run)
    backend = inst.backend
    policy = inst.settings.retention
    if policy is not None and not dry_run and not backend.capabilities.event_deletion:
        raise CommandFailed(
            f"retention is configured but {backend.describe()} cannot delete events; "
            "remove the retention setting or use a backend that can"
        )
    inactive = backend.list_assets(active=False)
    swept = sum(
        len(backend.store_entries(r.name, p))
        for r in inactive
        for p in [None, *backend.store_partitions(r.name)]
    )
    planned = prune_events(backend, policy, dry_run=True) if policy is not None else []
    deleted_events = sum(r.deleted for r in planned)
    if not dry_run and (swept or deleted_events):
        confirm_destructive(
            f"remove {swept} store entr{'y' if swept == 1 else 'ies'} of {len(inactive)} "
            f"inactive asset(s)"
            + (f" and {deleted_events} event(s) by the retention ({policy})" if policy else ""),
            yes=yes,
        )
    if not dry_run:
        swept = backend.sweep()
        pruned = prune_events(backend, policy) if policy is not None else []
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
