"""Retention with table formats: pruning keeps every event a consumer has not read, so the
versions they pin stay readable; vacuum (Instance.vacuum, ``assetry vacuum``) expires the
versions older than the oldest a live event pins, and nothing a live event needs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from assetry import Asset, Instance, TableVersionError, task, use_instance
from assetry.cli import main
from assetry.retention import RetentionPolicy, prune_events
from click.testing import CliRunner

FORMATS = {
    "delta": ("deltalake", "delta+file://{root}/orders"),
    "iceberg": ("pyiceberg.catalog.sql", "iceberg+file://{root}/wh/ns/orders"),
}


@pytest.fixture(params=sorted(FORMATS))
def table_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    module, template = FORMATS[request.param]
    pytest.importorskip(module, reason=f"needs {module}: pip install -e '.[lakehouse]'")
    return template.format(root=tmp_path)


def _write_versions(inst: Instance, asset: Asset, count: int) -> None:
    """``count`` runs of a producer task, each overwriting the table with one row."""
    with use_instance(inst):

        @task(outlets=[asset])
        def produce(i: int, io_manager: Any) -> None:
            with io_manager.connect(asset) as handle:
                handle.overwrite(pa.table({"id": pa.array([i], pa.int64())}))

        for i in range(count):
            produce(i)


def _read(inst: Instance, asset: Asset, as_of: Any) -> list[int]:
    with inst.io_manager.connect(asset, as_of=as_of) as handle:
        return handle.to_pyarrow().column("id").to_pylist()


def test_prune_then_vacuum_keeps_every_version_a_live_event_pins(table_uri: str) -> None:
    inst = Instance.from_url(f"memory://{uuid.uuid4().hex}")
    asset = Asset("orders", uri=table_uri)
    _write_versions(inst, asset, 4)
    events = inst.events(asset)
    versions = [e.extra["assetry"]["table_version"] for e in events]
    inst.backend.set_cursors("report", {"orders": events[1].id})  # read events 1 and 2

    pruned = prune_events(inst.backend, RetentionPolicy(keep_last=1))
    assert pruned[0].deleted == 2 and pruned[0].kept_for_consumers == 1
    live = inst.events(asset)
    assert [e.id for e in live] == [events[2].id, events[3].id]  # 3 is unread by "report"

    dry = inst.vacuum(dry_run=True)
    assert [(r.asset, r.dry_run) for r in dry] == [("orders", True)]
    assert set(versions[:2]) <= set(dry[0].expired)
    assert _read(inst, asset, versions[0]) == [0]  # a dry run expires nothing

    done = inst.vacuum([asset])
    assert done[0].expired == dry[0].expired
    assert not set(done[0].expired) & set(versions[2:])
    assert _read(inst, asset, live[0]) == [2]  # the unread event still reads its data
    assert _read(inst, asset, live[1]) == [3]
    with pytest.raises(TableVersionError):
        _read(inst, asset, versions[0])
    assert inst.vacuum() == [] or inst.vacuum()[0].expired == []  # nothing left to expire


def test_vacuum_leaves_assets_without_pinned_versions_alone(tmp_path: Path) -> None:
    inst = Instance.from_url(f"memory://{uuid.uuid4().hex}")
    inst.register(Asset("files", uri=f"file://{tmp_path}/x.parquet"))
    inst.record_event(Asset("files", uri=f"file://{tmp_path}/x.parquet"), extra={"n": 1})
    inst.register(Asset("nowhere", uri="hudi+s3://bucket/t"))
    assert inst.vacuum() == []


def test_assetry_vacuum_command(table_uri: str) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    inst = Instance.from_url(url)
    asset = Asset("orders", uri=table_uri)
    _write_versions(inst, asset, 3)
    runner = CliRunner()
    dry = runner.invoke(main, ["--url", url, "--json", "vacuum", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    body = json.loads(dry.stdout)
    assert body["dry_run"] is True and body["expired"] == 0  # every event pins its version
    inst.backend.delete_events("orders", [e.id for e in inst.events(asset)[:2]])
    refused = runner.invoke(main, ["--url", url, "vacuum", "--asset", "orders"])
    assert refused.exit_code == 2 and "--yes" in refused.output  # no terminal to ask on
    assert _read(inst, asset, inst.events(asset)[-1]) == [2]
    out = runner.invoke(main, ["--url", url, "vacuum", "--asset", "orders", "--yes"])
    assert out.exit_code == 0, out.output
    assert "expired" in out.stdout and "orders" in out.stdout
    latest = inst.events(asset)[-1]
    assert _read(inst, asset, latest) == [2]


# -- schema evolution per the asset's contract ---------------------------------------------


def test_new_columns_follow_the_assets_schema_evolution(table_uri: str) -> None:
    from assetry import SchemaMismatchError
    from assetry.config import load_settings
    from assetry.iomanager import IOManagerDispatcher

    dispatcher = IOManagerDispatcher(load_settings(backend="memory"))
    strict = Asset("strict", uri=table_uri)
    with dispatcher.connect(strict) as handle:
        handle.insert(pa.table({"id": pa.array([1], pa.int64())}))
        version = handle.insert(pa.table({"id": pa.array([2], pa.int32())})).table_version
        with pytest.raises(SchemaMismatchError) as info:
            handle.insert(pa.table({"id": pa.array([3], pa.int64()), "extra": ["x"]}))
        assert info.value.column == "extra"
        with pytest.raises(SchemaMismatchError, match="id"):
            handle.insert(pa.table({"id": pa.array([1.5])}))  # not storable as int64
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]
        assert handle.insert(pa.table({"id": pa.array([4], pa.int64())})).table_version != version

    growing = Asset("growing", uri=table_uri, schema_evolution="add_columns")
    with dispatcher.connect(growing) as handle:
        result = handle.insert(pa.table({"id": pa.array([5], pa.int64()), "extra": ["x"]}))
        rows = sorted(handle.to_pyarrow().to_pylist(), key=lambda r: r["id"])
    assert [r["extra"] for r in rows] == [None, None, None, "x"]
    with dispatcher.connect(growing, as_of=version) as handle:  # the old version is unchanged
        assert handle.to_pyarrow().column_names == ["id"]
    assert result.table_version != version
