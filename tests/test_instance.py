"""Instance: construction, the current instance, the asset registry and the event log."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from pathlib import Path

import assetry.instance as instance_module
import pytest
from assetry import (
    Asset,
    AssetAlias,
    AssetInactiveError,
    AssetNotFoundError,
    ConfigurationError,
    ConflictError,
    Instance,
    StoreValueError,
    UnsupportedSchemeError,
    current_instance,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.errors import AssetTypeError, AssetValueError

ORDERS = Asset("orders", uri="s3://data/orders")
CUSTOMERS = Asset("customers", uri="s3://data/customers")
UTC = dt.UTC


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No outer ASSETRY_* variable or configuration file, and no process-wide default."""
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(instance_module, "_default", None)


@pytest.fixture
def inst() -> Instance:
    return Instance(backend="memory")


def _shared_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


# -- construction ----------------------------------------------------------------------------


def test_memory_backend_by_name_is_private_to_the_instance() -> None:
    first, second = Instance(backend="memory"), Instance(backend="memory")
    assert isinstance(first.backend, MemoryBackend)
    first.asset_store(ORDERS).set("k", 1)
    assert second.asset_store(ORDERS).get("k") is None
    assert first.settings.sources["backend"] == "argument"


def test_from_url_picks_the_backend_by_scheme_and_shares_named_memory() -> None:
    url = _shared_url()
    writer, reader = Instance.from_url(url), Instance.from_url(url)
    assert isinstance(writer.backend, MemoryBackend)
    writer.asset_store(ORDERS).set("watermark", "2024-06-01")
    assert reader.asset_store(ORDERS).get("watermark") == "2024-06-01"
    assert Instance.from_url(_shared_url()).asset_store(ORDERS).get("watermark") is None
    assert url in repr(writer)


@pytest.mark.parametrize("url", ["", None, 5])
def test_from_url_needs_a_url_string(url: object) -> None:
    with pytest.raises(ConfigurationError, match="URL string"):
        Instance.from_url(url)  # type: ignore[arg-type]


def test_from_url_with_an_unknown_scheme_is_an_error() -> None:
    with pytest.raises(UnsupportedSchemeError, match="'ftp'"):
        Instance.from_url("ftp://host/state")


def test_from_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _shared_url()
    monkeypatch.setenv("ASSETRY_BACKEND", "memory")
    monkeypatch.setenv("ASSETRY_BACKEND_URL", url)
    monkeypatch.setenv("ASSETRY_MAX_VALUE_BYTES", "64")
    inst = Instance.from_config()
    assert inst.settings.sources["backend"] == "environment ASSETRY_BACKEND"
    assert inst.max_value_bytes == 64
    inst.asset_store(ORDERS).set("small", "x")
    with pytest.raises(StoreValueError, match="limit of 64"):
        inst.asset_store(ORDERS).set("big", "x" * 100)
    assert Instance.from_url(url).asset_store(ORDERS).get("small") == "x"


def test_from_config_reads_pyproject_in_the_working_directory() -> None:
    url = _shared_url()
    Path("pyproject.toml").write_text(f'[tool.assetry]\nbackend_url = "{url}"\n')
    inst = Instance.from_config()
    assert isinstance(inst.backend, MemoryBackend)
    assert inst.backend.url == url
    assert inst.settings.sources["backend_url"].endswith("pyproject.toml")


def test_from_config_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "no-such-backend")
    inst = Instance.from_config(backend="memory", max_value_bytes=10)
    assert isinstance(inst.backend, MemoryBackend)
    assert inst.max_value_bytes == 10


def test_a_ready_backend_object_is_used_as_is() -> None:
    backend = MemoryBackend()
    inst = Instance(backend=backend)
    assert inst.backend is backend
    assert inst.settings.backend == "memory"
    inst.asset_store(ORDERS).set("k", [1, 2])
    assert backend.store_get("orders", "k").value == [1, 2]  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [1, 2.5, object(), MemoryBackend, ["memory"]])
def test_bad_backend_types_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="entry-point name or a StateBackend"):
        Instance(backend=bad)  # type: ignore[arg-type]


def test_options_the_backend_rejects_are_a_configuration_error_without_secrets() -> None:
    with pytest.raises(ConfigurationError) as info:
        Instance(backend="memory", url="memory://user:TOPSECRET@shared", bogus_option=1)
    message = str(info.value)
    assert "bogus_option" in message and "'memory'" in message
    assert "TOPSECRET" not in message


