"""Importing assets and store entries as they are (``capabilities.state_import``), as
``assetry copy`` does: timestamps, versions and update times kept."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from assetry.backend import AssetRecord, StateBackend, StoreEntry
from assetry.errors import AssetNotFoundError, ConflictError

from .base import T0, ConformanceBase, _uri, needs

__all__ = ["StateImportConformance"]


class StateImportConformance(ConformanceBase):
    """``import_asset()`` keeps the record's active flag and timestamps; ``import_store()``
    keeps versions and update times, also of an inactive asset; a backend declaring
    ``state_import = False`` must refuse with ``UnsupportedOperationError``."""

    @needs("state_import")
    def test_import_asset_keeps_timestamps_and_active_flag(self, backend: StateBackend) -> None:
        record = AssetRecord(
            name="a",
            uri=_uri("a"),
            group="g",
            extra={"k": 1},
            active=False,
            created_at=T0,
            updated_at=T0 + dt.timedelta(days=1),
        )
        backend.import_asset(record)
        stored = backend.get_asset("a")
        assert stored is not None
        assert (stored.uri, stored.group, stored.extra, stored.active) == (
            _uri("a"),
            "g",
            {"k": 1},
            False,
        )
        assert (stored.created_at, stored.updated_at) == (record.created_at, record.updated_at)
        again = dataclasses.replace(record, active=True, updated_at=T0 + dt.timedelta(days=2))
        backend.import_asset(again)
        stored = backend.get_asset("a")
        assert stored is not None and stored.active
        assert (stored.created_at, stored.updated_at) == (T0, T0 + dt.timedelta(days=2))

    @needs("state_import")
    def test_import_asset_refuses_a_uri_registered_under_another_name(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        with pytest.raises(ConflictError):
            backend.import_asset(AssetRecord(name="b", uri=_uri("a")))
        assert backend.get_asset("b") is None

    @needs("state_import")
    def test_import_store_keeps_versions_and_update_times(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", '"old"')
        entries = [
            StoreEntry("k", '"v"', 7, None, T0),
            StoreEntry("k", '{"x":1}', 3, "p1", T0 + dt.timedelta(hours=1)),
        ]
        assert backend.import_store("a", entries) == 2
        assert backend.store_get("a", "k") == entries[0]
        assert backend.store_get("a", "k", "p1") == entries[1]
        assert backend.store_set("a", "k", '"next"') == 8  # versions go on from the import

    @needs("state_import")
    def test_import_store_writes_an_inactive_asset_but_not_an_unknown_one(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        backend.deactivate_asset("a")
        entry = StoreEntry("k", "1", 2, None, T0)
        assert backend.import_store("a", [entry]) == 1
        assert backend.store_get("a", "k") == entry
        with pytest.raises(AssetNotFoundError):
            backend.import_store("nope", [entry])
