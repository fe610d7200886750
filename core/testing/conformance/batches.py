"""Batches: store writes and events applied together (``StateBackend.apply``)."""

from __future__ import annotations

import pytest
from assetry.backend import EventQuery, NewEvent, StateBackend, StoreWrite
from assetry.errors import AssetInactiveError, AssetNotFoundError, ConflictError

from .base import ConformanceBase, _json, needs

__all__ = ["BatchConformance"]


class BatchConformance(ConformanceBase):
    """``apply()`` checks every asset and every expected version before writing; where
    ``capabilities.atomic_batches`` it writes all or nothing."""

    def test_apply_writes_and_events_together(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        events = backend.apply(
            [
                StoreWrite("a", "watermark", _json("2024-06-01")),
                StoreWrite("b", "k", _json(1), "p"),
            ],
            [NewEvent("a", extra_json=_json({"rows": 3})), NewEvent("b")],
        )
        assert [(e.asset_name, e.id) for e in events] == [("a", 1), ("b", 1)]
        entry = backend.store_get("a", "watermark")
        assert entry is not None and entry.value == "2024-06-01"
        assert backend.store_keys("b", "p") == ["k"]
        assert backend.query_events(EventQuery("a"))[0].extra == {"rows": 3}

    def test_apply_with_none_value_deletes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "gone", _json(1))
        assert backend.apply([StoreWrite("a", "gone", None)], []) == []
        assert backend.store_get("a", "gone") is None

    def test_apply_naming_unknown_asset_writes_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.apply([StoreWrite("a", "k", _json(1))], [NewEvent("a"), NewEvent("missing")])
        assert backend.store_get("a", "k") is None
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_naming_inactive_asset_writes_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        backend.store_set("a", "k", _json("before"))
        backend.deactivate_asset("b")
        with pytest.raises(AssetInactiveError):
            backend.apply(
                [StoreWrite("a", "k", _json("after")), StoreWrite("a", "new", _json(1))],
                [NewEvent("a"), NewEvent("b")],
            )
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("before", 1)
        assert backend.store_get("a", "new") is None
        assert backend.query_events(EventQuery("a")) == []
        assert backend.query_events(EventQuery("b")) == []

    def test_apply_inactive_store_write_appends_no_event(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        backend.deactivate_asset("b")
        with pytest.raises(AssetInactiveError):
            backend.apply([StoreWrite("b", "k", _json(1))], [NewEvent("a")])
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_checks_expected_versions_and_writes_nothing_on_a_lost_race(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        backend.store_set("a", "runs", _json(5))  # version 1
        backend.store_set("a", "runs", _json(6))  # version 2: a concurrent writer won
        with pytest.raises(ConflictError, match="runs"):
            backend.apply(
                [
                    StoreWrite("a", "runs", _json(6), expected_version=1),
                    StoreWrite("a", "other", _json(1)),
                ],
                [NewEvent("a")],
            )
        entry = backend.store_get("a", "runs")
        assert entry is not None and (entry.value, entry.version) == (6, 2)
        assert backend.store_get("a", "other") is None
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_with_expected_versions_that_hold_writes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "runs", _json(5))
        backend.store_set("a", "gone", _json(1))
        backend.apply(
            [
                StoreWrite("a", "runs", _json(6), expected_version=1),
                StoreWrite("a", "new", _json(1), expected_version=None),
                StoreWrite("a", "gone", None, expected_version=1),
            ],
            [],
        )
        entry = backend.store_get("a", "runs")
        assert entry is not None and (entry.value, entry.version) == (6, 2)
        new = backend.store_get("a", "new")
        assert new is not None and (new.value, new.version) == (1, 1)
        assert backend.store_get("a", "gone") is None
        with pytest.raises(ConflictError):
            backend.apply([StoreWrite("a", "new", _json(2), expected_version=None)], [])

    @needs("atomic_batches")
    def test_apply_losing_a_later_compare_and_set_undoes_the_earlier_writes(
        self, backend: StateBackend
    ) -> None:
        """All or nothing: a batch whose second compare-and-set loses keeps nothing of the
        first, which held (a backend applying write by write keeps it)."""
        self.register(backend, "a")
        backend.store_set("a", "first", _json(1))  # version 1
        backend.store_set("a", "second", _json(1))
        backend.store_set("a", "second", _json(2))  # version 2: a concurrent writer won
        with pytest.raises(ConflictError, match="second"):
            backend.apply(
                [
                    StoreWrite("a", "first", _json(10), expected_version=1),
                    StoreWrite("a", "second", _json(20), expected_version=1),
                ],
                [NewEvent("a")],
            )
        first = backend.store_get("a", "first")
        assert first is not None and (first.value, first.version) == (1, 1)
        assert backend.query_events(EventQuery("a")) == []