def test_instance_closes_as_a_context_manager() -> None:
    closed: list[bool] = []

    class ClosingBackend(MemoryBackend):
        def close(self) -> None:
            closed.append(True)

    with Instance(backend=ClosingBackend()) as inst:
        inst.asset_store(ORDERS).set("k", 1)
    assert closed == [True]


# -- the current instance --------------------------------------------------------------------


def test_use_instance_nests_and_restores() -> None:
    outer, inner = Instance(backend="memory"), Instance(backend="memory")
    with use_instance(outer) as made_current:
        assert made_current is outer
        assert current_instance() is outer
        with use_instance(inner):
            assert current_instance() is inner
        assert current_instance() is outer
    assert current_instance() is not outer


def test_use_instance_restores_after_an_exception() -> None:
    outer, inner = Instance(backend="memory"), Instance(backend="memory")
    with use_instance(outer):
        with pytest.raises(RuntimeError), use_instance(inner):
            raise RuntimeError("task failed")
        assert current_instance() is outer


def test_use_instance_needs_an_instance() -> None:
    with pytest.raises(TypeError, match="needs an Instance"), use_instance("memory"):  # type: ignore[arg-type]
        pass


def test_current_instance_without_use_instance_comes_from_configuration_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "memory")
    first = current_instance()
    assert isinstance(first.backend, MemoryBackend)
    assert current_instance() is first


def test_use_instance_does_not_leak_into_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "memory")
    mine = Instance(backend="memory")
    seen: list[Instance] = []
    with use_instance(mine):
        thread = threading.Thread(target=lambda: seen.append(current_instance()))
        thread.start()
        thread.join()
    assert seen and seen[0] is not mine


# -- the asset registry ----------------------------------------------------------------------


def test_ensure_registers_a_new_asset_once(inst: Instance) -> None:
    assert inst.ensure(ORDERS) == "orders"
    assert inst.ensure(ORDERS) == "orders"
    record = inst.get_asset(ORDERS)
    assert record is not None and record.active and record.uri == "s3://data/orders"
    assert [r.name for r in inst.assets()] == ["orders"]


def test_ensure_does_not_reactivate_a_deactivated_asset(inst: Instance) -> None:
    inst.ensure(ORDERS)
    assert inst.deactivate(ORDERS) is True
    assert inst.ensure(ORDERS) == "orders"
    assert inst.get_asset(ORDERS).active is False  # type: ignore[union-attr]
    # another Instance on the same backend, with a cold cache, agrees
    assert Instance(backend=inst.backend).ensure(ORDERS) == "orders"
    assert inst.get_asset("orders").active is False  # type: ignore[union-attr]
    with pytest.raises(AssetInactiveError, match="'orders'"):
        inst.asset_store(ORDERS).set("k", 1)
    inst.register(ORDERS)  # an explicit registration reactivates
    assert inst.get_asset(ORDERS).active is True  # type: ignore[union-attr]
    inst.asset_store(ORDERS).set("k", 1)


def test_ensure_with_another_uri_for_the_same_name_is_a_conflict(inst: Instance) -> None:
    inst.ensure(ORDERS)
    with pytest.raises(ConflictError, match="'orders'"):
        inst.ensure(Asset("orders", uri="s3://elsewhere/orders"))


def test_register_needs_an_asset(inst: Instance) -> None:
    with pytest.raises(TypeError, match="needs an Asset"):
        inst.register("orders")  # type: ignore[arg-type]


def test_resolve_a_reference_by_name_and_by_uri(inst: Instance) -> None:
    registered = Asset("orders", uri="s3://data/orders", group="sales", extra={"o": 1})
    inst.register(registered)
    by_name = inst.resolve(Asset.ref(name="orders"))
    by_uri = inst.resolve(Asset.ref(uri="S3://data/orders/"))
    assert by_name == by_uri == registered
    assert by_name.extra == {"o": 1}
    assert inst.resolve("orders") == registered
    assert inst.resolve(ORDERS) is ORDERS


@pytest.mark.parametrize(
    "ref",
    [Asset.ref(name="nobody"), Asset.ref(uri="s3://data/nobody"), "nobody"],
    ids=["name", "uri", "str"],
)
def test_resolve_an_unknown_asset_is_not_found(inst: Instance, ref: object) -> None:
    inst.ensure(ORDERS)
    with pytest.raises(
        AssetNotFoundError, match=r"no asset with (name|uri) .*nobody.* is registered"
    ):
        inst.resolve(ref)  # type: ignore[arg-type]


