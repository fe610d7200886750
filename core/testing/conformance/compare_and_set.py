"""Versioned writes: compare-and-set and versioned deletes, and the read-modify-write
(``update``, ``advance``) built on them."""

from __future__ import annotations

from typing import Any

import pytest
from assetry.backend import ANY_VERSION, StateBackend
from assetry.errors import ConflictError, StoreValueError
from assetry.instance import Instance
from assetry.models import Asset

from .base import ConformanceBase, _json, _uri

__all__ = ["CompareAndSetConformance", "UpdateConformance"]


class CompareAndSetConformance(ConformanceBase):
    """Writes and deletes conditioned on a version (``expected_version``)."""

    def test_cas_expecting_absent_wins_on_absent_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json(1), expected_version=None) == 1
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1

    def test_cas_expecting_absent_loses_on_present_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("first"))
        with pytest.raises(ConflictError, match="'k'"):
            backend.store_set("a", "k", _json("second"), expected_version=None)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("first", 1)

    def test_cas_wrong_version_loses_and_keeps_value(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("v1"))
        backend.store_set("a", "k", _json("v2"))
        for stale in (1, 3):
            with pytest.raises(ConflictError):
                backend.store_set("a", "k", _json("lost"), expected_version=stale)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("v2", 2)

    def test_cas_expecting_a_version_loses_on_absent_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        with pytest.raises(ConflictError):
            backend.store_set("a", "k", _json(1), expected_version=1)
        assert backend.store_get("a", "k") is None

    def test_cas_right_version_wins(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("v1"))
        assert backend.store_set("a", "k", _json("v2"), expected_version=1) == 2
        assert backend.store_set("a", "k", _json("v3"), expected_version=2) == 3
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("v3", 3)

    def test_cas_any_version_writes_unconditionally(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json(1), expected_version=ANY_VERSION) == 1
        assert backend.store_set("a", "k", _json(2), expected_version=ANY_VERSION) == 2

    def test_cas_versions_are_per_partition(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("asset"))
        backend.store_set("a", "k", _json("asset2"))
        assert backend.store_set("a", "k", _json("p"), "p1", expected_version=None) == 1
        with pytest.raises(ConflictError):
            backend.store_set("a", "k", _json("p"), "p1", expected_version=2)

    def test_store_delete_with_wrong_version_conflicts(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=1)
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=None)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (2, 2)

    def test_store_delete_with_right_version_deletes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        assert backend.store_delete("a", "k", expected_version=2) is True
        assert backend.store_get("a", "k") is None

    def test_store_delete_of_absent_key_expecting_a_version_conflicts(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=1)

    def test_compare_and_set_through_asset_store(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.compare_and_set("k", "v1", expected_version=None) == 1
        with pytest.raises(ConflictError):
            store.compare_and_set("k", "lost", expected_version=None)
        with pytest.raises(ConflictError):
            store.compare_and_set("k", "lost", expected_version=2)
        assert store.compare_and_set("k", "v2", expected_version=1) == 2
        assert store.get("k") == "v2"


class UpdateConformance(ConformanceBase):
    """Atomic read-modify-write (``AssetStore.update``) and monotonic ``advance``."""

    def test_update_uses_default_when_absent(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        seen: list[Any] = []

        def bump(current: int) -> int:
            seen.append(current)
            return current + 1

        assert store.update("runs", bump, default=10) == 11
        assert seen == [10]
        assert store.get("runs") == 11

    def test_update_stores_and_returns_the_new_value(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("seen", ["a"])
        assert store.update("seen", lambda xs: [*xs, "b"]) == ["a", "b"]
        assert store.get("seen") == ["a", "b"]
        entry = store.get_entry("seen")
        assert entry is not None and entry.version == 2

    def test_update_rejecting_none_leaves_state_unchanged(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", 5)
        with pytest.raises(StoreValueError):
            store.update("k", lambda n: None)
        with pytest.raises(StoreValueError):
            store.update("absent", lambda n: None, default=0)
        entry = store.get_entry("k")
        assert entry is not None and (entry.value, entry.version) == (5, 1)
        assert store.get_entry("absent") is None

    def test_update_in_a_partition(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        part = store.partition("2024-06-01")
        assert part.update("rows", lambda n: n + 5, default=0) == 5
        assert part.update("rows", lambda n: n + 5, default=0) == 10
        assert store.get("rows") is None

    def test_advance_sets_an_absent_key(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.advance("watermark", "2024-06-01T00:00:00Z") is True
        assert store.get("watermark") == "2024-06-01T00:00:00Z"

    def test_advance_moves_only_forward(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("watermark", 10)
        assert store.advance("watermark", 12) is True
        assert store.get("watermark") == 12
        assert store.advance("watermark", 11) is False
        assert store.advance("watermark", 12) is False
        entry = store.get_entry("watermark")
        assert entry is not None and (entry.value, entry.version) == (12, 2)

    def test_advance_with_mismatched_type_raises_type_error(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("watermark", "2024-06-01")
        with pytest.raises(TypeError, match="watermark"):
            store.advance("watermark", 20240602)
        assert store.get("watermark") == "2024-06-01"
