"""The asset store as users reach it: ``Instance.asset_store`` and its validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from assetry.backend import StateBackend
from assetry.errors import AssetInactiveError, AssetNotFoundError, StoreValueError
from assetry.instance import Instance
from assetry.models import Asset
from assetry.values import MAX_KEY_LENGTH

from .base import BAD_KEYS, NON_JSON_VALUES, ConformanceBase, _uri

__all__ = ["AssetStoreConformance"]


class AssetStoreConformance(ConformanceBase):
    """The ``AssetStore`` API on the backend: defaults, value and key validation, size
    limits, iteration, unknown and inactive assets."""

    def test_get_returns_default_when_absent(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.get("watermark") is None
        assert store.get("watermark", default="1970-01-01T00:00:00Z") == "1970-01-01T00:00:00Z"
        store.set("watermark", "2024-06-01")
        assert store.get("watermark", default="1970-01-01T00:00:00Z") == "2024-06-01"

    def test_set_overwrites_and_returns_version(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.set("k", {"a": 1}) == 1
        assert store.set("k", [1, 2]) == 2
        assert store.get("k") == [1, 2]

    def test_asset_store_registers_asset_on_first_use(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        instance.asset_store(orders).set("k", 1)
        record = instance.backend.get_asset("orders")
        assert record is not None and record.active and record.uri == _uri("orders")

    def test_set_rejects_none_and_keeps_previous_value(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", "before")
        with pytest.raises(StoreValueError, match="None"):
            store.set("k", None)
        assert store.get("k") == "before"
        entry = store.get_entry("k")
        assert entry is not None and entry.version == 1

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan]])
    def test_set_rejects_non_finite_floats(self, instance: Instance, value: float) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", 1.5)
        with pytest.raises(StoreValueError):
            store.set("k", value)
        assert store.get("k") == 1.5

    @pytest.mark.parametrize("value", NON_JSON_VALUES)
    def test_set_rejects_non_json_values(self, instance: Instance, value: Any) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", "before")
        with pytest.raises(StoreValueError):
            store.set("k", value)
        assert store.get("k") == "before"
        assert store.keys() == ["k"]

    def test_store_value_error_is_a_value_error(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        with pytest.raises(ValueError):
            store.set("k", None)
        assert "k" not in store

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_invalid_keys_are_rejected(self, instance: Instance, key: Any) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        with pytest.raises(StoreValueError):
            store.set(key, 1)
        with pytest.raises(StoreValueError):
            store.get(key)
        with pytest.raises(StoreValueError):
            store.delete(key)
        assert store.keys() == []

    def test_key_of_max_length_is_accepted(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        key = "k" * MAX_KEY_LENGTH
        store.set(key, 1)
        assert store.get(key) == 1

    def test_value_size_limit_defaults_to_64_kib(self, instance: Instance) -> None:
        limit = instance.max_value_bytes
        if instance.settings.sources.get("max_value_bytes", "default") == "default":
            assert limit == 64 * 1024
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        at_limit = "x" * (limit - 2)  # the JSON text adds two quotes
        store.set("k", at_limit)
        assert store.get("k") == at_limit
        with pytest.raises(StoreValueError, match=str(limit)):
            store.set("k", at_limit + "x")
        assert store.get("k") == at_limit

    def test_value_size_limit_is_configurable(self, backend: StateBackend) -> None:
        instance = Instance(backend=backend, max_value_bytes=100)
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", "x" * 98)
        with pytest.raises(StoreValueError, match="100"):
            store.set("k", "x" * 99)
        assert store.get("k") == "x" * 98

    def test_delete_missing_key_is_noop(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("kept", 1)
        assert store.delete("missing") is False
        assert store.delete("kept") is True
        assert store.delete("kept") is False
        assert store.keys() == []

    def test_clear_removes_every_key_including_partitions(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        other = Asset("other", uri=_uri("other"))
        store = instance.asset_store(orders)
        store.set("a", 1)
        store.set("b", 2)
        store.partition("2024-06-01").set("a", 3)
        instance.asset_store(other).set("a", 4)
        assert store.clear() == 3
        assert store.keys() == []
        assert store.partitions() == []
        assert store.partition("2024-06-01").get("a") is None
        assert instance.asset_store(other).get("a") == 4

    def test_keys_items_contains_and_iteration(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("b", {"n": 2})
        store.set("a", [1])
        store.partition("p1").set("c", 3)
        assert store.keys() == ["a", "b"]
        assert list(store) == ["a", "b"]
        assert store.items() == {"a": [1], "b": {"n": 2}}
        assert "a" in store and "c" not in store and 5 not in store

    def test_versions_count_writes(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.get_entry("k") is None
        for expected in (1, 2, 3):
            assert store.set("k", expected) == expected
            entry = store.get_entry("k")
            assert entry is not None and (entry.version, entry.value) == (expected, expected)

    def test_asset_store_write_to_unregistered_name_raises_not_found(
        self, instance: Instance
    ) -> None:
        store = instance.asset_store("never_registered")
        assert store.get("k", default="d") == "d"
        with pytest.raises(AssetNotFoundError, match="never_registered"):
            store.set("k", 1)
        assert instance.backend.get_asset("never_registered") is None

    def test_asset_store_of_inactive_asset_is_read_only(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        store = instance.asset_store(orders)
        store.set("k", "kept")
        store.partition("p1").set("k", "kept")
        assert instance.deactivate(orders) is True
        store = instance.asset_store(orders)
        for write in (
            lambda: store.set("k", "new"),
            lambda: store.delete("k"),
            lambda: store.clear(),
            lambda: store.update("k", lambda v: v + "!"),
            lambda: store.partition("p1").set("k", "new"),
        ):
            with pytest.raises(AssetInactiveError):
                write()
        assert store.get("k") == "kept"
        assert store.partition("p1").get("k") == "kept"
