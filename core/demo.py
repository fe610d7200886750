"""``assetry demo``: the seed's incremental-orders pipeline on the embedded default.

Everything lives under the working directory: the state in ``.assetry/state.db`` (the sql
backend on SQLite), an upstream order feed as a local parquet dataset and the warehouse as a
DuckDB table, both under ``.assetry/demo/``. Each run lands a batch of generated orders in
the feed, then ``load_new_orders`` (the seed's task, unchanged in shape) reads the watermark
from the asset store, loads only the orders created after it, and advances it. Run it twice
to see the watermark move and only the new orders load.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .instance import Instance, use_instance
from .models import Asset, AssetEvent
from .runtime import DAG, get_current_context, task

if TYPE_CHECKING:
    from .runtime import Task

__all__ = ["DemoReport", "demo_command", "register", "run_demo"]

EPOCH = "1970-01-01T00:00:00Z"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CUSTOMERS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")


@dataclass(frozen=True)
class DemoReport:
    """What one demo run did, for printing and for tests."""

    workdir: Path
    state: str
    feed_uri: str
    warehouse_uri: str
    generated: int
    feed_rows: int
    watermark_before: str
    watermark_after: str
    fetched: int
    loaded: int
    warehouse_rows: int
    events: list[AssetEvent]


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=dt.UTC)


def _new_orders(first_id: int, after: str | None, count: int, now: dt.datetime) -> list[dict]:
    """``count`` orders created strictly after ``after``, one second apart at least."""
    rng = random.Random(first_id)
    start = _parse(after) if after else now - dt.timedelta(hours=1)
    span = max(int((now - start).total_seconds()), count)
    offsets = sorted(rng.sample(range(1, span + 1), count))
    return [
        {
            "order_id": first_id + i,
            "customer": rng.choice(_CUSTOMERS),
            "amount": round(rng.uniform(5, 500), 2),
            "created_at": _stamp(start + dt.timedelta(seconds=offset)),
        }
        for i, offset in enumerate(offsets)
    ]


def _pipeline(feed: Asset, orders: Asset, new_orders: int) -> tuple[Task, Task]:
    """The two tasks of the demo: the upstream that lands orders, and the seed's loader."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with DAG("incremental_orders", schedule="@daily"):

        @task(outlets=[feed])
        def land_orders(asset_store, io_manager, outlet_events):
            """Stand-in for the source system: append a batch of new orders to the feed."""
            next_id = asset_store.get("next_order_id", default=1)
            rows = _new_orders(
                next_id, asset_store.get("last_created_at"), new_orders, dt.datetime.now(dt.UTC)
            )
            with io_manager.connect(feed) as t:
                t.insert(pa.Table.from_pylist(rows))
            asset_store.set("next_order_id", next_id + len(rows))
            asset_store.set("last_created_at", rows[-1]["created_at"])
            outlet_events[feed].extra["first_order_id"] = next_id
            return len(rows)

        def fetch_orders_since(watermark: str) -> list[dict[str, Any]]:
            with _connect(feed) as t:
                table = t.to_pyarrow()
            return table.filter(pc.greater(table["created_at"], watermark)).to_pylist()

        def upload_to_warehouse(rows: list[dict[str, Any]]) -> None:
            with _connect(orders) as t:
                t.insert(pa.Table.from_pylist(rows))

        def _connect(asset: Asset) -> Any:
            return get_current_context()["io_manager"].connect(asset)

        @task(inlets=[orders], outlets=[orders])
        def load_new_orders(**context):
            asset_store = context["asset_store"]  # single-inlet shorthand
            # Read the last watermark, default to epoch if first run.
            watermark = asset_store.get("watermark", default=EPOCH)
            report = {"watermark_before": watermark, "fetched": 0, "watermark_after": watermark}
            # Fetch only rows created after the watermark.
            rows = fetch_orders_since(watermark)
            if not rows:
                return report
            upload_to_warehouse(rows)
            # Advance the watermark to the latest row seen.
            new_watermark = max(r["created_at"] for r in rows)
            asset_store.set("watermark", new_watermark)
            context["outlet_events"][orders].extra["watermark"] = new_watermark
            return {**report, "fetched": len(rows), "watermark_after": new_watermark}

    return land_orders, load_new_orders


