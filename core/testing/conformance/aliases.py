"""Asset aliases: events emitted through an alias, and the assets it resolved to."""

from __future__ import annotations

import datetime as dt

from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.instance import Instance
from assetry.models import Asset, AssetAlias

from .base import T0, ConformanceBase, _ids, _uri

__all__ = ["AliasConformance"]


class AliasConformance(ConformanceBase):
    """Querying by alias, an alias's targets, and an alias's merged events."""

    def test_query_by_alias(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.append_events(
            [
                NewEvent("a", aliases=("al",)),
                NewEvent("a"),
                NewEvent("a", aliases=("other", "al")),
                NewEvent("a", aliases=("other",)),
            ]
        )
        assert _ids(backend.query_events(EventQuery("a", alias="al"))) == [1, 3]
        assert _ids(backend.query_events(EventQuery("a", alias="other"))) == [3, 4]
        assert backend.query_events(EventQuery("a", alias="none")) == []

    def test_alias_targets(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b", "c")
        backend.append_events(
            [
                NewEvent("b", aliases=("al",)),
                NewEvent("a", aliases=("al", "other")),
                NewEvent("c", aliases=("other",)),
                NewEvent("a", aliases=("al",)),
            ]
        )
        assert backend.alias_targets("al") == ["a", "b"]
        assert backend.alias_targets("other") == ["a", "c"]
        assert backend.alias_targets("unknown") == []

    def test_instance_events_of_an_alias_merge_its_targets(self, instance: Instance) -> None:
        x, y = Asset("x", uri=_uri("x")), Asset("y", uri=_uri("y"))
        alias = AssetAlias("daily")

        def at(seconds: int) -> dt.datetime:
            return T0 + dt.timedelta(seconds=seconds)

        instance.record_event(x, {"n": 0}, aliases=[alias], timestamp=at(0))
        instance.record_event(y, {"n": 1}, aliases=[alias], timestamp=at(1))
        instance.record_event(x, {"n": 2}, aliases=[alias], timestamp=at(2))
        instance.record_event(x, {"n": 3}, timestamp=at(3))
        merged = instance.events(alias)
        assert [(e.asset_name, e.id, e.extra["n"]) for e in merged] == [
            ("x", 1, 0),
            ("y", 1, 1),
            ("x", 2, 2),
        ]
        assert [e.extra["n"] for e in instance.events(alias, descending=True)] == [2, 1, 0]
        assert [e.extra["n"] for e in instance.events(alias, limit=2)] == [0, 1]
