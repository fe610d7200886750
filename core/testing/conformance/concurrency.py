"""Threads racing on one backend: no lost update, one winner, unique ids, no skipped event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.errors import ConflictError
from assetry.instance import Instance
from assetry.models import Asset

from .base import ConformanceBase, _ids, _uri

__all__ = ["ConcurrencyConformance"]


class ConcurrencyConformance(ConformanceBase):
    """Concurrent updates, creates, appends and a reader paging beside writers; sized by
    ``threads``, ``updates_per_thread`` and ``appends_per_thread``."""

    def _run_threads(self, work: Callable[[int], Any]) -> list[Any]:
        """Run ``work(i)`` for each thread index at once; return results, re-raise failures."""
        barrier = threading.Barrier(self.threads)

        def start(i: int) -> Any:
            barrier.wait(timeout=30)
            return work(i)

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            futures = [pool.submit(start, i) for i in range(self.threads)]
            return [f.result(timeout=300) for f in futures]

    def test_concurrent_updates_lose_no_increment(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))

        def work(i: int) -> None:
            for _ in range(self.updates_per_thread):
                store.update("counter", lambda n: n + 1, default=0)

        self._run_threads(work)
        assert store.get("counter") == self.threads * self.updates_per_thread
        entry = store.get_entry("counter")
        assert entry is not None and entry.version == self.threads * self.updates_per_thread

    def test_concurrent_updates_on_distinct_keys(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        per_thread = max(1, self.updates_per_thread // 5)

        def work(i: int) -> None:
            for _ in range(per_thread):
                store.update(f"thread-{i}", lambda n: n + 1, default=0)

        self._run_threads(work)
        assert store.items() == {f"thread-{i}": per_thread for i in range(self.threads)}

    def test_concurrent_create_has_exactly_one_winner(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))

        def work(i: int) -> bool:
            try:
                store.compare_and_set("owner", i, expected_version=None)
            except ConflictError:
                return False
            return True

        won = self._run_threads(work)
        assert won.count(True) == 1
        assert store.get("owner") == won.index(True)

    def test_concurrent_appends_get_unique_consecutive_ids(self, backend: StateBackend) -> None:
        self.register(backend, "a")

        def work(i: int) -> list[int]:
            ids: list[int] = []
            for _ in range(self.appends_per_thread):
                ids += _ids(backend.append_events([NewEvent("a", partition_key=f"t{i}")]))
            return ids

        per_thread = self._run_threads(work)
        total = self.threads * self.appends_per_thread
        assert sorted(i for ids in per_thread for i in ids) == list(range(1, total + 1))
        for ids in per_thread:
            assert ids == sorted(ids)
        assert _ids(backend.query_events(EventQuery("a"))) == list(range(1, total + 1))

    def test_cursor_reader_beside_writers_sees_every_event_once(
        self, backend: StateBackend
    ) -> None:
        """A consumer paging with ``after=`` while others append never skips an event."""
        self.register(backend, "a")
        writers = max(1, self.threads - 1)
        total = writers * self.appends_per_thread
        done = threading.Event()

        def write(i: int) -> None:
            for _ in range(self.appends_per_thread):
                backend.append_events([NewEvent("a", partition_key=f"w{i}")])

        def read() -> list[int]:
            seen: list[int] = []
            deadline = time.monotonic() + 120
            while len(seen) < total and time.monotonic() < deadline:
                page = backend.query_events(EventQuery("a", after=seen[-1] if seen else None))
                seen += _ids(page)
                if not page:
                    if done.is_set() and not backend.query_events(
                        EventQuery("a", after=seen[-1] if seen else None)
                    ):
                        break
                    time.sleep(0.001)
            return seen

        with ThreadPoolExecutor(max_workers=writers + 1) as pool:
            reader = pool.submit(read)
            for future in [pool.submit(write, i) for i in range(writers)]:
                future.result(timeout=300)
            done.set()
            seen = reader.result(timeout=300)
        assert seen == list(range(1, total + 1))
