"""The orphan sweep: the store entries of inactive assets are removed, nothing else."""

from __future__ import annotations

from assetry.backend import StateBackend
from assetry.instance import Instance
from assetry.models import Asset

from .base import ConformanceBase, _json, _uri

__all__ = ["SweepConformance"]


class SweepConformance(ConformanceBase):
    """``sweep()`` removes inactive assets' entries, keeps their records; a reactivated asset
    starts empty."""

    def test_sweep_removes_only_inactive_assets_entries(self, backend: StateBackend) -> None:
        self.register(backend, "gone", "kept")
        backend.store_set("gone", "k1", _json(1))
        backend.store_set("gone", "k2", _json(2))
        backend.store_set("gone", "k", _json(3), "p1")
        backend.store_set("kept", "k", _json(4))
        backend.store_set("kept", "k", _json(5), "p1")
        backend.deactivate_asset("gone")
        assert backend.sweep() == 3
        assert backend.store_entries("gone") == []
        assert backend.store_partitions("gone") == []
        assert backend.store_keys("kept") == ["k"]
        assert backend.store_keys("kept", "p1") == ["k"]
        assert backend.sweep() == 0

    def test_sweep_with_small_batches_removes_everything(self, backend: StateBackend) -> None:
        self.register(backend, "gone")
        for i in range(5):
            backend.store_set("gone", f"k{i}", _json(i))
        backend.deactivate_asset("gone")
        assert backend.sweep(batch_size=2) == 5
        assert backend.store_keys("gone") == []

    def test_sweep_keeps_the_registry_record(self, backend: StateBackend) -> None:
        self.register(backend, "gone")
        backend.store_set("gone", "k", _json(1))
        backend.deactivate_asset("gone")
        backend.sweep()
        record = backend.get_asset("gone")
        assert record is not None and record.active is False

    def test_reactivated_asset_after_sweep_starts_empty(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2), "p1")
        backend.deactivate_asset("a")
        backend.sweep()
        self.register(backend, "a")
        assert backend.store_entries("a") == []
        assert backend.store_partitions("a") == []
        assert backend.store_set("a", "k", _json(3)) == 1

    def test_sweep_and_reregister_through_instance(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        instance.asset_store(orders).set("k", 1)
        instance.deactivate(orders)
        assert instance.sweep() == 1
        instance.register(orders)
        store = instance.asset_store(orders)
        assert store.keys() == []
        assert store.set("k", 2) == 1
