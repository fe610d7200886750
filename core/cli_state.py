"""``assetry assets|store|events|gc``: inspect and edit the registry, the asset store and
the event log of the configured backend."""

from __future__ import annotations

from typing import Any

import click

from .cli_common import (
    MAX_ID,
    CommandFailed,
    bad_input,
    compact,
    confirm_destructive,
    dry_run_option,
    emit_json,
    json_option,
    partition_arg,
    print_table,
    read_json_argument,
    read_stdin,
    record_of,
    state,
    when,
    where,
    yes_option,
)
from .contracts import AssetContract
from .freshness import assess_assets
from .instance import Instance
from .models import Asset
from .values import encode_value, validate_key

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add ``assets`` and ``store`` to the ``assetry`` group (events, gc and vacuum live in
    :mod:`.cli_events`)."""
    main.add_command(assets)
    main.add_command(store)


# -- assets ------------------------------------------------------------------------------------


@click.group()
def assets() -> None:
    """Register, list, inspect, deactivate and reactivate assets."""


@assets.command("list")
@click.option(
    "--active/--inactive",
    "active",
    default=None,
    help="Only active, or only inactive, assets (default: all).",
)
@click.option(
    "--late",
    is_flag=True,
    help="Only active assets late or stale against their declared freshness; exit 1 if any.",
)
@json_option
def assets_list(active: bool | None, late: bool) -> None:
    """Registered assets with their newest event (and freshness, when declared)."""
    backend = state().instance(create=False).backend
    records = backend.list_assets(active=active)
    latest = backend.latest_events([r.name for r in records]) if records else {}
    judged = assess_assets(backend, records, latest)
    if late:
        records = [r for r in records if r.active and judged[r.name].overdue]
    if state().json:
        emit_json(
            [
                {
                    **r.to_dict(),
                    "latest_event": latest[r.name].to_dict() if r.name in latest else None,
                    "freshness_status": judged[r.name].status,
                }
                for r in records
            ]
        )
        _exit_if_late(late, records)
        return
    rows = [
        (
            r.name,
            r.uri,
            r.group,
            "yes" if r.active else "no",
            latest[r.name].id if r.name in latest else "",
            when(latest[r.name].timestamp) if r.name in latest else "",
            "" if judged[r.name].status == "undeclared" else judged[r.name].status,
        )
        for r in records
    ]
    print_table(
        None,
        ["name", "uri", "group", "active", "last event", "last event at", "freshness"],
        rows,
        empty="no asset is late" if late else "no assets are registered",
    )
    _exit_if_late(late, records)


def _exit_if_late(late: bool, overdue: list[Any]) -> None:
    """``--late``: exit 1 when any asset is late or stale (for cron and alerting)."""
    if late and overdue:
        click.get_current_context().exit(1)


def _contract_rows(contract: AssetContract) -> list[tuple[str, str]]:
    """The rows of a declared contract: extra schema, schema evolution, freshness."""
    fresh = contract.freshness
    return [
        ("extra schema", compact(contract.extra_schema) if contract.extra_schema else "none"),
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
    backend = state().instance(create=False).backend
    record = record_of(backend, name)
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
            ("extra", compact(record.extra)),
            *_contract_rows(record.contract),
            ("created", when(record.created_at)),
            ("updated", when(record.updated_at)),
            ("latest event", f"#{latest.id} at {when(latest.timestamp)}" if latest else "none"),
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
            [(k, e.id, when(e.timestamp)) for k, e in sorted(partitions.items())],
        )
    if cursors:
        print_table("consumer cursors", ["consumer", "last event seen"], sorted(cursors.items()))


@assets.command("register")
@click.argument("name")
@click.option("--uri", help="Where the data lives (default: the name).")
@click.option("--group", default="asset", show_default=True, help="The asset's group.")
@click.option("--extra", metavar="JSON", help="Metadata of the asset (a JSON object).")
@json_option
def assets_register(name: str, uri: str | None, group: str, extra: str | None) -> None:
    """Register an asset (or reactivate an inactive one with the same URI), so its store and
    events can be written from here."""
    inst: Instance = state().instance()
    metadata = read_json_argument(extra, "--extra", object_only=True) if extra else {}
    with bad_input("NAME/--uri/--group/--extra"):
        asset = Asset(name, uri, group=group, extra=metadata)
    before = inst.backend.get_asset(asset.name)
    record = inst.register(asset)
    if state().json:
        emit_json(record.to_dict())
    elif before is None:
        click.echo(f"registered asset {record.name!r} at {record.uri!r} (group {record.group!r})")
    elif not before.active:
        click.echo(f"reactivated asset {record.name!r} at {record.uri!r}")
    else:
        click.echo(f"asset {record.name!r} was already registered at {record.uri!r}")


@assets.command("reactivate")
@click.argument("name")
@json_option
def assets_reactivate(name: str) -> None:
    """Reactivate an inactive asset: its store and events can be written again (what
    `assetry gc` has not removed yet is still there)."""
    inst: Instance = state().instance()
    record = record_of(inst.backend, name)
    if record.active:
        if state().json:
            emit_json({**record.to_dict(), "changed": False})
        else:
            click.echo(f"asset {record.name!r} is already active")
        return
    again = inst.register(Asset(record.name, record.uri, group=record.group, extra=record.extra))
    if state().json:
        emit_json({**again.to_dict(), "changed": True})
    else:
        click.echo(f"reactivated asset {again.name!r}; its store and events can be written")


@assets.command("deactivate")
@click.argument("name")
@yes_option
@dry_run_option
@json_option
def assets_deactivate(name: str, yes: bool, dry_run: bool) -> None:
    """Deactivate an asset: its store turns read-only and `assetry gc` removes it."""
    backend = state().instance(create=not dry_run).backend
    record = record_of(backend, name)
    if dry_run:
        keys = sum(
            len(backend.store_entries(record.name, p))
            for p in [None, *backend.store_partitions(record.name)]
        )
        if state().json:
            emit_json(
                {"asset": record.name, "dry_run": True, "active": record.active, "keys": keys}
            )
        elif record.active:
            click.echo(
                f"would deactivate asset {record.name!r}; `assetry gc` would then remove its "
                f"{keys} store entr{'y' if keys == 1 else 'ies'}"
            )
        else:
            click.echo(f"asset {record.name!r} is already inactive; nothing would change")
        return
    if record.active:
        confirm_destructive(
            f"deactivate asset {record.name!r} (its store turns read-only and `assetry gc` "
            "removes it)",
            yes=yes,
        )
    changed = backend.deactivate_asset(record.name)
    if state().json:
        emit_json({"asset": record.name, "active": False, "changed": changed})
    elif changed:
        click.echo(
            f"deactivated asset {record.name!r}; `assetry gc` removes its store entries "
            f"(`assetry assets reactivate {record.name}` undoes this until then)"
        )
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
    backend = state().instance(create=False).backend
    record = record_of(backend, asset)
    parts: list[str | None] = (
        [None, *backend.store_partitions(record.name)]
        if all_partitions
        else [partition_arg(partition)]
    )
    entries = [e for p in parts for e in backend.store_entries(record.name, p)]
    if state().json:
        emit_json([_entry_dict(record.name, e) for e in entries])
        return
    print_table(
        None,
        ["partition", "key", "value", "version", "updated"],
        [(e.partition or "", e.key, e.value_json, e.version, when(e.updated_at)) for e in entries],
        empty=f"the store of {where(record.name, parts[0] if not all_partitions else None)} is empty",
    )


@store.command("get")
@click.argument("asset")
@click.argument("key")
@click.option("--partition", help="Read the entry of this partition.")
@json_option
def store_get(asset: str, key: str, partition: str | None) -> None:
    """Print the value of KEY as JSON (exit code 1 when it is not set)."""
    backend = state().instance(create=False).backend
    record = record_of(backend, asset)
    with bad_input("KEY"):
        validate_key(key)
    entry = backend.store_get(record.name, key, partition_arg(partition))
    if entry is None:
        raise CommandFailed(
            f"key {key!r} is not set in {where(record.name, partition)}; "
            f"`assetry store list {record.name}` shows the keys"
        )
    if state().json:
        emit_json(_entry_dict(record.name, entry))
    else:
        click.echo(entry.value_json)


def _read_value(value: str, as_string: bool) -> Any:
    """The value to store: JSON text, ``-`` for standard input, or a plain string."""
    if as_string:
        return read_stdin("VALUE") if value == "-" else value
    return read_json_argument(value, "VALUE")


@store.command("set")
@click.argument("asset")
@click.argument("key")
@click.argument("value")
@click.option("--partition", help="Write the entry of this partition.")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@click.option("--if-absent", is_flag=True, help="Write only if KEY is not set yet.")
@click.option(
    "--expected-version",
    type=click.IntRange(1, MAX_ID),
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
    with bad_input("KEY"):
        validate_key(key)
    with bad_input("VALUE"):
        encode_value(decoded, max_bytes=inst.max_value_bytes)
    part = partition_arg(partition)
    record = record_of(inst.backend, asset)
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
        click.echo(f"set {key!r} in {where(record.name, partition)} (version {version})")


@store.command("delete")
@click.argument("asset")
@click.argument("key")
@click.option("--partition", help="Delete the entry of this partition.")
@json_option
def store_delete(asset: str, key: str, partition: str | None) -> None:
    """Delete KEY (deleting a key that is not set is a no-op)."""
    backend = state().instance().backend
    record = record_of(backend, asset)
    with bad_input("KEY"):
        validate_key(key)
    existed = backend.store_delete(record.name, key, partition_arg(partition))
    if state().json:
        emit_json({"asset": record.name, "partition": partition, "key": key, "deleted": existed})
    elif existed:
        click.echo(f"deleted {key!r} from {where(record.name, partition)}")
    else:
        click.echo(f"{key!r} was not set in {where(record.name, partition)}; nothing to delete")


@store.command("clear")
@click.argument("asset")
@click.option("--partition", help="Clear only this partition (default: the whole asset).")
@yes_option
@dry_run_option
@json_option
def store_clear(asset: str, partition: str | None, yes: bool, dry_run: bool) -> None:
    """Delete every key of an asset (asset level and all partitions) or of one partition."""
    backend = state().instance(create=not dry_run).backend
    record = record_of(backend, asset)
    part = partition_arg(partition)
    if dry_run:
        parts = [None, *backend.store_partitions(record.name)] if part is None else [part]
        keys = [(p, e.key) for p in parts for e in backend.store_entries(record.name, p)]
        if state().json:
            emit_json(
                {
                    "asset": record.name,
                    "partition": part,
                    "dry_run": True,
                    "would_delete": [{"partition": p, "key": k} for p, k in keys],
                }
            )
        else:
            print_table(
                None,
                ["partition", "key"],
                [(p or "", k) for p, k in keys],
                empty=f"the store of {where(record.name, part)} is empty",
            )
            click.echo(f"would delete {len(keys)} key(s) from {where(record.name, part)}")
        return
    confirm_destructive(f"delete every key of {where(record.name, part)}", yes=yes)
    if part is None:
        count = backend.store_clear(record.name, all_partitions=True)
    else:
        count = backend.store_clear(record.name, part)
    if state().json:
        emit_json({"asset": record.name, "partition": part, "deleted": count})
    else:
        click.echo(f"deleted {count} key(s) from {where(record.name, part)}")
