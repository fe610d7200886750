"""The sql backend beside the raw drivers, on SQLite, PostgreSQL and MariaDB.

For each database, in one run on one scratch database:

- asset-store get / set / update, operations per second: the backend's ``store_get`` /
  ``store_set`` and ``AssetStore.update`` beside the very same SQL statements run on the
  raw driver (sqlite3, psycopg, PyMySQL) with the same connection settings (autocommit;
  WAL and ``synchronous=NORMAL`` on SQLite; READ COMMITTED on MariaDB). The public
  ``AssetStore.get``/``set`` (key and value validation, JSON) are shown for reference.
  Targets: set >= 0.75x and get >= 0.5x the raw driver's rate.
- event appends in batches, events per second, beside the same statements (lock the asset
  row and take the ids, one batched INSERT) on the raw driver.
- the latency of "events after a cursor" (the 100 newest events of an asset) and "latest
  event per asset" (20 assets) on an event log of each size (one scratch database per size,
  all measured in interleaved blocks), beside the same SQL on the raw driver. Target: less
  than 2x growth from the smallest log to the largest.

Runs alternate between assetry and the raw driver (and between sizes), block by block; a
rate is the best block of its side and a latency the best block's median call, so a busy
machine slows both alike and a passing burst of load spoils a block, not the figure. Usage::

    python benchmarks/bench_sql.py [--quick] [--sizes 10000 100000 1000000]
        [--databases sqlite postgresql mariadb] [--pg-url URL] [--mysql-url URL] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import assetry
import sqlalchemy as sa
from assetry.backend import EventQuery, NewEvent
from assetry.backends.sql import SQLBackend
from assetry.backends.sql.engine import resolve_url
from assetry.backends.sql.schema import digest
from assetry.backends.sql.testing import scratch_database

DEFAULT_PG_URL = os.environ.get(
    "ASSETRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEFAULT_MYSQL_URL = os.environ.get(
    "ASSETRY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
ASSETS = 20  # assets the event log is spread over
PAGE = 100  # events read after the cursor
LOAD_BATCH = 5000  # events per append while filling the log
TARGETS = {"get": 0.5, "set": 0.75}
GROWTH_LIMIT = 2.0
VALUE = {"watermark": "2024-06-01T00:00:00Z", "rows": 1234, "files": ["a.parquet"]}


@dataclass
class Plan:
    """How much to measure."""

    blocks: int  # alternating blocks per side
    get_ops: int  # operations per block, for fast and slow statements
    write_ops: int
    append_batch: int
    append_blocks: int
    query_reps: int
    sizes: list[int]


def plan_for(quick: bool, sizes: list[int] | None) -> Plan:
    if quick:
        return Plan(3, 500, 60, 500, 2, 30, sizes or [10_000])
    return Plan(5, 3000, 200, 1000, 4, 150, sizes or [10_000, 100_000])


# -- measuring ---------------------------------------------------------------------------------


def _rate(work: Callable[[], Any], ops: int) -> float:
    started = time.perf_counter()
    for _ in range(ops):
        work()
    return ops / (time.perf_counter() - started)


def compare_rates(
    ours: Callable[[], Any], raw: Callable[[], Any], ops: int, blocks: int
) -> tuple[float, float]:
    """The best operations per second of each over alternating blocks (as ``timeit`` takes
    the best time: other load on the machine only ever slows a block down)."""
    ours()
    raw()
    mine, theirs = [], []
    for _ in range(blocks):
        mine.append(_rate(ours, ops))
        theirs.append(_rate(raw, ops))
    return max(mine), max(theirs)


# -- the raw drivers ---------------------------------------------------------------------------


class RawDriver:
    """A plain DBAPI connection (no SQLAlchemy) running the backend's own SQL text."""

    def __init__(self, backend: SQLBackend, url: str) -> None:
        self.family = backend.dialect_name
        self.dialect = backend._db.dialect
        self.sql = backend._ready()
        parsed = resolve_url(url)
        if self.family == "sqlite":
            import sqlite3

            self.conn: Any = sqlite3.connect(parsed.database or "", isolation_level=None)
            for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = NORMAL"):
                self.conn.execute(f"PRAGMA {pragma}")
        elif self.family == "postgresql":
            import psycopg

            options = dict(parsed.query)
            self.conn = psycopg.connect(
                host=parsed.host,
                port=parsed.port or 5432,
                user=parsed.username,
                password=parsed.password,
                dbname=parsed.database,
                autocommit=True,
                **options,
            )
        else:
            import pymysql
            from pymysql.constants import CLIENT

            self.conn = pymysql.connect(
                host=parsed.host,
                port=parsed.port or 3306,
                user=parsed.username,
                password=parsed.password or "",
                database=parsed.database,
                autocommit=True,
                charset="utf8mb4",
                client_flag=CLIENT.FOUND_ROWS,
            )
            with self.conn.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def close(self) -> None:
        self.conn.close()

    def binder(self, statement: Any) -> Callable[[dict[str, Any]], Any]:
        """Parameters in the driver's form for the statement (a tuple or the dict itself)."""
        if not statement.positional:
            return lambda params: params
        pick = operator.itemgetter(*statement.names)
        if len(statement.names) == 1:
            return lambda params: (pick(params),)
        return pick

    def compiled(self, query: sa.Select[Any]) -> tuple[str, Any]:
        """The SQL text and parameters of a Core query, compiled for this database."""
        compiled = query.compile(dialect=self.dialect)
        params = compiled.params
        if compiled.positional:
            return compiled.string, tuple(params[name] for name in compiled.positiontup or ())
        return compiled.string, params


