"""The ibis IO manager on DuckDB, SQLite, PostgreSQL and MariaDB: conformance, URIs, bulk paths."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pytest
from assetry import (
    Asset,
    AssetNotFoundError,
    AssetValueError,
    BackendUnavailableError,
    DatabaseClient,
    ValidationError,
    load_settings,
    use_instance,
)
from assetry.iomanager import IOManagerDispatcher
from assetry.iomanagers.tables import IbisIOManager, TableLocation, parse_table_uri
from assetry.testing import IOManagerConformance


def _name() -> str:
    return f"assetry_t_{uuid.uuid4().hex[:12]}"


def _dispatcher(**environ: str) -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


def _drop(dispatcher: IOManagerDispatcher, assets: list[Asset]) -> None:
    for asset in assets:
        with dispatcher.connect(asset) as handle:
            handle.con.drop_table(
                handle.location.table, database=handle.location.schema, force=True
            )


def _server_uri(url: str, scheme: str, table: str, schema: str | None = None) -> str:
    """An asset URI on the test server named by a SQLAlchemy URL (user, host, database)."""
    parts = urlsplit(url)
    path = "/".join(filter(None, [parts.path.strip("/"), schema, table]))
    return f"{scheme}://{parts.username}@{parts.hostname}:{parts.port}/{path}"


@pytest.fixture
def server_tables() -> Iterator[Callable[[Asset], Asset]]:
    """Register assets on a shared server; their tables are dropped after the test."""
    created: list[Asset] = []
    dispatcher = _dispatcher()

    def track(asset: Asset) -> Asset:
        created.append(asset)
        return asset

    yield track
    try:
        _drop(dispatcher, created)
    finally:
        dispatcher.close()


# -- conformance -----------------------------------------------------------------------------


class TestDuckDBInMemory(IOManagerConformance):
    @pytest.fixture
    def asset_factory(self):
        return lambda **kw: Asset(uri=f"duckdb:///:memory:/{_name()}", **kw)


class TestDuckDBFile(IOManagerConformance):
    @pytest.fixture
    def asset_factory(self, tmp_path: Path):
        return lambda **kw: Asset(uri=f"duckdb:///{tmp_path}/warehouse.duckdb/{_name()}", **kw)


class TestSQLiteFile(IOManagerConformance):
    @pytest.fixture
    def asset_factory(self, tmp_path: Path):
        return lambda **kw: Asset(uri=f"sqlite:///{tmp_path}/warehouse.db/{_name()}", **kw)


@pytest.mark.services
class TestPostgreSQL(IOManagerConformance):
    @pytest.fixture
    def asset_factory(self, pg_url: str, server_tables):
        return lambda **kw: server_tables(
            Asset(uri=_server_uri(pg_url, "postgresql", _name(), "public"), **kw)
        )


@pytest.mark.services
class TestMariaDB(IOManagerConformance):
    @pytest.fixture
    def asset_factory(self, mysqlclient_url: str, server_tables):
        return lambda **kw: server_tables(
            Asset(uri=_server_uri(mysqlclient_url, "mysql", _name()), **kw)
        )


# -- URI grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "mysql://myhost/mydb/mytable",
            TableLocation("mysql", "mytable", "mydb", host="myhost", port=3306, scheme="mysql"),
        ),
        (
            "postgresql://etl@db.example:6543/warehouse/public/orders",
            TableLocation(
                "postgres",
                "orders",
                "warehouse",
                schema="public",
                host="db.example",
                port=6543,
                user="etl",
                scheme="postgresql",
            ),
        ),
        (
            "postgresql://db.example/warehouse/orders",
            TableLocation(
                "postgres", "orders", "warehouse", host="db.example", port=5432, scheme="postgresql"
            ),
        ),
        (
            "duckdb:///warehouse.duckdb/orders",
            TableLocation("duckdb", "orders", "warehouse.duckdb", scheme="duckdb"),
        ),
        (
            "duckdb:///data/warehouse.duckdb/sales/orders",
            TableLocation("duckdb", "orders", "data/warehouse.duckdb", "sales", scheme="duckdb"),
        ),
        (
            "sqlite:////data/warehouse.db/orders",
            TableLocation("sqlite", "orders", "/data/warehouse.db", scheme="sqlite"),
        ),
        (
            "duckdb:///:memory:/orders",
            TableLocation("duckdb", "orders", ":memory:", scheme="duckdb"),
        ),
        (
            "duckdb:///w.duckdb/My%20Table",
            TableLocation("duckdb", "My Table", "w.duckdb", scheme="duckdb"),
        ),
    ],
)
def test_table_uris_parse_to_their_parts(uri: str, expected: TableLocation) -> None:
    # An asset's URI carries the server's default port, as Airflow keys it.
    assert parse_table_uri(Asset(uri=uri).uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mysql://myhost/example", "database/table"),
        ("mysql://myhost/db/schema/table", "database/table"),
        ("postgresql://host/db", r"database\[/schema\]/table"),
        ("duckdb:///orders", "names no database file"),
        ("duckdb://host/w.duckdb/orders", "names a host"),
        ("duckdb:///w.duckdb", r"\[schema/\]table"),
        ("sqlite:///:memory:/t", "only supported for duckdb"),
    ],
)
def test_malformed_table_uris_are_clear_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _dispatcher().open(Asset(uri=uri))


# -- names are quoted, never interpolated ----------------------------------------------------


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_hostile_table_and_column_names_round_trip(tmp_path: Path, backend: str) -> None:
    suffix = "duckdb" if backend == "duckdb" else "db"
    table = 'we"ird; DROP TABLE x;--'
    asset = Asset(uri=f"{backend}:///{tmp_path}/w.{suffix}/{table.replace(' ', '%20')}")
    data = pd.DataFrame({"select": [1, 2], 'col"quote': ["a", "b"], "with space": [True, False]})
    with _dispatcher().connect(asset) as handle:
        assert handle.location.table == table
        handle.insert(data)
        handle.insert(data)
        assert handle.to_pyarrow().num_rows == 4
        assert handle.to_pandas().columns.tolist() == list(data.columns)


@pytest.mark.services
def test_hostile_names_round_trip_on_postgres(pg_url: str, server_tables) -> None:
    asset = server_tables(Asset(uri=_server_uri(pg_url, "postgresql", f'{_name()}"x%3B', "public")))
    data = pa.table({"order": [1], 'a"b': ['it\'s, "quoted"\nnew line']})
    with _dispatcher().connect(asset) as handle:
        handle.insert(data)
        assert handle.to_pyarrow().to_pylist() == data.to_pylist()


@pytest.mark.services
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_percent_signs_in_names_are_not_taken_for_placeholders(
    request: pytest.FixtureRequest, server: str, server_tables
) -> None:
    url = request.getfixturevalue("pg_url" if server == "postgresql" else "mysqlclient_url")
    table = f"{_name()}%s%d%"
    schema = "public" if server == "postgresql" else None
    uri = _server_uri(url, server, table.replace("%", "%25"), schema)
    asset = server_tables(Asset(uri=uri, partition_column="day"))
    data = pa.table({"id%s": [1, 2], "day": ["d1", "d2"]})
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as handle:
        assert handle.location.table == table
        handle.overwrite(data)
        handle.overwrite(data)  # DELETE then INSERT, both with parameters
    with dispatcher.connect(asset, "d1") as handle:
        handle.overwrite(pa.table({"id%s": [3]}))
    with dispatcher.connect(asset) as handle:
        back = handle.to_pyarrow().sort_by("id%s").to_pylist()
    assert back == [{"id%s": 2, "day": "d2"}, {"id%s": 3, "day": "d1"}]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"postgresql://h/db/public/{'t' * 64}", "64 bytes long and postgres keeps only 63"),
        (f"mysql://h/db/{'t' * 65}", "65 characters long and mysql allows 64"),
        ("mysql://h/db/orders%20", "cannot end with white space"),
        ("mysql://h/db/orders%09", "cannot end with white space"),
        ("mysql://h/db/%F0%9F%98%80", "beyond U\\+FFFF"),
        ("duckdb:///w.duckdb/a%00b", "NUL"),
        ("duckdb:///w.duckdb/\ud800/t", "surrogate"),
    ],
)
def test_table_names_an_engine_cannot_hold_are_refused_with_a_typed_error(
    uri: str, message: str
) -> None:
    with pytest.raises(AssetValueError, match=message):
        parse_table_uri(uri)


@pytest.mark.parametrize(("column", "message"), [("", "empty"), ("a\x00b", "NUL")])
def test_column_names_an_engine_cannot_hold_are_refused_before_anything_is_written(
    column: str, message: str
) -> None:
    asset = Asset(uri=f"duckdb:///:memory:/{_name()}")
    with _dispatcher().connect(asset) as handle:
        with pytest.raises(ValidationError, match=message):
            handle.insert(pa.table({"id": [1], column: ["x"]}))
        assert not handle.exists()


def test_a_duckdb_table_named_like_a_file_never_reads_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    asset = Asset(uri=f"duckdb:///:memory:/{str(secret).replace('/', '%2F')}")
    with _dispatcher().connect(asset) as handle:
        assert handle.location.table == str(secret)
        assert not handle.exists()
        with pytest.raises(AssetNotFoundError):
            handle.to_pyarrow()
        handle.overwrite(pa.table({"id": [1]}))  # a table of that name, not the file
        assert handle.to_pyarrow().to_pylist() == [{"id": 1}]
    assert secret.read_text() == "user,password\nroot,hunter2\n"


# -- PostgreSQL bulk path --------------------------------------------------------------------


@pytest.mark.services
def test_postgres_writes_do_not_use_ibis_generic_insert(
    pg_url: str, server_tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ibis.backends.postgres as pg

    def slow_path(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ibis insert used")

    monkeypatch.setattr(pg.Backend, "insert", slow_path)
    asset = server_tables(Asset(uri=_server_uri(pg_url, "postgresql", _name(), "public")))
    with _dispatcher().connect(asset) as handle:
        result = handle.insert(pa.table({"id": list(range(1000))}))
        assert result.rows == 1000
        assert result.bytes and result.bytes > 0  # the CSV streamed through COPY
        assert handle.to_pyarrow().num_rows == 1000


@pytest.mark.services
def test_postgres_copy_keeps_nulls_empty_strings_and_types(pg_url: str, server_tables) -> None:
    data = pa.table(
        {
            "s": pa.array(["", None, 'a,"b"\nc', "é ✓"]),
            "i": pa.array([1, None, -(2**62), 0], pa.int64()),
            "f": pa.array([1.5, None, 1e-300, -0.25]),
            "b": pa.array([True, None, False, True]),
            "d": pa.array([dt.date(2024, 6, 1), None, dt.date(1970, 1, 1), dt.date(2999, 12, 31)]),
            "ts": pa.array(
                [dt.datetime(2024, 6, 1, 12, 30, 1, 123456, tzinfo=dt.UTC), None] * 2,
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    asset = server_tables(Asset(uri=_server_uri(pg_url, "postgresql", _name(), "public")))
    with _dispatcher().connect(asset) as handle:
        handle.insert(data)
        back = handle.to_pyarrow()
    assert back.column("s").to_pylist() == data.column("s").to_pylist()
    for col in ("i", "f", "b", "d"):
        assert back.column(col).to_pylist() == data.column(col).to_pylist(), col
    assert [v and v.astimezone(dt.UTC) for v in back.column("ts").to_pylist()] == data.column(
        "ts"
    ).to_pylist()


@pytest.mark.services
def test_postgres_binary_columns_take_the_row_copy_path(pg_url: str, server_tables) -> None:
    data = pa.table({"id": [1, 2], "blob": pa.array([b"\x00\xff,\n", None], pa.binary())})
    asset = server_tables(Asset(uri=_server_uri(pg_url, "postgresql", _name(), "public")))
    with _dispatcher().connect(asset) as handle:
        handle.insert(data)
        assert handle.to_pyarrow().sort_by("id").column("blob").to_pylist() == [
            b"\x00\xff,\n",
            None,
        ]


@pytest.mark.services
def test_postgres_writes_into_an_existing_table_with_narrower_types(
    pg_url: str, server_tables
) -> None:
    import psycopg

    name = _name()
    asset = server_tables(
        Asset(uri=_server_uri(pg_url, "postgresql", name, "public"), partition_column="day")
    )
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE TABLE public."{name}" (id integer NOT NULL, day date NOT NULL)')
    dispatcher = _dispatcher()
    with dispatcher.connect(asset, "2024-06-01") as handle:
        handle.insert(pd.DataFrame({"id": [1, 2]}))
        handle.overwrite(pd.DataFrame({"id": [3]}))
        assert handle.to_pyarrow().column("id").to_pylist() == [3]
        assert handle.to_pyarrow().column("day").to_pylist() == [dt.date(2024, 6, 1)]


# -- transactions ----------------------------------------------------------------------------


def _failing_overwrite_keeps_partition(dispatcher: IOManagerDispatcher, asset: Asset) -> None:
    with dispatcher.connect(asset, "a") as handle:
        handle.insert(pa.table({"id": [1, 2], "v": ["x", "y"]}))
    with dispatcher.connect(asset, "a") as handle:
        # v is NOT NULL in the table: the insert fails after the delete ran
        with pytest.raises(Exception) as info:
            handle.overwrite(pa.table({"id": [3], "v": pa.array([None], pa.string())}))
        assert not isinstance(info.value, AssertionError)
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]


def _create_not_null_table(dispatcher: IOManagerDispatcher, asset: Asset) -> None:
    with dispatcher.connect(asset) as handle:
        with handle._cursor() as cur:
            cur.execute(
                f"CREATE TABLE {handle.qualified_name} "
                f"(id BIGINT, v VARCHAR(20) NOT NULL, {handle._ident('part')} VARCHAR(20))"
            )
        handle._commit_ddl()


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_partition_overwrite_is_one_transaction_on_file_databases(
    tmp_path: Path, backend: str
) -> None:
    suffix = "duckdb" if backend == "duckdb" else "db"
    asset = Asset(uri=f"{backend}:///{tmp_path}/w.{suffix}/t", partition_column="part")
    dispatcher = _dispatcher()
    _create_not_null_table(dispatcher, asset)
    _failing_overwrite_keeps_partition(dispatcher, asset)


@pytest.mark.services
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_partition_overwrite_is_one_transaction_on_servers(
    request: pytest.FixtureRequest, server_tables, server: str
) -> None:
    url = request.getfixturevalue("pg_url" if server == "postgresql" else "mysqlclient_url")
    schema = "public" if server == "postgresql" else None
    asset = server_tables(
        Asset(uri=_server_uri(url, server, _name(), schema), partition_column="part")
    )
    dispatcher = _dispatcher()
    _create_not_null_table(dispatcher, asset)
    _failing_overwrite_keeps_partition(dispatcher, asset)


# -- columns and partitions ------------------------------------------------------------------


def test_insert_with_an_unknown_column_is_rejected_and_writes_nothing() -> None:
    asset = Asset(uri=f"duckdb:///:memory:/{_name()}")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1]}))
        with pytest.raises(ValueError, match=r"no column.*extra"):
            handle.insert(pd.DataFrame({"id": [2], "extra": [1]}))
        assert handle.to_pyarrow().column("id").to_pylist() == [1]


def test_insert_may_leave_out_columns_which_become_null() -> None:
    asset = Asset(uri=f"duckdb:///:memory:/{_name()}")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1], "name": ["a"]}))
        handle.insert(pd.DataFrame({"id": [2]}))
        assert handle.to_pyarrow().sort_by("id").column("name").to_pylist() == ["a", None]


def test_partition_needs_a_partition_column() -> None:
    with pytest.raises(ValueError, match="partition_column"):
        _dispatcher().open(Asset(uri=f"duckdb:///:memory:/{_name()}"), "2024-06-01")


def test_to_ibis_is_lazy_and_filtered_to_the_partition() -> None:
    import ibis.expr.types as ir

    asset = Asset(uri=f"duckdb:///:memory:/{_name()}", partition_column="day")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1, 2, 3], "day": ["a", "a", "b"]}))
    with dispatcher.connect(asset, "a") as handle:
        expr = handle.to_ibis()
        assert isinstance(expr, ir.Table)
        assert expr.id.sum().execute() == 3


# -- connections -----------------------------------------------------------------------------


def test_connections_are_cached_per_database(tmp_path: Path) -> None:
    dispatcher = _dispatcher()
    a = Asset(uri=f"duckdb:///{tmp_path}/one.duckdb/a")
    b = Asset(uri=f"duckdb:///{tmp_path}/one.duckdb/b")
    c = Asset(uri=f"duckdb:///{tmp_path}/two.duckdb/c")
    with dispatcher.connect(a) as ha, dispatcher.connect(b) as hb, dispatcher.connect(c) as hc:
        assert ha.con is hb.con
        assert ha.con is not hc.con


def test_password_comes_from_the_connection_never_the_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ibis

    seen: dict[str, Any] = {}
    monkeypatch.setattr(ibis.postgres, "connect", lambda **kw: seen.update(kw) or object())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        asset = Asset(uri="postgresql://etl:leaked@db.example/warehouse/public/orders")
    # As Airflow keys assets, a URI that carried a password loses its whole user-info.
    assert "leaked" not in asset.uri and "etl" not in asset.uri
    environ = {
        "ASSETRY_CONN_POSTGRES_DEFAULT": json.dumps(
            {"login": "etl", "password": "s3cr3t", "sslmode": "require"}
        )
    }
    manager = IbisIOManager(load_settings(backend="memory", environ=environ))
    manager.open(asset)
    assert seen == {
        "host": "db.example",
        "port": 5432,
        "user": "etl",
        "database": "warehouse",
        "password": "s3cr3t",
        "sslmode": "require",
    }


def test_uri_form_connection_query_parameters_reach_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ibis

    seen: dict[str, Any] = {}
    monkeypatch.setattr(ibis.postgres, "connect", lambda **kw: seen.update(kw) or object())
    environ = {
        "ASSETRY_CONN_POSTGRES_DEFAULT": "postgresql://etl:s3cr3t@db.example:6543/x?sslmode=require"
    }
    manager = IbisIOManager(load_settings(backend="memory", environ=environ))
    manager.open(Asset(uri="postgresql://db.example/warehouse/public/orders"))
    assert seen["sslmode"] == "require"
    assert (seen["user"], seen["password"], seen["port"]) == ("etl", "s3cr3t", 6543)


def test_connection_failure_message_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"ASSETRY_CONN_MYSQL_DEFAULT": json.dumps({"login": "u", "password": "s3cr3t"})}
    manager = IbisIOManager(load_settings(backend="memory", environ=environ))
    with pytest.raises(BackendUnavailableError) as info:
        manager.open(Asset(uri="mysql://127.0.0.1:1/db/t"))
    assert "s3cr3t" not in str(info.value)
    assert "'user': 'u'" in str(info.value)


def test_redirect_to_in_memory_duckdb_keeps_server_tables_local() -> None:
    manager = IbisIOManager(redirect_to="duckdb:///:memory:")
    dispatcher = IOManagerDispatcher(managers={"postgresql": manager})
    asset = Asset(uri="postgresql://nowhere.invalid/warehouse/public/orders")
    with dispatcher.connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1]}))
        assert (handle.location.backend, handle.location.schema) == ("duckdb", "warehouse_public")
        assert handle.to_pyarrow().num_rows == 1
    manager.close()


def test_database_client_yields_the_table_handle(tmp_path: Path) -> None:
    from assetry import Instance

    uri = f"duckdb:///{tmp_path}/w.duckdb/mytable"
    client = DatabaseClient(uri)
    with client.connect() as t:
        t.insert(pd.DataFrame({"id": [1, 2]}))
    with client.connect() as t:
        assert t.to_pandas()["id"].tolist() == [1, 2]
    client.close()
    # inside an instance, the client goes through the instance's IO managers
    with Instance(backend="memory") as instance, use_instance(instance):
        seen: list[Any] = []
        instance.io_manager.listeners.append(lambda asset, result: seen.append(result.rows))
        with DatabaseClient(uri).connect() as t:
            t.insert(pd.DataFrame({"id": [3]}))
        assert seen == [1]


@pytest.mark.services
def test_mariadb_stores_aware_timestamps_as_utc(mysqlclient_url: str, server_tables) -> None:
    asset = server_tables(Asset(uri=_server_uri(mysqlclient_url, "mysql", _name())))
    moment = dt.datetime(2024, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with _dispatcher().connect(asset) as handle:
        handle.insert(pa.table({"ts": pa.array([moment], pa.timestamp("us", tz="UTC"))}))
        value = handle.to_pyarrow().column("ts").to_pylist()[0]
    assert value.replace(tzinfo=None) == dt.datetime(2024, 6, 1, 12, 0)


# -- types -----------------------------------------------------------------------------------

TYPED = pa.table(
    {
        "ts": pa.array(
            [dt.datetime(2024, 6, 1, 12, 30, tzinfo=dt.UTC), None], pa.timestamp("us", tz="UTC")
        ),
        "naive": pa.array([dt.datetime(2024, 6, 1, 12, 30), None], pa.timestamp("us")),
        "day": pa.array([dt.date(2024, 6, 1), None]),
        "flag": pa.array([True, None]),
        "price": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2)),
        "text": pa.array(['it\'s "quoted", with commas\nand lines', None]),
    }
)


def _plain(value: Any) -> Any:
    """Values as engines without a type give them back (bool as int, decimal as float...)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, bool | Decimal):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return value


def _assert_typed_round_trip(asset: Asset) -> None:
    with _dispatcher().connect(asset) as handle:
        handle.insert(TYPED)
        back = handle.to_pyarrow()
    for name in TYPED.column_names:
        assert [_plain(v) for v in back.column(name).to_pylist()] == [
            _plain(v) for v in TYPED.column(name).to_pylist()
        ], name


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_common_types_round_trip_on_file_databases(tmp_path: Path, backend: str) -> None:
    suffix = "duckdb" if backend == "duckdb" else "db"
    _assert_typed_round_trip(Asset(uri=f"{backend}:///{tmp_path}/w.{suffix}/typed"))


@pytest.mark.services
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_common_types_round_trip_on_servers(
    request: pytest.FixtureRequest, server_tables, server: str
) -> None:
    url = request.getfixturevalue("pg_url" if server == "postgresql" else "mysqlclient_url")
    schema = "public" if server == "postgresql" else None
    _assert_typed_round_trip(server_tables(Asset(uri=_server_uri(url, server, _name(), schema))))
