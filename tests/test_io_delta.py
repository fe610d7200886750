"""The Delta Lake IO manager on local disk, delta+memory:// and S3 (moto): conformance, the
format's own reader both ways, versions pinned to events, vacuum and concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import lakehouse_s3
import pyarrow as pa
import pytest
from assetry import Asset, TableVersionError, ValidationError, load_settings, task, use_instance
from assetry.checks import NotNull
from assetry.instance import Instance
from assetry.iomanager import IOManagerDispatcher
from assetry.testing import IOManagerConformance

deltalake = pytest.importorskip(
    "deltalake", reason="the Delta IO manager needs deltalake: pip install -e '.[lakehouse]'"
)


s3_process_server = lakehouse_s3.s3_process_server


def _dispatcher(**environ: str) -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


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


def _table(ids: list[int], ds: str | None = None) -> pa.Table:
    data: dict[str, Any] = {
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"n{i}" for i in ids], pa.string()),
    }
    if ds is not None:
        data["ds"] = pa.array([ds] * len(ids), pa.string())
    return pa.table(data)


def _ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


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
        dispatcher = _dispatcher(**_s3_environ(s3_process_server))
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
    with _dispatcher().connect(asset, "2024-06-01") as handle:
        handle.insert(_table([1, 2]))
    with _dispatcher().connect(asset, "2024-06-02") as handle:
        handle.insert(_table([3]))
    table = deltalake.DeltaTable(str(tmp_path / "orders"))
    assert table.version() == 1
    assert table.metadata().partition_columns == ["ds"]
    assert _ids(table.to_pyarrow_table()) == [1, 2, 3]
    assert _ids(table.to_pyarrow_dataset().to_table()) == [1, 2, 3]


def test_tables_written_by_deltalake_are_read_by_assetry(tmp_path: Path) -> None:
    path = tmp_path / "events"
    deltalake.write_deltalake(str(path), _table([1, 2], "a"), partition_by=["ds"])
    deltalake.write_deltalake(str(path), _table([3], "b"), mode="append")
    asset = Asset("events", uri=f"delta+file://{path}", partition_column="ds")
    with _dispatcher().connect(asset) as handle:
        assert _ids(handle.to_pyarrow()) == [1, 2, 3]
    with _dispatcher().connect(asset, "b") as handle:
        assert _ids(handle.to_pyarrow()) == [3]
        handle.overwrite(_table([30, 31]))
    assert _ids(deltalake.DeltaTable(str(path)).to_pyarrow_table()) == [1, 2, 30, 31]


def test_partition_overwrite_is_one_commit(tmp_path: Path) -> None:
    asset = Asset(uri=f"delta+file://{tmp_path}/t", partition_column="ds")
    dispatcher = _dispatcher()
    for day, ids in (("d1", [1, 2]), ("d2", [3])):
        with dispatcher.connect(asset, day) as handle:
            handle.insert(_table(ids))
    with dispatcher.connect(asset, "d1") as handle:
        result = handle.overwrite(_table([9]))
    table = deltalake.DeltaTable(f"{tmp_path}/t")
    assert result.table_version == table.version() == 2
    last = table.history(limit=1)[0]
    assert last["operationParameters"]["mode"] == "Overwrite"
    assert "d1" in last["operationParameters"]["predicate"]
    assert _ids(table.to_pyarrow_table()) == [3, 9]


def test_a_failed_check_commits_no_version(tmp_path: Path) -> None:
    asset = Asset(uri=f"delta+file://{tmp_path}/t", checks=[NotNull("name")])
    with _dispatcher().connect(asset) as handle:
        handle.insert(_table([1]))
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
                handle.insert(_table(rows))

        load([1, 2])
        load([3])
        first, second = inst.events(asset)
        assert first.extra["assetry"]["table_version"] == 0
        assert second.extra["assetry"]["table_version"] == 1
        with inst.io_manager.connect(asset, as_of=first) as handle:
            assert _ids(handle.to_pyarrow()) == [1, 2]
            with pytest.raises(TableVersionError, match="read-only"):
                handle.insert(_table([4]))
        with inst.io_manager.connect(asset, as_of=1) as handle:
            assert _ids(handle.to_pyarrow()) == [1, 2, 3]
        with inst.io_manager.connect(asset) as handle:
            handle.overwrite(_table([7]))
        with inst.io_manager.connect(asset, as_of=second) as handle:
            assert _ids(handle.to_pyarrow()) == [1, 2, 3]
        with pytest.raises(TableVersionError, match="not of"):
            inst.io_manager.open(Asset("other", uri=f"delta+file://{tmp_path}/o"), as_of=first)


def test_as_of_on_an_io_manager_without_versions_is_a_typed_error(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/x.parquet")
    with pytest.raises(TableVersionError, match="keeps no table versions"):
        _dispatcher().open(asset, as_of=3)
    with pytest.raises(TypeError):
        _dispatcher().open(Asset(uri=f"delta+file://{tmp_path}/t"), as_of="3")  # type: ignore[arg-type]


def test_vacuum_expires_versions_older_than_those_kept(tmp_path: Path) -> None:
    from assetry.iomanagers.delta import DeltaIOManager

    asset = Asset(uri=f"delta+file://{tmp_path}/t")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as handle:
        for ids in ([1], [2], [3]):
            handle.overwrite(_table(ids))
    manager = dispatcher.manager_of(asset)
    assert isinstance(manager, DeltaIOManager)
    assert manager.vacuum(asset, {1}, dry_run=True) == [0]
    with dispatcher.connect(asset, as_of=0) as handle:
        assert _ids(handle.to_pyarrow()) == [1]
    assert manager.vacuum(asset, {1}) == [0]
    with dispatcher.connect(asset, as_of=1) as handle:
        assert _ids(handle.to_pyarrow()) == [2]
    with pytest.raises(TableVersionError), dispatcher.connect(asset, as_of=0) as handle:
        handle.to_pyarrow()
    with dispatcher.connect(asset) as handle:
        assert _ids(handle.to_pyarrow()) == [3]


# -- S3: concurrent writers ------------------------------------------------------------------

_WRITER = """
import json, sys
import pyarrow as pa
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher

