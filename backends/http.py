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
from assetry.server import backend_models as wire
from assetry.server.protocol import BACKEND_PREFIX, MAX_EVENTS_PER_REQUEST

__all__ = ["HTTPBackend"]


class HTTPBackend(StateBackend):
    """A remote instance's state, through its server's backend family."""

    name = "http"
    url_schemes = ("http", "https")
    #: The server checks events against the assets' contracts (HTTP 422), so the
    #: client's Instance does not look each asset up before appending.
    checks_contracts = True

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

    @property
    def capabilities(self) -> Capabilities:
        """What the server's backend can do, asked once."""
        with self._lock:
            if self._capabilities is None:
                info = wire.BackendInfoOut.model_validate(
                    self._client.request("GET", f"{BACKEND_PREFIX}/info")
                )
                self._capabilities = Capabilities(**info.capabilities)
            return self._capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        """Pin the capabilities instead of asking the server."""
        with self._lock:
            self._capabilities = value

    def describe(self) -> str:
        return f"HTTPBackend({self.url})"

    def close(self) -> None:
        self._client.close()

    def schema_status(self) -> dict[str, str | None]:
        return self._client.call("schema_status", None, wire.SchemaStatusOut).status

    # -- registry ------------------------------------------------------------------------------

    def register_asset(
        self,
        name: str,
        uri: str,
        *,
        group: str = "asset",
        extra_json: str = "{}",
        contract_json: str | None = None,
    ) -> AssetRecord:
        body = wire.RegisterRawIn(
            name=name, uri=uri, group=group, extra_json=extra_json, contract_json=contract_json
        )
        record = wire.to_record(self._client.call("register_asset", body, wire.AssetMaybeOut).asset)
        assert record is not None
        return record

    def deactivate_asset(self, name: str) -> bool:
        return self._client.call("deactivate_asset", wire.NameIn(name=name), wire.FlagOut).result

    def get_asset(self, name: str) -> AssetRecord | None:
        out = self._client.call("get_asset", wire.NameIn(name=name), wire.AssetMaybeOut)
        return wire.to_record(out.asset)

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        out = self._client.call("get_asset_by_uri", wire.UriIn(uri=uri), wire.AssetMaybeOut)
        return wire.to_record(out.asset)

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        out = self._client.call("list_assets", wire.ListAssetsIn(active=active), wire.AssetsOut)
        return [r for r in map(wire.to_record, out.assets) if r is not None]

    # -- store ---------------------------------------------------------------------------------

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        body = wire.KeyIn(asset=asset, key=key, partition=partition)
        return wire.to_entry(self._client.call("store_get", body, wire.EntryMaybeOut).entry)

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> int:
        body = wire.StoreSetRawIn(
            asset=asset,
            key=key,
            value_json=value_json,
            partition=partition,
            **wire.versioned(expected_version),
        )
        return self._client.call("store_set", body, wire.VersionOut).version

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> bool:
        body = wire.StoreDeleteRawIn(
            asset=asset, key=key, partition=partition, **wire.versioned(expected_version)
        )
        return self._client.call("store_delete", body, wire.FlagOut).result

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        body = wire.StoreClearIn(asset=asset, partition=partition, all_partitions=all_partitions)
        return self._client.call("store_clear", body, wire.CountOut).count

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        body = wire.NamespaceIn(asset=asset, partition=partition)
        out = self._client.call("store_entries", body, wire.EntriesRawOut)
        return [e for e in map(wire.to_entry, out.entries) if e is not None]

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        body = wire.NamespaceIn(asset=asset, partition=partition)
        return self._client.call("store_keys", body, wire.NamesOut).names

    def store_partitions(self, asset: str) -> list[str]:
        body = wire.AssetIn(asset=asset)
        return self._client.call("store_partitions", body, wire.NamesOut).names

    # -- events --------------------------------------------------------------------------------

    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not events:
            return []
        body = wire.AppendIn(events=[wire.new_event_in(e) for e in events])
        out = self._client.call("append_events", body, wire.EventsOut)
        return [wire.to_event(e) for e in out.events]

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
            body = wire.QueryIn(
                asset=query.asset,
                after=after,
                before=before,
                since=query.since,
                until=query.until,
                partition_key=query.partition_key,
                alias=query.alias,
                limit=size,
                descending=query.descending,
            )
            page = [
                wire.to_event(e)
                for e in self._client.call("query_events", body, wire.EventsOut).events
            ]
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
        body = wire.LatestIn(assets=list(assets) if assets is not None else None)
        out = self._client.call("latest_events", body, wire.LatestEventsOut)
        return {name: wire.to_event(e) for name, e in out.events.items()}

    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        body = wire.AssetIn(asset=asset)
        out = self._client.call("latest_partition_events", body, wire.LatestEventsOut)
        return {key: wire.to_event(e) for key, e in out.events.items()}

    def alias_targets(self, alias: str) -> list[str]:
        body = wire.AliasIn(alias=alias)
        return self._client.call("alias_targets", body, wire.AliasTargetsOut).assets

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        if not events:
            return 0
        body = wire.ImportIn(events=[wire.event_in(e) for e in events])
        return self._client.call("import_events", body, wire.CountOut).count

    def import_asset(self, record: AssetRecord) -> AssetRecord:
        body = wire.import_asset_in(record)
        stored = wire.to_record(self._client.call("import_asset", body, wire.AssetMaybeOut).asset)
        assert stored is not None
        return stored

    def import_store(self, asset: str, entries: Sequence[StoreEntry]) -> int:
        """One request per :data:`MAX_EVENTS_PER_REQUEST` entries (one for none, so an unknown
        asset is refused as by every backend)."""
        count = 0
        for start in range(0, max(len(entries), 1), MAX_EVENTS_PER_REQUEST):
            chunk = entries[start : start + MAX_EVENTS_PER_REQUEST]
            body = wire.ImportStoreIn(asset=asset, entries=[wire.import_entry_in(e) for e in chunk])
            count += self._client.call("import_store", body, wire.CountOut).count
        return count

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        body = wire.DeleteEventsIn(asset=asset, ids=list(ids))
        return self._client.call("delete_events", body, wire.CountOut).count

    # -- cursors -------------------------------------------------------------------------------

    def get_cursors(self, consumer: str) -> dict[str, int]:
        body = wire.ConsumerIn(consumer=consumer)
        return self._client.call("get_cursors", body, wire.CursorsOut).cursors

    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        body = wire.SetCursorsIn(consumer=consumer, cursors=dict(cursors))
        self._client.call("set_cursors", body, wire.CountOut)

    def list_consumers(self) -> list[str]:
        return self._client.call("list_consumers", None, wire.NamesOut).names

    # -- maintenance and batches ---------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        body = wire.SweepIn(batch_size=batch_size)
        return self._client.call("sweep", body, wire.CountOut).count

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        body = wire.ApplyIn(
            writes=[wire.store_write_in(w) for w in writes],
            events=[wire.new_event_in(e) for e in events],
        )
        out = self._client.call("apply", body, wire.AppliedOut)
        return [wire.to_event(e) for e in out.events]