def run_demo(
    workdir: Path, *, new_orders: int = 25, instance: Instance | None = None
) -> DemoReport:
    """Run the demo pipeline once in ``workdir``; ``instance`` replaces the embedded state."""
    if new_orders < 1:
        raise ValueError("the demo lands at least one order per run")
    workdir = workdir.resolve()
    base = workdir / ".assetry" / "demo"
    base.mkdir(parents=True, exist_ok=True)
    feed = Asset("order_feed", uri=f"file://{base}/order_feed")
    orders = Asset("orders", uri=f"duckdb:///{base}/warehouse.duckdb/orders")
    owned = instance is None
    if instance is None:
        instance = Instance(backend="sql", url=f"sqlite:///{workdir / '.assetry' / 'state.db'}")
        instance.upgrade()
    try:
        land_orders, load_new_orders = _pipeline(feed, orders, new_orders)
        with use_instance(instance):
            generated = land_orders()
            run = load_new_orders.run()
            with instance.io_manager.connect(feed) as t:
                feed_rows = t.to_pyarrow().num_rows
            with instance.io_manager.connect(orders) as t:
                warehouse_rows = t.to_pyarrow().num_rows if t.exists() else 0
        loaded = sum(e.extra.get("assetry", {}).get("rows", 0) for e in run.events)
        events = sorted(
            [*instance.events(feed), *instance.events(orders)],
            key=lambda e: (e.timestamp, e.asset_name, e.id),
        )
        return DemoReport(
            workdir=workdir,
            state=instance.backend.describe(),
            feed_uri=feed.uri,
            warehouse_uri=orders.uri,
            generated=generated,
            feed_rows=feed_rows,
            watermark_before=run.value["watermark_before"],
            watermark_after=run.value["watermark_after"],
            fetched=run.value["fetched"],
            loaded=loaded,
            warehouse_rows=warehouse_rows,
            events=events,
        )
    finally:
        if owned:
            instance.close()


def print_report(report: DemoReport, *, last_events: int = 10) -> None:
    """Print what the demo did, for a person."""
    echo = click.echo
    echo(f"assetry demo: incremental orders in {report.workdir}")
    echo(f"  state      {report.state}")
    echo(f"  feed       {report.feed_uri}  (parquet)")
    echo(f"  warehouse  {report.warehouse_uri}  (DuckDB)")
    echo("")
    echo(
        f"1. land_orders: {report.generated} new orders landed in the feed "
        f"(it now holds {report.feed_rows})"
    )
    echo("2. load_new_orders:")
    echo(f"     watermark before  {report.watermark_before}")
    echo(f"     fetched           {report.fetched} orders created after the watermark")
    echo(
        f"     loaded            {report.loaded} rows into the warehouse "
        f"(it now holds {report.warehouse_rows})"
    )
    moved = "advanced" if report.watermark_after != report.watermark_before else "unchanged"
    echo(f"     watermark after   {report.watermark_after}  ({moved})")
    echo("")
    shown = report.events[-last_events:]
    echo(f"3. events ({len(shown)} newest of {len(report.events)}):")
    echo(f"     {'asset':<11} {'id':>3}  {'recorded (UTC)':<19}  {'task':<34} {'rows':>5}  extra")
    for event in shown:
        extra = dict(event.extra)
        figures = extra.pop("assetry", {})
        rest = ", ".join(f"{k}={v}" for k, v in extra.items())
        echo(
            f"     {event.asset_name:<11} {event.id:>3}  "
            f"{event.timestamp.strftime('%Y-%m-%d %H:%M:%S'):<19}  "
            f"{event.source_task_id or '-':<34} {figures.get('rows', '-'):>5}  {rest}"
        )
    echo("")
    echo("Run `assetry demo` again: only orders created after the watermark are loaded.")


@click.command("demo")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where the demo keeps its state (.assetry/state.db) and data (.assetry/demo/).",
)
@click.option(
    "--orders",
    "new_orders",
    type=click.IntRange(min=1, max=100_000),
    default=25,
    show_default=True,
    help="How many new orders the upstream lands per run.",
)
def demo_command(workdir: Path, new_orders: int) -> None:
    """Run the incremental-orders pipeline once (run it twice to see the watermark move).

    The state is the embedded default (SQLite in .assetry/state.db), the data local parquet
    and DuckDB, whatever the environment configures, so the demo never writes into a
    configured state store.
    """
    print_report(run_demo(workdir, new_orders=new_orders))


def register(main: click.Group) -> None:
    """Add ``demo`` to the ``assetry`` group."""
    main.add_command(demo_command)
