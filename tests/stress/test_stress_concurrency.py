"""Concurrency on every backend: no lost update, no lost or duplicated event, per-asset
order, consumer cursors that hand each event exactly once, and deactivation racing writers.

The memory backend is driven by threads; SQLite, PostgreSQL, MariaDB, S3 (moto), local
files and the http backend (an ``assetry serve`` process on SQLite) by processes, each
building its own backend from the URL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import stress_workers as w
from stress_kit import BackendCase, Recorder, Sizes, run_workers, time_limit

pytest_plugins = ["stress_fixtures"]
pytestmark = pytest.mark.timeout(time_limit(900))

#: Per backend (quick, large): writers and operations per writer. S3 on moto answers a
#: request in ~10 ms from one server thread pool, so it gets fewer operations.
WRITERS = {"memory": (8, 16), "s3": (3, 8), "http": (3, 12)}
DEFAULT_WRITERS = (4, 12)
OPS = {"memory": (300, 3000), "s3": (10, 60), "file": (30, 300), "http": (25, 400)}
DEFAULT_OPS = (40, 400)


def _load(case: BackendCase, sizes: Sizes) -> tuple[int, int]:
    writers = sizes.pick(*WRITERS.get(case.kind, DEFAULT_WRITERS))
    ops = sizes.pick(*OPS.get(case.kind, DEFAULT_OPS))
    return writers, ops


def test_writers_updating_shared_and_own_keys_lose_no_increment(
    backend_case: BackendCase, sizes: Sizes, figures: Recorder
) -> None:
    case = backend_case
    writers, ops = _load(case, sizes)
    with case.instance() as inst:
        inst.register(w.COUNTER)
        run_workers(case, w.update_worker, [(case, i, ops) for i in range(writers)])
        entries = {e.key: e for e in inst.backend.store_entries(w.COUNTER.name)}
    expected = {"shared": writers * ops, **{f"own-{i}": ops for i in range(writers)}}
    got = {key: entry.value for key, entry in entries.items()}
    lost = sum(max(0, n - got.get(k, 0)) for k, n in expected.items())
    duplicated = sum(max(0, got.get(k, 0) - n) for k, n in expected.items())
    figures.record(
        case.kind,
        "concurrency",
        writers=writers,
        operations=2 * writers * ops,
        lost=lost,
        duplicated=duplicated,
        notes={"scenario": "update shared and distinct keys"},
    )
    assert got == expected
    # every increment was one write: the version counts them too
    assert {key: entry.version for key, entry in entries.items()} == expected


def test_appenders_and_consumers_see_every_event_once_in_order(
    backend_case: BackendCase, sizes: Sizes, figures: Recorder
) -> None:
    case = backend_case
    writers, ops = _load(case, sizes)
    consumers = 2
    per_asset = {
        w.ORDERS.name: writers * ((ops + 1) // 2),
        w.SHIPMENTS.name: writers * (ops // 2),
    }
    with case.instance() as inst:
        for asset in (w.ORDERS, w.SHIPMENTS):
            inst.register(asset)
        pages: dict[str, list[int]] = {name: [] for name in per_asset}
        poll_errors: list[str] = []
        done = threading.Event()

        def poll() -> None:
            """Page through both logs with a cursor while the writers append."""
            cursors = dict.fromkeys(per_asset, 0)
            while True:
                finished = done.is_set()
                for name in per_asset:
                    page = inst.events(name, after=cursors[name], limit=50)
                    ids = [e.id for e in page]
                    want = list(range(cursors[name] + 1, cursors[name] + 1 + len(ids)))
                    if ids != want:
                        poll_errors.append(f"{name}: after {cursors[name]} read {ids}")
                        return
                    pages[name] += ids
                    if ids:
                        cursors[name] = ids[-1]
                if finished and all(len(pages[n]) >= per_asset[n] for n in per_asset):
                    return
                if finished and time.monotonic() > stop_at:
                    return
                time.sleep(0.005)

        stop_at = float("inf")
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        arg_sets: list[tuple[Any, ...]] = [(case, i, ops) for i in range(writers)]
        both = [(w.append_worker, a) for a in arg_sets] + [
            (w.consumer_worker, (case, k, per_asset, time_limit(200.0))) for k in range(consumers)
        ]
        results = run_workers(case, w.call, [(fn, args) for fn, args in both], timeout=300)
        stop_at = time.monotonic() + 30
        done.set()
        poller.join(60)
        logs = {name: inst.events(name) for name in per_asset}

    appended = results[:writers]
    handed = results[writers:]
    assert not poll_errors, poll_errors
    lost = duplicated = 0
    for name, total in per_asset.items():
        events = logs[name]
        ids = [e.id for e in events]
        assert ids == list(range(1, total + 1)), f"{name}: ids are not 1..{total}"
        produced = Counter(
            (writer, seq) for writer, mine in enumerate(appended) for n, _, seq in mine if n == name
        )
        stored = Counter((e.extra["w"], e.extra["s"]) for e in events)
        lost += sum((produced - stored).values())
        duplicated += sum((stored - produced).values())
        # each writer's events in the order it appended them, with the ids it was given
        for writer, mine in enumerate(appended):
            given = [(i, s) for n, i, s in mine if n == name]
            assert [(e.id, e.extra["s"]) for e in events if e.extra["w"] == writer] == given
        # the poller read the log as a gap-free prefix, every id once
        assert pages[name] == ids
        for k, got in enumerate(handed):
            counts = Counter(i for n, i in got if n == name)
            assert sorted(counts) == ids, f"consumer {k} on {name}: missed or extra events"
            duplicated += sum(c - 1 for c in counts.values())
    figures.record(
        case.kind,
        "concurrency",
        writers=writers + consumers,
        operations=writers * ops,
        lost=lost,
        duplicated=duplicated,
        notes={"scenario": "appenders, two consumer tasks and a cursor poller"},
    )
    assert lost == 0
    assert duplicated == 0


def test_deactivate_and_sweep_racing_writers_leave_no_entry_and_lose_no_event(
    backend_case: BackendCase, sizes: Sizes, figures: Recorder
) -> None:
    case = backend_case
    writers, ops = _load(case, sizes)
    ops = max(10, ops // 2)
    toggles = 0
    with case.instance() as inst:
        inst.register(w.RACED)
        stop = threading.Event()
        toggle_errors: list[BaseException] = []

        def toggle() -> None:
            nonlocal toggles
            try:
                while not stop.is_set():
                    inst.deactivate(w.RACED)
                    time.sleep(0.01)
                    inst.sweep()
                    inst.register(w.RACED)
                    toggles += 1
                    time.sleep(0.02)
            except BaseException as exc:
                toggle_errors.append(exc)

        toggler = threading.Thread(target=toggle, daemon=True)
        toggler.start()
        try:
            results = run_workers(
                case, w.race_writer, [(case, i, ops) for i in range(writers)], timeout=300
            )
        finally:
            stop.set()
            toggler.join(60)
        assert not toggle_errors, toggle_errors

        # deactivated and swept: nothing is left, and writers keep being refused
        inst.deactivate(w.RACED)
        inst.sweep()
        again = run_workers(case, w.race_writer, [(case, 99, 5)])
        left = inst.backend.store_entries(w.RACED.name)
        events = inst.events(w.RACED.name)

    refused = sum(r["refused"] for r in results)
    acked = Counter((writer, s) for writer, r in enumerate(results) for _, s in r["acked"])
    stored = Counter((e.extra["w"], e.extra["s"]) for e in events)
    lost = sum((acked - stored).values())
    duplicated = sum((stored - acked).values())
    figures.record(
        case.kind,
        "concurrency",
        writers=writers + 1,
        operations=2 * writers * ops,
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "deactivate/sweep/reactivate racing writers",
            "toggles": toggles,
            "refused_as_inactive": refused,
        },
    )
    assert toggles > 0
    assert again == [{"acked": [], "refused": 10}]
    assert left == []
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert lost == 0
    assert duplicated == 0


def test_concurrent_atomic_runs_commit_each_update_once(
    backend_case: BackendCase, sizes: Sizes, figures: Recorder
) -> None:
    case = backend_case
    writers, ops = _load(case, sizes)
    ops = max(5, ops // 4)
    with case.instance() as inst:
        inst.register(w.LEDGER)
        refused = run_workers(case, w.atomic_runner, [(case, i, ops) for i in range(writers)])
        store = inst.asset_store(w.LEDGER)
        runs = store.get("runs")
        keys = set(store.keys()) - {"runs"}
        events = inst.events(w.LEDGER)
    expected = {(i, n) for i in range(writers) for n in range(ops)}
    recorded = Counter(tuple(e.extra["run"]) for e in events)
    lost = len(expected - set(recorded)) + max(0, len(expected) - (runs or 0))
    duplicated = sum(c - 1 for c in recorded.values()) + max(0, (runs or 0) - len(expected))
    figures.record(
        case.kind,
        "concurrency",
        writers=writers,
        operations=writers * ops,
        lost=lost,
        duplicated=duplicated,
        notes={"scenario": "atomic task runs", "refused_and_rerun": sum(refused)},
    )
    assert set(recorded) == expected
    assert keys == {f"run-{i}-{n}" for i, n in expected}
    assert runs == len(expected), f"the run counter lost {len(expected) - (runs or 0)} updates"
