"""The ``http`` backend: the state of a remote instance, served by ``assetry serve``.

``Instance.from_url("http://host:8000")`` selects it by the URL's scheme, so processes on
other machines share one instance: the same asset store, event log and cursors, with the
server's backend doing the locking, transactions and conditional writes. Every method is
one request to the server's backend family (``/api/v1/backend/<method>``).

The token comes from the ``token`` option, else the connection named by ``conn_id``, else
``ASSETRY_HTTP_TOKEN``, else the connection ``assetry_default`` (its password or ``token``
option). What the remote backend can do (atomic batches, event import and deletion) is
asked of the server on first use.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from assetry.backend import (
    ANY_VERSION,
    AssetRecord,
    Capabilities,
    EventQuery,
    NewEvent,
    StateBackend,
    StoreEntry,
    StoreWrite,
)
from assetry.client import Client, resolve_token
from assetry.models import AssetEvent
from assetry.server.protocol import BACKEND_PREFIX, MAX_EVENTS_PER_REQUEST

__all__ = ["HTTPBackend"]


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _record(data: dict[str, Any] | None) -> AssetRecord | None:
    if data is None:
        return None
    return AssetRecord(
        name=data["name"],
        uri=data["uri"],
        group=data["group"],
        extra=data["extra"],
        active=data["active"],
        created_at=_time(data.get("created_at")),
        updated_at=_time(data.get("updated_at")),
    )


def _entry(data: dict[str, Any] | None) -> StoreEntry | None:
    if data is None:
        return None
    return StoreEntry(
        key=data["key"],
        value_json=data["value_json"],
        version=data["version"],
        partition=data.get("partition"),
        updated_at=_time(data.get("updated_at")),
    )


def _event(data: dict[str, Any]) -> AssetEvent:
    timestamp = _time(data["timestamp"])
    assert timestamp is not None
    return AssetEvent(
        id=data["id"],
        asset_name=data["asset_name"],
        asset_uri=data["asset_uri"],
        timestamp=timestamp,
        extra=data.get("extra") or {},
        partition_key=data.get("partition_key"),
        source_task_id=data.get("source_task_id"),
        source_run_id=data.get("source_run_id"),
        aliases=tuple(data.get("aliases") or ()),
    )


def _new_event(ev: NewEvent) -> dict[str, Any]:
    return {
        "asset": ev.asset,
        "extra_json": ev.extra_json,
        "partition_key": ev.partition_key,
        "source_task_id": ev.source_task_id,
        "source_run_id": ev.source_run_id,
        "aliases": list(ev.aliases),
        "timestamp": ev.timestamp.isoformat() if ev.timestamp else None,
    }


def _with_version(arguments: dict[str, Any], expected_version: Any) -> dict[str, Any]:
    if expected_version is not ANY_VERSION:
        arguments["expected_version"] = expected_version
    return arguments


class HTTPBackend(StateBackend):
    """A remote instance's state, through its server's backend family."""

    name = "http"
    url_schemes = ("http", "https")

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        conn_id: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: Any = None,
    ) -> None:
        if not url:
            raise TypeError("HTTPBackend needs the server's URL, e.g. http://127.0.0.1:8000")
        self._client = Client(
            url,
            token=resolve_token(token, conn_id),
            timeout=timeout,
            verify=verify,
            transport=transport,
        )
        self.url = self._client.url
        self._capabilities: Capabilities | None = None
        self._lock = threading.Lock()

    @property  # type: ignore[override]
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        """What the server's backend can do, asked once."""
        with self._lock:
            if self._capabilities is None:
                info = self._client.request("GET", f"{BACKEND_PREFIX}/info")
                self._capabilities = Capabilities(**info["capabilities"])
            return self._capabilities

    def describe(self) -> str:
        return f"HTTPBackend({self.url})"

    def close(self) -> None:
        self._client.close()

    def schema_status(self) -> dict[str, str | None]:
        status: dict[str, str | None] = self._client.call("schema_status")["status"]
        return status

    # -- registry ------------------------------------------------------------------------------

    def register_asset(
        self, name: str, uri: str, *, group: str = "asset", extra_json: str = "{}"
    ) -> AssetRecord:
        data = self._client.call(
            "register_asset", {"name": name, "uri": uri, "group": group, "extra_json": extra_json}
        )
        record = _record(data["asset"])
        assert record is not None
        return record

    def deactivate_asset(self, name: str) -> bool:
        return bool(self._client.call("deactivate_asset", {"name": name})["result"])

    def get_asset(self, name: str) -> AssetRecord | None:
        return _record(self._client.call("get_asset", {"name": name})["asset"])

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        return _record(self._client.call("get_asset_by_uri", {"uri": uri})["asset"])

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        data = self._client.call("list_assets", {"active": active})
        return [r for r in map(_record, data["assets"]) if r is not None]

    # -- store ---------------------------------------------------------------------------------

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        data = self._client.call("store_get", {"asset": asset, "key": key, "partition": partition})
        return _entry(data["entry"])

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> int:
        arguments = {"asset": asset, "key": key, "value_json": value_json, "partition": partition}
        data = self._client.call("store_set", _with_version(arguments, expected_version))
        return int(data["version"])

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> bool:
        arguments = {"asset": asset, "key": key, "partition": partition}
        data = self._client.call("store_delete", _with_version(arguments, expected_version))
        return bool(data["result"])

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        data = self._client.call(
            "store_clear",
            {"asset": asset, "partition": partition, "all_partitions": all_partitions},
        )
        return int(data["count"])

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        data = self._client.call("store_entries", {"asset": asset, "partition": partition})
        return [e for e in map(_entry, data["entries"]) if e is not None]

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        data = self._client.call("store_keys", {"asset": asset, "partition": partition})
        return list(data["names"])

    def store_partitions(self, asset: str) -> list[str]:
        return list(self._client.call("store_partitions", {"asset": asset})["names"])

    # -- events --------------------------------------------------------------------------------

    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not events:
            return []
        data = self._client.call("append_events", {"events": [_new_event(e) for e in events]})
        return [_event(e) for e in data["events"]]

    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        """One request per page of at most the server's page size, walking the id cursor."""
        out: list[AssetEvent] = []
        remaining = query.limit
        after, before = query.after, query.before
        while True:
            size = (
                MAX_EVENTS_PER_REQUEST
                if remaining is None
                else min(remaining, MAX_EVENTS_PER_REQUEST)
            )
            data = self._client.call(
                "query_events",
                {
                    "asset": query.asset,
                    "after": after,
                    "before": before,
                    "since": query.since.isoformat() if query.since else None,
                    "until": query.until.isoformat() if query.until else None,
                    "partition_key": query.partition_key,
                    "alias": query.alias,
                    "limit": size,
                    "descending": query.descending,
                },
            )
            page = [_event(e) for e in data["events"]]
            out += page
            if remaining is not None:
                remaining -= len(page)
            if len(page) < size or remaining == 0 or not page:
                return out
            if query.descending:
                before = page[-1].id
            else:
                after = page[-1].id

    def latest_events(self, assets: Sequence[str] | None = None) -> dict[str, AssetEvent]:
        data = self._client.call(
            "latest_events", {"assets": list(assets) if assets is not None else None}
        )
        return {name: _event(e) for name, e in data["events"].items()}

    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        data = self._client.call("latest_partition_events", {"asset": asset})
        return {key: _event(e) for key, e in data["events"].items()}

    def alias_targets(self, alias: str) -> list[str]:
        return list(self._client.call("alias_targets", {"alias": alias})["assets"])

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        if not events:
            return 0
        data = self._client.call("import_events", {"events": [e.to_dict() for e in events]})
        return int(data["count"])

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        data = self._client.call("delete_events", {"asset": asset, "ids": list(ids)})
        return int(data["count"])

    # -- cursors -------------------------------------------------------------------------------

    def get_cursors(self, consumer: str) -> dict[str, int]:
        return dict(self._client.call("get_cursors", {"consumer": consumer})["cursors"])

    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        self._client.call("set_cursors", {"consumer": consumer, "cursors": dict(cursors)})

    def list_consumers(self) -> list[str]:
        return list(self._client.call("list_consumers")["names"])

    # -- maintenance and batches ---------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        return int(self._client.call("sweep", {"batch_size": batch_size})["count"])

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        data = self._client.call(
            "apply",
            {
                "writes": [
                    _with_version(
                        {
                            "asset": w.asset,
                            "key": w.key,
                            "value_json": w.value_json,
                            "partition": w.partition,
                        },
                        w.expected_version,
                    )
                    for w in writes
                ],
                "events": [_new_event(e) for e in events],
            },
        )
        return [_event(e) for e in data["events"]]
