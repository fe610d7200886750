"""The sql backend under concurrent processes, on SQLite (file), PostgreSQL and MariaDB.

- Read-modify-write from many processes loses no increment.
- A consumer paging events with its cursor while many processes append sees every event
  exactly once, and only ever a gap-free prefix of the log.
- Cursor safety, step by step: while an append holds the next id uncommitted, a later
  append cannot commit a greater id, and a reader sees neither.

Each process builds its own backend from the URL (the forkserver start method: no state
is inherited).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import assetry
import pytest
from assetry.backend import EventQuery, NewEvent
from assetry.backends.sql import SQLBackend

PROCESSES = 8
UPDATES_PER_PROCESS = 250
EVENTS_PER_PROCESS = 500
ASSET = assetry.Asset("orders", uri="s3://data/orders")


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sqlalchemy", "assetry.backends.sql"])
    return context


def _run_processes(target: Any, args: tuple[Any, ...], count: int) -> None:
    context = _context()
    start = context.Barrier(count)
    processes = [context.Process(target=target, args=(start, i, *args)) for i in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    codes = [process.exitcode for process in processes]
    assert codes == [0] * count, f"worker exit codes {codes}"


# -- workers (run in child processes) ---------------------------------------------------------


def _increment(start: Any, _index: int, url: str, times: int) -> None:
    with assetry.Instance(backend="sql", url=url) as instance:
        store = instance.asset_store(ASSET)
        start.wait(timeout=120)
        for _ in range(times):
            store.update("counter", lambda n: n + 1, default=0)


def _append(start: Any, index: int, url: str, times: int) -> None:
    with SQLBackend(url) as backend:
        start.wait(timeout=120)
        for seq in range(times):
            extra = f'{{"writer": {index}, "seq": {seq}}}'
            backend.append_events([NewEvent(ASSET.name, extra_json=extra)])


# -- tests ------------------------------------------------------------------------------------


def test_processes_updating_one_key_lose_no_increment(database_url: str) -> None:
    with assetry.Instance(backend="sql", url=database_url) as instance:
        instance.register(ASSET)
        _run_processes(_increment, (database_url, UPDATES_PER_PROCESS), PROCESSES)
        entry = instance.asset_store(ASSET).get_entry("counter")
    assert entry is not None
    assert entry.value == PROCESSES * UPDATES_PER_PROCESS
    assert entry.version == PROCESSES * UPDATES_PER_PROCESS


def test_consumer_polling_beside_appending_processes_sees_each_event_once(
    database_url: str,
) -> None:
    total = PROCESSES * EVENTS_PER_PROCESS
    with SQLBackend(database_url) as backend:
        backend.register_asset(ASSET.name, ASSET.uri)
        failures: list[BaseException] = []

        def write() -> None:
            try:
                _run_processes(_append, (database_url, EVENTS_PER_PROCESS), PROCESSES)
            except BaseException as exc:
                failures.append(exc)

        writers = threading.Thread(target=write)
        writers.start()
        seen: list[tuple[int, int, int]] = []  # (id, writer, seq)
        cursor = 0
        while len(seen) < total:
            finished = not writers.is_alive()
            page = backend.query_events(EventQuery(ASSET.name, after=cursor, limit=250))
            if not page:
                if finished:
                    break
                time.sleep(0.002)
                continue
            # Only ever a gap-free prefix: nothing with a smaller id can commit later.
            assert [e.id for e in page] == list(range(cursor + 1, cursor + 1 + len(page)))
            seen += [(e.id, e.extra["writer"], e.extra["seq"]) for e in page]
            cursor = page[-1].id
        writers.join(timeout=300)
        assert not failures, failures
        rest = backend.query_events(EventQuery(ASSET.name, after=cursor))
    assert rest == []
    assert [i for i, _, _ in seen] == list(range(1, total + 1))
    produced = {(w, s) for w in range(PROCESSES) for s in range(EVENTS_PER_PROCESS)}
    assert sorted((w, s) for _, w, s in seen) == sorted(produced)
    for writer in range(PROCESSES):  # each writer's events in the order it appended them
        assert [s for _, w, s in seen if w == writer] == list(range(EVENTS_PER_PROCESS))


def test_uncommitted_id_holds_back_later_appends_and_readers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SQLBackend(database_url) as backend:
        backend.register_asset(ASSET.name, ASSET.uri)
        inserted, release = threading.Event(), threading.Event()
        original = backend._insert_events

        def pause_before_commit(*args: Any, **kwargs: Any) -> Any:
            events = original(*args, **kwargs)
            if threading.current_thread().name == "first":
                inserted.set()
                assert release.wait(timeout=60)
            return events

        monkeypatch.setattr(backend, "_insert_events", pause_before_commit)
        results: dict[str, list[int]] = {}

        def append(name: str) -> None:
            results[name] = [e.id for e in backend.append_events([NewEvent(ASSET.name)])]

        first = threading.Thread(target=append, args=("first",), name="first")
        second = threading.Thread(target=append, args=("second",), name="second")
        first.start()
        assert inserted.wait(timeout=60)  # id 1 is inserted, not committed
        second.start()
        time.sleep(0.5)
        assert "second" not in results  # it waits for id 1's row lock to be released
        assert backend.query_events(EventQuery(ASSET.name)) == []  # nothing is visible yet
        release.set()
        first.join(timeout=60)
        second.join(timeout=60)
        assert results == {"first": [1], "second": [2]}
        assert [e.id for e in backend.query_events(EventQuery(ASSET.name, after=0))] == [1, 2]
