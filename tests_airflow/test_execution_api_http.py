"""The same path over HTTP: Airflow's accessor, its request handlers and task-SDK client,
the execution API application (in this process, as Airflow's triggerer runs it), then
``get_state_backend()`` into assetry."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import AssetStateStoreAccessors
from conftest import add_asset, metastore_asset_rows, run_async

ORDERS = Asset(name="orders", uri="s3://data/orders/")


@pytest.fixture
def orders() -> int:
    return add_asset("orders", "s3://data/orders/")


def test_a_task_reads_and_writes_over_http(
    configured_backend: Any, http_comms: Any, orders: int
) -> None:
    store = AssetStateStoreAccessors(inlets=[ORDERS])
    assert store.get("watermark", default="none") == "none"  # a 404 from the API
    store.set("watermark", "2024-06-01T00:00:00Z")
    store.set("cursor", {"page": 3, "ids": [1, 2]})
    assert store.get("watermark") == "2024-06-01T00:00:00Z"
    assert store.get("cursor") == {"page": 3, "ids": [1, 2]}
    entries = configured_backend.instance.asset_store("orders")
    assert entries.items() == {
        "watermark": "2024-06-01T00:00:00Z",
        "cursor": {"page": 3, "ids": [1, 2]},
    }
    assert entries.advance("watermark", "2024-06-02T00:00:00Z")
    assert store.get("watermark") == "2024-06-02T00:00:00Z"
    store.delete("cursor")
    assert store.get("cursor") is None

    async def scenario() -> None:
        await store.aset("n", 1)
        assert await store.aget("n") == 1
        await store.aclear()
        assert await store.aget("watermark") is None

    run_async(scenario)
    assert metastore_asset_rows() == 0
    assert {type(m).__name__ for m in http_comms.sent} >= {
        "GetAssetStateStoreByName",
        "SetAssetStateStoreByName",
        "DeleteAssetStateStoreByName",
        "ClearAssetStateStoreByName",
    }
