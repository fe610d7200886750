"""context["asset_store"]: the seed's semantics, the shorthand, errors, persistence, atomic runs."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from assetry import (
    Asset,
    AssetAlias,
    AssetInactiveError,
    ConflictError,
    Instance,
    StoreValueError,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.runtime import UndeclaredAssetError

ORDERS = Asset("orders", uri="s3://data/orders/")
CUSTOMERS = Asset("customers", uri="s3://data/customers/")


def _sql_instance(path: Path) -> Instance:
    instance = Instance(backend="sql", url=f"sqlite:///{path}")
    instance.upgrade()
    return instance


@pytest.fixture(params=["memory", "sql"])
def inst(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    if request.param == "memory":
        instance = Instance(backend=MemoryBackend())
    else:
        instance = _sql_instance(tmp_path / "state.db")
    with use_instance(instance):
        yield instance
    instance.close()


# -- which entries exist ---------------------------------------------------------------------


def test_entries_exist_for_concrete_inlets_and_outlets_only(inst: Instance) -> None:
    alias = AssetAlias("daily")
    inst.register(CUSTOMERS)

    @task(inlets=[ORDERS, Asset.ref(name="customers"), alias], outlets=[alias, ORDERS])
    def look(asset_store):
        return asset_store.assets, alias in asset_store, ORDERS in asset_store

    assets, has_alias, has_orders = look()
    assert [a.name for a in assets] == ["orders", "customers"]
    assert not has_alias and has_orders


def test_subscript_by_asset_reference_or_name(inst: Instance) -> None:
    inst.register(CUSTOMERS)

    @task(inlets=[Asset.ref(name="customers")], outlets=[ORDERS])
    def write(**context):
        stores = context["asset_store"]
        stores[ORDERS].set("watermark", "2024-06-01")
        stores[CUSTOMERS].set("count", 1)
        return (
            stores[Asset.ref(name="customers")].get("count"),
            stores[Asset.ref(uri="s3://data/orders")].get("watermark"),
            stores["orders"].get("watermark"),
        )

    assert write() == (1, "2024-06-01", "2024-06-01")
    assert inst.asset_store(ORDERS).get("watermark") == "2024-06-01"


def test_subscript_with_an_undeclared_asset_raises_key_error(inst: Instance) -> None:
    @task(inlets=[ORDERS])
    def read(asset_store):
        return asset_store[CUSTOMERS]

    with pytest.raises(KeyError, match="not among the asset stores of task 'read'") as info:
        read()
    assert isinstance(info.value, UndeclaredAssetError)


def test_subscript_with_an_alias_raises_key_error(inst: Instance) -> None:
    alias = AssetAlias("daily")

    @task(outlets=[alias])
    def read(asset_store):
        return asset_store[alias]

    with pytest.raises(KeyError, match="alias, not a concrete asset"):
        read()


def test_subscript_with_same_name_but_another_uri_is_not_the_declared_asset(
    inst: Instance,
) -> None:
    @task(inlets=[ORDERS])
    def read(asset_store):
        return asset_store[Asset("orders", uri="s3://elsewhere/orders")]

    with pytest.raises(KeyError):
        read()


# -- the single-asset shorthand --------------------------------------------------------------


def test_shorthand_reads_and_writes_the_only_concrete_asset(inst: Instance) -> None:
    @task(inlets=[ORDERS], outlets=[ORDERS])
    def process(**context):
        asset_store = context["asset_store"]
        before = asset_store.get("watermark")
        asset_store.set("watermark", "2024-06-01")
        return before

    assert process() is None
    assert process() == "2024-06-01"


def test_shorthand_counts_a_reference_and_its_asset_once(inst: Instance) -> None:
    inst.register(ORDERS)

    @task(inlets=[Asset.ref(name="orders"), AssetAlias("x")], outlets=[ORDERS])
    def process(asset_store):
        asset_store.set("k", 1)
        return asset_store.get("k")

    assert process() == 1


@pytest.mark.parametrize(
    ("method", "args"),
    [("get", ("k",)), ("set", ("k", 1)), ("delete", ("k",)), ("clear", ())],
)
@pytest.mark.parametrize("declared", ["none", "two", "alias_only"])
def test_shorthand_needs_exactly_one_concrete_asset(
    inst: Instance, method: str, args: tuple, declared: str
) -> None:
    kwargs = {
        "none": {},
        "two": {"inlets": [ORDERS], "outlets": [CUSTOMERS]},
        "alias_only": {"outlets": [AssetAlias("daily")]},
    }[declared]

    @task(**kwargs)
    def process(asset_store):
        return getattr(asset_store, method)(*args)

    with pytest.raises(ValueError, match=r"exactly one concrete inlet or outlet.*\[asset\]"):
        process()


def test_get_returns_the_default_when_the_key_is_missing(inst: Instance) -> None:
    @task(inlets=[ORDERS])
    def read(asset_store):
        return (
            asset_store.get("watermark"),
            asset_store.get("watermark", default="1970-01-01T00:00:00Z"),
            asset_store[ORDERS].get("watermark", "x"),
        )

    assert read() == (None, "1970-01-01T00:00:00Z", "x")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "None cannot be stored"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "Infinity"),
        ({1, 2}, "not JSON-compatible"),
        (object(), "not JSON-compatible"),
        ({"nested": [1, math.nan]}, "NaN"),
    ],
)
def test_set_rejects_values_that_are_not_json(inst: Instance, value: object, message: str) -> None:
    @task(outlets=[ORDERS])
    def write(asset_store):
        asset_store.set("k", value)

    with pytest.raises(StoreValueError, match=message):
        write()
    assert inst.asset_store(ORDERS).get("k") is None
    assert inst.events(ORDERS) == []


@pytest.mark.parametrize(
    "value",
    ["2024-06-01", 42, 1.5, True, False, [1, "a", None], {"a": {"b": [1, 2]}}, "", 0],
)
def test_set_accepts_json_values(inst: Instance, value: object) -> None:
    @task(outlets=[ORDERS])
    def write(asset_store):
        asset_store.set("k", value)
        return asset_store.get("k")

    assert write() == value


def test_delete_of_a_missing_key_is_a_no_op(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def drop(asset_store):
        first = asset_store.delete("missing")
        asset_store.set("k", 1)
        return first, asset_store.delete("k"), asset_store.get("k")

    assert drop() == (False, True, None)


def test_clear_removes_every_key_of_the_asset_only(inst: Instance) -> None:
    inst.asset_store(CUSTOMERS).set("keep", 1)

    @task(outlets=[ORDERS])
    def fill(asset_store):
        asset_store.set("a", 1)
        asset_store.set("b", 2)
        asset_store.partition("2024-06-01").set("c", 3)

    @task(outlets=[ORDERS])
    def wipe(asset_store):
        return asset_store.clear()

    fill()
    assert wipe() == 3
    assert inst.asset_store(ORDERS).keys() == []
    assert inst.asset_store(ORDERS).partitions() == []
    assert inst.asset_store(CUSTOMERS).get("keep") == 1


def test_values_persist_across_runs_and_are_not_cleared_on_success(inst: Instance) -> None:
    @task(inlets=[ORDERS], outlets=[ORDERS])
    def count(asset_store):
        return asset_store.update("runs", lambda n: n + 1, default=0)

    assert [count() for _ in range(3)] == [1, 2, 3]
    assert inst.asset_store(ORDERS).get("runs") == 3


def test_update_advance_and_partitions_through_the_context(inst: Instance) -> None:
    @task(outlets=[ORDERS], partition_key="2024-06-01")
    def load(asset_store, partition_key):
        moved = asset_store.advance("watermark", "2024-06-01T10:00:00Z")
        stale = asset_store.advance("watermark", "2024-05-01T00:00:00Z")
        asset_store.partition(partition_key).set("rows", 10)
        return moved, stale

    assert load() == (True, False)
    store = inst.asset_store(ORDERS)
    assert store.get("watermark") == "2024-06-01T10:00:00Z"
    assert store.partition("2024-06-01").get("rows") == 10
    assert store.get("rows") is None


def test_store_writes_of_a_failed_run_stay_without_atomic(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def load(asset_store):
        asset_store.set("watermark", "2024-06-01")
        raise RuntimeError("warehouse down")

    with pytest.raises(RuntimeError):
        load()
    assert inst.asset_store(ORDERS).get("watermark") == "2024-06-01"
    assert inst.events(ORDERS) == []


def test_an_inactive_asset_cannot_be_written_by_a_task(inst: Instance) -> None:
    inst.register(ORDERS)
    inst.asset_store(ORDERS).set("watermark", "old")
    inst.deactivate(ORDERS)

    @task(inlets=[ORDERS], outlets=[ORDERS])
    def load(asset_store):
        assert asset_store.get("watermark") == "old"  # reads still work
        asset_store.set("watermark", "new")

    with pytest.raises(AssetInactiveError, match="orders"):
        load()
    assert inst.events(ORDERS) == []


# -- atomic runs -----------------------------------------------------------------------------


def test_atomic_run_commits_its_store_writes_with_its_event(inst: Instance) -> None:
    @task(inlets=[ORDERS], outlets=[ORDERS], atomic=True)
    def load(asset_store, instance):
        asset_store.set("watermark", "2024-06-01")
        asset_store.update("runs", lambda n: n + 1, default=0)
        seen_inside = asset_store.get("watermark"), asset_store.get("runs")
        seen_outside = instance.asset_store(ORDERS).get("watermark")
        return seen_inside, seen_outside

    inside, outside = load()
    assert inside == ("2024-06-01", 1)  # reads see the run's own writes
    assert outside is None  # nothing is visible before the commit
    assert inst.asset_store(ORDERS).items() == {"watermark": "2024-06-01", "runs": 1}
    assert len(inst.events(ORDERS)) == 1


def test_atomic_failed_run_leaves_the_watermark_where_it_was(inst: Instance) -> None:
    inst.asset_store(ORDERS).set("watermark", "2024-05-01")

    @task(inlets=[ORDERS], outlets=[ORDERS], atomic=True)
    def load(asset_store):
        asset_store.set("watermark", "2024-06-01")
        asset_store.delete("other")
        asset_store.partition("p").set("x", 1)
        raise RuntimeError("upload failed")

    with pytest.raises(RuntimeError, match="upload failed"):
        load()
    assert inst.asset_store(ORDERS).get("watermark") == "2024-05-01"
    assert inst.asset_store(ORDERS).partitions() == []
    assert inst.events(ORDERS) == []


def test_atomic_run_whose_events_fail_to_encode_writes_nothing(inst: Instance) -> None:
    @task(outlets=[ORDERS], atomic=True)
    def load(asset_store, outlet_events):
        asset_store.set("watermark", "2024-06-01")
        outlet_events[ORDERS].extra["bad"] = math.nan

    with pytest.raises(StoreValueError, match="orders"):
        load()
    assert inst.asset_store(ORDERS).get("watermark") is None


def test_atomic_run_sees_its_deletes_clears_and_partitions(inst: Instance) -> None:
    store = inst.asset_store(ORDERS)
    store.set("a", 1)
    store.set("b", 2)
    store.partition("p1").set("c", 3)

    @task(outlets=[ORDERS], atomic=True)
    def rework(asset_store):
        steps = [asset_store.delete("a"), asset_store.delete("a"), asset_store[ORDERS].keys()]
        steps.append(asset_store.clear())
        steps.append((asset_store[ORDERS].keys(), asset_store[ORDERS].partitions()))
        asset_store.set("fresh", True)
        asset_store.partition("p2").set("d", 4)
        steps.append((asset_store[ORDERS].items(), asset_store[ORDERS].partitions()))
        return steps

    assert rework() == [True, False, ["b"], 2, ([], []), ({"fresh": True}, ["p2"])]
    assert store.items() == {"fresh": True}
    assert store.partitions() == ["p2"]
    assert store.partition("p2").get("d") == 4


def test_atomic_compare_and_set_checks_the_runs_view(inst: Instance) -> None:
    @task(outlets=[ORDERS], atomic=True)
    def cas(asset_store):
        v1 = asset_store.compare_and_set("k", "a", expected_version=None)
        v2 = asset_store.compare_and_set("k", "b", expected_version=v1)
        with pytest.raises(ConflictError):
            asset_store.compare_and_set("k", "c", expected_version=v1)
        return v1, v2

    assert cas() == (1, 2)
    assert inst.asset_store(ORDERS).get("k") == "b"


def test_atomic_run_fails_when_another_writer_changed_a_key_it_updated(inst: Instance) -> None:
    store = inst.asset_store(ORDERS)
    store.set("watermark", "2024-05-01")

    @task(outlets=[ORDERS], atomic=True)
    def load(asset_store, instance):
        asset_store.advance("watermark", "2024-06-01")
        asset_store.set("rows", 10)
        # another process moves the watermark further while this run is in progress
        instance.asset_store(ORDERS).set("watermark", "2024-07-01")

    with pytest.raises(ConflictError, match="'watermark' was changed by another writer"):
        load()
    assert store.get("watermark") == "2024-07-01"
    assert store.get("rows") is None
    assert inst.events(ORDERS) == []


def test_atomic_run_fails_when_a_key_it_updated_changes_between_check_and_commit(
    inst: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetry.runtime import StoreBuffer

    store = inst.asset_store(ORDERS)
    store.set("runs", 5)
    check_guards = StoreBuffer.check_guards

    def then_another_writer(self: StoreBuffer) -> None:
        check_guards(self)
        store.set("runs", 100)  # lands after the check, before the commit

    monkeypatch.setattr(StoreBuffer, "check_guards", then_another_writer)

    @task(outlets=[ORDERS], atomic=True)
    def count(asset_store):
        asset_store.update("runs", lambda n: n + 1)
        asset_store.set("last", "this run")

    with pytest.raises(ConflictError, match="runs"):
        count()
    assert store.items() == {"runs": 100}
    assert inst.events(ORDERS) == []


def test_atomic_run_with_only_store_writes_and_no_outlets_commits(inst: Instance) -> None:
    @task(inlets=[ORDERS], atomic=True)
    def note(asset_store):
        asset_store.set("checked", True)

    note()
    assert inst.asset_store(ORDERS).get("checked") is True
    assert inst.events(ORDERS) == []


# -- across processes ------------------------------------------------------------------------


def test_values_persist_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _sql_instance(db).close()
    script = textwrap.dedent(
        f"""
        from assetry import Asset, Instance, task, use_instance

        orders = Asset("orders", uri="s3://data/orders/")

        @task(inlets=[orders], outlets=[orders])
        def load_new_orders(**context):
            store = context["asset_store"]
            store.set("watermark", store.get("watermark", default="0") + "1")

        with Instance(backend="sql", url={f"sqlite:///{db}"!r}) as inst, use_instance(inst):
            load_new_orders()
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with _sql_instance(db) as inst:
        assert inst.asset_store(ORDERS).get("watermark") == "011"
        assert len(inst.events(ORDERS)) == 2
