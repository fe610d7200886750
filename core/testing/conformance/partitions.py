"""Partition-scoped store entries, and clearing a namespace."""

from __future__ import annotations

from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.instance import Instance
from assetry.models import Asset
from assetry.values import MAX_KEY_LENGTH

from .base import ConformanceBase, _ids, _json, _uri

__all__ = ["PartitionConformance"]


class PartitionConformance(ConformanceBase):
    """Partitions are separate namespaces; ``clear`` empties one, or all of an asset's."""

    def test_similar_keys_and_partitions_never_collide(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["x/y", "x_y", "x%2Fy", "x", "x/", "..", "../x", ".", "x.json"]
        for i, key in enumerate(keys):
            backend.store_set("a", key, _json(i))
            backend.store_set("a", "k", _json(i), key)
        assert backend.store_keys("a") == sorted(keys)
        assert backend.store_partitions("a") == sorted(keys)
        for i, key in enumerate(keys):
            entry = backend.store_get("a", key)
            assert entry is not None and entry.value == i
            part = backend.store_get("a", "k", key)
            assert part is not None and (part.value, part.partition) == (i, key)

    def test_partition_keys_round_trip_unicode_and_max_length(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        partitions = ["2024-06-01", "région=île", "🚀", "p" * MAX_KEY_LENGTH, "é" * MAX_KEY_LENGTH]
        for i, partition in enumerate(partitions):
            backend.store_set("a", "k", _json(i), partition)
        backend.append_events([NewEvent("a", partition_key=p) for p in partitions])
        assert backend.store_partitions("a") == sorted(partitions)
        latest = backend.latest_partition_events("a")
        assert {p: e.id for p, e in latest.items()} == {p: i + 1 for i, p in enumerate(partitions)}
        for i, partition in enumerate(partitions):
            entry = backend.store_get("a", "k", partition)
            assert entry is not None and entry.value == i
            found = backend.query_events(EventQuery("a", partition_key=partition))
            assert _ids(found) == [i + 1]

    def test_partitions_are_separate_namespaces(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("asset"))
        backend.store_set("a", "k", _json("one"), "p1")
        backend.store_set("a", "k", _json("two"), "p2")
        values = [backend.store_get("a", "k", p) for p in (None, "p1", "p2")]
        assert [(e.value, e.version, e.partition) for e in values if e] == [
            ("asset", 1, None),
            ("one", 1, "p1"),
            ("two", 1, "p2"),
        ]
        assert backend.store_keys("a") == ["k"]
        assert backend.store_keys("a", "p1") == ["k"]

    def test_store_partitions_lists_partitions_with_entries(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        backend.store_set("a", "k", _json(0))
        for partition in ("2024-06-02", "2024-06-01", "P", "p"):
            backend.store_set("a", "k", _json(partition), partition)
        backend.store_set("b", "k", _json(0), "other")
        assert backend.store_partitions("a") == ["2024-06-01", "2024-06-02", "P", "p"]
        backend.store_delete("a", "k", "P")
        assert backend.store_partitions("a") == ["2024-06-01", "2024-06-02", "p"]

    def test_store_clear_of_a_partition_clears_only_it(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(0))
        backend.store_set("a", "k1", _json(1), "p1")
        backend.store_set("a", "k2", _json(2), "p1")
        backend.store_set("a", "k", _json(3), "p2")
        assert backend.store_clear("a", "p1") == 2
        assert backend.store_keys("a", "p1") == []
        assert backend.store_keys("a") == ["k"]
        assert backend.store_keys("a", "p2") == ["k"]
        assert backend.store_partitions("a") == ["p2"]

    def test_store_clear_of_asset_level_keeps_partitions(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k1", _json(1))
        backend.store_set("a", "k2", _json(2))
        backend.store_set("a", "k", _json(3), "p1")
        assert backend.store_clear("a") == 2
        assert backend.store_keys("a") == []
        assert backend.store_keys("a", "p1") == ["k"]

    def test_store_clear_all_partitions_removes_every_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k1", _json(1))
        backend.store_set("a", "k", _json(2), "p1")
        backend.store_set("a", "k", _json(3), "p2")
        assert backend.store_clear("a", all_partitions=True) == 3
        assert backend.store_keys("a") == []
        assert backend.store_partitions("a") == []

    def test_store_clear_leaves_other_assets_alone(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        backend.store_set("a", "k", _json(1))
        backend.store_set("b", "k", _json(2))
        backend.store_set("b", "k", _json(3), "p1")
        backend.store_clear("a", all_partitions=True)
        assert backend.store_keys("b") == ["k"]
        assert backend.store_partitions("b") == ["p1"]

    def test_store_clear_of_empty_namespace_returns_zero(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_clear("a") == 0
        assert backend.store_clear("a", "p1") == 0
        assert backend.store_clear("a", all_partitions=True) == 0

    def test_partition_store_is_a_separate_namespace(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", "asset")
        store.partition("p1").set("k", "one")
        store.partition("p2").set("k", "two")
        assert store.get("k") == "asset"
        assert store.partition("p1").get("k") == "one"
        assert store.partition("p2").get("k") == "two"
        assert store.partitions() == ["p1", "p2"]
        assert store.partition("p1").keys() == ["k"]

    def test_partition_clear_only_clears_that_partition(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", "asset")
        store.partition("p1").set("k", "one")
        store.partition("p1").set("j", "one")
        store.partition("p2").set("k", "two")
        assert store.partition("p1").clear() == 2
        assert store.get("k") == "asset"
        assert store.partition("p2").get("k") == "two"
        assert store.partitions() == ["p2"]