def test_resolve_an_inactive_asset_is_not_found(inst: Instance) -> None:
    inst.ensure(ORDERS)
    inst.deactivate(ORDERS)
    for ref in (Asset.ref(name="orders"), Asset.ref(uri="s3://data/orders")):
        with pytest.raises(AssetNotFoundError, match="inactive") as info:
            inst.resolve(ref)
        assert str(info.value).startswith("the asset with")  # a message, not a KeyError repr


def test_resolve_rejects_other_types(inst: Instance) -> None:
    with pytest.raises(TypeError, match="cannot resolve"):
        inst.resolve(AssetAlias("al"))  # type: ignore[arg-type]


# -- recording events ------------------------------------------------------------------------


def test_record_event_returns_the_stored_event(inst: Instance) -> None:
    first = inst.record_event(ORDERS, {"rows": 10}, source_task_id="load", source_run_id="r1")
    second = inst.record_event(ORDERS)
    assert (first.id, second.id) == (1, 2)
    assert first.extra == {"rows": 10} and second.extra == {}
    assert first.asset == ORDERS
    assert first.timestamp.tzinfo is not None and first.timestamp.utcoffset() == dt.timedelta(0)
    assert (first.source_task_id, first.source_dag_run) == ("load", "r1")
    assert inst.events(ORDERS) == [first, second]


def test_record_event_converts_an_aware_timestamp_to_utc(inst: Instance) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    event = inst.record_event(ORDERS, timestamp=dt.datetime(2024, 6, 1, 14, 0, tzinfo=paris))
    assert event.timestamp == dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"timestamp": dt.datetime(2024, 6, 1)}, ValueError, "timezone-aware"),
        ({"partition_key": ""}, StoreValueError, "partition key must not be empty"),
        ({"partition_key": 20240601}, StoreValueError, "partition key must be a str"),
        ({"partition_key": "a\x00b"}, StoreValueError, "NUL"),
        ({"extra": [1, 2]}, StoreValueError, "extra must be a dict"),
        ({"extra": {"rows": float("nan")}}, StoreValueError, "not JSON"),
        ({"extra": {"when": dt.date(2024, 6, 1)}}, StoreValueError, r"date at value\['when'\]"),
        ({"extra": {"blob": "x" * 70_000}}, StoreValueError, "over the limit"),
        ({"aliases": [1]}, TypeError, "alias name"),
        ({"aliases": [""]}, ValueError, "alias name"),
    ],
)
def test_invalid_event_is_rejected_and_leaves_no_event(
    inst: Instance, kwargs: dict, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        inst.record_event(ORDERS, **kwargs)
    assert inst.events(ORDERS) == []
    assert inst.latest_event(ORDERS) is None


def test_batch_with_one_invalid_extra_records_nothing(inst: Instance) -> None:
    with pytest.raises(StoreValueError, match=r"value\['b'\]"):
        inst.record_events(ORDERS, [{"a": 1}, {"b": float("inf")}, {"c": 3}])
    assert inst.events(ORDERS) == []
    events = inst.record_events(ORDERS, [{"a": 1}, None, {"c": 3}], partition_key="p")
    assert [(e.id, e.extra, e.partition_key) for e in events] == [
        (1, {"a": 1}, "p"),
        (2, {}, "p"),
        (3, {"c": 3}, "p"),
    ]
    assert inst.record_events(ORDERS, []) == []


def test_event_on_an_inactive_asset_is_refused(inst: Instance) -> None:
    inst.record_event(ORDERS)
    inst.deactivate(ORDERS)
    with pytest.raises(AssetInactiveError):
        inst.record_event(ORDERS)
    assert [e.id for e in inst.events(ORDERS)] == [1]


def test_event_by_unknown_name_is_not_found(inst: Instance) -> None:
    with pytest.raises(AssetNotFoundError, match="'ghost'"):
        inst.record_event("ghost")


# -- reading events --------------------------------------------------------------------------


def _at(day: int) -> dt.datetime:
    return dt.datetime(2024, 6, day, tzinfo=UTC)


def test_events_of_an_alias_merge_its_assets_by_timestamp(inst: Instance) -> None:
    alias = AssetAlias("s3_bucket")
    inst.record_event(ORDERS, {"n": 2}, aliases=[alias], timestamp=_at(2))
    inst.record_event(CUSTOMERS, {"n": 1}, aliases=["s3_bucket"], timestamp=_at(1))
    inst.record_event(ORDERS, {"n": 4}, aliases=[alias], timestamp=_at(4))
    inst.record_event(CUSTOMERS, {"n": 3}, aliases=[alias], timestamp=_at(3), partition_key="p")
    inst.record_event(ORDERS, {"n": 99}, timestamp=_at(5))  # not through the alias
    inst.record_event(Asset("other"), {"n": 98}, aliases=["another"], timestamp=_at(6))

    events = inst.events(alias)
    assert [e.extra["n"] for e in events] == [1, 2, 3, 4]
    assert [e.asset_name for e in events] == ["customers", "orders", "customers", "orders"]
    assert all(e.aliases == ("s3_bucket",) for e in events)
    assert [e.extra["n"] for e in inst.events(alias, descending=True)] == [4, 3, 2, 1]
    assert [e.extra["n"] for e in inst.events(alias, limit=2)] == [1, 2]
    assert [e.extra["n"] for e in inst.events(alias, descending=True, limit=3)] == [4, 3, 2]
    assert [e.extra["n"] for e in inst.events(alias, partition_key="p")] == [3]
    assert [e.extra["n"] for e in inst.events(alias, since=_at(2), until=_at(4))] == [2, 3]
    assert inst.events(AssetAlias("never-used")) == []


def test_events_filters_by_id_partition_and_limit(inst: Instance) -> None:
    for day, part in [(1, "a"), (2, "b"), (3, "a"), (4, None), (5, "a")]:
        inst.record_event(ORDERS, {"day": day}, partition_key=part, timestamp=_at(day))
    assert [e.id for e in inst.events(ORDERS, after=2)] == [3, 4, 5]
    assert [e.id for e in inst.events(ORDERS, after=1, before=4)] == [2, 3]
    assert [e.id for e in inst.events(ORDERS, partition_key="a")] == [1, 3, 5]
    assert [e.id for e in inst.events(ORDERS, limit=2, descending=True)] == [5, 4]
    assert [e.id for e in inst.events(ORDERS, since=_at(2), until=_at(4))] == [2, 3]
    assert [e.id for e in inst.iter_events(ORDERS, after=1, page_size=2)] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": -1}, AssetValueError),
        ({"limit": True}, AssetTypeError),
        ({"limit": 1.5}, AssetTypeError),
        ({"since": dt.datetime(2024, 1, 1)}, AssetValueError),
    ],
)
def test_events_rejects_bad_arguments(inst: Instance, kwargs: dict, error: type[Exception]) -> None:
    """A value out of range is a ValueError, a value of the wrong type (a bool is not a
    limit) a TypeError, both typed assetry errors."""
    with pytest.raises(error):
        inst.events(ORDERS, **kwargs)


