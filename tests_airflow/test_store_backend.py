"""AssetryStoreBackend against the behaviour Airflow's metastore backend is held to.

The cases mirror what Airflow 3.3.2 checks of its own ``MetastoreBackend`` (round trips,
overwrites, deletes, clears, isolation, map indices, expiry, writer checks, async twins),
written for this backend: task scopes must behave exactly as Airflow's (they are delegated
to it), asset scopes must behave the same while living in assetry on every backend, and
Airflow's ``asset_state_store`` table must stay empty.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from airflow._shared.state import AssetScope, AssetStateStoreWriterKind, TaskScope
from airflow.models.task_state_store import TaskStateStoreModel
from airflow.utils.session import create_session, create_session_async
from assetry.airflow import AssetryStoreBackend
from conftest import add_asset, add_dag_run, deactivate_in_airflow, metastore_asset_rows, run_async
from sqlalchemy import func, select

DAG, RUN, TASK = "orders_dag", "manual__2026-12-01", "load"


@pytest.fixture
def backend(instance: Any) -> AssetryStoreBackend:
    return AssetryStoreBackend(instance=instance)


@pytest.fixture
def sqlite_backend(tmp_path: Any) -> Any:
    """Task scopes do not reach assetry: one assetry backend is enough for them."""
    import assetry

    with assetry.Instance.from_url(f"sqlite:///{tmp_path}/state.db") as inst:
        yield AssetryStoreBackend(instance=inst)


@pytest.fixture
def asset_id() -> int:
    return add_asset("orders", "s3://data/orders")


@pytest.fixture
def dag_run() -> int:
    return add_dag_run(DAG, RUN)


def task_scope(map_index: int = -1) -> TaskScope:
    return TaskScope(dag_id=DAG, run_id=RUN, task_id=TASK, map_index=map_index)


def task_rows() -> int:
    with create_session() as session:
        return int(session.scalar(select(func.count()).select_from(TaskStateStoreModel)) or 0)


# -- task scopes: Airflow's metastore, unchanged ----------------------------------------------


class TestTaskScopes:
    def test_round_trip_overwrite_and_missing_key(self, sqlite_backend: Any, dag_run: int) -> None:
        scope = task_scope()
        assert sqlite_backend.get(scope, "job_id") is None
        sqlite_backend.set(scope, "job_id", "app_1")
        sqlite_backend.set(scope, "job_id", "app_2")
        assert sqlite_backend.get(scope, "job_id") == "app_2"
        assert task_rows() == 1  # in Airflow's own table
        assert sqlite_backend.instance.assets() == []  # and nothing in assetry

    def test_delete_keeps_the_other_keys_and_a_missing_key_is_a_no_op(
        self, sqlite_backend: Any, dag_run: int
    ) -> None:
        scope = task_scope()
        sqlite_backend.set(scope, "job_id", "app_1")
        sqlite_backend.set(scope, "step", "3")
        sqlite_backend.delete(scope, "job_id")
        sqlite_backend.delete(scope, "never_set")
        assert sqlite_backend.get(scope, "job_id") is None
        assert sqlite_backend.get(scope, "step") == "3"

    def test_map_indices_are_separate_and_clear_takes_one_or_all(
        self, sqlite_backend: Any, dag_run: int
    ) -> None:
        first, second = task_scope(0), task_scope(1)
        for scope in (first, second):
            sqlite_backend.set(scope, "a", f"a{scope.map_index}")
            sqlite_backend.set(scope, "b", f"b{scope.map_index}")
        assert sqlite_backend.get(first, "a") == "a0"
        assert sqlite_backend.get(second, "a") == "a1"
        sqlite_backend.clear(first)
        assert sqlite_backend.get(first, "a") is None and sqlite_backend.get(first, "b") is None
        assert sqlite_backend.get(second, "b") == "b1"
        sqlite_backend.clear(first, all_map_indices=True)
        assert sqlite_backend.get(second, "a") is None
        assert task_rows() == 0

    def test_a_run_that_does_not_exist_is_refused(self, sqlite_backend: Any) -> None:
        with pytest.raises(ValueError, match="No DagRun found"):
            sqlite_backend.set(task_scope(), "job_id", "app_1")

    def test_cleanup_removes_expired_task_state_only(
        self, sqlite_backend: Any, dag_run: int
    ) -> None:
        from airflow._shared.timezones import timezone

        scope = task_scope()
        past = timezone.utcnow() - timedelta(hours=1)
        sqlite_backend.set(scope, "old", "x", expires_at=past)
        sqlite_backend.set(scope, "fresh", "y", expires_at=timezone.utcnow() + timedelta(days=1))
        sqlite_backend.set(scope, "forever", "z")
        sqlite_backend.cleanup()
        assert sqlite_backend.get(scope, "old") is None
        assert sqlite_backend.get(scope, "fresh") == "y"
        assert sqlite_backend.get(scope, "forever") == "z"

    def test_the_caller_session_is_used(self, sqlite_backend: Any, dag_run: int) -> None:
        with create_session() as session:
            sqlite_backend.set(task_scope(), "job_id", "app_1", session=session)
            assert sqlite_backend.get(task_scope(), "job_id", session=session) == "app_1"
            session.rollback()  # the caller's transaction decides
        assert sqlite_backend.get(task_scope(), "job_id") is None

    def test_async_twins(self, sqlite_backend: Any, dag_run: int) -> None:
        async def scenario() -> None:
            first, second = task_scope(0), task_scope(1)
            await sqlite_backend.aset(first, "job_id", "app_0")
            await sqlite_backend.aset(second, "job_id", "app_1")
            assert await sqlite_backend.aget(first, "job_id") == "app_0"
            await sqlite_backend.adelete(first, "job_id")
            assert await sqlite_backend.aget(first, "job_id") is None
            await sqlite_backend.aclear(first, all_map_indices=True)
            assert await sqlite_backend.aget(second, "job_id") is None
            async with create_session_async() as session:
                await sqlite_backend.aset(first, "k", "v", session=session)
                assert await sqlite_backend.aget(first, "k", session=session) == "v"

        run_async(scenario)


# -- asset scopes: in assetry, on every backend --------------------------------------------


class TestAssetScopes:
    def test_a_missing_key_and_an_unknown_asset_read_as_none(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        assert backend.get(AssetScope(asset_id=asset_id), "missing") is None
        assert backend.get(AssetScope(asset_id=asset_id + 1000), "missing") is None
        assert backend.instance.assets() == []  # reading registers nothing

    @pytest.mark.parametrize(
        "text",
        [
            "2026-04-24T00:00:00Z",  # not JSON: Airflow's tests store such text directly
            "42",
            '"2026-04-24"',
            json.dumps({"files": ["a.csv", "b.csv"], "rows": 10, "done": True}),
            json.dumps([1, 2.5, "x", None]),
            json.dumps({"z": 1, "a": {"y": [], "b": "é"}}),  # key order and escapes kept
            json.dumps(1e20),
            '{"compact":1}',  # JSON spelt otherwise than json.dumps spells it
            "null",
            "NaN",
            json.dumps({"__airflow_text__": "looks like an envelope"}),
            "",
        ],
    )
    def test_get_returns_exactly_the_text_set_was_given(
        self, backend: AssetryStoreBackend, asset_id: int, text: str
    ) -> None:
        scope = AssetScope(asset_id=asset_id)
        backend.set(scope, "value", text)
        assert backend.get(scope, "value") == text
        assert metastore_asset_rows() == 0

    def test_json_text_is_stored_as_the_value_assetry_code_sees(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        scope = AssetScope(asset_id=asset_id)
        backend.set(scope, "cursor", json.dumps({"page": 3, "ids": [1, 2]}))
        backend.set(scope, "watermark", json.dumps("2026-12-01"))
        backend.set(scope, "raw", "not json")
        store = backend.instance.asset_store("orders")
        assert store.get("cursor") == {"page": 3, "ids": [1, 2]}
        assert store.get("watermark") == "2026-12-01"
        assert store.get("raw") == {"__airflow_text__": "not json"}
        record = backend.instance.get_asset("orders")
        assert record.uri == "s3://data/orders"
        assert record.extra == {"airflow": {"asset_id": asset_id}}

    def test_overwrite_delete_and_clear(self, backend: AssetryStoreBackend, asset_id: int) -> None:
        scope = AssetScope(asset_id=asset_id)
        backend.set(scope, "watermark", "2026-04-01")
        backend.set(scope, "watermark", "2026-04-24")
        backend.set(scope, "file_count", "42")
        assert backend.get(scope, "watermark") == "2026-04-24"
        backend.delete(scope, "watermark")
        backend.delete(scope, "never_set")
        assert backend.get(scope, "watermark") is None
        assert backend.get(scope, "file_count") == "42"
        backend.set(scope, "last_error", "none")
        backend.clear(scope)
        assert backend.get(scope, "file_count") is None
        assert backend.get(scope, "last_error") is None
        assert metastore_asset_rows() == 0

    def test_delete_and_clear_of_an_asset_never_written_register_nothing(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        backend.delete(AssetScope(asset_id=asset_id), "k")
        backend.clear(AssetScope(asset_id=asset_id))
        assert backend.instance.assets() == []

    def test_assets_are_isolated(self, backend: AssetryStoreBackend, asset_id: int) -> None:
        other = add_asset("customers", "s3://data/customers")
        backend.set(AssetScope(asset_id=asset_id), "watermark", "orders-value")
        assert backend.get(AssetScope(asset_id=other), "watermark") is None
        backend.clear(AssetScope(asset_id=other))
        assert backend.get(AssetScope(asset_id=asset_id), "watermark") == "orders-value"

    def test_scopes_by_name_or_uri_reach_the_same_entries(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        backend.set(AssetScope(name="orders"), "k", "by-name")
        assert backend.get(AssetScope(asset_id=asset_id), "k") == "by-name"
        assert backend.get(AssetScope(uri="s3://data/orders"), "k") == "by-name"

    def test_the_writer_is_checked_as_airflow_checks_it(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        scope = AssetScope(asset_id=asset_id)
        backend.set_asset_state_store(
            scope,
            "watermark",
            '"v1"',
            kind=AssetStateStoreWriterKind.TASK,
            dag_id=DAG,
            run_id=RUN,
            task_id=TASK,
            map_index=-1,
        )
        backend.set_asset_state_store(scope, "seen", '"v2"', kind=AssetStateStoreWriterKind.WATCHER)
        assert backend.get(scope, "watermark") == '"v1"'
        assert backend.get(scope, "seen") == '"v2"'
        with pytest.raises(ValueError, match="kind='task' requires"):
            backend.set_asset_state_store(
                scope, "w", '"v"', kind=AssetStateStoreWriterKind.TASK, dag_id=DAG, run_id=RUN
            )
        for kind in (AssetStateStoreWriterKind.WATCHER, AssetStateStoreWriterKind.API):
            with pytest.raises(ValueError, match="must not carry task fields"):
                backend.set_asset_state_store(scope, "w", '"v"', kind=kind, dag_id=DAG)
        assert metastore_asset_rows() == 0

    def test_cleanup_keeps_the_state_of_active_assets(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        backend.set(AssetScope(asset_id=asset_id), "watermark", "2026-01-01")
        backend.cleanup()
        assert backend.get(AssetScope(asset_id=asset_id), "watermark") == "2026-01-01"

    def test_cleanup_deactivates_and_sweeps_assets_airflow_dropped(
        self, backend: AssetryStoreBackend, asset_id: int
    ) -> None:
        import assetry

        gone = add_asset("gone", "s3://data/gone")
        backend.set(AssetScope(asset_id=asset_id), "watermark", "kept")
        backend.set(AssetScope(asset_id=gone), "watermark", "dropped")
        assetry_only = assetry.Asset("assetry_only", uri="s3://data/assetry_only")
        backend.instance.asset_store(assetry_only).set("k", "mine")
        deactivate_in_airflow("gone")

        backend.cleanup()

        assert not backend.instance.get_asset("gone").active
        assert backend.instance.asset_store("gone").items() == {}  # swept
        assert backend.instance.get_asset("orders").active
        assert backend.instance.asset_store("assetry_only").get("k") == "mine"  # not Airflow's
        # Airflow declares it again: the next write reactivates it, empty
        add_asset("gone", "s3://data/gone2")
        backend.set(AssetScope(name="gone"), "watermark", '"back"')
        assert backend.instance.asset_store("gone").get("watermark") == "back"

    def test_async_twins(self, backend: AssetryStoreBackend, asset_id: int) -> None:
        scope = AssetScope(asset_id=asset_id)

        async def scenario() -> None:
            await backend.aset(scope, "watermark", "2026-04-27T00:00:00Z")
            await backend.aset(scope, "file_count", "42")
            assert await backend.aget(scope, "watermark") == "2026-04-27T00:00:00Z"
            await backend.adelete(scope, "watermark")
            assert await backend.aget(scope, "watermark") is None
            await backend.aset_asset_state_store(
                scope, "seen", '"x"', kind=AssetStateStoreWriterKind.WATCHER
            )
            async with create_session_async() as session:
                assert await backend.aget(scope, "seen", session=session) == '"x"'
            await backend.aclear(scope)
            assert await backend.aget(scope, "file_count") is None

        run_async(scenario)
        assert metastore_asset_rows() == 0


def test_the_worker_backend_stores_values_as_the_server_backend_does(instance: Any) -> None:
    import math

    from airflow.sdk._shared.state import AssetScope as SDKAssetScope
    from assetry.airflow import AssetryWorkerStoreBackend

    worker = AssetryWorkerStoreBackend(instance=instance)
    scope = SDKAssetScope(name="orders", uri="s3://data/orders")
    ref = worker.serialize_asset_state_store_to_ref(value={"page": 3}, key="cursor", scope=scope)
    assert ref == "assetry:asset-store?name=orders&key=cursor"
    assert (
        worker.serialize_asset_state_store_to_ref(value={"page": 3}, key="cursor", scope=scope)
        == ref
    )
    assert instance.asset_store("orders").get("cursor") == {"page": 3}
    assert worker.deserialize_asset_state_store_from_ref(ref) == {"page": 3}
    nan_ref = worker.serialize_asset_state_store_to_ref(value=math.nan, key="nan", scope=scope)
    assert math.isnan(worker.deserialize_asset_state_store_from_ref(nan_ref))
    worker.delete(scope, "cursor")
    assert worker.deserialize_asset_state_store_from_ref(ref) is None
    worker.clear(TaskScope(dag_id=DAG, run_id=RUN, task_id=TASK))  # task values are not here
    assert instance.asset_store("orders").keys() == ["nan"]
    worker.clear(SDKAssetScope(uri="s3://data/orders"))
    assert instance.asset_store("orders").keys() == []
