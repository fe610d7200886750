"""The Iceberg IO manager: a SQLite catalog inside a local warehouse, and S3 (moto) with the
catalog on PostgreSQL; conformance, pyiceberg's own reader both ways, snapshots pinned to
events, vacuum and concurrent writers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lakehouse_kit as kit
import pyarrow as pa
import pytest
from assetry import Asset, TableVersionError, ValidationError, task, use_instance
from assetry.checks import NotNull
from assetry.instance import Instance
from assetry.testing import IOManagerConformance

pytest.importorskip(
    "pyiceberg.catalog.sql",
    reason="the Iceberg IO manager needs pyiceberg: pip install -e '.[lakehouse]'",
)
from pyiceberg.catalog.sql import SqlCatalog

s3_process_server = kit.s3_process_server


def _local_catalog(warehouse: Path) -> SqlCatalog:
    warehouse.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(
        "assetry", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}"
    )


# -- conformance -----------------------------------------------------------------------------


class TestIcebergOnLocalDisk(IOManagerConformance):
    supports_as_of = True

    @pytest.fixture
    def asset_factory(self, tmp_path: Path):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"iceberg+file://{tmp_path}/wh/ns/t{uuid.uuid4().hex}", **kwargs)

        return make


@pytest.fixture
def s3_catalog_environ(s3_process_server: Any, pg_url: str) -> Iterator[dict[str, str]]:
    """Connections for iceberg+s3: the catalog on a scratch PostgreSQL schema, S3 on moto."""
    from assetry.backends.sql.testing import scratch_database

    with scratch_database(pg_url, prefix="assetry_iceberg") as url:
        yield {
            "ASSETRY_CONN_AWS_DEFAULT": json.dumps(s3_process_server.storage_options),
            "ASSETRY_CONN_ICEBERG_DEFAULT": json.dumps({"uri": url}),
        }


@pytest.mark.services
class TestIcebergOnS3WithPostgresCatalog(IOManagerConformance):
    supports_as_of = True

    @pytest.fixture
    def io_manager(self, s3_catalog_environ):
        dispatcher = kit.dispatcher(**s3_catalog_environ)
        yield dispatcher
        dispatcher.close()

    @pytest.fixture
    def asset_factory(self, s3_process_server):
        bucket = s3_process_server.make_bucket()

        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"iceberg+s3://{bucket}/wh/ns/t{uuid.uuid4().hex}", **kwargs)

        return make


# -- the format's own reader, both ways -------------------------------------------------------


def test_tables_written_by_assetry_are_read_by_pyiceberg_and_pyarrow(tmp_path: Path) -> None:
    asset = Asset("orders", uri=f"iceberg+file://{tmp_path}/wh/sales/orders", partition_column="ds")
    dispatcher = kit.dispatcher()
    with dispatcher.connect(asset, "2024-06-01") as handle:
        handle.insert(kit.table([1, 2]))
    with dispatcher.connect(asset, "2024-06-02") as handle:
        handle.insert(kit.table([3]))
    table = _local_catalog(tmp_path / "wh").load_table("sales.orders")
    assert [f.name for f in table.spec().fields] == ["ds"]
    assert kit.ids(table.scan().to_arrow()) == [1, 2, 3]
    assert table.location() == f"file://{tmp_path}/wh/sales/orders"
    import pyarrow.dataset as pads

    files = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
    assert kit.ids(pads.dataset(files, format="parquet").to_table()) == [1, 2, 3]


def test_tables_written_by_pyiceberg_are_read_by_assetry(tmp_path: Path) -> None:
    catalog = _local_catalog(tmp_path / "wh")
    catalog.create_namespace("ns")
    table = catalog.create_table(
        "ns.events", schema=kit.table([], "a").schema, location=f"file://{tmp_path}/wh/ns/events"
    )
    table.append(kit.table([1, 2], "a"))
    table.append(kit.table([3], "b"))
    asset = Asset("events", uri=f"iceberg+file://{tmp_path}/wh/ns/events", partition_column="ds")
    with kit.dispatcher().connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
    with kit.dispatcher().connect(asset, "b") as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]
        handle.overwrite(kit.table([30, 31]))
    assert kit.ids(catalog.load_table("ns.events").scan().to_arrow()) == [1, 2, 30, 31]


def test_the_first_write_creates_and_appends_in_one_commit(tmp_path: Path) -> None:
    asset = Asset(uri=f"iceberg+file://{tmp_path}/wh/ns/t")
    with kit.dispatcher().connect(asset) as handle:
        result = handle.insert(kit.table([1, 2]))
    table = _local_catalog(tmp_path / "wh").load_table("ns.t")
    assert [s.snapshot_id for s in table.snapshots()] == [result.table_version]
    assert table.metadata.metadata_log == []  # one metadata file: the create was the commit


def test_a_failed_check_commits_no_snapshot(tmp_path: Path) -> None:
    asset = Asset(uri=f"iceberg+file://{tmp_path}/wh/ns/t", checks=[NotNull("name")])
    with kit.dispatcher().connect(asset) as handle:
        handle.insert(kit.table([1]))
        bad = pa.table({"id": pa.array([2], pa.int64()), "name": pa.array([None], pa.string())})
        with pytest.raises(ValidationError):
            handle.overwrite(bad)
    assert len(_local_catalog(tmp_path / "wh").load_table("ns.t").snapshots()) == 1


def test_a_uri_without_namespace_is_rejected(tmp_path: Path) -> None:
    from assetry import AssetValueError

    with pytest.raises(AssetValueError, match="NAMESPACE/TABLE"):
        kit.dispatcher().open(Asset(uri="iceberg+file:///t"))


def test_iceberg_on_s3_without_a_catalog_connection_says_what_to_set(tmp_path: Path) -> None:
    from assetry import ConfigurationError

    with pytest.raises(ConfigurationError, match="ASSETRY_CONN_ICEBERG_DEFAULT"):
        kit.dispatcher().open(Asset(uri="iceberg+s3://bucket/wh/ns/t"))


# -- snapshots pinned to events --------------------------------------------------------------


def test_events_carry_the_snapshot_and_as_of_reads_it(tmp_path: Path) -> None:
    asset = Asset("orders", uri=f"iceberg+file://{tmp_path}/wh/ns/orders")
    inst = Instance.from_url("memory://")
    with use_instance(inst):

        @task(outlets=[asset])
        def load(rows: list[int], io_manager: Any) -> None:
            with io_manager.connect(asset) as handle:
                handle.insert(kit.table(rows))

        load([1, 2])
        load([3])
        first, second = inst.events(asset)
        table = _local_catalog(tmp_path / "wh").load_table("ns.orders")
        snapshots = [s.snapshot_id for s in table.snapshots()]
        assert first.extra["assetry"]["table_version"] == snapshots[0]
        assert second.extra["assetry"]["table_version"] == snapshots[1]
        with inst.io_manager.connect(asset) as handle:
            handle.overwrite(kit.table([7]))
        with inst.io_manager.connect(asset, as_of=first) as handle:
            assert kit.ids(handle.to_pyarrow()) == [1, 2]
            with pytest.raises(TableVersionError, match="read-only"):
                handle.overwrite(kit.table([4]))
        with inst.io_manager.connect(asset, as_of=second) as handle:
            assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
        with (
            inst.io_manager.connect(asset, as_of=12345) as handle,
            pytest.raises(TableVersionError, match="no snapshot 12345"),
        ):
            handle.to_pyarrow()


def test_vacuum_expires_snapshots_older_than_those_kept(tmp_path: Path) -> None:
    asset = Asset(uri=f"iceberg+file://{tmp_path}/wh/ns/t")
    dispatcher = kit.dispatcher()
    versions = []
    with dispatcher.connect(asset) as handle:
        for ids in ([1], [2], [3]):
            versions.append(handle.overwrite(kit.table(ids)).table_version)
    manager = dispatcher.manager_of(asset)
    # an overwrite commits a delete and an append snapshot: all before versions[1] go
    snapshots = _local_catalog(tmp_path / "wh").load_table("ns.t").snapshots()
    older = sorted(
        s.snapshot_id
        for s in snapshots[
            : snapshots.index(next(s for s in snapshots if s.snapshot_id == versions[1]))
        ]
    )
    assert versions[0] in older and versions[1] not in older
    assert manager.vacuum(asset, {versions[1]}, dry_run=True) == older
    with dispatcher.connect(asset, as_of=versions[0]) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1]
    assert manager.vacuum(asset, {versions[1]}) == older
    with dispatcher.connect(asset, as_of=versions[1]) as handle:
        assert kit.ids(handle.to_pyarrow()) == [2]
    with pytest.raises(TableVersionError), dispatcher.connect(asset, as_of=versions[0]) as h:
        h.to_pyarrow()
    with dispatcher.connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]


# -- concurrent writers ----------------------------------------------------------------------


def test_two_processes_appending_to_a_local_warehouse_lose_no_commit(tmp_path: Path) -> None:
    kit.race_two_appenders(f"iceberg+file://{tmp_path}/wh/ns/shared", {}, 6)


@pytest.mark.services
def test_two_processes_appending_on_s3_lose_no_commit(s3_process_server, s3_catalog_environ):
    bucket = s3_process_server.make_bucket()
    kit.race_two_appenders(f"iceberg+s3://{bucket}/wh/ns/shared", s3_catalog_environ, 6)


def test_an_unreachable_catalog_is_backend_unavailable_without_the_password() -> None:
    from assetry import BackendUnavailableError

    secret = "S3cret-c4t/#?"
    environ = {
        "ASSETRY_CONN_ICEBERG_DEFAULT": json.dumps(
            {"uri": "postgresql+psycopg://etl@127.0.0.1:1/lake", "password": secret}
        )
    }
    with pytest.raises(BackendUnavailableError) as info:
        kit.dispatcher(**environ).open(Asset(uri="iceberg+s3://bucket/wh/ns/t"))
    text = f"{info.value} {info.value!r}"
    assert "iceberg_default" in text and "127.0.0.1" in text
    assert secret not in text and "S3cret" not in text


# -- polars, both ways ------------------------------------------------------------------------


def test_tables_written_by_assetry_are_read_by_polars(tmp_path: Path) -> None:
    pl = kit.polars()
    asset = Asset("orders", uri=f"iceberg+file://{tmp_path}/wh/sales/orders", partition_column="ds")
    dispatcher = kit.dispatcher()
    with dispatcher.connect(asset, "2024-06-01") as handle:
        handle.insert(kit.table([1, 2]))
    with dispatcher.connect(asset, "2024-06-02") as handle:
        handle.overwrite(kit.table([3, 4]))
    table = _local_catalog(tmp_path / "wh").load_table("sales.orders")
    frame = pl.scan_iceberg(table).collect()
    assert sorted(frame["id"].to_list()) == [1, 2, 3, 4]
    assert sorted(set(frame["ds"].to_list())) == ["2024-06-01", "2024-06-02"]
    lazy = pl.scan_iceberg(table).filter(pl.col("ds") == "2024-06-02")
    assert sorted(lazy.collect()["id"].to_list()) == [3, 4]
    files = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
    assert sorted(pl.read_parquet(files)["id"].to_list()) == [1, 2, 3, 4]


def test_tables_written_by_polars_are_read_by_assetry(tmp_path: Path) -> None:
    pl = kit.polars()
    catalog = _local_catalog(tmp_path / "wh")
    catalog.create_namespace("ns")
    table = catalog.create_table(
        "ns.events", schema=kit.table([], "a").schema, location=f"file://{tmp_path}/wh/ns/events"
    )
    schema = {"id": pl.Int64, "name": pl.String, "ds": pl.String}
    pl.DataFrame(
        {"id": [1, 2], "name": ["n1", "n2"], "ds": ["a", "a"]}, schema=schema
    ).write_iceberg(table, mode="append")
    pl.DataFrame({"id": [3], "name": ["n3"], "ds": ["b"]}, schema=schema).write_iceberg(
        catalog.load_table("ns.events"), mode="append"
    )
    asset = Asset("events", uri=f"iceberg+file://{tmp_path}/wh/ns/events", partition_column="ds")
    with kit.dispatcher().connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
    with kit.dispatcher().connect(asset, "b") as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]
        handle.overwrite(kit.table([30, 31]))
    reloaded = catalog.load_table("ns.events")
    assert sorted(pl.scan_iceberg(reloaded).collect()["id"].to_list()) == [1, 2, 30, 31]
