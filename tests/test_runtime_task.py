"""@task: running, context keys, parameter injection, async and generator tasks, DAG grouping."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest
from assetry import (
    DAG,
    Asset,
    AssetAlias,
    Instance,
    Metadata,
    get_current_context,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.runtime import CONTEXT_KEYS, NoTaskContextError, Task, UndeclaredAssetError

ORDERS = Asset("orders", uri="s3://data/orders/")


@pytest.fixture
def inst() -> Iterator[Instance]:
    instance = Instance(backend=MemoryBackend())
    with use_instance(instance):
        yield instance
    instance.close()


def test_calling_a_task_runs_it_and_returns_its_value(inst: Instance) -> None:
    calls = []

    @task
    def add(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert isinstance(add, Task)
    assert add(1) == 3
    assert add(1, b=5) == 6
    assert calls == [(1, 2), (1, 5)]
    assert add.__name__ == "add"


def test_run_returns_ids_logical_date_and_events(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def produce() -> str:
        return "done"

    when = dt.datetime(2024, 6, 3, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    run = produce.run(logical_date=when, run_id="nightly-1")
    assert run.value == "done"
    assert run.task_id == "produce"
    assert run.run_id == "nightly-1"
    assert run.logical_date == when and run.logical_date.tzinfo == dt.UTC
    assert [(e.asset_name, e.source_task_id, e.source_run_id) for e in run.events] == [
        ("orders", "produce", "nightly-1")
    ]


def test_context_has_every_documented_key(inst: Instance) -> None:
    @task(inlets=[ORDERS])
    def look(**context):
        return context

    context = look()
    assert set(CONTEXT_KEYS) <= set(context)
    assert context["instance"] is inst
    assert context["io_manager"] is inst.io_manager
    assert context["task_id"] == "look"
    assert context["run_id"].startswith("manual__")
    assert context["logical_date"].tzinfo == dt.UTC
    assert context["partition_key"] is None
    assert context["inlets"] == [ORDERS] and context["outlets"] == []
    assert dict(context["triggering_asset_events"]) == {}


def test_each_run_gets_a_new_run_id(inst: Instance) -> None:
    @task
    def ident(run_id):
        return run_id

    assert ident() != ident()


def test_parameters_named_like_context_keys_receive_them(inst: Instance) -> None:
    @task(inlets=[ORDERS], outlets=[ORDERS])
    def write_data(io_manager, asset_store, outlet_events, inlet_events, task_id, logical_date):
        asset_store.set("seen", True)
        outlet_events[ORDERS].extra["by"] = task_id
        return io_manager, list(inlet_events), logical_date

    io_manager, inlets, logical_date = write_data()
    assert io_manager is inst.io_manager
    assert inlets == [ORDERS]
    assert isinstance(logical_date, dt.datetime)
    assert inst.asset_store(ORDERS).get("seen") is True
    assert inst.events(ORDERS)[-1].extra == {"by": "write_data"}


def test_var_keyword_gets_the_context_keys_the_named_parameters_do_not_take(
    inst: Instance,
) -> None:
    @task
    def both(run_id, factor=1, **context):
        return run_id, factor, context

    run_id, factor, context = both(factor=3)
    assert factor == 3
    assert "run_id" not in context and "factor" not in context
    assert context["task_id"] == "both"
    assert run_id.startswith("manual__")


def test_arguments_passed_by_the_caller_win_over_the_context(inst: Instance) -> None:
    @task
    def echo(task_id, asset_store="default"):
        return task_id, asset_store

    task_id, stores = echo("mine")
    assert task_id == "mine"
    assert stores.assets == []  # not given: the context's value
    assert echo(asset_store="given") == ("echo", "given")


def test_parameters_not_named_like_context_keys_are_left_alone(inst: Instance) -> None:
    @task
    def needs(value):
        return value

    with pytest.raises(TypeError):
        needs()


def test_get_current_context_inside_a_run(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def inner():
        context = get_current_context()
        return context["task_id"], context["outlet_events"][ORDERS]

    task_id, accessor = inner()
    assert task_id == "inner"
    assert accessor.asset == ORDERS


def test_get_current_context_outside_a_run_raises(inst: Instance) -> None:
    with pytest.raises(NoTaskContextError, match="no task is running"):
        get_current_context()


def test_nested_task_runs_restore_the_outer_context(inst: Instance) -> None:
    @task
    def child():
        return get_current_context()["task_id"]

    @task
    def parent():
        inner = child()
        return inner, get_current_context()["task_id"]

    assert parent() == ("child", "parent")
    with pytest.raises(NoTaskContextError):
        get_current_context()


def test_async_task_runs_with_its_context(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    async def fetch(outlet_events):
        await asyncio.sleep(0)
        outlet_events[ORDERS].extra["async"] = True
        return get_current_context()["task_id"]

    assert fetch() == "fetch"
    assert inst.events(ORDERS)[-1].extra == {"async": True}


def test_async_task_called_inside_a_running_loop_asks_for_arun(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    async def fetch():
        return 1

    async def caller():
        with pytest.raises(RuntimeError, match="arun"):
            fetch()
        return await fetch.arun()

    run = asyncio.run(caller())
    assert run.value == 1
    assert len(inst.events(ORDERS)) == 1


def test_failing_async_task_records_no_event(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    async def broken():
        raise ValueError("upstream down")

    with pytest.raises(ValueError, match="upstream down"):
        broken()
    assert inst.events(ORDERS) == []


def test_generator_task_yields_metadata_and_returns_a_value(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def produce():
        yield Metadata(ORDERS, {"rows": 3})
        yield Metadata(ORDERS, {"source": "api"})
        return "ok"

    run = produce.run()
    assert run.value == "ok"
    assert [e.extra for e in run.events] == [{"rows": 3, "source": "api"}]


def test_async_generator_task_yields_metadata(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    async def produce():
        await asyncio.sleep(0)
        yield Metadata(ORDERS, {"rows": 1})

    produce()
    assert inst.events(ORDERS)[-1].extra == {"rows": 1}


def test_generator_yielding_something_else_fails_without_events(inst: Instance) -> None:
    @task(outlets=[ORDERS])
    def produce():
        yield {"rows": 3}

    with pytest.raises(TypeError, match="may only yield Metadata"):
        produce()
    assert inst.events(ORDERS) == []


def test_metadata_for_an_asset_that_is_not_an_outlet_fails(inst: Instance) -> None:
    other = Asset("other", uri="s3://data/other")

    @task(inlets=[other], outlets=[ORDERS])
    def produce():
        yield Metadata(other, {"rows": 3})

    with pytest.raises(UndeclaredAssetError, match="not among its outlets"):
        produce()
    assert inst.events(ORDERS) == []


def test_task_runs_against_an_explicit_instance(inst: Instance) -> None:
    other = Instance(backend=MemoryBackend())

    @task(outlets=[ORDERS])
    def produce(instance):
        return instance

    assert produce(instance=other) is other
    assert len(other.events(ORDERS)) == 1
    assert inst.get_asset(ORDERS) is None


def test_partition_key_from_the_task_the_call_or_the_logical_date(inst: Instance) -> None:
    @task(outlets=[ORDERS], partition_key="eu")
    def fixed(partition_key):
        return partition_key

    @task(outlets=[ORDERS], partition_key=lambda when: when.date().isoformat())
    def daily():
        return get_current_context()["partition_key"]

    assert fixed() == "eu"
    assert fixed(partition_key="us") == "us"
    monday = dt.datetime(2024, 6, 3, 5, tzinfo=dt.UTC)
    assert daily(logical_date=monday) == "2024-06-03"
    assert [e.partition_key for e in inst.events(ORDERS)] == ["eu", "us", "2024-06-03"]


def test_a_naive_logical_date_is_rejected(inst: Instance) -> None:
    @task
    def noop():
        return None

    with pytest.raises(ValueError, match="timezone-aware"):
        noop(logical_date=dt.datetime(2024, 6, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inlets": ["s3://data/orders"]}, "must be Asset"),
        ({"outlets": ORDERS}, "must be a list"),
        ({"schedule": 5}, "schedule"),
        ({"partition_key": ""}, "partition key"),
    ],
)
def test_task_declaration_errors_are_clear(kwargs, message) -> None:
    with pytest.raises((TypeError, ValueError), match=message):

        @task(**kwargs)
        def noop():
            return None


def test_dag_prefixes_task_ids_and_gives_its_asset_schedule(inst: Instance) -> None:
    alias = AssetAlias("daily_files")
    with DAG(dag_id="nightly", schedule="@daily") as nightly:

        @task(outlets=[ORDERS])
        def produce():
            return None

    with DAG("downstream", schedule=ORDERS | alias):

        @task
        def consume():
            return None

        @task(schedule=None)
        def manual():
            return None

    assert produce.task_id == "nightly.produce"
    assert nightly.tasks == [produce]
    assert produce.schedule == "@daily" and not produce.is_consumer
    assert consume.task_id == "downstream.consume"
    assert consume.is_consumer and consume.schedule == ORDERS | alias
    assert manual.is_consumer  # schedule=None takes the DAG's
    produce()
    assert inst.events(ORDERS)[-1].source_task_id == "nightly.produce"


def test_task_declared_after_the_dag_block_is_not_in_it() -> None:
    with DAG("inside"):
        pass

    @task
    def outside():
        return None

    assert outside.task_id == "outside" and outside.dag is None


def test_explicit_task_id(inst: Instance) -> None:
    @task(task_id="load_orders")
    def load():
        return get_current_context()["task_id"]

    assert load() == "load_orders"