# -- the benchmark of one database ---------------------------------------------------------


def _row(label: str, ours: str, raw: str, ratio: str = "", note: str = "") -> None:
    print(f"  {label:<34} {ours:>16} {raw:>16} {ratio:>8}  {note}", flush=True)


def _ops(rate: float) -> str:
    return f"{rate:,.0f}/s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


@contextlib.contextmanager
def scratch(database: str, args: argparse.Namespace) -> Iterator[str]:
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="assetry-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'state.db'}"
        return
    server = args.pg_url if database == "postgresql" else args.mysql_url
    with scratch_database(server, prefix="assetry_bench") as url:
        yield url


def bench_database(database: str, args: argparse.Namespace, plan: Plan) -> list[str]:
    """Print the figures of one database; return the targets it missed."""
    missed: list[str] = []
    with scratch(database, args) as url, SQLBackend(url) as backend:
        raw = RawDriver(backend, url)
        instance = assetry.Instance(backend=backend)
        try:
            print(f"\n== {database}: {backend.describe()}", flush=True)
            _row("", "assetry", f"raw {raw.conn.__class__.__module__.split('.')[0]}", "ratio")
            missed += bench_store(backend, instance, raw, plan)
            bench_appends(backend, raw, plan)
        finally:
            raw.close()
        missed += bench_queries(database, args, plan)
    return missed


def bench_store(
    backend: SQLBackend, instance: assetry.Instance, raw: RawDriver, plan: Plan
) -> list[str]:
    missed: list[str] = []
    asset = assetry.Asset("bench_store", uri="s3://bench/store")
    store = instance.asset_store(asset)
    store.set("k", VALUE)
    sql = raw.sql
    name_hash, slot = digest(asset.name), digest("")

    get_bind = raw.binder(sql.store_get)
    get_args = get_bind({"name_hash": name_hash, "partition_hash": slot, "key": "k"})
    counter_args = get_bind({"name_hash": name_hash, "partition_hash": slot, "key": "n"})
    set_bind = raw.binder(sql.store_upsert)
    returning = sql.returning

    def raw_get() -> Any:
        cursor = raw.conn.cursor()
        cursor.execute(sql.store_get.text, get_args)
        row = cursor.fetchone()
        cursor.close()
        return json.loads(row[0]), row[1]

    def raw_set() -> Any:
        cursor = raw.conn.cursor()
        params = {
            "name_hash": name_hash,
            "partition_hash": slot,
            "partition_key": "",
            "key": "k",
            "value": json.dumps(VALUE),
            "now": time.time_ns() // 1000,
        }
        cursor.execute(sql.store_upsert.text, set_bind(params))
        version = cursor.fetchone()[0] if returning else cursor.rowcount
        cursor.close()
        return version

    update_bind = raw.binder(sql.store_update_if)

    def raw_update() -> Any:
        cursor = raw.conn.cursor()
        cursor.execute(sql.store_get.text, counter_args)
        value_text, version, _ = cursor.fetchone()
        current = json.loads(value_text)
        params = {
            "name_hash": name_hash,
            "partition_hash": slot,
            "key": "n",
            "value": json.dumps(current + 1),
            "now": time.time_ns() // 1000,
            "expected": version,
        }
        cursor.execute(sql.store_update_if.text, update_bind(params))
        assert cursor.rowcount == 1
        cursor.close()

    def ours_get() -> Any:
        entry = backend.store_get(asset.name, "k")
        return entry.value if entry else None  # decoded, as the raw side does

    def ours_set() -> Any:
        return backend.store_set(asset.name, "k", json.dumps(VALUE))

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        ("get", ours_get, raw_get, plan.get_ops),
        ("set", ours_set, raw_set, plan.write_ops),
    ]
    for name, ours, theirs, ops in cases:
        mine, base = compare_rates(ours, theirs, ops, plan.blocks)
        ratio = mine / base
        verdict = "ok" if ratio >= TARGETS[name] else "BELOW TARGET"
        if ratio < TARGETS[name]:
            missed.append(f"{backend.dialect_name} {name} {ratio:.2f}x < {TARGETS[name]}x")
        _row(
            f"{name} (backend)",
            _ops(mine),
            _ops(base),
            f"{ratio:.2f}x",
            f">= {TARGETS[name]}x {verdict}",
        )
    store.set("n", 0)  # the counter both sides increment
    mine, base = compare_rates(
        lambda: store.update("n", lambda n: n + 1), raw_update, plan.write_ops, plan.blocks
    )
    _row("update (AssetStore.update)", _ops(mine), _ops(base), f"{mine / base:.2f}x")
    for name, ours, theirs, ops in (
        ("get (AssetStore: key check, JSON)", lambda: store.get("k"), raw_get, plan.get_ops),
        (
            "set (AssetStore: value check, JSON)",
            lambda: store.set("k", VALUE),
            raw_set,
            plan.write_ops,
        ),
    ):
        mine, base = compare_rates(ours, theirs, ops, plan.blocks)
        _row(name, _ops(mine), _ops(base), f"{mine / base:.2f}x", "reference")
    return missed


