"""The ibis IO manager's PostgreSQL bulk paths: overwrite by TRUNCATE, reads through ADBC."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest
from assetry import Asset, Check, ValidationError, load_settings
from assetry.iomanager import IOManagerDispatcher
from assetry.iomanagers.table_reads import UNAVAILABLE

pytestmark = pytest.mark.services


def _name() -> str:
    return f"assetry_pgt_{uuid.uuid4().hex[:12]}"


def _dispatcher() -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ={}))


@pytest.fixture
def sql(pg_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run SQL on the test database in autocommit; return the rows."""
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:

        def run(query: str, *params: Any) -> list[tuple[Any, ...]]:
            with conn.cursor() as cur:
                cur.execute(query, params or None)
                return cur.fetchall() if cur.description else []

        yield run


@pytest.fixture
def table(pg_url: str, sql) -> Iterator[Callable[..., Asset]]:
    """A fresh table name as an asset; the tables are dropped after the test."""
    names: list[str] = []
    parts = urlsplit(pg_url)

    def make(**kw: Any) -> Asset:
        names.append(_name())
        uri = f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}/public"
        return Asset(uri=f"{uri}/{names[-1]}", **kw)

    yield make
    for name in reversed(names):
        sql(f'DROP TABLE IF EXISTS public."{name}" CASCADE')


def _size(sql, asset: Asset) -> int:
    name = asset.uri.rsplit("/", 1)[1]
    return int(sql("SELECT pg_total_relation_size(%s::regclass)", f'public."{name}"')[0][0])


# -- overwrite -------------------------------------------------------------------------------


def test_repeated_overwrites_leave_no_dead_rows(table, sql) -> None:
    asset = table()
    data = pa.table({"id": list(range(20_000)), "v": ["x" * 20] * 20_000})
    with _dispatcher().connect(asset) as handle:
        handle.overwrite(data)
        first = _size(sql, asset)
        for _ in range(4):
            handle.overwrite(data)
        assert handle.to_pyarrow().num_rows == 20_000
    assert _size(sql, asset) <= first


def test_a_failed_overwrite_keeps_the_old_rows(table, sql) -> None:
    asset = table()
    name = asset.uri.rsplit("/", 1)[1]
    sql(f'CREATE TABLE public."{name}" (id bigint, v text NOT NULL)')
    with _dispatcher().connect(asset) as handle:
        handle.insert(pa.table({"id": [1, 2], "v": ["a", "b"]}))
        with pytest.raises(Exception) as info:  # the COPY fails after the TRUNCATE
            handle.overwrite(pa.table({"id": [3], "v": pa.array([None], pa.string())}))
        assert not isinstance(info.value, AssertionError)
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]


def test_a_failed_check_on_overwrite_keeps_the_old_rows(table) -> None:
    asset = table(checks=[Check(lambda t: t.num_rows < 3, name="small")])
    with _dispatcher().connect(asset) as handle:
        handle.overwrite(pa.table({"id": [1, 2]}))
        with pytest.raises(ValidationError):
            handle.overwrite(pa.table({"id": [3, 4, 5]}))
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]


def test_overwrite_of_a_table_a_foreign_key_references_deletes_instead(table, sql) -> None:
    parent, child = table(), table()
    parent_name, child_name = (a.uri.rsplit("/", 1)[1] for a in (parent, child))
    sql(f'CREATE TABLE public."{parent_name}" (id bigint PRIMARY KEY)')
    sql(f'CREATE TABLE public."{child_name}" (pid bigint REFERENCES public."{parent_name}")')
    with _dispatcher().connect(parent) as handle:
        handle.insert(pa.table({"id": [1, 2]}))
        handle.overwrite(pa.table({"id": [3, 4]}))
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [3, 4]


def test_partition_overwrite_keeps_the_other_partitions(table) -> None:
    asset = table(partition_column="day")
    dispatcher = _dispatcher()
    for day, ids in (("a", [1, 2]), ("b", [3])):
        with dispatcher.connect(asset, day) as handle:
            handle.insert(pa.table({"id": ids}))
    with dispatcher.connect(asset, "a") as handle:
        handle.overwrite(pa.table({"id": [9]}))
    with dispatcher.connect(asset) as handle:
        rows = sorted(handle.to_pyarrow().to_pylist(), key=lambda r: r["id"])
    assert rows == [{"id": 3, "day": "b"}, {"id": 9, "day": "a"}]


