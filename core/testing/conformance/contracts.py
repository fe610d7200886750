"""Asset contracts: the extra schema, schema-evolution policy and freshness an asset
declares are stored with its record, kept by a registration that declares none, replaced
by one that declares another, and checked before events are appended through an Instance."""

from __future__ import annotations

import datetime as dt

import pytest
from assetry.backend import EventQuery, StateBackend
from assetry.contracts import DEFAULT_CONTRACT, AssetContract, Freshness
from assetry.errors import ValidationError

from .base import ConformanceBase, _uri

__all__ = ["ContractConformance"]

_SCHEMA = {
    "type": "object",
    "properties": {"rows": {"type": "integer"}, "source": {"type": "string"}},
    "required": ["rows"],
}
_CONTRACT = AssetContract.build(
    _SCHEMA, "add_columns", Freshness(dt.timedelta(hours=6), per_partition=True)
)


class ContractConformance(ConformanceBase):
    """Contracts stored with the asset registration, round-tripped by every look-up."""

    def test_new_asset_has_the_default_contract(self, backend: StateBackend) -> None:
        record = backend.register_asset("orders", _uri("orders"))
        assert record.contract == DEFAULT_CONTRACT
        stored = backend.get_asset("orders")
        assert stored is not None and stored.contract == DEFAULT_CONTRACT

    def test_contract_is_stored_with_the_asset(self, backend: StateBackend) -> None:
        record = backend.register_asset("orders", _uri("orders"), contract_json=_CONTRACT.to_json())
        assert record.contract == _CONTRACT
        by_name = backend.get_asset("orders")
        by_uri = backend.get_asset_by_uri(_uri("orders"))
        listed = backend.list_assets()
        assert by_name is not None and by_name.contract == _CONTRACT
        assert by_uri is not None and by_uri.contract == _CONTRACT
        assert [r.contract for r in listed] == [_CONTRACT]
        assert by_name.contract.freshness == Freshness(dt.timedelta(hours=6), True)

    def test_registration_without_contract_keeps_it(self, backend: StateBackend) -> None:
        backend.register_asset("orders", _uri("orders"), contract_json=_CONTRACT.to_json())
        backend.deactivate_asset("orders")
        again = backend.register_asset("orders", _uri("orders"))
        assert again.active and again.contract == _CONTRACT
        stored = backend.get_asset("orders")
        assert stored is not None and stored.contract == _CONTRACT

    def test_registration_with_contract_replaces_it(self, backend: StateBackend) -> None:
        backend.register_asset("orders", _uri("orders"), contract_json=_CONTRACT.to_json())
        other = AssetContract.build(freshness=dt.timedelta(minutes=5))
        assert (
            backend.register_asset("orders", _uri("orders"), contract_json=other.to_json()).contract
            == other
        )
        stored = backend.get_asset("orders")
        assert stored is not None and stored.contract == other
        cleared = backend.register_asset("orders", _uri("orders"), contract_json="{}")
        assert cleared.contract == DEFAULT_CONTRACT
        stored = backend.get_asset("orders")
        assert stored is not None and stored.contract == DEFAULT_CONTRACT

    def test_instance_checks_events_against_the_stored_schema(self, backend: StateBackend) -> None:
        from assetry.instance import Instance

        backend.register_asset("orders", _uri("orders"), contract_json=_CONTRACT.to_json())
        instance = Instance(backend=backend)
        event = instance.record_event("orders", {"rows": 3, "assetry": {"rows": "any"}})
        assert event.extra["rows"] == 3
        with pytest.raises(ValidationError, match="rows") as caught:
            instance.record_events("orders", [{"rows": 4}, {"rows": "three"}])
        assert caught.value.check == "extra_schema"
        assert caught.value.details[0]["field"] == "rows"
        with pytest.raises(ValidationError, match="rows"):
            instance.record_event("orders", {"source": "crm"})
        assert [e.id for e in backend.query_events(EventQuery("orders"))] == [event.id]
