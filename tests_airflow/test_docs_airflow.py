"""docs/airflow.md's Airflow code, run with Airflow: the compare-and-set example's task runs
through Airflow's accessor and the execution API's routes, on every assetry backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.execution_time.context import AssetStateStoreAccessors
from conftest import add_asset

DOC = Path(__file__).resolve().parent.parent / "docs" / "airflow.md"


def airflow_blocks() -> list[str]:
    """The ``py`` blocks of the doc's Airflow section (``python`` blocks run in the main suite)."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(r"^```py\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def test_the_doc_has_its_airflow_examples() -> None:
    blocks = airflow_blocks()
    assert any("ObjectStoragePath" in b for b in blocks)
    assert any("compare_and_set" in b for b in blocks)


def test_the_compare_and_set_example(
    configured_backend: Any, comms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code,) = [b for b in airflow_blocks() if "compare_and_set" in b]
    source = [
        {"id": 1, "created_at": "2024-06-01T10:00:00Z"},
        {"id": 2, "created_at": "2024-06-01T11:00:00Z"},
    ]
    uploaded: list[Any] = []
    namespace: dict[str, Any] = {
        "__name__": "__docs__",
        "fetch_orders_since": lambda since: [r for r in source if r["created_at"] > since],
        "upload_to_warehouse": uploaded.extend,
    }
    exec(compile(code, str(DOC), "exec"), namespace)
    add_asset("orders", "s3://data/orders/")
    orders = namespace["orders"]
    load = namespace["incremental_orders"]().get_task("load").python_callable

    def run(run_id: str) -> AssetStateStoreAccessors:
        store = AssetStateStoreAccessors(inlets=[orders], outlets=[orders])
        load(asset_state_store=store, run_id=run_id)
        return store

    store = run("run_1")
    assert uploaded == source
    assert store.get("watermark") == "2024-06-01T11:00:00Z"
    assert store.get("rows_loaded") == 2
    assert store.get("manifest") == ["run_1"]

    # a late run that loaded older rows does not move the watermark back
    store.set("watermark", "1970-01-01T00:00:00Z")
    source[:] = [{"id": 0, "created_at": "2024-05-31T09:00:00Z"}]
    configured_backend.instance.asset_store("orders").set("watermark", "2024-06-01T11:00:00Z")
    store = AssetStateStoreAccessors(inlets=[orders], outlets=[orders])
    namespace["fetch_orders_since"] = lambda since: source
    store = run("run_0")
    assert store.get("watermark") == "2024-06-01T11:00:00Z"
    assert store.get("rows_loaded") == 3
    assert store.get("manifest") == ["run_1", "run_0"]
