"""The fsspec IO manager on local disk, memory:// and S3 (moto): conformance and atomic publish."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from assetry import Asset, AssetValueError, ConfigurationError, ObjectStoragePath, load_settings
from assetry.iomanager import IOManagerDispatcher
from assetry.iomanagers.objectstorage import (
    CONTROL_DIR,
    LOCAL_STAGING_DIR,
    DatasetHandle,
    ObjectStorageIOManager,
)
from assetry.testing import IOManagerConformance


def _dispatcher(**environ: str) -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


def _s3_environ(server: Any) -> dict[str, str]:
    return {"ASSETRY_CONN_AWS_DEFAULT": json.dumps(server.storage_options)}


def _hidden_or_data(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- conformance -----------------------------------------------------------------------------


class _LocalConformance(IOManagerConformance):
    suffix = ""

    @pytest.fixture
    def asset_factory(self, tmp_path: Path):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"file://{tmp_path}/{uuid.uuid4().hex}{self.suffix}", **kwargs)

        return make


class TestLocalDataset(_LocalConformance):
    pass


class TestLocalParquetFile(_LocalConformance):
    suffix = ".parquet"
    supports_partitions = False


class TestLocalCSVFile(_LocalConformance):
    suffix = ".csv"
    supports_partitions = False


class TestLocalJSONLinesFile(_LocalConformance):
    suffix = ".jsonl"
    supports_partitions = False


class TestLocalFeatherFile(_LocalConformance):
    suffix = ".feather"
    supports_partitions = False


class _MemoryConformance(IOManagerConformance):
    suffix = ""

    @pytest.fixture
    def asset_factory(self):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"memory://conformance/{uuid.uuid4().hex}{self.suffix}", **kwargs)

        return make


class TestMemoryDataset(_MemoryConformance):
    pass


class TestMemoryParquetFile(_MemoryConformance):
    suffix = ".parquet"
    supports_partitions = False


class _S3Conformance(IOManagerConformance):
    suffix = ""

    @pytest.fixture
    def io_manager(self, s3_server):
        dispatcher = _dispatcher(**_s3_environ(s3_server))
        yield dispatcher
        dispatcher.close()

    @pytest.fixture
    def asset_factory(self, s3_bucket: str):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"s3://{s3_bucket}/data/{uuid.uuid4().hex}{self.suffix}", **kwargs)

        return make


@pytest.mark.services
class TestS3Dataset(_S3Conformance):
    pass


@pytest.mark.services
class TestS3ParquetFile(_S3Conformance):
    suffix = ".parquet"
    supports_partitions = False


@pytest.mark.services
class TestS3CSVFile(_S3Conformance):
    suffix = ".csv"
    supports_partitions = False


# -- layout readable by other tools ----------------------------------------------------------


def test_partitioned_dataset_is_readable_by_pyarrow_and_duckdb_as_is(tmp_path: Path) -> None:
    import duckdb

    asset = Asset(uri=f"file://{tmp_path}/orders", partition_column="ds")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1, 2, 3], "ds": ["2024-06-01", "2024-06-01", "x/y"]}))
    assert sorted(p.name for p in (tmp_path / "orders").iterdir()) == ["ds=2024-06-01", "ds=x%2Fy"]
    table = ds.dataset(tmp_path / "orders", partitioning="hive").to_table()
    assert sorted(table.column("id").to_pylist()) == [1, 2, 3]
    count = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/orders/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert count == [(3,)]
    with _dispatcher().connect(asset, "x/y") as handle:
        assert handle.to_pyarrow().to_pydict() == {"id": [3], "ds": ["x/y"]}


def test_writes_leave_no_staging_behind(tmp_path: Path) -> None:
    dispatcher = _dispatcher()
    for uri in (f"file://{tmp_path}/a.parquet", f"file://{tmp_path}/ds"):
        with dispatcher.connect(Asset(uri=uri, partition_column="p")) as handle:
            handle.insert(pd.DataFrame({"id": [1]}))
            handle.overwrite(pd.DataFrame({"id": [2]}))
            if handle.kind == "dataset":
                with dispatcher.connect(handle.asset, "k") as part:
                    part.overwrite(pd.DataFrame({"id": [3]}))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_staged_files_are_invisible_to_dataset_readers(tmp_path: Path) -> None:
    import duckdb

    root = tmp_path / "events"
    asset = Asset(uri=f"file://{root}")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1, 2]}))
    # what a writer killed mid-write leaves: a staged part beside the dataset and inside it
    staged = tmp_path / LOCAL_STAGING_DIR / "0-dead" / "part-x.parquet.tmp"
    inside = root / CONTROL_DIR / "staging" / "0-dead" / "part-y.parquet.tmp"
    for path in (staged, inside):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PAR1 partial")
    assert ds.dataset(root).to_table().num_rows == 2
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')").fetchall()
    assert count == [(2,)]
    with _dispatcher().connect(asset) as handle:
        assert handle.to_pyarrow().num_rows == 2


def test_insert_without_partition_splits_rows_by_partition_column(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/sales", partition_column="day")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as handle:
        result = handle.insert(
            pa.table({"id": [1, 2, 3], "day": ["2024-06-01", "2024-06-02", "2024-06-01"]})
        )
    assert result.rows == 3
    with dispatcher.connect(asset, "2024-06-01") as handle:
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 3]
    parts = list((tmp_path / "sales" / "day=2024-06-02").iterdir())
    assert len(parts) == 1
    assert pa.parquet.read_schema(parts[0]).names == ["id"]  # the folder holds the value


def test_whole_overwrite_of_partitioned_dataset_replaces_every_partition(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/sales", partition_column="day")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as handle:
        handle.insert(pa.table({"id": [1, 2], "day": ["a", "b"]}))
        handle.overwrite(pa.table({"id": [9], "day": ["c"]}))
        assert handle.to_pyarrow().to_pydict() == {"id": [9], "day": ["c"]}
    assert sorted(p.name for p in (tmp_path / "sales").iterdir()) == ["day=c"]


# -- appends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".parquet", ".csv"])
def test_append_with_other_columns_is_rejected_and_writes_nothing(
    tmp_path: Path, suffix: str
) -> None:
    asset = Asset(uri=f"file://{tmp_path}/t{suffix}")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1], "name": ["a"]}))
        with pytest.raises(ValueError, match="columns"):
            handle.insert(pd.DataFrame({"id": [2], "other": ["b"]}))
        assert handle.to_pyarrow().column("id").to_pylist() == [1]


def test_append_casts_compatible_types_to_the_dataset_schema(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/t")
    with _dispatcher().connect(asset) as handle:
        handle.insert(
            pa.table({"id": pa.array([1], pa.int64()), "s": pa.array(["a"], pa.string())})
        )
        handle.insert(
            pa.table({"s": pa.array(["b"], pa.large_string()), "id": pa.array([2], pa.int32())})
        )
        table = handle.to_pyarrow()
    assert table.schema.field("id").type == pa.int64()
    assert sorted(table.column("s").to_pylist()) == ["a", "b"]


def test_csv_append_follows_the_file_header_order(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/t.csv")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1], "name": ["a"]}))
        handle.insert(pd.DataFrame({"name": ["b"], "id": [2]}))
    assert (tmp_path / "t.csv").read_text().splitlines() == ['"id","name"', '1,"a"', '2,"b"']


def test_concurrent_appends_to_one_local_file_lose_no_rows(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/t.parquet")
    dispatcher = _dispatcher()
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for i in range(5):
                with dispatcher.connect(asset) as handle:
                    handle.insert(pd.DataFrame({"id": [worker * 100 + i]}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with dispatcher.connect(asset) as handle:
        assert handle.to_pyarrow().num_rows == 20


@pytest.mark.services
def test_concurrent_appends_to_one_s3_object_lose_no_rows(s3_server, s3_bucket: str) -> None:
    asset = Asset(uri=f"s3://{s3_bucket}/t.parquet")
    dispatcher = _dispatcher(**_s3_environ(s3_server))
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for i in range(3):
                with dispatcher.connect(asset) as handle:
                    handle.insert(pd.DataFrame({"id": [worker * 100 + i]}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with dispatcher.connect(asset) as handle:
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == sorted(
            w * 100 + i for w in range(3) for i in range(3)
        )


# -- failures never publish ------------------------------------------------------------------


def _failing_reader(rows_before_failure: int) -> pa.RecordBatchReader:
    schema = pa.schema([("id", pa.int64())])

    def batches():
        yield pa.record_batch({"id": list(range(rows_before_failure))}, schema=schema)
        raise RuntimeError("source broke mid-stream")

    return pa.RecordBatchReader.from_batches(schema, batches())


@pytest.mark.parametrize("suffix", ["", ".parquet", ".csv"])
def test_a_write_that_fails_midway_publishes_nothing_locally(tmp_path: Path, suffix: str) -> None:
    asset = Asset(uri=f"file://{tmp_path}/t{suffix}")
    with _dispatcher().connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1]}))
        for write in (handle.insert, handle.overwrite):
            with pytest.raises(RuntimeError, match="mid-stream"):
                write(_failing_reader(5))
        assert handle.to_pyarrow().column("id").to_pylist() == [1]
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".")] == []


@pytest.mark.services
@pytest.mark.parametrize("suffix", ["", ".parquet"])
def test_a_write_that_fails_midway_publishes_nothing_on_s3(
    s3_server, s3_bucket: str, suffix: str
) -> None:
    asset = Asset(uri=f"s3://{s3_bucket}/t{suffix}")
    with _dispatcher(**_s3_environ(s3_server)).connect(asset) as handle:
        handle.overwrite(pd.DataFrame({"id": [1]}))
        for write in (handle.insert, handle.overwrite):
            with pytest.raises(RuntimeError, match="mid-stream"):
                write(_failing_reader(5))
        assert handle.to_pyarrow().column("id").to_pylist() == [1]


# -- journaled overwrite on object stores ----------------------------------------------------


class _Crash(Exception):
    pass


@pytest.mark.services
def test_s3_overwrite_committed_before_a_crash_is_read_and_then_finished(
    s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = Asset(uri=f"s3://{s3_bucket}/orders")
    dispatcher = _dispatcher(**_s3_environ(s3_server))
    with dispatcher.connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1, 2]}))
    original_apply = DatasetHandle._apply

    def crash(self: DatasetHandle, journal: dict[str, Any]) -> None:
        raise _Crash

    monkeypatch.setattr(DatasetHandle, "_apply", crash)
    with dispatcher.connect(asset) as handle, pytest.raises(_Crash):
        handle.overwrite(pd.DataFrame({"id": [7]}))
    monkeypatch.setattr(DatasetHandle, "_apply", original_apply)

    with dispatcher.connect(asset) as handle:
        assert handle.to_pyarrow().column("id").to_pylist() == [7]  # the journal's view
        fs = handle.fs
        journal_dir = f"{handle.location.path}/{CONTROL_DIR}/journal"
        assert len(fs.ls(journal_dir)) == 1
        handle.insert(pd.DataFrame({"id": [8]}))  # the next writer finishes the overwrite
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [7, 8]
        fs.invalidate_cache()
        assert not fs.exists(journal_dir) or fs.ls(journal_dir) == []
        visible = [p for p in fs.find(handle.location.path) if f"/{CONTROL_DIR}/" not in p]
        assert len(visible) == 2


@pytest.mark.services
def test_s3_overwrite_that_crashes_before_its_journal_keeps_the_old_content(
    s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = Asset(uri=f"s3://{s3_bucket}/orders")
    dispatcher = _dispatcher(**_s3_environ(s3_server))
    with dispatcher.connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1, 2]}))
        fs = handle.fs
        real_pipe = fs.pipe_file

        def pipe(path: str, *args: Any, **kwargs: Any) -> Any:
            if "/journal/" in path:
                raise _Crash
            return real_pipe(path, *args, **kwargs)

        monkeypatch.setattr(fs, "pipe_file", pipe)
        with pytest.raises(_Crash):
            handle.overwrite(pd.DataFrame({"id": [7]}))
        monkeypatch.undo()
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]
        staged = [p for p in fs.find(handle.location.path) if f"/{CONTROL_DIR}/staging/" in p]
        assert staged and all(not p.endswith(".parquet") for p in staged)


# -- connections, paths and dispatch options -------------------------------------------------


@pytest.mark.services
def test_object_storage_path_uses_the_connection(
    s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    example = Asset(name="example", uri=f"s3://{s3_bucket}/example.csv")
    path = ObjectStoragePath(example.uri, conn_id="aws_default")
    assert path.storage_options["endpoint_url"] == s3_server.endpoint_url
    with path.open("wb") as fh:
        fh.write(b"id\n1\n")
    with ObjectStoragePath(example.uri).open("rb") as fh:  # the scheme's default connection
        assert fh.read() == b"id\n1\n"
    with _dispatcher(**_s3_environ(s3_server)).connect(example) as handle:
        assert handle.to_pyarrow().column("id").to_pylist() == [1]


def test_object_storage_path_with_an_unconfigured_connection_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ASSETRY_CONN_NOPE", raising=False)
    with pytest.raises(ConfigurationError, match="ASSETRY_CONN_NOPE"):
        ObjectStoragePath("s3://bucket/key.csv", conn_id="nope")


def test_airflow_style_connection_login_becomes_the_s3_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_MINE", "s3://AKIA:s3cr3t@?endpoint_url=http%3A%2F%2Fx")
    path = ObjectStoragePath("s3://bucket/key.csv", conn_id="mine")
    assert path.storage_options["key"] == "AKIA"
    assert path.storage_options["secret"] == "s3cr3t"
    assert path.storage_options["endpoint_url"] == "http://x"


def test_handle_path_is_a_universal_path(tmp_path: Path) -> None:
    with _dispatcher().connect(Asset(uri=f"file://{tmp_path}/a.parquet")) as handle:
        handle.insert(pd.DataFrame({"id": [1]}))
        assert handle.path.exists()
        assert handle.path.name == "a.parquet"


def test_redirect_to_memory_keeps_s3_assets_off_the_network() -> None:
    root = f"memory://redirect-{uuid.uuid4().hex}"
    manager = ObjectStorageIOManager(redirect_to=root)
    dispatcher = IOManagerDispatcher(managers={"s3": manager})
    asset = Asset(uri="s3://no-such-bucket/orders.parquet")
    with dispatcher.connect(asset) as handle:
        handle.insert(pd.DataFrame({"id": [1]}))
        assert handle.location.uri == f"{root}/s3/no-such-bucket/orders.parquet"
        assert handle.fs.exists(handle.location.path)


def test_unknown_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.xlsx.*\.parquet"):
        _dispatcher().open(Asset(uri=f"file://{tmp_path}/report.xlsx"))


def test_partition_of_a_single_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single file"):
        _dispatcher().open(Asset(uri=f"file://{tmp_path}/a.parquet"), "2024-06-01")


def test_json_array_files_written_by_other_tools_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"id": 1, "s": "x"}, {"id": 2, "s": "y"}]')
    with _dispatcher().connect(Asset(uri=f"file://{tmp_path}/a.json")) as handle:
        assert handle.to_pyarrow().to_pydict() == {"id": [1, 2], "s": ["x", "y"]}


def test_spark_style_parquet_folder_is_read_as_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "out.parquet"
    folder.mkdir()
    pa.parquet.write_table(pa.table({"id": [1, 2]}), folder / "part-0.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    with _dispatcher().connect(Asset(uri=f"file://{folder}")) as handle:
        assert handle.kind == "dataset"
        assert handle.to_pyarrow().num_rows == 2


def test_dataset_file_on_disk_count_grows_by_one_part_per_insert(tmp_path: Path) -> None:
    asset = Asset(uri=f"file://{tmp_path}/d")
    with _dispatcher().connect(asset) as handle:
        for i in range(3):
            handle.insert(pd.DataFrame({"id": [i]}))
    assert len(_hidden_or_data(tmp_path / "d")) == 3
    assert all(name.endswith(".parquet") for name in os.listdir(tmp_path / "d"))


@pytest.mark.parametrize("path", ["../../../escaped", "a/../../../../escaped.parquet", "./x"])
def test_a_uri_cannot_leave_the_redirect_root_through_dot_segments(
    tmp_path: Path, path: str
) -> None:
    root = tmp_path / "sandbox" / "root"
    manager = ObjectStorageIOManager(redirect_to=f"file://{root}")
    with pytest.raises(AssetValueError, match="out of the redirect root"):
        manager.open(Asset("escape", uri=f"s3://bucket/{path}"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_local_names_too_long_for_the_disk_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(AssetValueError, match="at most 251 bytes"):
        _dispatcher().open(Asset("long", uri=f"file://{tmp_path}/{'n' * 252}.parquet"))
    folder = Asset("folder", uri=f"file://{tmp_path}/data", partition_column="day")
    with pytest.raises(AssetValueError, match="at most 251 bytes"):
        _dispatcher().open(folder, "é" * 60)  # "day=" and 60 x "%C3%A9": 364 bytes
    assert list(tmp_path.iterdir()) == []


@pytest.mark.services
@pytest.mark.parametrize("name", ["orders", "orders.parquet", "orders.csv"])
def test_a_long_lived_reader_sees_what_another_process_wrote_on_s3(
    s3_server: Any, name: str
) -> None:
    bucket = s3_server.make_bucket()
    asset = Asset(uri=f"s3://{bucket}/{name}")
    reader = _dispatcher(**_s3_environ(s3_server))
    # another process: its own S3 filesystem object, so its own listing cache
    other = {**s3_server.storage_options, "skip_instance_cache": True}
    for generation in range(3):
        writer = _dispatcher(ASSETRY_CONN_AWS_DEFAULT=json.dumps(other))
        with writer.connect(asset) as handle:
            handle.overwrite(pa.table({"gen": [generation] * (generation + 1)}))
        with reader.connect(asset) as handle:
            assert handle.exists()
            assert handle.to_pyarrow().column("gen").to_pylist() == [generation] * (generation + 1)
