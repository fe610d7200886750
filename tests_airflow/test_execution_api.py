"""A task's asset store, end to end: Airflow's ``AssetStateStoreAccessors`` sends its
messages, the execution API's route functions answer them with ``get_state_backend()``,
which Airflow builds from ``[state_store] backend = assetry.airflow.AssetryStoreBackend``,
and the entries land in assetry on SQLite, PostgreSQL and S3.
"""

from __future__ import annotations

import json
from typing import Any

import assetry
import pytest
from airflow.sdk import Asset
from airflow.sdk.definitions.asset import AssetUriRef
from airflow.sdk.execution_time.context import AssetStateStoreAccessors
from assetry.airflow import AssetryStoreBackend
from conftest import add_asset, deactivate_in_airflow, metastore_asset_rows, run_async

ORDERS = Asset(name="orders", uri="s3://data/orders/")


@pytest.fixture
def orders() -> int:
    return add_asset("orders", "s3://data/orders/")


def test_get_state_backend_is_assetry_on_the_configured_url(
    configured_backend: Any, instance_url: str
) -> None:
    assert isinstance(configured_backend, AssetryStoreBackend)
    assert configured_backend.instance.backend.name in {"sql", "objectstore"}


def test_a_task_reads_and_writes_its_asset_store_in_assetry(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    store = AssetStateStoreAccessors(inlets=[ORDERS], outlets=[ORDERS])
    assert store.get("watermark", default="1970-01-01T00:00:00Z") == "1970-01-01T00:00:00Z"
    store.set("watermark", "2024-06-01T00:00:00Z")
    store[ORDERS].set("cursor", {"page": 3, "ids": [1, 2]})
    assert store.get("watermark") == "2024-06-01T00:00:00Z"
    assert store[ORDERS].get("cursor") == {"page": 3, "ids": [1, 2]}

    entries = configured_backend.instance.asset_store("orders").items()
    assert entries == {"watermark": "2024-06-01T00:00:00Z", "cursor": {"page": 3, "ids": [1, 2]}}
    assert metastore_asset_rows() == 0  # Airflow's own table is not used for assets

    store.delete("watermark")
    assert store.get("watermark") is None
    store.clear()
    assert store[ORDERS].get("cursor", default="gone") == "gone"
    assert configured_backend.instance.asset_store("orders").items() == {}


def test_by_uri_and_async_accessors_reach_the_same_entries(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    by_uri = AssetStateStoreAccessors(inlets=[AssetUriRef(uri="s3://data/orders/")])
    by_name = AssetStateStoreAccessors(inlets=[ORDERS])

    async def scenario() -> None:
        await by_uri.aset("files", ["a.csv"])
        assert await by_name.aget("files") == ["a.csv"]
        await by_name.aset("files", ["a.csv", "b.csv"])
        assert await by_uri.aget("files") == ["a.csv", "b.csv"]
        await by_uri.adelete("files")
        assert await by_name.aget("files", default=[]) == []
        await by_name.aset("n", 1)
        await by_uri.aclear()
        assert await by_name.aget("n") is None

    run_async(scenario)
    assert metastore_asset_rows() == 0


def test_assetry_code_works_on_the_entries_airflow_tasks_use(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    """The docs' example: last-writer-wins in Airflow, compare-and-set in assetry."""
    task_store = AssetStateStoreAccessors(inlets=[ORDERS])
    task_store.set("watermark", "2024-06-01T00:00:00Z")

    inst = configured_backend.instance
    store = inst.asset_store("orders")
    assert store.advance("watermark", "2024-06-03T00:00:00Z")
    assert not store.advance("watermark", "2024-06-02T00:00:00Z")  # never goes back
    assert store.update("runs", lambda n: n + 1, default=0) == 1
    entry = store.get_entry("watermark")
    store.compare_and_set("watermark", "2024-06-04T00:00:00Z", expected_version=entry.version)
    with pytest.raises(assetry.ConflictError):
        store.compare_and_set("watermark", "2024-06-05", expected_version=entry.version)

    assert task_store.get("watermark") == "2024-06-04T00:00:00Z"
    assert task_store.get("runs") == 1


def test_an_asset_airflow_does_not_have_active_is_not_found(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    from airflow.sdk.execution_time.comms import SetAssetStateStoreByName

    ghost = Asset(name="ghost", uri="s3://data/ghost")
    store = AssetStateStoreAccessors(inlets=[ghost])
    assert store.get("k", default="absent") == "absent"  # the route's 404
    answer = comms.send(SetAssetStateStoreByName(name="ghost", key="k", value=1))
    assert answer.error.value == "ASSET_STORE_NOT_FOUND"
    assert configured_backend.instance.get_asset("ghost") is None


def test_a_uri_changed_under_the_same_name_keeps_the_entries(
    configured_backend: Any, comms: Any, orders: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = AssetStateStoreAccessors(inlets=[ORDERS])
    store.set("watermark", "2024-06-01")
    # the Dag now declares orders with another URI: Airflow makes a new asset (a new id)
    deactivate_in_airflow("orders")
    moved = Asset(name="orders", uri="s3://warehouse/orders/")
    add_asset("orders", "s3://warehouse/orders/")

    moved_store = AssetStateStoreAccessors(inlets=[moved])
    assert moved_store.get("watermark") == "2024-06-01"  # the name is the identity
    moved_store.set("watermark", "2024-06-02")
    assert moved_store.get("watermark") == "2024-06-02"
    record = configured_backend.instance.get_asset("orders")
    assert record.uri == "s3://data/orders" and record.active
    assert "keeps uri 's3://data/orders'" in caplog.text


def test_a_uri_another_assetry_asset_holds_is_recorded_opaquely(
    configured_backend: Any, comms: Any
) -> None:
    inst = configured_backend.instance
    inst.register(assetry.Asset("legacy_orders", uri="s3://data/orders"))
    add_asset("orders", "s3://data/orders")
    AssetStateStoreAccessors(inlets=[ORDERS]).set("k", "v")
    assert inst.get_asset("orders").uri == "airflow-asset:orders"
    assert inst.asset_store("orders").get("k") == "v"
    assert inst.asset_store("legacy_orders").items() == {}


def test_the_worker_backend_keeps_values_in_assetry_behind_a_reference(
    instance_url: str, monkeypatch: pytest.MonkeyPatch, comms: Any, orders: int
) -> None:
    """``[workers] state_store_backend`` with Airflow's own metastore on the server."""
    import airflow.state as state
    from airflow.sdk.execution_time import context
    from airflow.state.metastore import MetastoreBackend

    monkeypatch.setenv("AIRFLOW__ASSETRY__BACKEND_URL", instance_url)
    monkeypatch.setenv("AIRFLOW__STATE_STORE__BACKEND", "airflow.state.metastore.MetastoreBackend")
    monkeypatch.setenv(
        "AIRFLOW__WORKERS__STATE_STORE_BACKEND", "assetry.airflow.AssetryWorkerStoreBackend"
    )
    monkeypatch.setattr(state, "_backend_instance", None)
    context._get_worker_state_store_backend.cache_clear()
    try:
        assert isinstance(state.get_state_backend(), MetastoreBackend)
        store = AssetStateStoreAccessors(inlets=[ORDERS])
        store.set("cursor", {"page": 7})
        # the worker asked Airflow for the asset's URI to register it in assetry
        assert "GetAssetByName" in {type(m).__name__ for m in comms.sent}
        assert worker_record_uri(instance_url) == "s3://data/orders"
        assert store.get("cursor") == {"page": 7}
        worker = context._get_worker_state_store_backend()
        assert worker.instance.asset_store("orders").get("cursor") == {"page": 7}
        assert metastore_asset_rows() == 1  # the metastore holds the reference only
        from airflow.models.asset_state_store import AssetStateStoreModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            (stored,) = session.scalars(select(AssetStateStoreModel.value))
        assert json.loads(stored) == {
            "__airflow_state_ref__": "assetry:asset-store?name=orders&key=cursor"
        }
        store.delete("cursor")
        assert worker.instance.asset_store("orders").get("cursor") is None
        assert metastore_asset_rows() == 0
        store.set("a", 1)
        store.clear()
        assert worker.instance.asset_store("orders").items() == {}
    finally:
        backend = context._get_worker_state_store_backend()
        context._get_worker_state_store_backend.cache_clear()
        backend.instance.close()


def worker_record_uri(url: str) -> str:
    with assetry.Instance.from_url(url) as inst:
        return inst.get_asset("orders").uri


def test_a_value_over_the_size_limit_is_refused_with_a_typed_error(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    from airflow._shared.state import AssetScope

    with pytest.raises(assetry.StoreValueError, match="over the limit"):
        configured_backend.set(AssetScope(asset_id=orders), "big", json.dumps("x" * 70_000))
    assert configured_backend.get(AssetScope(asset_id=orders), "big") is None


def test_both_backends_write_each_value_once(
    configured_backend: Any,
    instance_url: str,
    monkeypatch: pytest.MonkeyPatch,
    comms: Any,
    orders: int,
) -> None:
    """Server and worker hooks on the same assetry: the reference never overwrites the value."""
    from airflow.sdk.execution_time import context

    monkeypatch.setenv(
        "AIRFLOW__WORKERS__STATE_STORE_BACKEND", "assetry.airflow.AssetryWorkerStoreBackend"
    )
    context._get_worker_state_store_backend.cache_clear()
    try:
        store = AssetStateStoreAccessors(inlets=[ORDERS])
        store.set("watermark", "2024-06-01")
        assert configured_backend.instance.asset_store("orders").get("watermark") == "2024-06-01"
        assert store.get("watermark") == "2024-06-01"
        assert metastore_asset_rows() == 0
    finally:
        backend = context._get_worker_state_store_backend()
        context._get_worker_state_store_backend.cache_clear()
        backend.instance.close()


def test_airflow_state_store_clean_runs_the_assetry_cleanup(
    configured_backend: Any, comms: Any, orders: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``airflow state-store clean`` only cleans a MetastoreBackend: ours is one."""
    from argparse import Namespace

    from airflow.cli.commands.state_store_command import clean_state_store

    gone = Asset(name="gone", uri="s3://data/gone")
    add_asset("gone", "s3://data/gone")
    AssetStateStoreAccessors(inlets=[gone]).set("watermark", "x")
    AssetStateStoreAccessors(inlets=[ORDERS]).set("watermark", "y")
    deactivate_in_airflow("gone")

    clean_state_store(Namespace(dry_run=False))

    assert "skipping" not in capsys.readouterr().out
    inst = configured_backend.instance
    assert not inst.get_asset("gone").active
    assert inst.asset_store("gone").items() == {}
    assert inst.asset_store("orders").get("watermark") == "y"


def test_asset_store_by_name_inside_a_task_asks_airflow_for_the_uri(
    configured_backend: Any, comms: Any, orders: int
) -> None:
    from assetry.airflow import asset_store, get_instance

    entries = asset_store("orders")
    assert entries.update("runs", lambda n: n + 1, default=0) == 1
    assert get_instance().get_asset("orders").uri == "s3://data/orders"
    assert AssetStateStoreAccessors(inlets=[ORDERS]).get("runs") == 1
