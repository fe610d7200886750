"""Airflow task-SDK behaviour where assetry uses Airflow's names: async store twins, the
``asset_state_store`` key, alias inlets in the store, partitioned outlet events, and the
inlet-event accessors (positional, ``for_asset``, ISO bounds, ``ascending``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

import pytest
from assetry import Asset, AssetAlias, AssetNotFoundError, task, use_instance
from assetry.testing.pytest_plugin import make_test_instance

ORDERS = Asset("orders", uri="s3://data/orders")
CUSTOMERS = Asset("customers", uri="s3://data/customers")
BUCKET = AssetAlias("bucket")


@pytest.fixture
def inst():
    with make_test_instance() as instance, use_instance(instance):
        yield instance


# -- async store --------------------------------------------------------------------------


def test_async_twins_read_and_write_the_same_entries(inst) -> None:
    store = inst.asset_store(ORDERS)

    async def main() -> tuple[Any, ...]:
        version = await store.aset("watermark", "2024-06-01")
        got = await store.aget("watermark")
        missing = await store.aget("nope", default=7)
        entry = await store.aget_entry("watermark")
        await store.aset("other", 1)
        existed = await store.adelete("watermark")
        gone = await store.adelete("watermark")
        cleared = await store.aclear()
        return version, got, missing, entry.version, existed, gone, cleared

    version, got, missing, entry_version, existed, gone, cleared = asyncio.run(main())
    assert (got, missing, existed, gone, cleared) == ("2024-06-01", 7, True, False, 1)
    assert entry_version == version
    assert store.keys() == []


def test_async_twins_do_not_block_the_event_loop(inst, monkeypatch) -> None:
    store = inst.asset_store(ORDERS)
    loop_thread: list[int] = []
    seen: list[int] = []
    real_get = type(inst.backend).store_value  # what AssetStore.get reads through

    def spy(self, *args, **kwargs):
        seen.append(threading.get_ident())
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(type(inst.backend), "store_value", spy)

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        await store.aget("k")

    asyncio.run(main())
    assert seen and loop_thread and seen[0] != loop_thread[0]


def test_async_update_and_advance(inst) -> None:
    store = inst.asset_store(ORDERS)

    async def main() -> tuple[Any, bool, bool]:
        total = await store.aupdate("count", lambda n: n + 2, 0)
        moved = await store.aadvance("wm", 5)
        back = await store.aadvance("wm", 3)
        return total, moved, back

    assert asyncio.run(main()) == (2, True, False)
    assert store.get("wm") == 5


def test_async_task_uses_the_asset_state_store_key(inst) -> None:
    @task(outlets=[ORDERS])
    async def load(asset_state_store, asset_store):
        assert asset_state_store is asset_store
        await asset_state_store.aset("watermark", "w1")
        return await asset_state_store[ORDERS].aget("watermark")

    assert load() == "w1"
    assert inst.asset_store(ORDERS).get("watermark") == "w1"


# -- aliases -------------------------------------------------------------------------------


def test_alias_inlet_offers_the_stores_of_its_assets(inst) -> None:
    @task(outlets=[BUCKET])
    def emit(outlet_events):
        outlet_events[BUCKET].add(ORDERS)

    emit()
    inst.asset_store(ORDERS).set("watermark", "w")

    @task(inlets=[BUCKET])
    def read(asset_store):
        return asset_store[ORDERS].get("watermark"), asset_store.get("watermark")

    assert read() == ("w", "w")


def test_alias_add_takes_a_reference(inst) -> None:
    inst.register(CUSTOMERS)

    @task(outlets=[BUCKET])
    def emit(outlet_events):
        outlet_events[BUCKET].add(Asset.ref(name="customers"), {"n": 1})

    (event,) = emit.run().events
    assert (event.asset_name, event.extra, event.aliases) == ("customers", {"n": 1}, ("bucket",))

    @task(outlets=[BUCKET])
    def unknown(outlet_events):
        outlet_events[BUCKET].add(Asset.ref(name="nowhere"))

    with pytest.raises(AssetNotFoundError):
        unknown()


# -- partitions on outlet events -----------------------------------------------------------


def test_add_partitions_records_one_event_per_key(inst) -> None:
    @task(outlets=[ORDERS])
    def write(outlet_events):
        outlet_events[ORDERS].add_partitions("2024-06-01")
        outlet_events[ORDERS].add_partitions(["2024-06-02", "2024-06-01"])
        outlet_events[ORDERS].extra["rows"] = 3
        assert outlet_events[ORDERS].partition_keys == {"2024-06-01", "2024-06-02"}

    run = write.run()
    assert sorted(e.partition_key for e in run.events) == ["2024-06-01", "2024-06-02"]
    assert all(e.extra == {"rows": 3} for e in run.events)


def test_add_partitions_refuses_bad_keys_and_aliases(inst) -> None:
    @task(outlets=[ORDERS, BUCKET])
    def write(outlet_events):
        with pytest.raises(ValueError):
            outlet_events[ORDERS].add_partitions("")
        with pytest.raises(TypeError):
            outlet_events[BUCKET].add_partitions("2024-06-01")

    assert write.run().events[0].partition_key is None


# -- inlet events --------------------------------------------------------------------------


def _three_events(inst) -> list:
    return [inst.record_event(ORDERS, {"i": i}) for i in range(3)]


def test_inlet_events_by_position_and_for_asset(inst) -> None:
    events = _three_events(inst)
    inst.register(CUSTOMERS)

    @task(inlets=[ORDERS, CUSTOMERS])
    def read(inlet_events, outlet_events):
        first = inlet_events[0]
        return (
            [e.id for e in first],
            len(inlet_events[1]),
            inlet_events.for_asset(name="orders")[-1].id,
            inlet_events.for_asset(uri="s3://data/orders")[0].id,
            inlet_events.for_asset(name="orders", uri="s3://data/orders")[1].id,
        )

    ids = [e.id for e in events]
    assert read() == (ids, 0, ids[-1], ids[0], ids[1])

    @task(inlets=[ORDERS])
    def out_of_range(inlet_events):
        with pytest.raises(IndexError):
            inlet_events[1]
        with pytest.raises(ValueError):
            inlet_events.for_asset()

    out_of_range()


def test_inlet_events_iso_string_bounds_and_ascending(inst) -> None:
    events = _three_events(inst)
    middle = events[1].timestamp

    @task(inlets=[ORDERS])
    def read(inlet_events):
        ev = inlet_events[ORDERS]
        naive = middle.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
        return (
            [e.id for e in ev.after(middle.isoformat())],
            [e.id for e in ev.before(middle.isoformat())],
            [e.id for e in ev.after(naive)],  # no offset: UTC
            [e.id for e in ev.ascending(False)],
            [e.id for e in ev.ascending(False).limit(2)],
            ev.ascending(False)[0].id,
            ev.ascending(False)[-1].id,
            [e.id for e in ev.ascending(False).ascending()],
        )

    a, b, c = (e.id for e in events)
    assert read() == ([b, c], [a], [b, c], [c, b, a], [c, b], c, a, [a, b, c])

    @task(inlets=[ORDERS])
    def bad(inlet_events):
        with pytest.raises(ValueError):
            inlet_events[ORDERS].after("yesterday")

    bad()


def test_triggering_and_outlet_events_for_asset(inst) -> None:
    @task(outlets=[ORDERS, BUCKET])
    def write(outlet_events):
        outlet_events.for_asset(name="orders").extra["k"] = 1
        outlet_events.for_asset_alias(name="bucket").add(CUSTOMERS)

    events = write.run().events
    assert {e.asset_name: e.extra for e in events} == {"orders": {"k": 1}, "customers": {}}


# -- DAG as Airflow takes it -----------------------------------------------------------------


def test_dag_takes_airflow_arguments_and_a_list_schedule(inst) -> None:
    from assetry import DAG

    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    with DAG(
        dag_id="both",
        start_date=start,
        schedule=[ORDERS, CUSTOMERS],
        catchup=False,
        tags=["x"],
    ) as dag:

        @task
        def consume(triggering_asset_events):
            return sorted(a.name for a in triggering_asset_events)

    assert dag.airflow_args == {"start_date": start, "catchup": False, "tags": ["x"]}
    assert dag.schedule == ORDERS & CUSTOMERS
    consume.declare()  # the consumer exists before the events
    inst.record_event(ORDERS)
    assert not consume.is_ready()
    inst.record_event(CUSTOMERS)
    assert consume.is_ready()
    assert DAG("one", schedule=[ORDERS]).schedule == ORDERS
    assert DAG("every", schedule=dt.timedelta(hours=1)).schedule == dt.timedelta(hours=1)
    with pytest.raises(TypeError, match="shedule"):
        DAG("typo", shedule="@daily")
    with pytest.raises(ValueError):
        DAG("empty", schedule=[])


# -- consumers start where Airflow's do ------------------------------------------------------


def test_a_consumer_first_seen_after_events_starts_at_the_newest(inst) -> None:
    from assetry import run_ready

    inst.record_event(ORDERS, {"old": 1})

    @task(schedule=ORDERS)
    def latest(triggering_asset_events):
        return [e.extra for e in triggering_asset_events[ORDERS]]

    @task(schedule=ORDERS, start="earliest")
    def backlog(triggering_asset_events):
        return [e.extra for e in triggering_asset_events[ORDERS]]

    assert run_ready(latest) == []
    assert [r.value for r in run_ready(backlog)] == [[{"old": 1}]]
    inst.record_event(ORDERS, {"new": 1})
    assert [r.value for r in run_ready(latest, backlog)] == [[{"new": 1}], [{"new": 1}]]
    with pytest.raises(ValueError):
        task(schedule=ORDERS, start="oldest", task_id="bad")(lambda: None)


def test_retention_keeps_events_for_a_declared_consumer_that_has_not_run(inst) -> None:
    from assetry.retention import RetentionPolicy, prune_events

    @task(schedule=ORDERS, start="earliest")
    def waiting():
        return None

    inst.record_event(ORDERS)
    waiting.declare()
    for _ in range(2):
        inst.record_event(ORDERS)
    (result,) = prune_events(inst.backend, RetentionPolicy(keep_last=1), assets=["orders"])
    assert len(inst.events(ORDERS)) == 3  # nothing pruned: the consumer has not run
    assert result.kept_for_consumers == 2


def test_an_alias_consumer_declared_before_its_first_target_gets_every_event(inst) -> None:
    from assetry import run_ready

    @task(schedule=BUCKET)
    def through(triggering_asset_events):
        return [e.asset_name for e in triggering_asset_events[BUCKET]]

    assert through.declare() == {}  # nothing to hold a cursor yet: measured from definition

    @task(outlets=[BUCKET])
    def emit(outlet_events):
        outlet_events[BUCKET].add(ORDERS)

    emit()
    assert [r.value for r in run_ready(through)] == [["orders"]]


def test_instance_async_twins(inst) -> None:
    async def main() -> tuple[Any, ...]:
        await inst.aregister(ORDERS)
        resolved = await inst.aresolve(Asset.ref(name="orders"))
        event = await inst.arecord_event(ORDERS, {"k": 1})
        events = await inst.aevents(ORDERS)
        latest = await inst.alatest_event(ORDERS)
        return resolved, event, events, latest

    resolved, event, events, latest = asyncio.run(main())
    assert resolved == ORDERS
    assert [e.id for e in events] == [event.id] and latest.id == event.id
    assert latest.extra == {"k": 1}
