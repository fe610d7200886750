"""StateBackendConformance: the behavioural tests every StateBackend must pass.

A backend's test module subclasses the class and provides one fixture, ``backend`` (a
fresh, empty backend), to inherit every test::

    class TestMyBackend(StateBackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            with MyBackend(url=f"mine://{tmp_path}") as b:
                yield b

Optionally it provides ``reopen_backend``, a callable returning a second backend object
on the same storage, to run the persistence tests (the kit closes what it returns). What
a backend lacks is read from its ``capabilities`` and skipped, never loosened for all.
Sizes of the concurrency and pagination tests are class attributes, so a backend that
talks to a slow server can tune them without changing what is proved.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from assetry.backend import (
    ANY_VERSION,
    AssetRecord,
    EventQuery,
    NewEvent,
    StateBackend,
    StoreWrite,
)
from assetry.errors import (
    AssetInactiveError,
    AssetNotFoundError,
    ConflictError,
    StoreValueError,
)
from assetry.instance import Instance
from assetry.models import Asset, AssetAlias, AssetEvent
from assetry.values import DEFAULT_MAX_VALUE_BYTES, MAX_KEY_LENGTH, encode_value

__all__ = ["StateBackendConformance"]

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _uri(name: str) -> str:
    return f"s3://conformance/{name}"


def _json(value: Any) -> str:
    return encode_value(value)


def _canonical(value: Any) -> str:
    """JSON text that tells 1 from 1.0 from True and keeps float digits, for exact comparison."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _ids(events: list[AssetEvent]) -> list[int]:
    return [e.id for e in events]


class _Unserialisable:
    pass


