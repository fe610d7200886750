"""The asset registry: register, reactivate, conflicts, look-ups, lists, deactivate."""

from __future__ import annotations

import datetime as dt

import pytest
from assetry.backend import StateBackend
from assetry.errors import ConflictError

from .base import ConformanceBase, _json, _uri

__all__ = ["RegistryConformance"]


class RegistryConformance(ConformanceBase):
    """Registering, looking up, listing and deactivating assets."""

    def test_register_creates_active_record(self, backend: StateBackend) -> None:
        record = backend.register_asset(
            "orders", _uri("orders"), group="sales", extra_json=_json({"owner": "ana"})
        )
        assert (record.name, record.uri, record.group) == ("orders", _uri("orders"), "sales")
        assert record.extra == {"owner": "ana"}
        assert record.active is True
        stored = backend.get_asset("orders")
        assert stored is not None
        assert (stored.name, stored.uri, stored.group, stored.extra, stored.active) == (
            "orders",
            _uri("orders"),
            "sales",
            {"owner": "ana"},
            True,
        )
        if record.created_at is not None:
            assert record.created_at.utcoffset() == dt.timedelta(0)

    def test_register_again_is_idempotent(self, backend: StateBackend) -> None:
        first = backend.register_asset("orders", _uri("orders"))
        second = backend.register_asset("orders", _uri("orders"))
        assert second.active and second.uri == first.uri
        assert [r.name for r in backend.list_assets()] == ["orders"]
        if first.created_at is not None:
            assert second.created_at == first.created_at

    def test_register_reactivates_inactive_asset(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        backend.deactivate_asset("orders")
        assert backend.register_asset("orders", _uri("orders")).active is True
        record = backend.get_asset("orders")
        assert record is not None and record.active is True

    def test_register_same_name_with_other_uri_conflicts(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        with pytest.raises(ConflictError, match="orders"):
            backend.register_asset("orders", _uri("elsewhere"))
        record = backend.get_asset("orders")
        assert record is not None and record.uri == _uri("orders")
        assert backend.get_asset_by_uri(_uri("elsewhere")) is None

    def test_register_same_uri_under_other_name_conflicts(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        with pytest.raises(ConflictError, match="orders"):
            backend.register_asset("orders_copy", _uri("orders"))
        assert backend.get_asset("orders_copy") is None
        by_uri = backend.get_asset_by_uri(_uri("orders"))
        assert by_uri is not None and by_uri.name == "orders"

    def test_register_conflict_with_inactive_asset(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        backend.deactivate_asset("orders")
        with pytest.raises(ConflictError):
            backend.register_asset("orders", _uri("elsewhere"))
        with pytest.raises(ConflictError):
            backend.register_asset("other", _uri("orders"))

    def test_get_asset_by_name_and_uri(self, backend: StateBackend) -> None:
        self.register(backend, "orders", "customers")
        by_name = backend.get_asset("customers")
        by_uri = backend.get_asset_by_uri(_uri("customers"))
        assert by_name is not None and by_uri is not None
        assert by_name.name == by_uri.name == "customers"
        assert by_name.uri == by_uri.uri == _uri("customers")

    def test_unknown_asset_lookups_return_none(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        assert backend.get_asset("missing") is None
        assert backend.get_asset_by_uri(_uri("missing")) is None

    def test_asset_names_are_case_sensitive(self, backend: StateBackend) -> None:
        backend.register_asset("orders", _uri("lower"))
        backend.register_asset("Orders", _uri("upper"))
        lower, upper = backend.get_asset("orders"), backend.get_asset("Orders")
        assert lower is not None and lower.uri == _uri("lower")
        assert upper is not None and upper.uri == _uri("upper")

    def test_list_assets_sorted_by_name(self, backend: StateBackend) -> None:
        self.register(backend, "c", "a", "b")
        assert [r.name for r in backend.list_assets()] == ["a", "b", "c"]

    def test_list_assets_filters_by_active(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b", "c")
        backend.deactivate_asset("b")
        assert [r.name for r in backend.list_assets(active=True)] == ["a", "c"]
        assert [r.name for r in backend.list_assets(active=False)] == ["b"]
        assert [(r.name, r.active) for r in backend.list_assets()] == [
            ("a", True),
            ("b", False),
            ("c", True),
        ]

    def test_deactivate_returns_true_then_false(self, backend: StateBackend) -> None:
        self.register(backend, "orders")
        assert backend.deactivate_asset("orders") is True
        assert backend.deactivate_asset("orders") is False
        record = backend.get_asset("orders")
        assert record is not None and record.active is False

    def test_deactivate_unknown_asset_returns_false(self, backend: StateBackend) -> None:
        assert backend.deactivate_asset("missing") is False
        assert backend.get_asset("missing") is None
