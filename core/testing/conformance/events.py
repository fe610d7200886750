"""The event log: appends, ids, fields, queries and pagination, latest events."""

from __future__ import annotations

import datetime as dt

import pytest
from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.errors import AssetInactiveError, AssetNotFoundError
from assetry.instance import Instance
from assetry.models import Asset, AssetEvent

from .base import T0, ConformanceBase, _canonical, _ids, _json, _uri

__all__ = ["EventLogConformance"]


class EventLogConformance(ConformanceBase):
    """Appending and querying events, through the backend and through the Instance."""

    def test_append_assigns_ids_from_one(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert _ids(self.append(backend, "a", 3)) == [1, 2, 3]
        assert _ids(self.append(backend, "a", 2)) == [4, 5]
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 2, 3, 4, 5]

    def test_event_ids_are_per_asset(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        self.append(backend, "a", 2)
        mixed = backend.append_events([NewEvent("b"), NewEvent("a"), NewEvent("b")])
        assert [(e.asset_name, e.id) for e in mixed] == [("b", 1), ("a", 3), ("b", 2)]
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 2, 3]
        assert _ids(backend.query_events(EventQuery("b"))) == [1, 2]

    def test_append_of_empty_list_returns_empty(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.append_events([]) == []
        assert backend.query_events(EventQuery("a")) == []

    def test_event_timestamps_are_utc_and_non_decreasing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        events = [self.append(backend, "a")[0] for _ in range(3)]
        events += self.append(backend, "a", 2)
        stamps = [e.timestamp for e in events]
        assert all(t.utcoffset() == dt.timedelta(0) for t in stamps)
        assert stamps == sorted(stamps)
        now = dt.datetime.now(dt.UTC)
        assert abs(stamps[0] - now) < dt.timedelta(minutes=5)
        stored = [e.timestamp for e in backend.query_events(EventQuery("a"))]
        assert stored == stamps

    def test_explicit_timestamp_round_trips(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        given = dt.datetime(2024, 6, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
        appended = backend.append_events([NewEvent("a", timestamp=given)])[0]
        stored = backend.query_events(EventQuery("a"))[0]
        assert appended.timestamp == stored.timestamp == given
        assert stored.timestamp.utcoffset() == dt.timedelta(0)

    def test_event_extra_round_trips(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        extra = {
            "rows": 10,
            "ratio": 0.1,
            "big": 2**63 + 1,
            "whole": 1.0,
            "ok": True,
            "note": "unicode ✓ 🚀",
            "nested": {"list": [1, None, {"x": []}]},
        }
        appended = backend.append_events([NewEvent("a", extra_json=_json(extra))])[0]
        stored = backend.query_events(EventQuery("a"))[0]
        assert _canonical(appended.extra) == _canonical(extra)
        assert _canonical(stored.extra) == _canonical(extra)
        empty = backend.append_events([NewEvent("a")])[0]
        assert empty.extra == {}

    def test_events_of_one_batch_share_no_extra(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        flat, nested = _json({"rows": 3}), _json({"files": ["x"]})
        batch = [NewEvent("a", extra_json=text) for text in (flat, flat, nested, nested, "{}")]
        first, second, third, fourth, fifth = backend.append_events(batch)
        first.extra["rows"] = 4
        third.extra["files"].append("y")
        fifth.extra["more"] = 1
        assert second.extra == {"rows": 3}
        assert fourth.extra == {"files": ["x"]}
        assert backend.append_events([NewEvent("a")])[0].extra == {}

    def test_event_fields_round_trip(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        new = NewEvent(
            "a",
            partition_key="2024-06-01",
            source_task_id="load_orders",
            source_run_id="run-42",
            aliases=("daily", "orders_alias"),
        )
        appended = backend.append_events([new])[0]
        stored = backend.query_events(EventQuery("a"))[0]
        for event in (appended, stored):
            assert (event.asset_name, event.asset_uri) == ("a", _uri("a"))
            assert event.partition_key == "2024-06-01"
            assert (event.source_task_id, event.source_run_id) == ("load_orders", "run-42")
            assert tuple(event.aliases) == ("daily", "orders_alias")
        assert stored == appended

    def test_event_without_optional_fields(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        appended = backend.append_events([NewEvent("a")])[0]
        stored = backend.query_events(EventQuery("a"))[0]
        for event in (appended, stored):
            assert event.partition_key is None
            assert event.source_task_id is None and event.source_run_id is None
            assert tuple(event.aliases) == ()

    def test_append_batch_naming_unknown_asset_appends_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.append_events([NewEvent("a"), NewEvent("missing"), NewEvent("a")])
        assert backend.query_events(EventQuery("a")) == []
        assert _ids(self.append(backend, "a")) == [1]

    def test_append_batch_naming_inactive_asset_appends_nothing(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a", "b")
        self.append(backend, "b")
        backend.deactivate_asset("b")
        with pytest.raises(AssetInactiveError, match="'b'"):
            backend.append_events([NewEvent("a", aliases=("al",)), NewEvent("b")])
        assert backend.query_events(EventQuery("a")) == []
        assert _ids(backend.query_events(EventQuery("b"))) == [1]
        assert backend.alias_targets("al") == []

    def test_events_of_inactive_asset_stay_readable(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 2)
        backend.deactivate_asset("a")
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 2]
        assert backend.latest_events(["a"])["a"].id == 2

    def test_query_after_and_before_are_exclusive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 6)
        assert _ids(backend.query_events(EventQuery("a", after=2))) == [3, 4, 5, 6]
        assert _ids(backend.query_events(EventQuery("a", before=3))) == [1, 2]
        assert _ids(backend.query_events(EventQuery("a", after=2, before=5))) == [3, 4]
        assert backend.query_events(EventQuery("a", after=6)) == []
        assert backend.query_events(EventQuery("a", after=3, before=4)) == []

    def test_query_since_inclusive_until_exclusive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.append_events(
            [NewEvent("a", timestamp=T0 + dt.timedelta(seconds=s)) for s in range(4)]
        )
        one, three = T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=3)
        assert _ids(backend.query_events(EventQuery("a", since=one))) == [2, 3, 4]
        assert _ids(backend.query_events(EventQuery("a", until=one))) == [1]
        assert _ids(backend.query_events(EventQuery("a", since=one, until=three))) == [2, 3]
        other_zone = dt.timezone(dt.timedelta(hours=2))
        assert _ids(backend.query_events(EventQuery("a", since=one.astimezone(other_zone)))) == [
            2,
            3,
            4,
        ]

    def test_query_by_partition_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.append_events(
            [NewEvent("a", partition_key=p) for p in ("p1", "p2", None, "p1", "P1")]
        )
        assert _ids(backend.query_events(EventQuery("a", partition_key="p1"))) == [1, 4]
        assert _ids(backend.query_events(EventQuery("a", partition_key="P1"))) == [5]
        assert backend.query_events(EventQuery("a", partition_key="p9")) == []

    def test_query_limit_and_descending(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 5)
        assert _ids(backend.query_events(EventQuery("a", limit=2))) == [1, 2]
        assert _ids(backend.query_events(EventQuery("a", descending=True))) == [5, 4, 3, 2, 1]
        assert _ids(backend.query_events(EventQuery("a", limit=2, descending=True))) == [5, 4]
        assert _ids(backend.query_events(EventQuery("a", after=1, before=5, descending=True))) == [
            4,
            3,
            2,
        ]
        assert _ids(backend.query_events(EventQuery("a", limit=10))) == [1, 2, 3, 4, 5]

    def test_query_limit_zero_returns_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        self.append(backend, "a", 3)
        assert backend.query_events(EventQuery("a", limit=0)) == []
        assert backend.query_events(EventQuery("a", limit=0, descending=True)) == []

    def test_query_filters_apply_before_the_limit(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.append_events(
            [NewEvent("a", partition_key="p" if i % 2 else "q") for i in range(1, 11)]
        )
        odd = EventQuery("a", partition_key="p", after=2, limit=2)
        assert _ids(backend.query_events(odd)) == [3, 5]
        newest = EventQuery("a", partition_key="p", limit=2, descending=True)
        assert _ids(backend.query_events(newest)) == [9, 7]

    def test_cursor_pagination_visits_each_event_once(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        total = self.pagination_events
        self.append(backend, "a", total)
        self.append(backend, "b", 3)
        seen: list[int] = []
        cursor: int | None = None
        while True:
            page = backend.query_events(EventQuery("a", after=cursor, limit=self.page_size))
            assert len(page) <= self.page_size
            seen += _ids(page)
            if len(page) < self.page_size:
                break
            cursor = page[-1].id
        assert seen == list(range(1, total + 1))

    def test_descending_pagination_walks_back_once(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        total = self.pagination_events
        self.append(backend, "a", total)
        seen: list[int] = []
        cursor: int | None = None
        while True:
            query = EventQuery("a", before=cursor, limit=self.page_size, descending=True)
            page = backend.query_events(query)
            seen += _ids(page)
            if len(page) < self.page_size:
                break
            cursor = page[-1].id
        assert seen == list(range(total, 0, -1))

    def test_events_of_unknown_asset_are_empty(self, backend: StateBackend) -> None:
        assert backend.query_events(EventQuery("missing")) == []
        assert backend.latest_events(["missing"]) == {}
        assert backend.latest_partition_events("missing") == {}

    def test_latest_events_of_all_and_of_a_subset(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b", "c")
        self.append(backend, "a", 3)
        self.append(backend, "b", 1)
        latest = backend.latest_events()
        assert {name: e.id for name, e in latest.items()} == {"a": 3, "b": 1}
        assert latest["a"].extra == {"i": 2}
        subset = backend.latest_events(["a", "c"])
        assert {name: e.id for name, e in subset.items()} == {"a": 3}
        assert backend.latest_events([]) == {}

    def test_latest_partition_events(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        backend.append_events(
            [NewEvent("a", partition_key=p) for p in ("p1", "p2", None, "p1", "p3")]
        )
        backend.append_events([NewEvent("b", partition_key="p1")])
        latest = backend.latest_partition_events("a")
        assert {p: e.id for p, e in latest.items()} == {"p1": 4, "p2": 2, "p3": 5}
        assert all(e.asset_name == "a" for e in latest.values())

    # -- through the Instance ----------------------------------------------------------

    def test_record_event_and_latest_event(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        first = instance.record_event(orders, extra={"rows": 10}, partition_key="2024-06-01")
        second = instance.record_event(orders, extra={"rows": 5})
        assert (first.id, second.id) == (1, 2)
        assert instance.latest_event(orders) == second
        assert instance.latest_event(orders, partition_key="2024-06-01") == first
        assert [e.extra for e in instance.events(orders)] == [{"rows": 10}, {"rows": 5}]

    def test_record_event_for_unregistered_name_raises_not_found(self, instance: Instance) -> None:
        with pytest.raises(AssetNotFoundError, match="never_registered"):
            instance.record_event("never_registered", extra={"rows": 1})

    def test_instance_iter_events_pages_through_everything(
        self, instance: Instance, backend: StateBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        total = self.pagination_events
        instance.record_events(orders, [{"n": i} for i in range(total)])
        queries: list[EventQuery] = []
        original = backend.query_events

        def counting(query: EventQuery) -> list[AssetEvent]:
            queries.append(query)
            return original(query)

        monkeypatch.setattr(backend, "query_events", counting)
        events = list(instance.iter_events(orders, page_size=self.page_size))
        assert [e.extra["n"] for e in events] == list(range(total))
        assert _ids(events) == list(range(1, total + 1))
        assert len(queries) == total // self.page_size + 1
        assert [e.id for e in instance.iter_events(orders, after=total - 2)] == [total - 1, total]
