"""Importing events with their ids (``capabilities.event_import``), as ``assetry copy`` does."""

from __future__ import annotations

import datetime as dt

import pytest
from assetry.backend import EventQuery, StateBackend
from assetry.errors import AssetNotFoundError
from assetry.models import AssetEvent

from .base import T0, ConformanceBase, _ids, _uri, needs

__all__ = ["EventImportConformance"]


class EventImportConformance(ConformanceBase):
    """``import_events()`` keeps ids and fields, all or nothing; a backend declaring
    ``event_import = False`` must refuse with ``UnsupportedOperationError``."""

    @needs("event_import")
    def test_import_events_keeps_ids_and_fields(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        source = [
            AssetEvent(
                id=i,
                asset_name="a",
                asset_uri=_uri("a"),
                timestamp=T0 + dt.timedelta(seconds=i),
                extra={"i": i},
                partition_key="p",
                source_task_id="t",
                source_run_id="r",
                aliases=("al",),
            )
            for i in (3, 7)
        ]
        assert backend.import_events(source) == 2
        stored = backend.query_events(EventQuery("a"))
        assert stored == source
        assert backend.alias_targets("al") == ["a"]
        assert _ids(self.append(backend, "a")) == [8]

    @needs("event_import")
    def test_import_events_out_of_order_imports_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 2)

        def event(i: int) -> AssetEvent:
            return AssetEvent(id=i, asset_name="a", asset_uri=_uri("a"), timestamp=T0)

        with pytest.raises(ValueError):
            backend.import_events([event(5), event(2)])
        with pytest.raises(ValueError):
            backend.import_events([event(2)])
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 2]

    @needs("event_import")
    def test_import_events_of_unknown_asset_imports_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        events = [
            AssetEvent(id=1, asset_name=name, asset_uri=_uri(name), timestamp=T0)
            for name in ("a", "missing")
        ]
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.import_events(events)
        assert backend.query_events(EventQuery("a")) == []

    @needs("event_import")
    def test_import_events_of_several_assets_in_one_call(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        events = [
            AssetEvent(
                id=i, asset_name=n, asset_uri=_uri(n), timestamp=T0 + dt.timedelta(seconds=i)
            )
            for n, i in (("a", 2), ("b", 1), ("a", 5))
        ]
        assert backend.import_events(events) == 3
        assert _ids(backend.query_events(EventQuery("a"))) == [2, 5]
        assert _ids(backend.query_events(EventQuery("b"))) == [1]
        assert {n: e.id for n, e in backend.latest_events().items()} == {"a": 5, "b": 1}
