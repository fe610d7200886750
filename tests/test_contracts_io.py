"""Table and dataset writes under the asset's contract, on every table engine (DuckDB,
SQLite, PostgreSQL, MariaDB) and on parquet datasets (local and S3): schema evolution
(``fail`` / ``add_columns``), lossless casts or a typed error naming the column, engine
errors as assetry errors with nothing written, and ``Unique(..., against="table")``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest
from assetry import Asset, SchemaMismatchError, Unique, ValidationError, load_settings
from assetry.iomanager import IOManagerDispatcher

Factory = Callable[..., Asset]


def _name() -> str:
    return f"assetry_c_{uuid.uuid4().hex[:12]}"


def _server_uri(url: str, scheme: str, table: str, schema: str | None = None) -> str:
    parts = urlsplit(url)
    path = "/".join(filter(None, [parts.path.strip("/"), schema, table]))
    return f"{scheme}://{parts.username}@{parts.hostname}:{parts.port}/{path}"


ENGINES = ["duckdb", "sqlite", "postgres", "mariadb", "dataset", "s3dataset"]
TABLES = ["duckdb", "sqlite", "postgres", "mariadb"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def dispatcher(engine: str, request: pytest.FixtureRequest) -> Iterator[IOManagerDispatcher]:
    environ: dict[str, str] = {}
    if engine == "s3dataset":
        server = request.getfixturevalue("s3_server")
        environ["ASSETRY_CONN_AWS_DEFAULT"] = json.dumps(server.storage_options)
    d = IOManagerDispatcher(load_settings(backend="memory", environ=environ))
    yield d
    d.close()


def _factory(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if engine == "duckdb":
        return lambda **kw: Asset(uri=f"duckdb:///{tmp_path}/w.duckdb/{_name()}", **kw)
    if engine == "sqlite":
        return lambda **kw: Asset(uri=f"sqlite:///{tmp_path}/w.db/{_name()}", **kw)
    if engine == "postgres":
        url = request.getfixturevalue("pg_url")
        return lambda **kw: Asset(uri=_server_uri(url, "postgresql", _name(), "public"), **kw)
    if engine == "mariadb":
        url = request.getfixturevalue("mysqlclient_url")
        return lambda **kw: Asset(uri=_server_uri(url, "mysql", _name()), **kw)
    if engine == "dataset":
        return lambda **kw: Asset(uri=f"file://{tmp_path}/{_name()}/", **kw)
    bucket = request.getfixturevalue("s3_bucket")
    return lambda **kw: Asset(uri=f"s3://{bucket}/{_name()}/", **kw)


@pytest.fixture
def make(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, dispatcher: IOManagerDispatcher
) -> Iterator[Factory]:
    created: list[Asset] = []
    base = _factory(engine, request, tmp_path)

    def factory(**kw: Any) -> Asset:
        asset = base(**kw)
        created.append(asset)
        return asset

    yield factory
    if engine in ("postgres", "mariadb"):
        for asset in created:
            with dispatcher.connect(asset) as handle:
                handle.con.drop_table(
                    handle.location.table, database=handle.location.schema, force=True
                )


def _rows(handle: Any) -> list[dict[str, Any]]:
    return sorted(handle.to_pyarrow().to_pylist(), key=lambda r: r["id"])


def test_a_new_column_is_refused_by_default(make: Factory, dispatcher) -> None:
    asset = make()
    with dispatcher.connect(asset) as handle:
        handle.insert(pa.table({"id": [1, 2], "amount": [1.5, 2.5]}))
        with pytest.raises(SchemaMismatchError, match="note") as caught:
            handle.insert(pa.table({"id": [3], "amount": [1.0], "note": ["x"]}))
        assert caught.value.column == "note"
        assert [r["id"] for r in _rows(handle)] == [1, 2]


def test_add_columns_adds_nullable_columns_and_old_rows_read_null(
    make: Factory, dispatcher
) -> None:
    asset = make(schema_evolution="add_columns")
    with dispatcher.connect(asset) as handle:
        handle.insert(pa.table({"id": [1, 2], "amount": [1.5, 2.5]}))
        handle.insert(pa.table({"id": [3], "amount": [1.0], "note": ["new"]}))
        rows = _rows(handle)
    assert [(r["id"], r["note"]) for r in rows] == [(1, None), (2, None), (3, "new")]
    with dispatcher.connect(asset) as handle:  # a later read, a fresh handle
        assert [r["note"] for r in _rows(handle)] == [None, None, "new"]


def test_a_type_change_is_refused_naming_the_column(make: Factory, dispatcher) -> None:
    asset = make(schema_evolution="add_columns")
    with dispatcher.connect(asset) as handle:
        handle.insert(pa.table({"id": [1], "amount": [1.5]}))
        with pytest.raises(SchemaMismatchError, match="'amount'") as caught:
            handle.insert(pa.table({"id": [2], "amount": ["lots"]}))
        assert caught.value.column == "amount"
        with pytest.raises(SchemaMismatchError, match="'id'"):
            handle.insert(pa.table({"id": [2.5], "amount": [1.0]}))
        # lossless: the text "3" into the integer column, an int32 into int64
        handle.insert(pa.table({"id": ["3"], "amount": pa.array([2], pa.int32())}))
        rows = _rows(handle)
    assert [(r["id"], r["amount"]) for r in rows] == [(1, 1.5), (3, 2.0)]


def test_unique_against_the_stored_rows(make: Factory, dispatcher) -> None:
    asset = make(checks=[Unique("id", against="table")], partition_column="day")
    with dispatcher.connect(asset, partition="d1") as handle:
        handle.insert(pa.table({"id": [1, 2]}))
    with dispatcher.connect(asset, partition="d2") as handle:
        with pytest.raises(ValidationError, match="already stored") as caught:
            handle.insert(pa.table({"id": [3, 2]}))
        assert caught.value.details["rows"] == [1]
        handle.insert(pa.table({"id": [3, 4]}))
    with dispatcher.connect(asset, partition="d1") as handle:
        handle.overwrite(pa.table({"id": [1, 2]}))  # replaces what it would collide with
        with pytest.raises(ValidationError, match="already stored"):
            handle.overwrite(pa.table({"id": [3]}))  # stored in d2
    with dispatcher.connect(asset) as handle:
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2, 3, 4]
    batch_only = make(checks=[Unique("id")])
    with dispatcher.connect(batch_only) as handle:
        handle.insert(pa.table({"id": [1]}))
        handle.insert(pa.table({"id": [1]}))  # the default looks at the batch alone
        assert handle.to_pyarrow().num_rows == 2


@pytest.mark.parametrize("engine", TABLES)
def test_engine_errors_arrive_as_assetry_errors_with_nothing_written(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, dispatcher
) -> None:
    asset = _factory(engine, request, tmp_path)()
    with dispatcher.connect(asset) as handle:
        handle.insert(pa.table({"id": [1], "amount": [1.5]}))
        with handle._cursor() as cur:  # a rule of the engine's own the data breaks
            cur.execute(
                f"CREATE UNIQUE INDEX {handle._ident(_name())} ON {handle.qualified_name} ({handle._ident('id')})"
            )
        handle._commit_ddl()
        try:
            with pytest.raises(SchemaMismatchError, match="refused the data") as caught:
                handle.insert(pa.table({"id": [2, 1], "amount": [2.0, 3.0]}))
            assert not type(caught.value.__cause__).__module__.startswith("assetry")
            assert [r["id"] for r in _rows(handle)] == [1]
        finally:
            if engine in ("postgres", "mariadb"):
                handle.con.drop_table(
                    handle.location.table, database=handle.location.schema, force=True
                )


@pytest.mark.parametrize("scheme", ["delta+file", "iceberg+file"])
def test_lakehouse_tables_follow_the_policy(scheme: str, tmp_path: Path) -> None:
    pytest.importorskip("deltalake" if scheme.startswith("delta") else "pyiceberg")
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
    path = f"{tmp_path}/d" if scheme.startswith("delta") else f"{tmp_path}/wh/ns"
    fixed = Asset(uri=f"{scheme}://{path}/fixed")
    growing = Asset(uri=f"{scheme}://{path}/growing", schema_evolution="add_columns")
    with dispatcher.connect(fixed) as handle:
        handle.insert(pa.table({"id": [1, 2]}))
        with pytest.raises(SchemaMismatchError):
            handle.insert(pa.table({"id": [3], "note": ["n"]}))
        assert handle.to_pyarrow().num_rows == 2
    with dispatcher.connect(growing) as handle:
        handle.insert(pa.table({"id": [1, 2]}))
        handle.insert(pa.table({"id": [3], "note": ["n"]}))
        assert [r["note"] for r in _rows(handle)] == [None, None, "n"]