def _fill(backend: SQLBackend, names: Sequence[str], upto: int, have: int) -> int:
    """Append round-robin events to ``names`` until the log holds ``upto``."""
    while have < upto:
        count = min(LOAD_BATCH, upto - have)
        batch = [
            NewEvent(names[(have + i) % len(names)], extra_json=f'{{"n": {have + i}}}')
            for i in range(count)
        ]
        backend.append_events(batch)
        have += count
    return have


@dataclass
class _Log:
    """One scratch database whose event log holds ``size`` events, and the two queries on
    it as assetry runs them and as the raw driver runs the same SQL."""

    size: int
    ours: dict[str, Callable[[], Any]]
    raw: dict[str, Callable[[], Any]]


def _queries(backend: SQLBackend, raw: RawDriver, name: str, size: int) -> _Log:
    newest = backend.latest_events([name])[name].id
    query = EventQuery(name, after=newest - PAGE, limit=PAGE * 10)
    after_sql, after_args = raw.compiled(backend.events_query(query))
    latest_sql, latest_args = raw.compiled(backend.latest_events_query())

    def raw_after() -> Any:
        cursor = raw.conn.cursor()
        cursor.execute(after_sql, after_args)
        rows = [(r[0], json.loads(r[2])) for r in cursor.fetchall()]
        cursor.close()
        assert len(rows) == PAGE
        return rows

    def raw_latest() -> Any:
        cursor = raw.conn.cursor()
        cursor.execute(latest_sql, latest_args)
        rows = {r[9]: json.loads(r[2]) for r in cursor.fetchall()}
        cursor.close()
        assert len(rows) == ASSETS
        return rows

    def ours_after() -> Any:
        events = backend.query_events(query)
        assert len(events) == PAGE
        return events

    def ours_latest() -> Any:
        latest = backend.latest_events()
        assert len(latest) == ASSETS
        return latest

    return _Log(
        size,
        {"after": ours_after, "latest": ours_latest},
        {"after": raw_after, "latest": raw_latest},
    )


