"""State that outlives the backend object (``capabilities.persistent``), and schema upgrades."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.errors import ConflictError

from .base import ConformanceBase, _ids, _json, _uri, needs

__all__ = ["PersistenceConformance", "SchemaConformance"]


class SchemaConformance(ConformanceBase):
    """``upgrade()`` is idempotent and keeps the state."""

    def test_upgrade_is_idempotent_and_keeps_state(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        self.append(backend, "a")
        backend.upgrade()
        backend.upgrade()
        status = backend.schema_status()
        if status:
            assert status["current"] == status["head"]
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1
        assert _ids(backend.query_events(EventQuery("a"))) == [1]


class PersistenceConformance(ConformanceBase):
    """A second backend object on the same storage sees the store, events, registry and
    cursors. Needs the ``reopen_backend`` fixture."""

    @pytest.fixture
    def reopen(
        self, request: pytest.FixtureRequest, backend: StateBackend
    ) -> Iterator[Callable[[], StateBackend]]:
        """Opens another backend object on the same storage, from ``reopen_backend``."""
        try:
            factory = request.getfixturevalue("reopen_backend")
        except pytest.FixtureLookupError:
            pytest.fail(
                f"{type(self).__name__} must define a `reopen_backend` fixture: a callable "
                "opening another backend object on the backend's storage (for a backend that "
                "is not persistent, the one a new process would open with the same settings)"
            )
        opened: list[StateBackend] = []

        def open_again() -> StateBackend:
            other = factory()
            opened.append(other)
            return other

        yield open_again
        for other in opened:
            other.close()

    @needs("persistent")
    def test_store_persists_across_backend_objects(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json({"nested": [1, 2.5, "✓"]}))
        backend.store_set("a", "k", _json({"nested": [1, 2.5, "✓"], "v": 2}))
        backend.store_set("a", "k", _json("p"), "p1")
        other = reopen()
        entry = other.store_get("a", "k")
        assert entry is not None
        assert (entry.value, entry.version) == ({"nested": [1, 2.5, "✓"], "v": 2}, 2)
        assert other.store_partitions("a") == ["p1"]
        assert other.store_set("a", "k", _json(3), expected_version=2) == 3

    @needs("persistent")
    def test_events_persist_and_ids_continue(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        self.register(backend, "a")
        appended = backend.append_events(
            [NewEvent("a", extra_json=_json({"i": i}), aliases=("al",)) for i in range(3)]
        )
        other = reopen()
        assert other.query_events(EventQuery("a")) == appended
        assert other.alias_targets("al") == ["a"]
        assert _ids(self.append(other, "a")) == [4]

    @needs("persistent")
    def test_registry_persists(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        backend.register_asset("a", _uri("a"), group="g", extra_json=_json({"x": 1}))
        self.register(backend, "b")
        backend.deactivate_asset("b")
        other = reopen()
        assert [(r.name, r.active) for r in other.list_assets()] == [("a", True), ("b", False)]
        record = other.get_asset_by_uri(_uri("a"))
        assert record is not None and (record.group, record.extra) == ("g", {"x": 1})
        with pytest.raises(ConflictError):
            other.register_asset("a", _uri("elsewhere"))

    @needs("persistent")
    def test_cursors_persist(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 1})
        other = reopen()
        assert other.get_cursors("scheduler") == {"a": 3, "b": 1}
        assert other.list_consumers() == ["scheduler"]
