"""Watchers: triggers that poll something external and record events for an asset.

An :class:`~assetry.AssetWatcher` pairs a name with a :class:`Trigger`. ``Instance.watch()``
polls the watchers of the registered assets; each payload a trigger yields becomes an event
whose extra is ``{"from_trigger": True, "payload": ..., "watcher": name}``. A trigger keeps
its watermark in the asset's store, in the namespace ``watcher:<name>``; what it writes
there during a poll is committed together with the poll's events, so a poll that fails
leaves the watermark where it was and its changes are reported again by the next poll.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import hashlib
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from .backend import NewEvent
from .current import instance_scope
from .errors import StoreValueError
from .models import Asset, AssetEvent, AssetWatcher
from .store import AssetStore, BufferedAssetStore, StoreBuffer
from .uri import uri_scheme
from .urls import render_url
from .values import MAX_KEY_LENGTH, encode_extra

if TYPE_CHECKING:
    from .instance import Instance

__all__ = ["ObjectStorageTrigger", "Trigger", "state_namespace", "watch"]

log = logging.getLogger("assetry.watchers")


def state_namespace(watcher_name: str) -> str:
    """The asset-store partition where the watcher ``watcher_name`` keeps its state."""
    return f"watcher:{watcher_name}"


class Trigger(abc.ABC):
    """Polls something external; every payload :meth:`poll` yields is one asset event.

    ``state`` is the asset's :class:`~assetry.AssetStore`, scoped to this watcher: keep the
    watermark there (``state.get("watermark")``, ``state.set(...)``). Its writes are
    committed with the events of the poll. ``poll`` may also be an async generator.
    """

    @abc.abstractmethod
    def poll(self, state: AssetStore) -> Iterable[Any] | AsyncIterable[Any]:
        """Yield one JSON-compatible payload per change seen since the last poll."""


class ObjectStorageTrigger(Trigger):
    """Reports new or changed objects under an fsspec prefix (``s3://bucket/landing/``).

    An object is new when the watcher has not seen its key, changed when its ETag (or,
    where the store has none, modification time and size) differs from what was seen.
    ``conn_id`` names the connection with the storage options (default: the scheme's).
    """

    def __init__(self, prefix_uri: str, conn_id: str | None = None) -> None:
        if not isinstance(prefix_uri, str) or not uri_scheme(prefix_uri):
            raise ValueError(
                f"ObjectStorageTrigger needs a URI with a scheme such as s3://bucket/prefix, "
                f"got {prefix_uri!r}"
            )
        self.prefix_uri = prefix_uri
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"ObjectStorageTrigger({render_url(self.prefix_uri)!r})"

    def _filesystem(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        from .config import storage_options_for

        options = storage_options_for(self.prefix_uri, self.conn_id)
        fs, root = url_to_fs(self.prefix_uri, **options)
        return fs, root.rstrip("/")

    def poll(self, state: AssetStore) -> Iterable[dict[str, Any]]:
        fs, root = self._filesystem()
        fs.invalidate_cache(root)
        seen = state.items()
        found = fs.find(root, detail=True) if fs.exists(root) else {}
        for path, info in sorted(found.items()):
            if not info:  # find() on a single object lists it without details
                info = fs.info(path)
            if info.get("type") == "directory":
                continue
            relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
            relative = relative or path.rsplit("/", 1)[-1]  # the prefix is the object itself
            signature = _signature(info)
            key = _state_key(relative)
            previous = seen.get(key)
            if previous == signature:
                continue
            state.set(key, signature)
            yield {
                "uri": fs.unstrip_protocol(path),
                "key": relative,
                "size": info.get("size"),
                "signature": signature,
                "change": "created" if previous is None else "modified",
            }


def _state_key(relative: str) -> str:
    """The store key of an object: its relative path, or a digest of a path too long."""
    if 0 < len(relative) <= MAX_KEY_LENGTH and "\x00" not in relative:
        return relative
    return "sha256:" + hashlib.sha256(relative.encode("utf-8", "surrogatepass")).hexdigest()


def _signature(info: dict[str, Any]) -> str:
    """What identifies one version of an object: its ETag, else modification time and size."""
    for name in ("ETag", "etag", "generation", "md5Hash"):
        value = info.get(name)
        if value:
            return f"{name.lower()}:{str(value).strip(chr(34))}"
    moment = None
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(name) is not None:
            moment = info[name]
            break
    if isinstance(moment, dt.datetime):
        moment = moment.isoformat()
    return f"mtime:{moment}:size:{info.get('size')}"


# -- polling ---------------------------------------------------------------------------------


def _collect(result: Any) -> list[Any]:
    if isinstance(result, AsyncIterable):

        async def gather() -> list[Any]:
            return [item async for item in result]

        return asyncio.run(gather())
    if inspect.iscoroutine(result):
        return list(asyncio.run(result) or [])
    return list(result or [])


def poll_watcher(instance: Instance, asset: Asset, watcher: AssetWatcher) -> list[AssetEvent]:
    """Poll one watcher and commit its state writes with its events; return the events."""
    trigger = watcher.trigger
    if not callable(getattr(trigger, "poll", None)):
        raise TypeError(
            f"the trigger of watcher {watcher.name!r} on {asset!r} has no poll(state) method; "
            "subclass assetry.Trigger"
        )
    buffer = StoreBuffer(instance.backend)
    state = BufferedAssetStore(instance, asset.name, buffer).partition(
        state_namespace(watcher.name)
    )
    with instance_scope(instance):
        payloads = _collect(trigger.poll(state))
    events: list[NewEvent] = []
    for payload in payloads:
        extra = {"from_trigger": True, "payload": payload, "watcher": watcher.name}
        try:
            extra_json = encode_extra(extra, max_bytes=instance.max_value_bytes)
        except StoreValueError as exc:
            raise StoreValueError(
                f"watcher {watcher.name!r} on {asset!r} yielded a payload that is not "
                f"acceptable as event extra: {exc}"
            ) from None
        events.append(NewEvent(asset=asset.name, extra_json=extra_json))
    buffer.check_guards()
    instance.check_events(events)
    writes = buffer.writes()
    if not writes and not events:
        return []
    return instance.backend.apply(writes, events)


def _watched(instance: Instance, assets: Iterable[Asset] | None) -> list[Asset]:
    if assets is None:
        with instance._lock:
            candidates = list(instance._watched.values())
    else:
        candidates = []
        for asset in assets:
            if not isinstance(asset, Asset):
                raise TypeError(f"watch() takes Asset objects, not {type(asset).__name__}")
            instance.ensure(asset)
            candidates.append(asset)
    active = []
    for asset in candidates:
        record = instance.backend.get_asset(asset.name)
        if record is not None and record.active and record.uri == asset.uri:
            active.append(asset)
    return sorted(active, key=lambda a: a.name)


def _one_pass(instance: Instance, assets: Iterable[Asset] | None, strict: bool) -> list[AssetEvent]:
    recorded: list[AssetEvent] = []
    errors: list[BaseException] = []
    for asset in _watched(instance, assets):
        for watcher in asset.watchers:
            try:
                recorded.extend(poll_watcher(instance, asset, watcher))
            except Exception as exc:
                if strict:
                    exc.add_note(f"while polling watcher {watcher.name!r} of {asset!r}")
                    errors.append(exc)
                else:
                    log.exception(
                        "watcher %r of %r failed; retrying next pass", watcher.name, asset
                    )
    if errors:
        raise errors[0]
    return recorded


def watch(
    instance: Instance,
    *,
    once: bool = True,
    interval: float = 5.0,
    assets: Iterable[Asset] | None = None,
    stop: threading.Event | None = None,
) -> list[AssetEvent]:
    """Poll the watchers of ``instance``'s registered assets (or of ``assets``).

    ``once=True``: one pass; returns the events recorded, and raises the first watcher
    error after the others were polled. Otherwise poll every ``interval`` seconds, logging
    watcher errors, until ``stop`` is set (then return ``[]``; the events are in the log).
    """
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    asset_list = list(assets) if assets is not None else None
    if once:
        return _one_pass(instance, asset_list, strict=True)
    while stop is None or not stop.is_set():
        started = time.monotonic()
        _one_pass(instance, asset_list, strict=False)
        pause = max(0.0, interval - (time.monotonic() - started))
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)
    return []