def _block_median(work: Callable[[], Any], calls: int) -> float:
    spent = []
    for _ in range(calls):
        started = time.perf_counter()
        work()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def bench_queries(database: str, args: argparse.Namespace, plan: Plan) -> list[str]:
    """Both queries on one scratch database per size, measured in interleaved blocks (every
    size, assetry and raw, block after block), so the growth from the smallest log to the
    largest compares figures taken under the same load on the machine."""
    names = [f"stream_{i:02d}" for i in range(ASSETS)]
    logs: list[_Log] = []
    with contextlib.ExitStack() as stack:
        for size in sorted(plan.sizes):
            url = stack.enter_context(scratch(database, args))
            backend = stack.enter_context(SQLBackend(url))
            for name in names:
                backend.register_asset(name, f"s3://bench/{name}")
            started = time.perf_counter()
            _fill(backend, names, size, 0)
            print(f"  -- {size:,} events loaded in {time.perf_counter() - started:.1f} s")
            raw = RawDriver(backend, url)
            stack.callback(raw.close)
            logs.append(_queries(backend, raw, names[0], size))
        best: dict[tuple[int, str, str], float] = {}
        per_block = max(1, plan.query_reps // 5)
        for log in logs:  # warm every cache once
            for work in (*log.ours.values(), *log.raw.values()):
                work()
        for _ in range(5):
            for log in logs:
                for what in ("after", "latest"):
                    for side, work in (("ours", log.ours[what]), ("raw", log.raw[what])):
                        spent = _block_median(work, per_block)
                        key = (log.size, what, side)
                        best[key] = min(best.get(key, spent), spent)
    labels = {"after": f"events after cursor ({PAGE})", "latest": f"latest per asset ({ASSETS})"}
    for log in logs:
        for what, label in labels.items():
            mine, base = best[(log.size, what, "ours")], best[(log.size, what, "raw")]
            _row(f"{label} @{log.size:,}", _ms(mine), _ms(base), f"{base / mine:.2f}x")
    missed: list[str] = []
    if len(logs) > 1:
        first, last = logs[0].size, logs[-1].size
        for what, label in labels.items():
            growth = best[(last, what, "ours")] / best[(first, what, "ours")]
            verdict = "ok" if growth < GROWTH_LIMIT else "ABOVE LIMIT"
            if growth >= GROWTH_LIMIT:
                missed.append(f"{database} {label} grew {growth:.2f}x")
            raw_growth = best[(last, what, "raw")] / best[(first, what, "raw")]
            _row(
                f"{label.split(' (')[0]}: {first:,} -> {last:,}",
                f"{growth:.2f}x",
                f"{raw_growth:.2f}x",
                "",
                f"< {GROWTH_LIMIT}x {verdict}",
            )
    return missed


def bench_appends(backend: SQLBackend, raw: RawDriver, plan: Plan) -> None:
    sql = raw.sql
    backend.register_asset("bench_appends", "s3://bench/appends")
    name_hash = digest("bench_appends")
    batch = [NewEvent("bench_appends", extra_json='{"rows": 10}') for _ in range(plan.append_batch)]
    take_bind = raw.binder(sql.take_ids) if sql.returning else raw.binder(sql.lock_asset)
    insert_bind = raw.binder(sql.insert_event)
    begin = "BEGIN IMMEDIATE" if raw.family == "sqlite" else "BEGIN"

    def raw_append() -> None:
        cursor = raw.conn.cursor()
        cursor.execute(begin)
        count = len(batch)
        if sql.returning:
            cursor.execute(sql.take_ids.text, take_bind({"name_hash": name_hash, "count": count}))
            asset_id, _uri, last = cursor.fetchone()
        else:
            cursor.execute(sql.lock_asset.text, take_bind({"name_hash": name_hash, "count": count}))
            asset_id, _uri, last = cursor.fetchone()
            last += count
            cursor.execute(
                sql.set_last_id.text,
                raw.binder(sql.set_last_id)({"asset_id": asset_id, "last_event_id": last}),
            )
        now = time.time_ns() // 1000
        first = last - count + 1
        rows = [
            insert_bind(
                {
                    "asset_id": asset_id,
                    "id": first + i,
                    "timestamp_us": now,
                    "extra": event.extra_json,
                    "partition_key": None,
                    "source_task_id": None,
                    "source_run_id": None,
                    "aliases": "[]",
                }
            )
            for i, event in enumerate(batch)
        ]
        cursor.executemany(sql.insert_event.text, rows)
        cursor.execute("COMMIT")
        cursor.close()

    mine, base = compare_rates(
        lambda: backend.append_events(batch), raw_append, 1, plan.append_blocks
    )
    size = plan.append_batch
    _row(
        f"append, batches of {size}",
        _ops(mine * size),
        _ops(base * size),
        f"{mine / base:.2f}x",
        "events/s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 10k events")
    parser.add_argument("--sizes", type=int, nargs="+", help="event-log sizes to measure at")
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=["sqlite", "postgresql", "mariadb"],
        default=["sqlite", "postgresql", "mariadb"],
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--mysql-url", default=DEFAULT_MYSQL_URL)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.sizes and min(args.sizes) < PAGE * ASSETS:
        parser.error(f"every size must be at least {PAGE * ASSETS:,} events ({PAGE} per asset)")
    plan = plan_for(args.quick, args.sizes)
    print(f"sql backend benchmark: sizes {', '.join(f'{s:,}' for s in sorted(plan.sizes))}")
    missed: list[str] = []
    for database in args.databases:
        try:
            missed += bench_database(database, args, plan)
        except sa.exc.OperationalError as exc:
            print(f"\n== {database}: not reachable ({str(exc.orig).strip()})", flush=True)
            missed.append(f"{database} not reachable")
    print("\ntargets: " + ("all met" if not missed else "; ".join(missed)))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
