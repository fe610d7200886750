"""``assetry copy SRC DST``: copy assets, store entries, events and cursors between backends
(the engine is :mod:`assetry.state_copy`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from . import plugins
from .backend import StateBackend
from .cli_common import (
    CommandFailed,
    confirm_destructive,
    dry_run_option,
    emit_json,
    err_console,
    json_option,
    print_table,
    read_json_argument,
    state,
    yes_option,
)
from .config import load_settings
from .errors import ConflictError, StateNotFoundError
from .instance import Instance
from .state_copy import (
    AssetCopy,
    CopyPlan,
    CopyReport,
    conflict_message,
    copy_state,
    find_conflicts,
    plan_copy,
)
from .urls import render_url

__all__ = [
    "AssetCopy",
    "CopyPlan",
    "CopyReport",
    "copy_command",
    "copy_state",
    "find_conflicts",
    "open_instance",
    "parse_target",
    "plan_copy",
]


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


def open_instance(text: str, options: dict[str, Any], *, create: bool = True) -> Instance:
    """An instance on the backend ``text`` names, with only ``options`` as backend options
    (the configured ones belong to the configured backend); connections come from the
    configuration as usual. ``create=False`` opens existing state only (the source)."""
    name, url = parse_target(text)
    settings = load_settings(backend=name, url=url)
    settings = dataclasses.replace(
        settings,
        backend_options=dict(options),
        sources={**settings.sources, "backend_options": "argument"},
    )
    return Instance(settings=settings, create=create)


def _json_options(text: str | None, what: str) -> dict[str, Any]:
    return read_json_argument(text, what, object_only=True) if text else {}


@click.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=500,
    show_default=True,
    help="Events or store entries written per round trip.",
)
@click.option("--src-options", metavar="JSON", help="Backend options of SRC (a JSON object).")
@click.option("--dst-options", metavar="JSON", help="Backend options of DST (a JSON object).")
@yes_option
@dry_run_option
@json_option
def copy_command(
    src: str,
    dst: str,
    batch_size: int,
    src_options: str | None,
    dst_options: str | None,
    yes: bool,
    dry_run: bool,
) -> None:
    """Copy assets, store entries, events and consumer cursors from SRC to DST.

    SRC and DST are state URLs (sqlite:///state.db, postgresql+psycopg://host/db,
    s3://bucket/prefix, memory://name) or backend:URL. Batched and resumable: run it again
    after an interruption and it copies only what is missing; a run on an up-to-date copy
    changes nothing. Name conflicts are checked before anything is written. Into a DST that
    already holds assets it asks first (--yes without a terminal). Counts are verified at the
    end (exit code 1 on a difference)."""
    src_opts = _json_options(src_options, "--src-options")
    dst_opts = _json_options(dst_options, "--dst-options")
    if src == dst and src_opts == dst_opts:
        raise click.UsageError("SRC and DST are the same; nothing to copy")
    as_json = state().json
    with open_instance(src, src_opts, create=False) as source:
        if dry_run:
            _dry_run(source, dst, dst_opts, batch_size, as_json)
            return
        with open_instance(dst, dst_opts) as target:
            held = len(target.backend.list_assets())
            if held:
                conflicts = find_conflicts(source.backend.list_assets(), target.backend)
                if conflicts:
                    raise ConflictError(conflict_message(conflicts))
                confirm_destructive(
                    f"copy into {render_url(dst)}, which already holds {held} asset(s) (store "
                    "entries and consumer cursors that differ are overwritten)",
                    yes=yes,
                )
            if not target.backend.capabilities.event_import and not as_json:
                click.echo(
                    f"note: {target.backend.describe()} cannot keep event ids; events are "
                    "appended and get new ids (cursors are translated)",
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


def _dry_run(
    source: Instance, dst: str, dst_opts: dict[str, Any], batch_size: int, as_json: bool
) -> None:
    """Print what a copy would write, writing nothing (and creating no destination)."""
    try:
        target: Instance | None = open_instance(dst, dst_opts, create=False)
    except StateNotFoundError:
        target = None
    try:
        plans = plan_copy(source.backend, target.backend if target else None, batch_size=batch_size)
    finally:
        if target is not None:
            target.close()
    if as_json:
        emit_json(
            {
                "destination": render_url(dst),
                "dry_run": True,
                "assets": [p.to_dict() for p in plans],
            }
        )
        return
    print_table(
        f"copy --dry-run -> {render_url(dst)}",
        ["asset", "registry", "store writes", "events"],
        [
            (p.asset, "would write" if p.register else "same", p.store_writes, p.events)
            for p in plans
        ],
        empty="the source has no assets",
    )
    writes = sum(int(p.register) + p.store_writes + p.events for p in plans)
    click.echo(f"would write {writes} item(s) of {len(plans)} asset(s); nothing was written")


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
    if not report.versions_kept:
        click.echo(
            "store versions and times restart in the destination (it cannot import them; "
            "values are copied)"
        )
    if report.changed == 0:
        click.echo("the destination was already up to date; nothing changed")
    else:
        click.echo(f"done: {report.changed} write(s)")