# -- reads -----------------------------------------------------------------------------------

TYPES = """(i2 smallint, i4 integer, i8 bigint, r real, d double precision, n numeric(10, 2),
 n50 numeric(50, 2), t text, vc varchar(10), b boolean, day date, tm time, ts timestamp,
 tstz timestamptz, by bytea, j jsonb, arr integer[])"""
ROW = """(1, -2, 3, 1.5, 2.5, 12.34, 1.25, 'x', 'y', true, '2024-06-01', '12:30:01.5',
 '2024-06-01 12:30', '2024-06-01 12:30+02', '\\x00ff', '{"b": 2}', ARRAY[1, 2])"""


def test_reads_give_the_types_and_values_ibis_gives(table, sql) -> None:
    asset = table()
    name = asset.uri.rsplit("/", 1)[1]
    sql(f'CREATE TABLE public."{name}" {TYPES}')
    sql(f'INSERT INTO public."{name}" VALUES {ROW}, ({", ".join(["NULL"] * 17)})')
    with _dispatcher().connect(asset) as handle:
        ours = handle.to_pyarrow()
        theirs = handle.to_ibis().to_pyarrow()
        assert handle._backend.reader not in (None, UNAVAILABLE)  # ADBC served the read
    assert ours.schema == theirs.schema
    assert ours.schema.metadata is None
    assert ours.to_pylist() == theirs.to_pylist()
    row = ours.to_pylist()[0]
    assert row["tstz"] == dt.datetime(2024, 6, 1, 10, 30, tzinfo=dt.UTC)
    assert ours.schema.field("tstz").type == pa.timestamp("us", tz="UTC")
    assert row["ts"] == dt.datetime(2024, 6, 1, 12, 30)
    assert row["n"] == Decimal("12.34")


def test_reads_do_not_fetch_rows_through_ibis(table, monkeypatch: pytest.MonkeyPatch) -> None:
    import ibis.backends.postgres as pg

    def slow_path(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ibis row fetch used")

    asset = table(partition_column="day")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset, "a") as handle:
        handle.insert(pa.table({"id": [1, 2]}))
    with dispatcher.connect(asset, "b") as handle:
        handle.insert(pa.table({"id": [3]}))
    monkeypatch.setattr(pg.Backend, "to_pyarrow_batches", slow_path)
    with dispatcher.connect(asset, "a") as handle:
        assert handle.to_pyarrow().to_pylist() == [{"id": 1, "day": "a"}, {"id": 2, "day": "a"}]


def test_a_column_adbc_cannot_convert_is_read_through_ibis(table, sql) -> None:
    asset = table()
    name = asset.uri.rsplit("/", 1)[1]
    sql(f'CREATE TABLE public."{name}" (id bigint, wait interval)')
    sql(f"INSERT INTO public.\"{name}\" VALUES (1, '1 day 2 hours'), (2, NULL)")
    with _dispatcher().connect(asset) as handle:
        back = handle.to_pyarrow().sort_by("id")
        assert back.schema == handle.to_ibis().to_pyarrow().schema
    assert back.column("wait").to_pylist() == [dt.timedelta(days=1, hours=2), None]


def test_an_overwrite_waits_for_no_read_of_ours(table) -> None:
    """The ADBC connection reads in autocommit: it holds no lock that would block TRUNCATE."""
    asset = table()
    with _dispatcher().connect(asset) as handle:
        handle.insert(pa.table({"id": [1]}))
        handle.to_pyarrow()
        handle.con.con.execute("SET lock_timeout = '10s'")  # a held lock fails, not hangs
        handle.overwrite(pa.table({"id": [2]}))
        assert handle.to_pyarrow().column("id").to_pylist() == [2]


def test_only_known_driver_types_are_cast(pg_url: str) -> None:
    """A uuid's bytes are never taken for text (that read goes through ibis instead)."""
    import adbc_driver_postgresql.dbapi as adbc
    from assetry.iomanagers.table_reads import conform

    query = "SELECT '00000000-0000-0000-0000-000000000041'::uuid AS u, 1.5::numeric AS n"
    with (
        adbc.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query)
        fetched = cur.fetch_arrow_table()
    assert conform(fetched.select(["u"]), pa.schema([("u", pa.string())])) is None
    decimal = conform(fetched.select(["n"]), pa.schema([("n", pa.decimal128(38, 9))]))
    assert decimal is not None and decimal.column("n").to_pylist() == [Decimal("1.5")]
