"""Deleting events (``capabilities.event_deletion``), as retention does."""

from __future__ import annotations

from assetry.backend import EventQuery, NewEvent, StateBackend

from .base import ConformanceBase, _ids, _json, needs

__all__ = ["EventDeletionConformance"]


class EventDeletionConformance(ConformanceBase):
    """``delete_events()`` never lets an id be reused and touches nothing else; a backend
    declaring ``event_deletion = False`` must refuse with ``UnsupportedOperationError``."""

    @needs("event_deletion")
    def test_delete_events_never_reuses_ids(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 4)
        assert backend.delete_events("a", [2, 4, 9]) == 2
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 3]
        assert _ids(self.append(backend, "a")) == [5]

    @needs("event_deletion")
    def test_deleted_events_leave_latest_and_partitions(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.append_events([NewEvent("a", partition_key=p) for p in ("p1", "p2", "p1")])
        assert backend.delete_events("a", [3]) == 1
        assert backend.latest_events(["a"])["a"].id == 2
        assert {p: e.id for p, e in backend.latest_partition_events("a").items()} == {
            "p1": 1,
            "p2": 2,
        }
        assert backend.delete_events("a", [1, 2]) == 2
        assert backend.latest_events(["a"]) == {}
        assert _ids(self.append(backend, "a")) == [4]

    @needs("event_deletion")
    def test_delete_events_touches_only_that_asset_and_no_store(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a", "b")
        self.append(backend, "a", 2)
        self.append(backend, "b", 2)
        backend.store_set("a", "k", _json(1))
        assert backend.delete_events("a", [1, 2]) == 2
        assert backend.query_events(EventQuery("a")) == []
        assert "a" not in backend.latest_events()
        assert _ids(backend.query_events(EventQuery("b"))) == [1, 2]
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1

    @needs("event_deletion")
    def test_pagination_steps_over_deleted_events(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 10)
        backend.delete_events("a", [2, 4, 6, 8])
        seen: list[int] = []
        after: int | None = None
        while page := backend.query_events(EventQuery("a", after=after, limit=2)):
            seen.extend(_ids(page))
            after = page[-1].id
        assert seen == [1, 3, 5, 7, 9, 10]
        newest_first = backend.query_events(EventQuery("a", before=9, limit=2, descending=True))
        assert _ids(newest_first) == [7, 5]
