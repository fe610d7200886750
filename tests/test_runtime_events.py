"""Outlet events (only on success), aliases, write figures, and context["inlet_events"]."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from assetry import (
    Asset,
    AssetAlias,
    AssetHandle,
    AssetNotFoundError,
    ConflictError,
    Instance,
    IOManager,
    Metadata,
    StoreValueError,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.runtime import InletEvents, UndeclaredAssetError

ORDERS = Asset("orders", uri="dict://warehouse/orders")
CUSTOMERS = Asset("customers", uri="dict://warehouse/customers")


class DictHandle(AssetHandle):
    """A handle on an in-process table, so the figures do not depend on a real store."""

    def __init__(self, tables: dict[tuple[str, str | None], pa.Table], asset, partition):
        super().__init__(asset, partition)
        self._tables = tables
        self._key = (asset.uri, partition)

    def _write(self, data: Any, mode: str) -> tuple[int, int | None]:
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        old = self._tables.get(self._key)
        self._tables[self._key] = (
            pa.concat_tables([old, table]) if mode == "insert" and old is not None else table
        )
        return table.num_rows, 8 * table.num_rows  # a made-up byte count: 8 per row

    def to_pyarrow(self) -> pa.Table:
        return self._tables[self._key]

    def exists(self) -> bool:
        return self._key in self._tables


class DictIOManager(IOManager):
    name = "dict"
    schemes = ("dict",)

    def __init__(self, settings=None, **options: Any) -> None:
        super().__init__(settings, **options)
        self.tables: dict[tuple[str, str | None], pa.Table] = {}

    def open(self, asset, partition=None, *, conn_id=None) -> AssetHandle:
        return DictHandle(self.tables, asset, partition)


@pytest.fixture(params=["memory", "sql"])
def inst(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    io = {"dict": DictIOManager()}
    if request.param == "memory":
        instance = Instance(backend=MemoryBackend(), io_managers=io)
    else:
        instance = Instance(backend="sql", url=f"sqlite:///{tmp_path}/s.db", io_managers=io)
        instance.upgrade()
    with use_instance(instance):
        yield instance
    instance.close()


def _rows(n: int) -> pa.Table:
    return pa.table({"id": list(range(n))})


# -- outlet events ---------------------------------------------------------------------------


def test_one_event_per_concrete_outlet_and_none_for_inlets(inst: Instance) -> None:
    @task(inlets=[CUSTOMERS], outlets=[ORDERS, Asset("audit", uri="dict://audit"), ORDERS])
    def load():
        return None

    run = load.run()
    assert sorted(e.asset_name for e in run.events) == ["audit", "orders"]
    assert len(inst.events(ORDERS)) == 1
    assert inst.events(CUSTOMERS) == []


def test_no_events_when_the_run_fails(inst: Instance) -> None:
    @task(outlets=[ORDERS, AssetAlias("daily")])
    def load(outlet_events, io_manager):
        outlet_events[ORDERS].extra["rows"] = 3
        outlet_events[AssetAlias("daily")].add(CUSTOMERS)
        with io_manager.connect(ORDERS) as t:
            t.insert(_rows(3))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        load()
    assert inst.events(ORDERS) == []
    assert inst.get_asset(CUSTOMERS) is None
    assert inst.events(AssetAlias("daily")) == []


def test_outlet_event_extra_metadata_partition_and_source(inst: Instance) -> None:
    @task(outlets=[ORDERS], partition_key="2024-06-01")
    def load(outlet_events):
        outlet_events[ORDERS].extra["source"] = "api"
        outlet_events[ORDERS].extra = {**outlet_events[ORDERS].extra, "late": 1}
        yield Metadata(ORDERS, {"checked": True})

    run = load.run(run_id="r1")
    (event,) = run.events
    assert event.extra == {"source": "api", "late": 1, "checked": True}
    assert event.partition_key == "2024-06-01"
    assert (event.source_task_id, event.source_run_id, event.source_dag_run) == (
        "load",
        "r1",
        "r1",
    )
    assert inst.events(ORDERS) == [event]


def test_outlet_events_for_an_undeclared_asset_raise_key_error(inst: Instance) -> None:
    @task(inlets=[CUSTOMERS], outlets=[ORDERS])
    def load(outlet_events):
        outlet_events[CUSTOMERS].extra["x"] = 1

    with pytest.raises(UndeclaredAssetError, match="not among the outlets"):
        load()
    assert inst.events(ORDERS) == []


def test_extra_that_is_not_json_fails_the_run_and_names_the_asset(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def load(outlet_events):
        outlet_events[ORDERS].extra["ratio"] = math.inf

    with pytest.raises(StoreValueError, match=r"orders.*Infinity"):
        load()
    assert inst.events(ORDERS) == []


def test_write_figures_of_the_io_manager_are_in_the_event(inst: Instance) -> None:
    @task(inlets=[CUSTOMERS], outlets=[ORDERS])
    def load(io_manager, outlet_events):
        outlet_events[ORDERS].extra["note"] = "ok"
        with io_manager.connect(ORDERS) as t:
            t.insert(_rows(3))
            t.insert(_rows(2))
        with io_manager.connect(CUSTOMERS) as t:  # not an outlet: no event, no figures
            t.overwrite(_rows(7))

    (event,) = load.run().events
    figures = event.extra["assetry"]
    assert event.extra["note"] == "ok"
    assert (figures["rows"], figures["writes"], figures["mode"]) == (5, 2, "insert")
    assert figures["bytes"] == 8 * 5
    assert figures["seconds"] >= 0
    assert inst.events(CUSTOMERS) == []


def test_figures_sum_mixed_modes_and_take_the_partition_written(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def load(io_manager):
        with io_manager.connect(ORDERS, partition="2024-06-01") as t:
            t.overwrite(_rows(4))
            t.insert(_rows(1))

    (event,) = load.run().events
    assert event.extra["assetry"]["mode"] == "mixed"
    assert event.extra["assetry"]["rows"] == 5
    assert event.partition_key == "2024-06-01"


def test_writes_of_a_later_run_are_not_counted_in_an_earlier_one(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def load(io_manager, n):
        with io_manager.connect(ORDERS) as t:
            t.insert(_rows(n))

    first = load.run(n=2).events[0]
    with inst.io_manager.connect(ORDERS) as t:  # outside any run: not collected
        t.insert(_rows(10))
    second = load.run(n=3).events[0]
    assert (first.extra["assetry"]["rows"], second.extra["assetry"]["rows"]) == (2, 3)


def test_the_figures_key_is_reserved(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def load(io_manager, outlet_events):
        outlet_events[ORDERS].extra["assetry"] = "mine"
        with io_manager.connect(ORDERS) as t:
            t.insert(_rows(1))

    with pytest.raises(StoreValueError, match="reserves"):
        load()
    assert inst.events(ORDERS) == []


def test_an_outlet_reference_is_resolved(inst: Instance) -> None:
    inst.register(ORDERS)

    @task(outlets=[Asset.ref(uri="dict://warehouse/orders")])
    def load(outlet_events):
        outlet_events[ORDERS].extra["via"] = "ref"

    assert [e.asset_name for e in load.run().events] == ["orders"]


def test_an_unknown_reference_fails_before_the_function_runs(inst: Instance) -> None:
    ran = []

    @task(outlets=[Asset.ref(name="nowhere")])
    def load():
        ran.append(1)

    with pytest.raises(AssetNotFoundError, match="nowhere"):
        load()
    assert ran == []


# -- aliases ---------------------------------------------------------------------------------


def test_alias_add_creates_the_target_and_records_an_event_through_the_alias(
    inst: Instance,
) -> None:
    alias = AssetAlias("daily_files")
    monday = Asset("monday", uri="dict://files/1.csv")

    @task(outlets=[alias])
    def emit(outlet_events):
        outlet_events[alias].add(monday, extra={"day": 1})

    (event,) = emit.run().events
    assert inst.get_asset(monday).uri == "dict://files/1.csv"
    assert (event.asset_name, event.aliases, event.extra) == (
        "monday",
        ("daily_files",),
        {"day": 1},
    )
    assert inst.events(alias) == [event]
    assert inst.backend.alias_targets("daily_files") == ["monday"]


def test_yielded_metadata_with_an_alias_emits_through_it(inst: Instance) -> None:
    alias = AssetAlias("daily_files")
    day = Asset("day", uri="dict://files/day.csv")

    @task(outlets=[alias])
    def emit():
        yield Metadata(day, {"rows": 2}, alias=alias)

    (event,) = emit.run().events
    assert (event.asset_name, event.aliases, event.extra) == ("day", ("daily_files",), {"rows": 2})


def test_alias_emissions_are_grouped_by_asset_and_extra(inst: Instance) -> None:
    a, b = AssetAlias("a"), AssetAlias("b")
    day = Asset("day", uri="dict://files/day.csv")

    @task(outlets=[a, b])
    def emit(outlet_events):
        outlet_events[a].add(day, extra={"k": 1})
        outlet_events[b].add(day, extra={"k": 1})
        outlet_events[b].add(day, extra={"k": 2})

    events = emit.run().events
    assert sorted((e.aliases, e.extra["k"]) for e in events) == [(("a", "b"), 1), (("b",), 2)]


def test_alias_emission_to_a_concrete_outlet_joins_its_event(inst: Instance) -> None:
    alias = AssetAlias("all_tables")

    @task(outlets=[ORDERS, alias])
    def emit(outlet_events, io_manager):
        outlet_events[ORDERS].extra["direct"] = True
        outlet_events[alias].add(ORDERS, extra={"via_alias": True})
        with io_manager.connect(ORDERS) as t:
            t.insert(_rows(2))

    (event,) = emit.run().events
    assert event.aliases == ("all_tables",)
    assert event.extra["direct"] and event.extra["via_alias"]
    assert event.extra["assetry"]["rows"] == 2


def test_alias_target_figures_are_attached_to_its_event(inst: Instance) -> None:
    alias = AssetAlias("tables")

    @task(outlets=[alias])
    def emit(outlet_events, io_manager):
        with io_manager.connect(CUSTOMERS) as t:
            t.insert(_rows(4))
        outlet_events[alias].add(CUSTOMERS)

    (event,) = emit.run().events
    assert event.extra["assetry"]["rows"] == 4


def test_emitting_through_an_undeclared_alias_fails(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def emit(outlet_events):
        outlet_events[AssetAlias("other")].add(CUSTOMERS)

    with pytest.raises(KeyError, match="add the alias to the task's outlets"):
        emit()

    @task(outlets=[ORDERS])
    def emit_metadata():
        yield Metadata(CUSTOMERS, alias=AssetAlias("other"))

    with pytest.raises(KeyError, match="alias"):
        emit_metadata()
    assert inst.events(ORDERS) == []


def test_alias_target_conflicting_with_a_registered_asset_records_nothing(
    inst: Instance,
) -> None:
    alias = AssetAlias("days")
    inst.register(Asset("first_day", uri="dict://bucket/1.csv"))

    @task(outlets=[ORDERS, alias])
    def emit(outlet_events):
        outlet_events[alias].add(Asset("first_day", uri="dict://bucket/2.csv"))

    with pytest.raises(ConflictError, match="first_day"):
        emit()
    assert inst.events(ORDERS) == []


def test_alias_add_takes_the_runs_partition_unless_given(inst: Instance) -> None:
    alias = AssetAlias("days")

    @task(outlets=[alias], partition_key="2024-06-01")
    def emit(outlet_events):
        outlet_events[alias].add(ORDERS)
        outlet_events[alias].add(CUSTOMERS, partition_key="eu")

    events = {e.asset_name: e.partition_key for e in emit.run().events}
    assert events == {"orders": "2024-06-01", "customers": "eu"}


# -- inlet events ----------------------------------------------------------------------------


def _produce(inst: Instance, asset: Asset, n: int, partition_key: str | None = None) -> list:
    return inst.record_events(asset, [{"n": i} for i in range(n)], partition_key=partition_key)


def test_inlet_events_are_ascending_and_indexable(inst: Instance) -> None:
    recorded = _produce(inst, ORDERS, 5)

    @task(inlets=[ORDERS])
    def read(inlet_events):
        events = inlet_events[ORDERS]
        return list(events), len(events), events[0], events[-1], events[1:3], events[-2]

    listed, count, first, last, middle, second_last = read()
    assert [e.id for e in listed] == [e.id for e in recorded] == sorted(e.id for e in recorded)
    assert count == 5
    assert (first, last, second_last) == (recorded[0], recorded[-1], recorded[-2])
    assert middle == recorded[1:3]


def test_inlet_events_filters(inst: Instance) -> None:
    recorded = _produce(inst, ORDERS, 3) + _produce(inst, ORDERS, 2, "eu")

    @task(inlets=[ORDERS])
    def read(inlet_events):
        events = inlet_events[ORDERS]
        return {
            "after": [e.id for e in events.after(recorded[1].id)],
            "before": [e.id for e in events.before(recorded[2].id)],
            "limit": [e.id for e in events.limit(2)],
            "limit_last": events.limit(2)[-1].id,
            "partition": [e.id for e in events.partition_key("eu")],
            "chained": [e.id for e in events.after(recorded[0].id).partition_key("eu").limit(1)],
            "since": len(events.after(recorded[3].timestamp)),
            "until": len(events.before(recorded[0].timestamp)),
        }

    ids = [e.id for e in recorded]
    got = read()
    assert got["after"] == ids[2:]
    assert got["before"] == ids[:2]
    assert got["limit"] == ids[:2]
    assert got["limit_last"] == ids[1]
    assert got["partition"] == ids[3:]
    assert got["chained"] == [ids[3]]
    assert got["since"] >= 2
    assert got["until"] == 0


def test_inlet_events_are_fetched_when_read_not_when_the_run_starts(inst: Instance) -> None:
    @task(inlets=[ORDERS])
    def read(inlet_events, instance):
        events = inlet_events[ORDERS]
        empty = bool(events)
        instance.record_event(ORDERS, {"late": True})
        return empty, bool(events), events[-1].extra

    assert read() == (False, True, {"late": True})


def test_inlet_events_index_out_of_range(inst: Instance) -> None:
    _produce(inst, ORDERS, 2)

    @task(inlets=[ORDERS])
    def read(inlet_events):
        events = inlet_events[ORDERS]
        for index in (2, -3):
            with pytest.raises(IndexError):
                events[index]
        with pytest.raises(IndexError):
            events.limit(1)[1]
        return True

    assert read()


def test_inlet_events_of_an_alias_are_those_emitted_through_it(inst: Instance) -> None:
    alias = AssetAlias("days")
    inst.record_event(ORDERS, {"direct": True})
    through = inst.record_event(CUSTOMERS, {"via": 1}, aliases=[alias])
    inst.record_event(ORDERS, {"via": 2}, aliases=[alias])

    @task(inlets=[alias])
    def read(inlet_events):
        events = inlet_events[alias]
        with pytest.raises(TypeError, match="datetime"):
            events.after(1)
        return [e.extra["via"] for e in events], events[0], len(events.limit(1))

    vias, first, limited = read()
    assert vias == [1, 2]
    assert first == through
    assert limited == 1


def test_inlet_events_for_an_undeclared_asset_raise_key_error(inst: Instance) -> None:
    @task(inlets=[ORDERS], outlets=[CUSTOMERS])
    def read(inlet_events):
        return inlet_events[CUSTOMERS]

    with pytest.raises(KeyError, match="not among the inlets"):
        read()


def test_inlet_events_mapping_lists_the_inlets(inst: Instance) -> None:
    alias = AssetAlias("days")

    @task(inlets=[ORDERS, alias])
    def read(inlet_events):
        return list(inlet_events), isinstance(inlet_events[ORDERS], InletEvents)

    assert read() == ([ORDERS, alias], True)


def test_inlet_event_bounds_must_be_aware(inst: Instance) -> None:
    @task(inlets=[ORDERS])
    def read(inlet_events):
        inlet_events[ORDERS].after(dt.datetime(2024, 1, 1))

    with pytest.raises(ValueError, match="timezone-aware"):
        read()
