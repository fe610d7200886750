"""Consumer cursors: the last event id each consumer has seen, per asset."""

from __future__ import annotations

from assetry.backend import StateBackend

from .base import ConformanceBase

__all__ = ["CursorConformance"]


class CursorConformance(ConformanceBase):
    """Setting, merging, listing and copying consumers' cursors."""

    def test_cursors_default_to_empty(self, backend: StateBackend) -> None:
        assert backend.get_cursors("scheduler") == {}
        assert backend.list_consumers() == []

    def test_set_and_get_cursors(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 5})
        assert backend.get_cursors("scheduler") == {"a": 3, "b": 5}

    def test_set_cursors_keeps_other_assets(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 5})
        backend.set_cursors("scheduler", {"a": 4, "c": 1})
        assert backend.get_cursors("scheduler") == {"a": 4, "b": 5, "c": 1}

    def test_consumers_are_independent_and_listed_sorted(self, backend: StateBackend) -> None:
        backend.set_cursors("zeta", {"a": 1})
        backend.set_cursors("alpha", {"a": 7})
        assert backend.get_cursors("zeta") == {"a": 1}
        assert backend.get_cursors("alpha") == {"a": 7}
        assert backend.list_consumers() == ["alpha", "zeta"]

    def test_returned_cursors_are_a_copy(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 1})
        backend.get_cursors("scheduler")["a"] = 99
        assert backend.get_cursors("scheduler") == {"a": 1}
