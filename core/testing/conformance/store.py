"""The asset store through the backend: values, keys, versions, deletes, unknown and
inactive assets."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from assetry.backend import EventQuery, StateBackend
from assetry.errors import AssetInactiveError, AssetNotFoundError
from assetry.values import DEFAULT_MAX_VALUE_BYTES, MAX_KEY_LENGTH

from .base import ROUND_TRIP_VALUES, ConformanceBase, _canonical, _ids, _json

__all__ = ["StoreConformance"]


class StoreConformance(ConformanceBase):
    """Store entries through the backend: exact round trips, key order, versions, deletes,
    and what writes to an unknown or inactive asset do."""

    def test_store_get_missing_key_returns_none(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_get("a", "missing") is None
        assert backend.store_get("a", "missing", "p1") is None

    def test_store_reads_of_unknown_asset_are_empty(self, backend: StateBackend) -> None:
        assert backend.store_get("missing", "k") is None
        assert backend.store_entries("missing") == []
        assert backend.store_keys("missing") == []
        assert backend.store_partitions("missing") == []

    def test_store_set_creates_version_one(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json("v")) == 1
        entry = backend.store_get("a", "k")
        assert entry is not None
        assert (entry.key, entry.value, entry.version, entry.partition) == ("k", "v", 1, None)
        if entry.updated_at is not None:
            assert entry.updated_at.utcoffset() == dt.timedelta(0)

    def test_store_set_overwrites_and_increments_version(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        versions = [backend.store_set("a", "k", _json(i)) for i in range(3)]
        assert versions == [1, 2, 3]
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (2, 3)

    def test_store_set_after_delete_starts_at_version_one(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        backend.store_delete("a", "k")
        assert backend.store_set("a", "k", _json(3)) == 1

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
    def test_store_values_round_trip_exactly(self, backend: StateBackend, value: Any) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(value))
        entry = backend.store_get("a", "k")
        assert entry is not None
        assert _canonical(entry.value) == _canonical(value)
        if isinstance(value, float) and value == 0:
            assert math.copysign(1.0, entry.value) == math.copysign(1.0, value)

    def test_store_keys_round_trip_unicode_and_max_length(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["ключ", "emoji 🚀", "a/b", "with space", "k" * MAX_KEY_LENGTH, "é" * MAX_KEY_LENGTH]
        for i, key in enumerate(keys):
            backend.store_set("a", key, _json(i))
        assert backend.store_keys("a") == sorted(keys)
        for i, key in enumerate(keys):
            entry = backend.store_get("a", key)
            assert entry is not None and entry.value == i

    def test_store_keys_sorted_by_code_point(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["b", "a", "B", "_x", "é", "aa", "a b", "Z", "10", "9"]
        for key in keys:
            backend.store_set("a", key, _json(key))
        assert backend.store_keys("a") == sorted(keys)

    def test_store_keys_are_case_and_space_sensitive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["k", "K", "k ", " k", "é", "e"]
        for i, key in enumerate(keys):
            backend.store_set("a", key, _json(i))
        assert backend.store_keys("a") == sorted(keys)
        for i, key in enumerate(keys):
            entry = backend.store_get("a", key)
            assert entry is not None and (entry.value, entry.version) == (i, 1)

    def test_store_entries_sorted_with_versions(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "b", _json("B"))
        backend.store_set("a", "a", _json("A"))
        backend.store_set("a", "a", _json("A2"))
        backend.store_set("a", "a", _json("x"), "p1")
        entries = backend.store_entries("a")
        assert [(e.key, e.value, e.version) for e in entries] == [("a", "A2", 2), ("b", "B", 1)]
        assert [(e.key, e.value, e.partition) for e in backend.store_entries("a", "p1")] == [
            ("a", "x", "p1")
        ]

    def test_store_holds_a_value_of_the_default_size_limit(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        big = "é" * ((DEFAULT_MAX_VALUE_BYTES - 2) // 2)  # two UTF-8 bytes per character
        text = _json(big)
        assert len(text.encode()) == DEFAULT_MAX_VALUE_BYTES
        backend.store_set("a", "big", text)
        entry = backend.store_get("a", "big")
        assert entry is not None and entry.value == big

    def test_similar_asset_names_never_share_state(self, backend: StateBackend) -> None:
        """Names that an encoding could confuse (separators, escapes, dots) stay apart."""
        names = ["a", "a/b", "a_b", "a%2Fb", "a/b/c", "A/b", "a b", "..", "../a", "a.", "ä"]
        for i, name in enumerate(names):
            backend.register_asset(name, f"s3://conformance/{i}")
            backend.store_set(name, "k", _json(name))
            backend.store_set(name, name, _json(i), name)
        self.append(backend, "a/b")
        for i, name in enumerate(names):
            entry = backend.store_get(name, "k")
            assert entry is not None and (entry.value, entry.version) == (name, 1)
            assert backend.store_keys(name) == ["k"]
            assert backend.store_partitions(name) == [name]
            part = backend.store_get(name, name, name)
            assert part is not None and part.value == i
        assert _ids(backend.query_events(EventQuery("a/b"))) == [1]
        assert backend.query_events(EventQuery("a")) == []
        assert backend.query_events(EventQuery("a_b")) == []
        assert [r.name for r in backend.list_assets()] == sorted(names)

    # -- delete ---------------------------------------------------------------------------

    def test_store_delete_existing_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "other", _json(2))
        assert backend.store_delete("a", "k") is True
        assert backend.store_get("a", "k") is None
        assert backend.store_keys("a") == ["other"]

    def test_store_delete_missing_key_is_noop(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "other", _json(2))
        assert backend.store_delete("a", "missing") is False
        assert backend.store_delete("a", "missing", "p1") is False
        assert backend.store_keys("a") == ["other"]

    # -- unknown and inactive assets ------------------------------------------------------

    def test_store_writes_to_unknown_asset_raise_not_found(self, backend: StateBackend) -> None:
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.store_set("missing", "k", _json(1))
        with pytest.raises(AssetNotFoundError):
            backend.store_delete("missing", "k")
        with pytest.raises(AssetNotFoundError):
            backend.store_clear("missing", all_partitions=True)
        assert backend.get_asset("missing") is None

    def test_store_writes_to_inactive_asset_raise_inactive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2), "p1")
        backend.deactivate_asset("a")
        with pytest.raises(AssetInactiveError, match="'a'"):
            backend.store_set("a", "k", _json(3))
        with pytest.raises(AssetInactiveError):
            backend.store_set("a", "new", _json(3), expected_version=None)
        with pytest.raises(AssetInactiveError):
            backend.store_delete("a", "k")
        with pytest.raises(AssetInactiveError):
            backend.store_clear("a", "p1")
        with pytest.raises(AssetInactiveError):
            backend.store_clear("a", all_partitions=True)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (1, 1)
        assert backend.store_keys("a", "p1") == ["k"]

    def test_inactive_asset_store_is_still_readable(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json({"x": 1}))
        backend.store_set("a", "k", _json("p"), "p1")
        backend.deactivate_asset("a")
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == {"x": 1}
        assert [e.key for e in backend.store_entries("a")] == ["k"]
        assert backend.store_partitions("a") == ["p1"]