def test_latest_event_overall_and_per_partition(inst: Instance) -> None:
    assert inst.latest_event(ORDERS) is None
    inst.record_event(ORDERS, {"v": 1}, partition_key="2024-06-01")
    inst.record_event(ORDERS, {"v": 2}, partition_key="2024-06-02")
    inst.record_event(ORDERS, {"v": 3}, partition_key="2024-06-01")
    inst.record_event(ORDERS, {"v": 4})
    assert inst.latest_event(ORDERS).extra == {"v": 4}  # type: ignore[union-attr]
    assert inst.latest_event(ORDERS, partition_key="2024-06-01").extra == {"v": 3}  # type: ignore[union-attr]
    assert inst.latest_event(ORDERS, partition_key="2024-06-02").id == 2  # type: ignore[union-attr]
    assert inst.latest_event(ORDERS, partition_key="2024-06-03") is None
    latest = inst.latest_partition_events(ORDERS)
    assert {k: e.extra["v"] for k, e in latest.items()} == {"2024-06-01": 3, "2024-06-02": 2}
    inst.record_event(CUSTOMERS, {"v": 5})
    assert {k: e.extra["v"] for k, e in inst.latest_events().items()} == {
        "orders": 4,
        "customers": 5,
    }
    assert list(inst.latest_events([CUSTOMERS])) == ["customers"]


def test_connections_of_explicit_settings_reach_the_backend(
    s3_bucket: str, s3_server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from assetry import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSETRY_CONN_AWS_DEFAULT", raising=False)
    settings = load_settings(
        backend="objectstore",
        url=f"s3://{s3_bucket}/state",
        environ={"ASSETRY_CONN_AWS_DEFAULT": json.dumps(s3_server.storage_options)},
    )
    with Instance(settings=settings) as inst:
        store = inst.asset_store(Asset("explicit-settings"))
        store.set("k", 1)
        assert store.get("k") == 1
