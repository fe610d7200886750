"""The Delta Lake IO manager on local disk, delta+memory:// and S3 (moto): conformance, the
format's own reader both ways, versions pinned to events, vacuum and concurrent writers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import lakehouse_kit as kit
import pyarrow as pa
import pytest
from assetry import Asset, TableVersionError, ValidationError, task, use_instance
from assetry.checks import NotNull
from assetry.instance import Instance
from assetry.testing import IOManagerConformance

deltalake = pytest.importorskip(
    "deltalake", reason="the Delta IO manager needs deltalake: pip install -e '.[lakehouse]'"
)


s3_process_server = kit.s3_process_server


def _s3_environ(server: Any) -> dict[str, str]:
    return {"ASSETRY_CONN_AWS_DEFAULT": json.dumps(server.storage_options)}


def _delta_options(server: Any) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


# -- conformance -----------------------------------------------------------------------------


class TestDeltaOnLocalDisk(IOManagerConformance):
    supports_as_of = True

    @pytest.fixture
    def asset_factory(self, tmp_path: Path):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"delta+file://{tmp_path}/{uuid.uuid4().hex}", **kwargs)

        return make


class TestDeltaInMemory(IOManagerConformance):
    supports_as_of = True

    @pytest.fixture
    def asset_factory(self):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"delta+memory://tests/{uuid.uuid4().hex}", **kwargs)

        return make


@pytest.mark.services
class TestDeltaOnS3(IOManagerConformance):
    supports_as_of = True

    @pytest.fixture
    def io_manager(self, s3_process_server):
        dispatcher = kit.dispatcher(**_s3_environ(s3_process_server))
        yield dispatcher
        dispatcher.close()

    @pytest.fixture
    def asset_factory(self, s3_process_server):
        bucket = s3_process_server.make_bucket()

        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"delta+s3://{bucket}/lake/{uuid.uuid4().hex}", **kwargs)

        return make


# -- the format's own reader, both ways -------------------------------------------------------


def test_tables_written_by_assetry_are_read_by_deltalake_and_pyarrow(tmp_path: Path) -> None:
    asset = Asset("orders", uri=f"delta+file://{tmp_path}/orders", partition_column="ds")
    with kit.dispatcher().connect(asset, "2024-06-01") as handle:
        handle.insert(kit.table([1, 2]))
    with kit.dispatcher().connect(asset, "2024-06-02") as handle:
        handle.insert(kit.table([3]))
    table = deltalake.DeltaTable(str(tmp_path / "orders"))
    assert table.version() == 1
    assert table.metadata().partition_columns == ["ds"]
    assert kit.ids(table.to_pyarrow_table()) == [1, 2, 3]
    assert kit.ids(table.to_pyarrow_dataset().to_table()) == [1, 2, 3]


def test_tables_written_by_deltalake_are_read_by_assetry(tmp_path: Path) -> None:
    path = tmp_path / "events"
    deltalake.write_deltalake(str(path), kit.table([1, 2], "a"), partition_by=["ds"])
    deltalake.write_deltalake(str(path), kit.table([3], "b"), mode="append")
    asset = Asset("events", uri=f"delta+file://{path}", partition_column="ds")
    with kit.dispatcher().connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
    with kit.dispatcher().connect(asset, "b") as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]
        handle.overwrite(kit.table([30, 31]))
    assert kit.ids(deltalake.DeltaTable(str(path)).to_pyarrow_table()) == [1, 2, 30, 31]


def test_partition_overwrite_is_one_commit(tmp_path: Path) -> None:
    asset = Asset(uri=f"delta+file://{tmp_path}/t", partition_column="ds")
    dispatcher = kit.dispatcher()
    for day, ids in (("d1", [1, 2]), ("d2", [3])):
        with dispatcher.connect(asset, day) as handle:
            handle.insert(kit.table(ids))
    with dispatcher.connect(asset, "d1") as handle:
        result = handle.overwrite(kit.table([9]))
    table = deltalake.DeltaTable(f"{tmp_path}/t")
    assert result.table_version == table.version() == 2
    last = table.history(limit=1)[0]
    assert last["operationParameters"]["mode"] == "Overwrite"
    assert "d1" in last["operationParameters"]["predicate"]
    assert kit.ids(table.to_pyarrow_table()) == [3, 9]


def test_a_failed_check_commits_no_version(tmp_path: Path) -> None:
    asset = Asset(uri=f"delta+file://{tmp_path}/t", checks=[NotNull("name")])
    with kit.dispatcher().connect(asset) as handle:
        handle.insert(kit.table([1]))
        bad = pa.table({"id": pa.array([2], pa.int64()), "name": pa.array([None], pa.string())})
        with pytest.raises(ValidationError):
            handle.overwrite(bad)
    assert deltalake.DeltaTable(f"{tmp_path}/t").version() == 0


# -- versions pinned to events ---------------------------------------------------------------


def test_events_carry_the_version_and_as_of_reads_it(tmp_path: Path) -> None:
    asset = Asset("orders", uri=f"delta+file://{tmp_path}/orders")
    inst = Instance.from_url("memory://")
    with use_instance(inst):

        @task(outlets=[asset])
        def load(rows: list[int], io_manager: Any) -> None:
            with io_manager.connect(asset) as handle:
                handle.insert(kit.table(rows))

        load([1, 2])
        load([3])
        first, second = inst.events(asset)
        assert first.extra["assetry"]["table_version"] == 0
        assert second.extra["assetry"]["table_version"] == 1
        with inst.io_manager.connect(asset, as_of=first) as handle:
            assert kit.ids(handle.to_pyarrow()) == [1, 2]
            with pytest.raises(TableVersionError, match="read-only"):
                handle.insert(kit.table([4]))
        with inst.io_manager.connect(asset, as_of=1) as handle:
            assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
        with inst.io_manager.connect(asset) as handle:
            handle.overwrite(kit.table([7]))
        with inst.io_manager.connect(asset, as_of=second) as handle:
            assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
        with pytest.raises(TableVersionError, match="not of"):
            inst.io_manager.open(Asset("other", uri=f"delta+file://{tmp_path}/o"), as_of=first)


def test_as_of_on_an_io_manager_without_versions_is_a_typed_error(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/x.parquet")
    with pytest.raises(TableVersionError, match="keeps no table versions"):
        kit.dispatcher().open(asset, as_of=3)
    with pytest.raises(TypeError):
        kit.dispatcher().open(Asset(uri=f"delta+file://{tmp_path}/t"), as_of="3")  # type: ignore[arg-type]


def test_vacuum_expires_versions_older_than_those_kept(tmp_path: Path) -> None:
    from assetry.iomanagers.delta import DeltaIOManager

    asset = Asset(uri=f"delta+file://{tmp_path}/t")
    dispatcher = kit.dispatcher()
    with dispatcher.connect(asset) as handle:
        for ids in ([1], [2], [3]):
            handle.overwrite(kit.table(ids))
    manager = dispatcher.manager_of(asset)
    assert isinstance(manager, DeltaIOManager)
    assert manager.vacuum(asset, {1}, dry_run=True) == [0]
    with dispatcher.connect(asset, as_of=0) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1]
    assert manager.vacuum(asset, {1}) == [0]
    with dispatcher.connect(asset, as_of=1) as handle:
        assert kit.ids(handle.to_pyarrow()) == [2]
    with pytest.raises(TableVersionError), dispatcher.connect(asset, as_of=0) as handle:
        handle.to_pyarrow()
    with dispatcher.connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]


# -- S3: concurrent writers ------------------------------------------------------------------


@pytest.mark.services
def test_two_processes_appending_on_s3_lose_no_commit(s3_process_server) -> None:
    bucket = s3_process_server.make_bucket()
    count = 8
    versions, _data = kit.race_two_appenders(
        f"delta+s3://{bucket}/lake/shared", _s3_environ(s3_process_server), count
    )
    assert sorted(versions) == list(range(1, 2 * count + 1))  # after the seed's version 0
    table = deltalake.DeltaTable(
        f"s3://{bucket}/lake/shared", storage_options=_delta_options(s3_process_server)
    )
    assert table.version() == 2 * count
    assert table.to_pyarrow_table().num_rows == 2 * count + 1


# -- polars, both ways ------------------------------------------------------------------------


def test_tables_written_by_assetry_are_read_by_polars(tmp_path: Path) -> None:
    pl = kit.polars()
    asset = Asset("orders", uri=f"delta+file://{tmp_path}/orders", partition_column="ds")
    with kit.dispatcher().connect(asset, "2024-06-01") as handle:
        handle.insert(kit.table([1, 2]))
    with kit.dispatcher().connect(asset, "2024-06-02") as handle:
        handle.overwrite(kit.table([3, 4]))
    frame = pl.read_delta(str(tmp_path / "orders"))
    assert sorted(frame["id"].to_list()) == [1, 2, 3, 4]
    assert sorted(set(frame["ds"].to_list())) == ["2024-06-01", "2024-06-02"]
    pinned = pl.read_delta(str(tmp_path / "orders"), version=0)
    assert sorted(pinned["id"].to_list()) == [1, 2]
    lazy = pl.scan_delta(str(tmp_path / "orders")).filter(pl.col("ds") == "2024-06-02")
    assert sorted(lazy.collect()["id"].to_list()) == [3, 4]


def test_tables_written_by_polars_are_read_by_assetry(tmp_path: Path) -> None:
    pl = kit.polars()
    path = str(tmp_path / "events")
    pl.DataFrame(
        {"id": [1, 2], "name": ["n1", "n2"], "ds": ["a", "a"]},
        schema={"id": pl.Int64, "name": pl.String, "ds": pl.String},
    ).write_delta(path, delta_write_options={"partition_by": ["ds"]})
    pl.DataFrame(
        {"id": [3], "name": ["n3"], "ds": ["b"]},
        schema={"id": pl.Int64, "name": pl.String, "ds": pl.String},
    ).write_delta(path, mode="append")
    asset = Asset("events", uri=f"delta+file://{path}", partition_column="ds")
    with kit.dispatcher().connect(asset) as handle:
        assert kit.ids(handle.to_pyarrow()) == [1, 2, 3]
    with kit.dispatcher().connect(asset, "b") as handle:
        assert kit.ids(handle.to_pyarrow()) == [3]
        handle.overwrite(kit.table([30, 31]))
    assert sorted(pl.read_delta(path)["id"].to_list()) == [1, 2, 30, 31]
