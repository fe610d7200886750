"""Input validation: every backend refuses what none can store with the same typed error
(:mod:`assetry.inputs`), never a driver's, and keeps nothing of a refused call; values at
the limits are accepted and round-trip."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from assetry.errors import AssetTypeError, AssetValueError, ConflictError, StoreValueError
from assetry.inputs import (
    MAX_ALIASES,
    MAX_ID,
    MAX_SOURCE_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
)
from assetry.instance import Instance
from assetry.models import Asset, AssetAlias

from .base import ConformanceBase, _uri

__all__ = ["InputValidationConformance"]

_PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
_MINUS_ONE = dt.timezone(dt.timedelta(hours=-1))

#: ``record_event`` keyword arguments no backend can store, and the typed error each gives.
BAD_EVENT_FIELDS: list[Any] = [
    pytest.param({"source_run_id": "run\x00id"}, AssetValueError, "NUL", id="run-id-nul"),
    pytest.param({"source_task_id": "t\x00"}, AssetValueError, "NUL", id="task-id-nul"),
    pytest.param({"source_run_id": "\ud800"}, AssetValueError, "surrogate", id="run-id-surrogate"),
    pytest.param(
        {"source_run_id": "r" * 70_000}, AssetValueError, "at most", id="run-id-over-64KiB"
    ),
    pytest.param(
        {"source_task_id": "t" * 10_000_000}, AssetValueError, "at most", id="task-id-10MB"
    ),
    pytest.param({"source_run_id": 5}, AssetTypeError, "must be a str", id="run-id-int"),
    pytest.param({"aliases": "abc"}, AssetTypeError, "single str", id="aliases-str"),
    pytest.param({"aliases": 7}, AssetTypeError, "list of alias names", id="aliases-int"),
    pytest.param({"aliases": ["a\x00"]}, AssetValueError, "control", id="alias-nul"),
    pytest.param({"aliases": ["x" * 3000]}, AssetValueError, "at most", id="alias-too-long"),
    pytest.param(
        {"aliases": [f"alias-{i}" for i in range(MAX_ALIASES + 1)]},
        AssetValueError,
        "at most",
        id="too-many-aliases",
    ),
    pytest.param(
        {"aliases": [f"{i:03d}" + "a" * 1000 for i in range(20)]},
        AssetValueError,
        "bytes",
        id="aliases-over-byte-limit",
    ),
    pytest.param(
        {"timestamp": dt.datetime(2024, 6, 1)}, AssetValueError, "timezone-aware", id="naive"
    ),
    pytest.param(
        {"timestamp": dt.datetime(1, 1, 1, tzinfo=_PLUS_ONE)},
        AssetValueError,
        "between",
        id="year-1-overflows",
    ),
    pytest.param(
        {"timestamp": dt.datetime(9999, 12, 31, 23, tzinfo=_MINUS_ONE)},
        AssetValueError,
        "between",
        id="year-9999-overflows",
    ),
    pytest.param({"timestamp": "2024-06-01"}, AssetTypeError, "datetime", id="timestamp-str"),
    pytest.param({"partition_key": "p\x00"}, StoreValueError, "NUL", id="partition-nul"),
]

#: ``Instance.events`` keyword arguments out of range or of the wrong type.
BAD_QUERIES: list[Any] = [
    pytest.param({"after": "1"}, AssetTypeError, id="after-str"),
    pytest.param({"after": 2**63}, AssetValueError, id="after-2**63"),
    pytest.param({"after": -1}, AssetValueError, id="after-negative"),
    pytest.param({"before": 2**64}, AssetValueError, id="before-2**64"),
    pytest.param({"before": 1.5}, AssetTypeError, id="before-float"),
    pytest.param({"limit": 2**63}, AssetValueError, id="limit-2**63"),
    pytest.param({"limit": True}, AssetTypeError, id="limit-bool"),
    pytest.param({"limit": -1}, AssetValueError, id="limit-negative"),
    pytest.param({"since": dt.datetime(2024, 1, 1)}, AssetValueError, id="since-naive"),
    pytest.param(
        {"until": dt.datetime(1, 1, 1, tzinfo=_PLUS_ONE)}, AssetValueError, id="until-year-1"
    ),
    pytest.param({"since": 0}, AssetTypeError, id="since-int"),
    pytest.param({"partition_key": "\x00"}, StoreValueError, id="partition-nul"),
]


class InputValidationConformance(ConformanceBase):
    """Out-of-range ids, limits and versions, unstorable source ids and aliases, and times
    near the ends of the calendar: the same typed error on every backend."""

    @pytest.fixture
    def asset(self, instance: Instance) -> Asset:
        asset = Asset("validated", uri=_uri("validated"))
        instance.register(asset)
        return asset

    @pytest.mark.parametrize(("fields", "error", "text"), BAD_EVENT_FIELDS)
    def test_unstorable_event_fields_are_refused_and_nothing_is_recorded(
        self,
        instance: Instance,
        asset: Asset,
        fields: dict[str, Any],
        error: type[Exception],
        text: str,
    ) -> None:
        with pytest.raises(error, match=text):
            instance.record_event(asset, {"n": 1}, **fields)
        assert instance.events(asset) == []

    @pytest.mark.parametrize(("fields", "error"), BAD_QUERIES)
    def test_event_query_bounds_are_checked(
        self, instance: Instance, asset: Asset, fields: dict[str, Any], error: type[Exception]
    ) -> None:
        instance.record_event(asset)
        with pytest.raises(error):
            instance.events(asset, **fields)
        with pytest.raises(error):
            instance.events(AssetAlias("through"), **fields)

    @pytest.mark.parametrize(
        ("size", "error"),
        [(0, AssetValueError), (2**63, AssetValueError), (True, AssetTypeError)],
    )
    def test_sweep_batch_size_is_checked(
        self, instance: Instance, size: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            instance.sweep(batch_size=size)

    def test_iter_events_checks_its_cursor(self, instance: Instance, asset: Asset) -> None:
        with pytest.raises(AssetValueError):
            list(instance.iter_events(asset, after=2**63))
        with pytest.raises(AssetTypeError):
            list(instance.iter_events(asset, after="0"))  # type: ignore[arg-type]

    def test_values_at_the_limits_are_accepted(self, instance: Instance, asset: Asset) -> None:
        run_id = "r" * MAX_SOURCE_ID_LENGTH
        aliases = [f"alias-{i}" for i in range(MAX_ALIASES)]
        first = instance.record_event(
            asset,
            source_run_id=run_id,
            source_task_id="é" * MAX_SOURCE_ID_LENGTH,
            aliases=aliases,
            timestamp=MIN_TIMESTAMP,
        )
        last = instance.record_event(asset, timestamp=MAX_TIMESTAMP)
        stored = instance.events(asset)
        assert [e.id for e in stored] == [first.id, last.id]
        assert stored[0].source_run_id == run_id
        assert stored[0].source_task_id == "é" * MAX_SOURCE_ID_LENGTH
        assert list(stored[0].aliases) == aliases
        assert stored[0].timestamp == MIN_TIMESTAMP
        assert stored[1].timestamp == MAX_TIMESTAMP
        assert instance.events(asset, after=MAX_ID) == []
        assert instance.events(asset, before=MAX_ID, limit=MAX_ID, descending=True) == [
            stored[1],
            stored[0],
        ]
        assert instance.events(asset, since=MIN_TIMESTAMP, until=MAX_TIMESTAMP) == [stored[0]]

    def test_one_alias_object_or_name_list_is_one_alias(
        self, instance: Instance, asset: Asset
    ) -> None:
        event = instance.record_event(asset, aliases=("abc",))
        assert event.aliases == ("abc",)
        assert instance.events(AssetAlias("abc")) == [event]
        assert instance.events(AssetAlias("a")) == []

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("a\x00b", id="nul"),
            pytest.param("\ud800", id="surrogate"),
            pytest.param("n" * 70_000, id="over-64KiB"),
        ],
    )
    def test_unstorable_asset_names_are_refused_before_any_lookup(
        self, instance: Instance, name: str
    ) -> None:
        lookups = [
            lambda: instance.get_asset(name),
            lambda: instance.resolve(name),
            lambda: instance.asset_store(name),
            lambda: instance.events(name),
            lambda: instance.latest_event(name),
            lambda: instance.record_event(name),
            lambda: instance.deactivate(name),
            lambda: instance.get_asset(Asset.ref(uri=f"s3://x/{name}")),
        ]
        for lookup in lookups:
            with pytest.raises(AssetValueError):
                lookup()

    @pytest.mark.parametrize(
        ("version", "error"),
        [
            pytest.param(2**63, AssetValueError, id="2**63"),
            pytest.param(-1, AssetValueError, id="negative"),
            pytest.param(True, AssetTypeError, id="bool"),
            pytest.param("1", AssetTypeError, id="str"),
        ],
    )
    def test_expected_version_is_checked(
        self, instance: Instance, asset: Asset, version: Any, error: type[Exception]
    ) -> None:
        store = instance.asset_store(asset)
        store.set("k", 1)
        with pytest.raises(error):
            store.compare_and_set("k", 2, expected_version=version)
        assert store.get("k") == 1

    def test_expected_version_at_the_limit_is_a_conflict(
        self, instance: Instance, asset: Asset
    ) -> None:
        store = instance.asset_store(asset)
        store.set("k", 1)
        with pytest.raises(ConflictError):
            store.compare_and_set("k", 2, expected_version=MAX_ID)
        assert store.get("k") == 1
