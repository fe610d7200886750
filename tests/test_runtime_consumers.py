"""Consumers: readiness on assets, aliases, references and conditions; run_ready and cursors."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from assetry import (
    Asset,
    AssetAlias,
    Instance,
    run_ready,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend

A = Asset("a", uri="s3://bucket/a")
B = Asset("b", uri="s3://bucket/b")
C = Asset("c", uri="s3://bucket/c")


@pytest.fixture(params=["memory", "sql"])
def inst(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    if request.param == "memory":
        instance = Instance(backend=MemoryBackend())
    else:
        instance = Instance(backend="sql", url=f"sqlite:///{tmp_path}/state.db")
        instance.upgrade()
    with use_instance(instance):
        yield instance
    instance.close()


def _consumer(schedule, seen: list, name: str = "consume"):
    @task(schedule=schedule, task_id=name, start="earliest")
    def consume(triggering_asset_events):
        seen.append({a.name: [e.id for e in evs] for a, evs in triggering_asset_events.items()})

    return consume


def test_a_consumer_is_ready_only_after_an_event_newer_than_its_cursor(inst: Instance) -> None:
    seen: list = []
    consume = _consumer(A, seen)
    assert not consume.is_ready()
    assert run_ready(consume) == []
    inst.record_event(A)
    inst.record_event(A)
    assert consume.is_ready()
    (run,) = run_ready(consume)
    assert seen == [{"a": [1, 2]}]
    assert [e.id for e in run.triggering_asset_events[A]] == [1, 2]
    assert not consume.is_ready()
    assert run_ready(consume) == []
    assert inst.backend.get_cursors("consume") == {"a": 2}


def test_all_condition_waits_for_every_operand(inst: Instance) -> None:
    seen: list = []
    consume = _consumer(A & B, seen)
    inst.record_event(A)
    inst.record_event(A)
    assert not consume.is_ready()
    inst.record_event(B)
    assert consume.is_ready()
    run_ready(consume)
    assert seen == [{"a": [1, 2], "b": [1]}]
    inst.record_event(B)
    assert not consume.is_ready()


def test_any_condition_runs_on_either_operand(inst: Instance) -> None:
    seen: list = []
    consume = _consumer(A | B, seen)
    inst.record_event(B)
    assert consume.is_ready()
    run_ready(consume)
    inst.record_event(A)
    run_ready(consume)
    assert seen == [{"a": [], "b": [1]}, {"a": [1], "b": []}]


def test_nested_conditions(inst: Instance) -> None:
    seen: list = []
    consume = _consumer((A & B) | C, seen)
    inst.record_event(A)
    assert not consume.is_ready()
    inst.record_event(C)
    assert consume.is_ready()
    run_ready(consume)
    assert seen == [{"a": [1], "b": [], "c": [1]}]
    inst.record_event(B)
    assert not consume.is_ready()  # a was already handed over with c
    inst.record_event(A)
    assert consume.is_ready()


def test_a_failed_run_does_not_move_the_cursor(inst: Instance) -> None:
    attempts: list = []

    @task(schedule=A, start="earliest")
    def flaky(triggering_asset_events):
        attempts.append([e.id for e in triggering_asset_events[A]])
        if len(attempts) == 1:
            raise RuntimeError("transient")

    inst.record_event(A)
    with pytest.raises(RuntimeError, match="transient"):
        run_ready(flaky)
    assert inst.backend.get_cursors("flaky") == {"a": 0}  # declared, not moved
    inst.record_event(A)
    run_ready(flaky)
    assert attempts == [[1], [1, 2]]
    assert not flaky.is_ready()


def test_a_failing_consumer_stops_run_ready_and_the_rest_stay_ready(inst: Instance) -> None:
    seen: list = []

    @task(schedule=A, start="earliest")
    def broken():
        raise RuntimeError("no")

    later = _consumer(A, seen, "later")
    inst.record_event(A)
    with pytest.raises(RuntimeError):
        run_ready(broken, later)
    assert seen == [] and later.is_ready()
    assert len(run_ready(later)) == 1


def test_events_committed_during_a_run_are_not_skipped(inst: Instance) -> None:
    handed: list = []

    @task(schedule=A, start="earliest")
    def consume(triggering_asset_events, instance):
        handed.append([e.id for e in triggering_asset_events[A]])
        if len(handed) == 1:
            instance.record_event(A, {"late": True})  # a writer committing while we run

    inst.record_event(A)
    run_ready(consume)
    assert consume.is_ready()
    run_ready(consume)
    assert handed == [[1], [2]]


def test_a_consumer_never_misses_or_repeats_an_event_across_runs(inst: Instance) -> None:
    rng = random.Random(7)
    seen: list = []
    consume = _consumer(A | B, seen)
    produced = {"a": [], "b": []}
    for _ in range(25):
        for asset in (A, B):
            for _ in range(rng.randrange(3)):
                produced[asset.name].append(inst.record_event(asset).id)
        if rng.random() < 0.6:
            run_ready(consume)
    run_ready(consume)
    for name in ("a", "b"):
        got = [i for batch in seen for i in batch.get(name, [])]
        assert got == produced[name], name
    assert not consume.is_ready()


def test_consumers_have_independent_cursors(inst: Instance) -> None:
    first: list = []
    second: list = []
    one, two = _consumer(A, first, "one"), _consumer(A, second, "two")
    inst.record_event(A)
    run_ready(one)
    inst.record_event(A)
    run_ready(one, two)
    assert first == [{"a": [1]}, {"a": [2]}]
    assert second == [{"a": [1, 2]}]


def test_alias_consumer_receives_only_events_emitted_through_the_alias(inst: Instance) -> None:
    alias = AssetAlias("daily_files")
    seen: list = []

    @task(schedule=alias, start="earliest")
    def everything(triggering_asset_events):
        seen.append([(e.asset_name, e.id) for e in triggering_asset_events[alias]])

    @task(outlets=[alias])
    def emit(outlet_events, logical_date):
        outlet_events[alias].add(Asset(f"day{logical_date.day}", uri=f"s3://b/{logical_date.day}"))

    assert not everything.is_ready()
    inst.record_event(A)
    assert not everything.is_ready()
    emit()
    assert everything.is_ready()
    run_ready(everything)
    day = seen[0][0][0]
    inst.record_event(day)  # a direct event on the target, not through the alias
    assert not everything.is_ready()
    emit()
    run_ready(everything)
    assert seen == [[(day, 1)], [(day, 3)]]


def test_reference_schedule_resolves_when_the_asset_appears(inst: Instance) -> None:
    seen: list = []
    consume = _consumer(Asset.ref(name="a"), seen)
    assert not consume.is_ready()  # not registered yet: not an error
    inst.record_event(A)
    (run,) = run_ready(consume)
    assert seen == [{"a": [1]}]
    assert [e.id for e in run.triggering_asset_events[Asset.ref(name="a")]] == [1]
    assert [e.id for e in run.triggering_asset_events[A]] == [1]


def test_an_asset_with_another_uri_under_the_name_is_not_the_scheduled_one(
    inst: Instance,
) -> None:
    seen: list = []
    consume = _consumer(Asset("a", uri="s3://elsewhere/a"), seen)
    inst.record_event(A)
    assert not consume.is_ready()


def test_triggering_asset_events_lookup(inst: Instance) -> None:
    alias = AssetAlias("x")
    got: dict = {}

    @task(schedule=A | alias, start="earliest")
    def consume(triggering_asset_events):
        t = triggering_asset_events
        got["by_name"] = [e.id for e in t["a"]]
        got["alias"] = [e.asset_name for e in t[alias]]
        got["b_via_alias"] = [e.id for e in t[B]]
        got["missing"] = C in t
        got["keys"] = sorted(a.name for a in t)

    inst.record_event(A)
    inst.record_event(B, aliases=[alias])
    run_ready(consume)
    assert got == {
        "by_name": [1],
        "alias": ["b"],
        "b_via_alias": [1],
        "missing": False,
        "keys": ["a", "b"],
    }


def test_direct_call_of_a_consumer_has_no_triggering_events_and_keeps_the_cursor(
    inst: Instance,
) -> None:
    @task(schedule=A, start="earliest")
    def consume(triggering_asset_events):
        return dict(triggering_asset_events)

    inst.record_event(A)
    assert consume() == {}
    assert consume.is_ready()


def test_skip_pending_moves_the_cursor_without_running(inst: Instance) -> None:
    seen: list = []
    consume = _consumer(A, seen)
    inst.record_event(A)
    inst.record_event(A)
    assert consume.skip_pending() == 2
    assert not consume.is_ready() and seen == []


def test_only_asset_scheduled_tasks_are_consumers(inst: Instance) -> None:
    @task(schedule="@daily")
    def daily():
        return None

    with pytest.raises(TypeError, match="not scheduled on assets"):
        daily.is_ready()
    with pytest.raises(TypeError, match="not scheduled on assets"):
        run_ready(daily)
    with pytest.raises(TypeError, match="tasks made with @task"):
        run_ready(lambda: None)


def test_a_consumer_that_produces_feeds_the_next_one(inst: Instance) -> None:
    seen: list = []

    @task(schedule=A, outlets=[B], start="earliest")
    def transform(outlet_events, triggering_asset_events):
        outlet_events[B].extra["from"] = [e.id for e in triggering_asset_events[A]]

    downstream = _consumer(B, seen, "downstream")
    inst.record_event(A)
    runs = run_ready(transform, downstream)
    assert [r.task_id for r in runs] == ["transform", "downstream"]
    assert seen == [{"b": [1]}]
    assert inst.events(B)[0].extra == {"from": [1]}