ROUND_TRIP_VALUES: list[Any] = [
    pytest.param({"a": {"b": [1, "two", 3.5, True, None, {"c": []}]}}, id="nested"),
    pytest.param("unicode ✓ é 中文 ключ 🚀", id="unicode"),
    pytest.param('quote " backslash \\ newline \n tab \t', id="escapes"),
    pytest.param("", id="empty-string"),
    pytest.param(2**63 + 1, id="int-beyond-int64"),
    pytest.param(-(2**70), id="negative-big-int"),
    pytest.param(0, id="zero"),
    pytest.param(0.1, id="float-0.1"),
    pytest.param(1.0, id="float-stays-float"),
    pytest.param(1e-300, id="tiny-float"),
    pytest.param(1.7976931348623157e308, id="max-float"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(True, id="true-stays-bool"),
    pytest.param(False, id="false"),
    pytest.param([], id="empty-list"),
    pytest.param({}, id="empty-dict"),
    pytest.param([None, None], id="nulls-in-list"),
]

NON_JSON_VALUES: list[Any] = [
    pytest.param({1, 2}, id="set"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(_Unserialisable(), id="object"),
    pytest.param({1: "a"}, id="int-dict-key"),
    pytest.param({"ok": {(1, 2): "x"}}, id="nested-tuple-dict-key"),
    pytest.param([1, {2, 3}], id="set-in-list"),
    pytest.param(dt.date(2024, 6, 1), id="date"),
]

BAD_KEYS: list[Any] = [
    pytest.param("", id="empty"),
    pytest.param("k" * (MAX_KEY_LENGTH + 1), id="too-long"),
    pytest.param(5, id="int"),
    pytest.param(None, id="none"),
    pytest.param("a\x00b", id="nul"),
]


class StateBackendConformance:
    """Every behaviour of the StateBackend contract, as tests a backend inherits.

    Not collected by itself (no ``Test`` prefix); subclass it as ``TestXxxBackend`` and
    provide the ``backend`` fixture.
    """

    #: Threads in the concurrency tests.
    threads: int = 8
    #: ``AssetStore.update`` calls per thread on one shared key.
    updates_per_thread: int = 50
    #: Events appended per thread in the concurrent append test.
    appends_per_thread: int = 10
    #: Events in the pagination tests, and the page size used to walk them.
    pagination_events: int = 25
    page_size: int = 7

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture
    def backend(self) -> StateBackend:
        """A fresh, empty backend: the one fixture a subclass must provide."""
        pytest.fail(
            f"{type(self).__name__} must define a `backend` fixture returning a fresh, "
            "empty StateBackend"
        )

    @pytest.fixture
    def instance(self, backend: StateBackend) -> Instance:
        """An Instance on the backend under test, for the API-level tests."""
        return Instance(backend=backend)

    @pytest.fixture
    def reopen(
        self, request: pytest.FixtureRequest, backend: StateBackend
    ) -> Iterator[Callable[[], StateBackend]]:
        """Opens another backend object on the same storage; skips where that is impossible."""
        if not backend.capabilities.persistent:
            pytest.skip(f"{type(backend).__name__} is not persistent (capabilities.persistent)")
        try:
            factory = request.getfixturevalue("reopen_backend")
        except pytest.FixtureLookupError:
            pytest.skip("define a `reopen_backend` fixture to run the persistence tests")
        opened: list[StateBackend] = []

        def open_again() -> StateBackend:
            other = factory()
            opened.append(other)
            return other

        yield open_again
        for other in opened:
            other.close()

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def register(backend: StateBackend, *names: str) -> list[AssetRecord]:
        return [backend.register_asset(name, _uri(name)) for name in names]

    @staticmethod
    def append(
        backend: StateBackend, asset: str, count: int = 1, **fields: Any
    ) -> list[AssetEvent]:
        return backend.append_events(
            [NewEvent(asset, extra_json=_json({"i": i}), **fields) for i in range(count)]
        )

    @staticmethod
    def require(backend: StateBackend, capability: str) -> None:
        if not getattr(backend.capabilities, capability):
            pytest.skip(f"{type(backend).__name__} does not declare capabilities.{capability}")

    # == asset registry ===================================================================

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

    # == asset store, through the backend ================================================

    def test_store_get_missing_key_returns_none(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_get("a", "missing") is None
        assert backend.store_get("a", "missing", "p1") is None

    def test_store_reads_of_unknown_asset_are_empty(self, backend: StateBackend) -> None:
        assert backend.store_get("missing", "k") is None
        assert backend.store_entries("missing") == []
        assert backend.store_keys("missing") == []
        assert backend.store_partitions("missing") == []

    def test_store_set_creates_version_one(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json("v")) == 1
        entry = backend.store_get("a", "k")
        assert entry is not None
        assert (entry.key, entry.value, entry.version, entry.partition) == ("k", "v", 1, None)
        if entry.updated_at is not None:
            assert entry.updated_at.utcoffset() == dt.timedelta(0)

    def test_store_set_overwrites_and_increments_version(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        versions = [backend.store_set("a", "k", _json(i)) for i in range(3)]
        assert versions == [1, 2, 3]
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (2, 3)

    def test_store_set_after_delete_starts_at_version_one(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        backend.store_delete("a", "k")
        assert backend.store_set("a", "k", _json(3)) == 1

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
    def test_store_values_round_trip_exactly(self, backend: StateBackend, value: Any) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(value))
        entry = backend.store_get("a", "k")
        assert entry is not None
        assert _canonical(entry.value) == _canonical(value)
        if isinstance(value, float) and value == 0:
            assert math.copysign(1.0, entry.value) == math.copysign(1.0, value)

    def test_store_keys_round_trip_unicode_and_max_length(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["ключ", "emoji 🚀", "a/b", "with space", "k" * MAX_KEY_LENGTH, "é" * MAX_KEY_LENGTH]
        for i, key in enumerate(keys):
            backend.store_set("a", key, _json(i))
        assert backend.store_keys("a") == sorted(keys)
        for i, key in enumerate(keys):
            entry = backend.store_get("a", key)
            assert entry is not None and entry.value == i

    def test_store_keys_sorted_by_code_point(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["b", "a", "B", "_x", "é", "aa", "a b", "Z", "10", "9"]
        for key in keys:
            backend.store_set("a", key, _json(key))
        assert backend.store_keys("a") == sorted(keys)

    def test_store_keys_are_case_and_space_sensitive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        keys = ["k", "K", "k ", " k", "é", "e"]
        for i, key in enumerate(keys):
            backend.store_set("a", key, _json(i))
        assert backend.store_keys("a") == sorted(keys)
        for i, key in enumerate(keys):
            entry = backend.store_get("a", key)
            assert entry is not None and (entry.value, entry.version) == (i, 1)

    def test_store_entries_sorted_with_versions(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "b", _json("B"))
        backend.store_set("a", "a", _json("A"))
        backend.store_set("a", "a", _json("A2"))
        backend.store_set("a", "a", _json("x"), "p1")
        entries = backend.store_entries("a")
        assert [(e.key, e.value, e.version) for e in entries] == [("a", "A2", 2), ("b", "B", 1)]
        assert [(e.key, e.value, e.partition) for e in backend.store_entries("a", "p1")] == [
            ("a", "x", "p1")
        ]

    def test_store_holds_a_value_of_the_default_size_limit(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        big = "é" * ((DEFAULT_MAX_VALUE_BYTES - 2) // 2)  # two UTF-8 bytes per character
        text = _json(big)
        assert len(text.encode()) == DEFAULT_MAX_VALUE_BYTES
        backend.store_set("a", "big", text)
        entry = backend.store_get("a", "big")
        assert entry is not None and entry.value == big

    # -- compare-and-set ------------------------------------------------------------------

    def test_cas_expecting_absent_wins_on_absent_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json(1), expected_version=None) == 1
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1

    def test_cas_expecting_absent_loses_on_present_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("first"))
        with pytest.raises(ConflictError, match="'k'"):
            backend.store_set("a", "k", _json("second"), expected_version=None)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("first", 1)

    def test_cas_wrong_version_loses_and_keeps_value(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("v1"))
        backend.store_set("a", "k", _json("v2"))
        for stale in (1, 3):
            with pytest.raises(ConflictError):
                backend.store_set("a", "k", _json("lost"), expected_version=stale)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("v2", 2)

    def test_cas_expecting_a_version_loses_on_absent_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        with pytest.raises(ConflictError):
            backend.store_set("a", "k", _json(1), expected_version=1)
        assert backend.store_get("a", "k") is None

    def test_cas_right_version_wins(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("v1"))
        assert backend.store_set("a", "k", _json("v2"), expected_version=1) == 2
        assert backend.store_set("a", "k", _json("v3"), expected_version=2) == 3
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("v3", 3)

    def test_cas_any_version_writes_unconditionally(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        assert backend.store_set("a", "k", _json(1), expected_version=ANY_VERSION) == 1
        assert backend.store_set("a", "k", _json(2), expected_version=ANY_VERSION) == 2

    def test_cas_versions_are_per_partition(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json("asset"))
        backend.store_set("a", "k", _json("asset2"))
        assert backend.store_set("a", "k", _json("p"), "p1", expected_version=None) == 1
        with pytest.raises(ConflictError):
            backend.store_set("a", "k", _json("p"), "p1", expected_version=2)

    # -- delete ---------------------------------------------------------------------------

    def test_store_delete_existing_key(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "other", _json(2))
        assert backend.store_delete("a", "k") is True
        assert backend.store_get("a", "k") is None
        assert backend.store_keys("a") == ["other"]

    def test_store_delete_missing_key_is_noop(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "other", _json(2))
        assert backend.store_delete("a", "missing") is False
        assert backend.store_delete("a", "missing", "p1") is False
        assert backend.store_keys("a") == ["other"]

    def test_store_delete_with_wrong_version_conflicts(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=1)
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=None)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (2, 2)

    def test_store_delete_with_right_version_deletes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2))
        assert backend.store_delete("a", "k", expected_version=2) is True
        assert backend.store_get("a", "k") is None

    def test_store_delete_of_absent_key_expecting_a_version_conflicts(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        with pytest.raises(ConflictError):
            backend.store_delete("a", "k", expected_version=1)

    # -- partitions and clear -------------------------------------------------------------

    def test_similar_asset_names_never_share_state(self, backend: StateBackend) -> None:
        """Names that an encoding could confuse (separators, escapes, dots) stay apart."""
        names = ["a", "a/b", "a_b", "a%2Fb", "a/b/c", "A/b", "a b", "..", "../a", "a.", "ä"]
        for i, name in enumerate(names):
            backend.register_asset(name, f"s3://conformance/{i}")
            backend.store_set(name, "k", _json(name))
            backend.store_set(name, name, _json(i), name)
        self.append(backend, "a/b")
        for i, name in enumerate(names):
            entry = backend.store_get(name, "k")
            assert entry is not None and (entry.value, entry.version) == (name, 1)
            assert backend.store_keys(name) == ["k"]
            assert backend.store_partitions(name) == [name]
            part = backend.store_get(name, name, name)
            assert part is not None and part.value == i
        assert _ids(backend.query_events(EventQuery("a/b"))) == [1]
        assert backend.query_events(EventQuery("a")) == []
        assert backend.query_events(EventQuery("a_b")) == []
        assert [r.name for r in backend.list_assets()] == sorted(names)

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

    # -- unknown and inactive assets ------------------------------------------------------

    def test_store_writes_to_unknown_asset_raise_not_found(self, backend: StateBackend) -> None:
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.store_set("missing", "k", _json(1))
        with pytest.raises(AssetNotFoundError):
            backend.store_delete("missing", "k")
        with pytest.raises(AssetNotFoundError):
            backend.store_clear("missing", all_partitions=True)
        assert backend.get_asset("missing") is None

    def test_store_writes_to_inactive_asset_raise_inactive(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        backend.store_set("a", "k", _json(2), "p1")
        backend.deactivate_asset("a")
        with pytest.raises(AssetInactiveError, match="'a'"):
            backend.store_set("a", "k", _json(3))
        with pytest.raises(AssetInactiveError):
            backend.store_set("a", "new", _json(3), expected_version=None)
        with pytest.raises(AssetInactiveError):
            backend.store_delete("a", "k")
        with pytest.raises(AssetInactiveError):
            backend.store_clear("a", "p1")
        with pytest.raises(AssetInactiveError):
            backend.store_clear("a", all_partitions=True)
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == (1, 1)
        assert backend.store_keys("a", "p1") == ["k"]

    def test_inactive_asset_store_is_still_readable(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json({"x": 1}))
        backend.store_set("a", "k", _json("p"), "p1")
        backend.deactivate_asset("a")
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == {"x": 1}
        assert [e.key for e in backend.store_entries("a")] == ["k"]
        assert backend.store_partitions("a") == ["p1"]

    # -- sweep ----------------------------------------------------------------------------

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

    # == asset store, through Instance.asset_store =======================================

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

    def test_compare_and_set_through_asset_store(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.compare_and_set("k", "v1", expected_version=None) == 1
        with pytest.raises(ConflictError):
            store.compare_and_set("k", "lost", expected_version=None)
        with pytest.raises(ConflictError):
            store.compare_and_set("k", "lost", expected_version=2)
        assert store.compare_and_set("k", "v2", expected_version=1) == 2
        assert store.get("k") == "v2"

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

    def test_update_uses_default_when_absent(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        seen: list[Any] = []

        def bump(current: int) -> int:
            seen.append(current)
            return current + 1

        assert store.update("runs", bump, default=10) == 11
        assert seen == [10]
        assert store.get("runs") == 11

    def test_update_stores_and_returns_the_new_value(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("seen", ["a"])
        assert store.update("seen", lambda xs: [*xs, "b"]) == ["a", "b"]
        assert store.get("seen") == ["a", "b"]
        entry = store.get_entry("seen")
        assert entry is not None and entry.version == 2

    def test_update_rejecting_none_leaves_state_unchanged(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("k", 5)
        with pytest.raises(StoreValueError):
            store.update("k", lambda n: None)
        with pytest.raises(StoreValueError):
            store.update("absent", lambda n: None, default=0)
        entry = store.get_entry("k")
        assert entry is not None and (entry.value, entry.version) == (5, 1)
        assert store.get_entry("absent") is None

    def test_update_in_a_partition(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        part = store.partition("2024-06-01")
        assert part.update("rows", lambda n: n + 5, default=0) == 5
        assert part.update("rows", lambda n: n + 5, default=0) == 10
        assert store.get("rows") is None

    def test_advance_sets_an_absent_key(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        assert store.advance("watermark", "2024-06-01T00:00:00Z") is True
        assert store.get("watermark") == "2024-06-01T00:00:00Z"

    def test_advance_moves_only_forward(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("watermark", 10)
        assert store.advance("watermark", 12) is True
        assert store.get("watermark") == 12
        assert store.advance("watermark", 11) is False
        assert store.advance("watermark", 12) is False
        entry = store.get_entry("watermark")
        assert entry is not None and (entry.value, entry.version) == (12, 2)

    def test_advance_with_mismatched_type_raises_type_error(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        store.set("watermark", "2024-06-01")
        with pytest.raises(TypeError, match="watermark"):
            store.advance("watermark", 20240602)
        assert store.get("watermark") == "2024-06-01"

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

    def test_sweep_and_reregister_through_instance(self, instance: Instance) -> None:
        orders = Asset("orders", uri=_uri("orders"))
        instance.asset_store(orders).set("k", 1)
        instance.deactivate(orders)
        assert instance.sweep() == 1
        instance.register(orders)
        store = instance.asset_store(orders)
        assert store.keys() == []
        assert store.set("k", 2) == 1

    # == concurrency =======================================================================

    def _run_threads(self, work: Callable[[int], Any]) -> list[Any]:
        """Run ``work(i)`` for each thread index at once; return results, re-raise failures."""
        barrier = threading.Barrier(self.threads)

        def start(i: int) -> Any:
            barrier.wait(timeout=30)
            return work(i)

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            futures = [pool.submit(start, i) for i in range(self.threads)]
            return [f.result(timeout=300) for f in futures]

    def test_concurrent_updates_lose_no_increment(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))

        def work(i: int) -> None:
            for _ in range(self.updates_per_thread):
                store.update("counter", lambda n: n + 1, default=0)

        self._run_threads(work)
        assert store.get("counter") == self.threads * self.updates_per_thread
        entry = store.get_entry("counter")
        assert entry is not None and entry.version == self.threads * self.updates_per_thread

    def test_concurrent_updates_on_distinct_keys(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))
        per_thread = max(1, self.updates_per_thread // 5)

        def work(i: int) -> None:
            for _ in range(per_thread):
                store.update(f"thread-{i}", lambda n: n + 1, default=0)

        self._run_threads(work)
        assert store.items() == {f"thread-{i}": per_thread for i in range(self.threads)}

    def test_concurrent_create_has_exactly_one_winner(self, instance: Instance) -> None:
        store = instance.asset_store(Asset("orders", uri=_uri("orders")))

        def work(i: int) -> bool:
            try:
                store.compare_and_set("owner", i, expected_version=None)
            except ConflictError:
                return False
            return True

        won = self._run_threads(work)
        assert won.count(True) == 1
        assert store.get("owner") == won.index(True)

    def test_concurrent_appends_get_unique_consecutive_ids(self, backend: StateBackend) -> None:
        self.register(backend, "a")

        def work(i: int) -> list[int]:
            ids: list[int] = []
            for _ in range(self.appends_per_thread):
                ids += _ids(backend.append_events([NewEvent("a", partition_key=f"t{i}")]))
            return ids

        per_thread = self._run_threads(work)
        total = self.threads * self.appends_per_thread
        assert sorted(i for ids in per_thread for i in ids) == list(range(1, total + 1))
        for ids in per_thread:
            assert ids == sorted(ids)
        assert _ids(backend.query_events(EventQuery("a"))) == list(range(1, total + 1))

    def test_cursor_reader_beside_writers_sees_every_event_once(
        self, backend: StateBackend
    ) -> None:
        """A consumer paging with ``after=`` while others append never skips an event."""
        self.register(backend, "a")
        writers = max(1, self.threads - 1)
        total = writers * self.appends_per_thread
        done = threading.Event()

        def write(i: int) -> None:
            for _ in range(self.appends_per_thread):
                backend.append_events([NewEvent("a", partition_key=f"w{i}")])

        def read() -> list[int]:
            seen: list[int] = []
            deadline = time.monotonic() + 120
            while len(seen) < total and time.monotonic() < deadline:
                page = backend.query_events(EventQuery("a", after=seen[-1] if seen else None))
                seen += _ids(page)
                if not page:
                    if done.is_set() and not backend.query_events(
                        EventQuery("a", after=seen[-1] if seen else None)
                    ):
                        break
                    time.sleep(0.001)
            return seen

        with ThreadPoolExecutor(max_workers=writers + 1) as pool:
            reader = pool.submit(read)
            for future in [pool.submit(write, i) for i in range(writers)]:
                future.result(timeout=300)
            done.set()
            seen = reader.result(timeout=300)
        assert seen == list(range(1, total + 1))

    # == event log ==========================================================================

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

    # == consumer cursors ==================================================================

    def test_cursors_default_to_empty(self, backend: StateBackend) -> None:
        assert backend.get_cursors("scheduler") == {}
        assert backend.list_consumers() == []

    def test_set_and_get_cursors(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 5})
        assert backend.get_cursors("scheduler") == {"a": 3, "b": 5}

    def test_set_cursors_keeps_other_assets(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 5})
        backend.set_cursors("scheduler", {"a": 4, "c": 1})
        assert backend.get_cursors("scheduler") == {"a": 4, "b": 5, "c": 1}

    def test_consumers_are_independent_and_listed_sorted(self, backend: StateBackend) -> None:
        backend.set_cursors("zeta", {"a": 1})
        backend.set_cursors("alpha", {"a": 7})
        assert backend.get_cursors("zeta") == {"a": 1}
        assert backend.get_cursors("alpha") == {"a": 7}
        assert backend.list_consumers() == ["alpha", "zeta"]

    def test_returned_cursors_are_a_copy(self, backend: StateBackend) -> None:
        backend.set_cursors("scheduler", {"a": 1})
        backend.get_cursors("scheduler")["a"] = 99
        assert backend.get_cursors("scheduler") == {"a": 1}

    # == apply: store writes and events together ===========================================

    def test_apply_writes_and_events_together(self, backend: StateBackend) -> None:
        self.register(backend, "a", "b")
        events = backend.apply(
            [
                StoreWrite("a", "watermark", _json("2024-06-01")),
                StoreWrite("b", "k", _json(1), "p"),
            ],
            [NewEvent("a", extra_json=_json({"rows": 3})), NewEvent("b")],
        )
        assert [(e.asset_name, e.id) for e in events] == [("a", 1), ("b", 1)]
        entry = backend.store_get("a", "watermark")
        assert entry is not None and entry.value == "2024-06-01"
        assert backend.store_keys("b", "p") == ["k"]
        assert backend.query_events(EventQuery("a"))[0].extra == {"rows": 3}

    def test_apply_with_none_value_deletes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "gone", _json(1))
        assert backend.apply([StoreWrite("a", "gone", None)], []) == []
        assert backend.store_get("a", "gone") is None

    def test_apply_naming_unknown_asset_writes_nothing(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.apply([StoreWrite("a", "k", _json(1))], [NewEvent("a"), NewEvent("missing")])
        assert backend.store_get("a", "k") is None
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_naming_inactive_asset_writes_nothing(self, backend: StateBackend) -> None:
        self.require(backend, "atomic_batches")
        self.register(backend, "a", "b")
        backend.store_set("a", "k", _json("before"))
        backend.deactivate_asset("b")
        with pytest.raises(AssetInactiveError):
            backend.apply(
                [StoreWrite("a", "k", _json("after")), StoreWrite("a", "new", _json(1))],
                [NewEvent("a"), NewEvent("b")],
            )
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("before", 1)
        assert backend.store_get("a", "new") is None
        assert backend.query_events(EventQuery("a")) == []
        assert backend.query_events(EventQuery("b")) == []

    def test_apply_inactive_store_write_appends_no_event(self, backend: StateBackend) -> None:
        self.require(backend, "atomic_batches")
        self.register(backend, "a", "b")
        backend.deactivate_asset("b")
        with pytest.raises(AssetInactiveError):
            backend.apply([StoreWrite("b", "k", _json(1))], [NewEvent("a")])
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_checks_expected_versions_and_writes_nothing_on_a_lost_race(
        self, backend: StateBackend
    ) -> None:
        self.register(backend, "a")
        backend.store_set("a", "runs", _json(5))  # version 1
        backend.store_set("a", "runs", _json(6))  # version 2: a concurrent writer won
        with pytest.raises(ConflictError, match="runs"):
            backend.apply(
                [
                    StoreWrite("a", "runs", _json(6), expected_version=1),
                    StoreWrite("a", "other", _json(1)),
                ],
                [NewEvent("a")],
            )
        entry = backend.store_get("a", "runs")
        assert entry is not None and (entry.value, entry.version) == (6, 2)
        assert backend.store_get("a", "other") is None
        assert backend.query_events(EventQuery("a")) == []

    def test_apply_with_expected_versions_that_hold_writes(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "runs", _json(5))
        backend.store_set("a", "gone", _json(1))
        backend.apply(
            [
                StoreWrite("a", "runs", _json(6), expected_version=1),
                StoreWrite("a", "new", _json(1), expected_version=None),
                StoreWrite("a", "gone", None, expected_version=1),
            ],
            [],
        )
        entry = backend.store_get("a", "runs")
        assert entry is not None and (entry.value, entry.version) == (6, 2)
        new = backend.store_get("a", "new")
        assert new is not None and (new.value, new.version) == (1, 1)
        assert backend.store_get("a", "gone") is None
        with pytest.raises(ConflictError):
            backend.apply([StoreWrite("a", "new", _json(2), expected_version=None)], [])

    # == event import and deletion (declared by capabilities) =============================

    def test_import_events_keeps_ids_and_fields(self, backend: StateBackend) -> None:
        self.require(backend, "event_import")
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

    def test_import_events_out_of_order_imports_nothing(self, backend: StateBackend) -> None:
        self.require(backend, "event_import")
        self.register(backend, "a")
        self.append(backend, "a", 2)

        def event(i: int) -> AssetEvent:
            return AssetEvent(id=i, asset_name="a", asset_uri=_uri("a"), timestamp=T0)

        with pytest.raises(ValueError):
            backend.import_events([event(5), event(2)])
        with pytest.raises(ValueError):
            backend.import_events([event(2)])
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 2]

    def test_import_events_of_unknown_asset_imports_nothing(self, backend: StateBackend) -> None:
        self.require(backend, "event_import")
        self.register(backend, "a")
        events = [
            AssetEvent(id=1, asset_name=name, asset_uri=_uri(name), timestamp=T0)
            for name in ("a", "missing")
        ]
        with pytest.raises(AssetNotFoundError, match="missing"):
            backend.import_events(events)
        assert backend.query_events(EventQuery("a")) == []

    def test_delete_events_never_reuses_ids(self, backend: StateBackend) -> None:
        self.require(backend, "event_deletion")
        self.register(backend, "a")
        self.append(backend, "a", 4)
        assert backend.delete_events("a", [2, 4, 9]) == 2
        assert _ids(backend.query_events(EventQuery("a"))) == [1, 3]
        assert _ids(self.append(backend, "a")) == [5]

    def test_deleted_events_leave_latest_and_partitions(self, backend: StateBackend) -> None:
        self.require(backend, "event_deletion")
        self.register(backend, "a")
        backend.append_events([NewEvent("a", partition_key=p) for p in ("p1", "p2", "p1")])
        assert backend.delete_events("a", [3]) == 1
        assert backend.latest_events(["a"])["a"].id == 2
        assert {p: e.id for p, e in backend.latest_partition_events("a").items()} == {
            "p1": 1,
            "p2": 2,
        }
        assert backend.delete_events("a", [1, 2]) == 2
        assert backend.latest_events(["a"]) == {}
        assert _ids(self.append(backend, "a")) == [4]

    def test_import_events_of_several_assets_in_one_call(self, backend: StateBackend) -> None:
        self.require(backend, "event_import")
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

    def test_delete_events_touches_only_that_asset_and_no_store(
        self, backend: StateBackend
    ) -> None:
        self.require(backend, "event_deletion")
        self.register(backend, "a", "b")
        self.append(backend, "a", 2)
        self.append(backend, "b", 2)
        backend.store_set("a", "k", _json(1))
        assert backend.delete_events("a", [1, 2]) == 2
        assert backend.query_events(EventQuery("a")) == []
        assert "a" not in backend.latest_events()
        assert _ids(backend.query_events(EventQuery("b"))) == [1, 2]
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1

    def test_pagination_steps_over_deleted_events(self, backend: StateBackend) -> None:
        self.require(backend, "event_deletion")
        self.register(backend, "a")
        self.append(backend, "a", 10)
        backend.delete_events("a", [2, 4, 6, 8])
        seen: list[int] = []
        after: int | None = None
        while page := backend.query_events(EventQuery("a", after=after, limit=2)):
            seen.extend(_ids(page))
            after = page[-1].id
        assert seen == [1, 3, 5, 7, 9, 10]
        newest_first = backend.query_events(EventQuery("a", before=9, limit=2, descending=True))
        assert _ids(newest_first) == [7, 5]

    # == schema ============================================================================

    def test_upgrade_is_idempotent_and_keeps_state(self, backend: StateBackend) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json(1))
        self.append(backend, "a")
        backend.upgrade()
        backend.upgrade()
        status = backend.schema_status()
        if status:
            assert status["current"] == status["head"]
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == 1
        assert _ids(backend.query_events(EventQuery("a"))) == [1]

    # == persistence (needs reopen_backend and capabilities.persistent) ====================

    def test_store_persists_across_backend_objects(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        self.register(backend, "a")
        backend.store_set("a", "k", _json({"nested": [1, 2.5, "✓"]}))
        backend.store_set("a", "k", _json({"nested": [1, 2.5, "✓"], "v": 2}))
        backend.store_set("a", "k", _json("p"), "p1")
        other = reopen()
        entry = other.store_get("a", "k")
        assert entry is not None
        assert (entry.value, entry.version) == ({"nested": [1, 2.5, "✓"], "v": 2}, 2)
        assert other.store_partitions("a") == ["p1"]
        assert other.store_set("a", "k", _json(3), expected_version=2) == 3

    def test_events_persist_and_ids_continue(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        self.register(backend, "a")
        appended = backend.append_events(
            [NewEvent("a", extra_json=_json({"i": i}), aliases=("al",)) for i in range(3)]
        )
        other = reopen()
        assert other.query_events(EventQuery("a")) == appended
        assert other.alias_targets("al") == ["a"]
        assert _ids(self.append(other, "a")) == [4]

    def test_registry_persists(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        backend.register_asset("a", _uri("a"), group="g", extra_json=_json({"x": 1}))
        self.register(backend, "b")
        backend.deactivate_asset("b")
        other = reopen()
        assert [(r.name, r.active) for r in other.list_assets()] == [("a", True), ("b", False)]
        record = other.get_asset_by_uri(_uri("a"))
        assert record is not None and (record.group, record.extra) == ("g", {"x": 1})
        with pytest.raises(ConflictError):
            other.register_asset("a", _uri("elsewhere"))

    def test_cursors_persist(
        self, backend: StateBackend, reopen: Callable[[], StateBackend]
    ) -> None:
        backend.set_cursors("scheduler", {"a": 3, "b": 1})
        other = reopen()
        assert other.get_cursors("scheduler") == {"a": 3, "b": 1}
        assert other.list_consumers() == ["scheduler"]
