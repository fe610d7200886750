"""Watchers: triggers, their stored watermark, Instance.watch(), ObjectStorageTrigger."""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from assetry import (
    Asset,
    AssetWatcher,
    Instance,
    ObjectStorageTrigger,
    StoreValueError,
    Trigger,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.watchers import state_namespace


class ListTrigger(Trigger):
    """Reports the items appended to a list since the stored watermark (its length)."""

    def __init__(self, source: list) -> None:
        self.source = source

    def poll(self, state):
        seen = state.get("watermark", default=0)
        yield from self.source[seen:]
        state.set("watermark", len(self.source))


@pytest.fixture(params=["memory", "sql"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Instance]]:
    """Opens a new Instance on the same state each call (as a new process would)."""
    opened: list[Instance] = []
    if request.param == "memory":
        url = f"memory://watchers-{uuid.uuid4().hex}"

        def make() -> Instance:
            return Instance(backend=MemoryBackend(url=url))
    else:

        def make() -> Instance:
            instance = Instance(backend="sql", url=f"sqlite:///{tmp_path}/state.db")
            instance.upgrade()
            return instance

    def opener() -> Instance:
        opened.append(make())
        return opened[-1]

    yield opener
    for instance in opened:
        instance.close()


@pytest.fixture
def inst(reopen: Callable[[], Instance]) -> Iterator[Instance]:
    instance = reopen()
    with use_instance(instance):
        yield instance


def _asset(trigger, name: str = "feed", watcher: str = "poller") -> Asset:
    return Asset(name, uri=f"s3://bucket/{name}", watchers=[AssetWatcher(watcher, trigger)])


def test_watch_records_one_event_per_payload_with_from_trigger(inst: Instance) -> None:
    source = [{"file": "a.csv"}, {"file": "b.csv"}]
    feed = _asset(ListTrigger(source))
    inst.register(feed)
    events = inst.watch(once=True)
    assert [e.extra for e in events] == [
        {"from_trigger": True, "payload": {"file": "a.csv"}, "watcher": "poller"},
        {"from_trigger": True, "payload": {"file": "b.csv"}, "watcher": "poller"},
    ]
    assert inst.events(feed) == events


def test_a_second_pass_reports_only_what_is_new(inst: Instance) -> None:
    source = ["a"]
    feed = _asset(ListTrigger(source))
    inst.register(feed)
    inst.watch()
    assert inst.watch() == []
    source.append("b")
    assert [e.extra["payload"] for e in inst.watch()] == ["b"]


def test_a_new_instance_resumes_from_the_stored_watermark(
    reopen: Callable[[], Instance],
) -> None:
    source = ["a", "b"]
    first = reopen()
    first.register(_asset(ListTrigger(source)))
    assert len(first.watch()) == 2
    source.append("c")
    second = reopen()
    second.register(_asset(ListTrigger(source)))
    assert [e.extra["payload"] for e in second.watch()] == ["c"]
    feed = _asset(ListTrigger(source))
    assert second.asset_store(feed).partition(state_namespace("poller")).get("watermark") == 3


def test_the_watermark_stays_when_the_events_cannot_be_recorded(inst: Instance) -> None:
    source: list = [{"ratio": math.nan}]
    feed = _asset(ListTrigger(source))
    inst.register(feed)
    with pytest.raises(StoreValueError, match="watcher 'poller'"):
        inst.watch()
    state = inst.asset_store(feed).partition(state_namespace("poller"))
    assert state.get("watermark") is None
    assert inst.events(feed) == []
    source[0] = {"ratio": 0.5}
    assert [e.extra["payload"] for e in inst.watch()] == [{"ratio": 0.5}]


def test_trigger_state_is_kept_apart_from_the_assets_own_keys(inst: Instance) -> None:
    feed = _asset(ListTrigger(["a"]))
    inst.register(feed)
    inst.asset_store(feed).set("watermark", "the asset's own")
    inst.watch()
    store = inst.asset_store(feed)
    assert store.get("watermark") == "the asset's own"
    assert store.partitions() == ["watcher:poller"]


def test_a_failing_trigger_does_not_stop_the_others(inst: Instance) -> None:
    class Broken(Trigger):
        def poll(self, state):
            raise ConnectionError("bucket unreachable")

    broken = _asset(Broken(), "a_broken")
    fine = _asset(ListTrigger(["x"]), "b_fine")
    inst.register(broken)
    inst.register(fine)
    with pytest.raises(ConnectionError, match="bucket unreachable") as info:
        inst.watch()
    assert any("a_broken" in note for note in info.value.__notes__)
    assert len(inst.events(fine)) == 1


def test_only_active_registered_assets_are_watched(inst: Instance) -> None:
    active = _asset(ListTrigger(["a"]), "active")
    gone = _asset(ListTrigger(["b"]), "gone")
    unregistered = _asset(ListTrigger(["c"]), "unregistered")
    inst.register(active)
    inst.register(gone)
    inst.deactivate(gone)
    assert [e.asset_name for e in inst.watch()] == ["active"]
    assert [e.asset_name for e in inst.watch(assets=[unregistered])] == ["unregistered"]


def test_assets_declared_by_a_task_are_watched(inst: Instance) -> None:
    from assetry import task

    feed = _asset(ListTrigger(["a"]))

    @task(inlets=[feed])
    def noop():
        return None

    noop()
    assert len(inst.watch()) == 1


def test_async_triggers_are_polled(inst: Instance) -> None:
    class AsyncTrigger(Trigger):
        async def poll(self, state):
            count = state.get("count", default=0)
            state.set("count", count + 1)
            yield {"poll": count}

    feed = _asset(AsyncTrigger())
    inst.register(feed)
    inst.watch()
    assert [e.extra["payload"] for e in inst.watch()] == [{"poll": 1}]


def test_a_trigger_without_poll_is_a_clear_error(inst: Instance) -> None:
    inst.register(_asset(object()))
    with pytest.raises(TypeError, match="no poll"):
        inst.watch()


def test_watch_loops_until_stopped(inst: Instance) -> None:
    stop = threading.Event()
    polls: list[int] = []

    class Stopper(Trigger):
        def poll(self, state):
            polls.append(1)
            if len(polls) == 3:
                stop.set()
            yield len(polls)

    feed = _asset(Stopper())
    inst.register(feed)
    assert inst.watch(once=False, interval=0.01, stop=stop) == []
    assert [e.extra["payload"] for e in inst.events(feed)] == [1, 2, 3]


# -- ObjectStorageTrigger --------------------------------------------------------------------


def test_object_storage_trigger_reports_new_and_changed_files(
    reopen: Callable[[], Instance], tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    (landing / "day=1").mkdir(parents=True)
    (landing / "day=1" / "a.csv").write_text("id\n1\n")

    def landing_asset() -> Asset:
        trigger = ObjectStorageTrigger(f"file://{landing}/")
        return Asset("landing", uri=f"file://{landing}", watchers=[AssetWatcher("files", trigger)])

    inst = reopen()
    inst.register(landing_asset())
    (created,) = [e.extra["payload"] for e in inst.watch()]
    assert created["key"] == "day=1/a.csv"
    assert created["change"] == "created"
    assert created["uri"] == f"file://{landing}/day=1/a.csv"
    assert created["size"] == 5
    assert inst.watch() == []

    (landing / "b.csv").write_text("id\n2\n")
    target = landing / "day=1" / "a.csv"
    target.write_text("id\n1\n3\n")
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = reopen()  # resumes from the stored signatures
    again.register(landing_asset())
    changes = sorted((p["key"], p["change"]) for p in (e.extra["payload"] for e in again.watch()))
    assert changes == [("b.csv", "created"), ("day=1/a.csv", "modified")]
    assert again.watch() == []


def test_object_storage_trigger_on_a_missing_prefix_reports_nothing(
    inst: Instance, tmp_path: Path
) -> None:
    trigger = ObjectStorageTrigger(f"file://{tmp_path}/not-yet")
    inst.register(Asset("later", uri="file:///later", watchers=[AssetWatcher("w", trigger)]))
    assert inst.watch() == []


def test_object_storage_trigger_needs_a_uri_with_a_scheme() -> None:
    with pytest.raises(ValueError, match="scheme"):
        ObjectStorageTrigger("/tmp/landing")


@pytest.mark.services
def test_object_storage_trigger_on_s3_uses_the_connection(
    s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    fs.pipe(f"{s3_bucket}/landing/a.json", b"{}")
    trigger = ObjectStorageTrigger(f"s3://{s3_bucket}/landing/")
    feed = Asset(
        "s3_landing", uri=f"s3://{s3_bucket}/landing", watchers=[AssetWatcher("s3", trigger)]
    )
    with Instance(backend=MemoryBackend()) as inst:
        inst.register(feed)
        (payload,) = [e.extra["payload"] for e in inst.watch()]
        assert payload["uri"] == f"s3://{s3_bucket}/landing/a.json"
        assert payload["signature"].startswith("etag:")
        assert inst.watch() == []
        fs.pipe(f"{s3_bucket}/landing/a.json", b'{"changed": true}')
        fs.pipe(f"{s3_bucket}/landing/b.json", b"{}")
        changes = sorted(
            (p["key"], p["change"]) for p in (e.extra["payload"] for e in inst.watch())
        )
        assert changes == [("a.json", "modified"), ("b.json", "created")]