uri, conn, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dispatcher = IOManagerDispatcher(
    load_settings(backend="memory", environ={"ASSETRY_CONN_AWS_DEFAULT": conn})
)
versions = []
for i in range(count):
    with dispatcher.connect(Asset(uri=uri)) as handle:
        result = handle.insert(pa.table({"writer": [tag], "i": pa.array([i], pa.int64())}))
        versions.append(result.table_version)
print(json.dumps(versions))
"""


@pytest.mark.services
def test_two_processes_appending_on_s3_lose_no_commit(s3_process_server) -> None:
    s3_server = s3_process_server
    bucket = s3_server.make_bucket()
    uri = f"delta+s3://{bucket}/lake/shared"
    conn = json.dumps(s3_server.storage_options)
    with _dispatcher(ASSETRY_CONN_AWS_DEFAULT=conn).connect(Asset(uri=uri)) as handle:
        handle.insert(pa.table({"writer": ["seed"], "i": pa.array([0], pa.int64())}))
    count = 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri, conn, tag, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    versions = [v for out, _ in outputs for v in json.loads(out)]
    assert sorted(versions) == list(range(1, 2 * count + 1))  # every commit its own version
    table = deltalake.DeltaTable(
        f"s3://{bucket}/lake/shared", storage_options=_delta_options(s3_server)
    )
    assert table.version() == 2 * count
    data = table.to_pyarrow_table()
    assert data.num_rows == 2 * count + 1
    for tag in ("a", "b"):
        rows = [
            i
            for w, i in zip(data["writer"].to_pylist(), data["i"].to_pylist(), strict=True)
            if w == tag
        ]
        assert sorted(rows) == list(range(count))


# -- polars, both ways ------------------------------------------------------------------------


def _polars() -> Any:
    return pytest.importorskip(
        "polars", reason="the polars read-back tests need polars: pip install -e '.[test]'"
    )


def test_tables_written_by_assetry_are_read_by_polars(tmp_path: Path) -> None:
    pl = _polars()
    asset = Asset("orders", uri=f"delta+file://{tmp_path}/orders", partition_column="ds")
    with _dispatcher().connect(asset, "2024-06-01") as handle:
        handle.insert(_table([1, 2]))
    with _dispatcher().connect(asset, "2024-06-02") as handle:
        handle.overwrite(_table([3, 4]))
    frame = pl.read_delta(str(tmp_path / "orders"))
    assert sorted(frame["id"].to_list()) == [1, 2, 3, 4]
    assert sorted(set(frame["ds"].to_list())) == ["2024-06-01", "2024-06-02"]
    pinned = pl.read_delta(str(tmp_path / "orders"), version=0)
    assert sorted(pinned["id"].to_list()) == [1, 2]
    lazy = pl.scan_delta(str(tmp_path / "orders")).filter(pl.col("ds") == "2024-06-02")
    assert sorted(lazy.collect()["id"].to_list()) == [3, 4]


def test_tables_written_by_polars_are_read_by_assetry(tmp_path: Path) -> None:
    pl = _polars()
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
    with _dispatcher().connect(asset) as handle:
        assert _ids(handle.to_pyarrow()) == [1, 2, 3]
    with _dispatcher().connect(asset, "b") as handle:
        assert _ids(handle.to_pyarrow()) == [3]
        handle.overwrite(_table([30, 31]))
    assert sorted(pl.read_delta(path)["id"].to_list()) == [1, 2, 30, 31]
