"""The public HTTP API: assets, their store and their events, under ``/api/v1``.

Every asset route exists twice: with the name as the last part of the path
(``/api/v1/assets/{name}``: percent-encoded, names containing ``/`` work) and with the
asset named by a query parameter on the same path without it
(``/api/v1/asset?uri=s3://...`` or ``?name=``), for producers that know only a URI.
"""

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from ..backend import ANY_VERSION, AssetRecord, EventQuery
from ..models import Asset, AssetEvent
from ..values import validate_key, validate_partition_key
from .backend_models import to_contract
from .deps import AssetLocator, InstanceDep, ReadScope, WriteScope, by_path, by_query
from .protocol import ApiError
from .schemas import (
    MAX_ID,
    AssetDetailOut,
    AssetListOut,
    AssetOut,
    ClearedOut,
    DeactivatedOut,
    DeletedOut,
    EntriesOut,
    EntryOut,
    ErrorOut,
    EventCreateIn,
    EventOut,
    EventPageOut,
    RegisterIn,
    StoreSetIn,
    StoreWrittenOut,
    utc,
)

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "errors", "router"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (all share one body)."""
    described = {
        401: "No token, or a token the server does not know.",
        403: "The token is read-only, or limited to other asset groups.",
        404: "No such asset (or not in the token's groups).",
        409: "A compare-and-set lost, the asset is inactive, or a registration clashes.",
        413: "The request body is over the server's limit.",
        422: "The request or a value is invalid.",
        501: "The server's state backend lacks this capability.",
        503: "The state backend is unavailable.",
    }
    return {s: {"model": ErrorOut, "description": described[s]} for s in (401, 422, *statuses)}


router = APIRouter(prefix="/api/v1", tags=["assets"])

Partition = Annotated[
    str | None, Query(description="A partition key: its own namespace of store keys.")
]
Key = Annotated[str, Query(description="The store key (any string, up to 512 characters).")]


def _json(data: Any, status: int = 200) -> JSONResponse:
    """Answer ``data`` as it is (times in ISO 8601 with their offset, values untouched)."""
    return JSONResponse(data, status_code=status)


def record_out(record: AssetRecord) -> dict[str, Any]:
    return record.to_dict()


def event_out(event: AssetEvent) -> dict[str, Any]:
    return event.to_dict()


def _partition(partition: str | None) -> str | None:
    return validate_partition_key(partition) if partition is not None else None


# -- the asset collection ----------------------------------------------------------------------


@router.get(
    "/assets",
    response_model=AssetListOut,
    summary="List assets",
    description="Assets the token may see, sorted by name, each with its latest event.",
    responses=errors(),
)
def list_assets(
    scope: ReadScope,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
    group: Annotated[str | None, Query(description="Only this asset group.")] = None,
) -> JSONResponse:
    records = [
        r
        for r in scope.backend.list_assets(active=active)
        if scope.visible(r) and (group is None or r.group == group)
    ]
    latest = scope.backend.latest_events([r.name for r in records]) if records else {}
    return _json(
        {
            "assets": [
                {
                    **record_out(r),
                    "latest_event": event_out(latest[r.name]) if r.name in latest else None,
                }
                for r in records
            ]
        }
    )


@router.post(
    "/assets",
    response_model=AssetOut,
    status_code=201,
    summary="Register an asset",
    description="Register an asset, or reactivate an inactive one. A name already held with "
    "another URI (or a URI under another name) answers 409.",
    responses=errors(403, 409, 413),
)
def register_asset(body: RegisterIn, scope: WriteScope, instance: InstanceDep) -> JSONResponse:
    contract = to_contract(body.contract)
    asset = Asset(
        body.name,
        body.uri,
        group=body.group,
        extra=body.extra,
        extra_schema=contract.extra_schema,
        schema_evolution=contract.schema_evolution,
        freshness=contract.freshness,
    )
    scope.check_registration(asset.name, asset.uri, asset.group)
    return _json(record_out(instance.register(asset)), 201)


# -- one asset: show / deactivate, store, events -----------------------------------------------


def _asset_routes(path: str, locator: Callable[..., AssetLocator], suffix: str) -> None:
    """Register every per-asset route at ``path`` with ``locator`` naming the asset."""
    Locator = Annotated[AssetLocator, Depends(locator)]
    asset_path, store_path, entry_path, events_path = (
        f"/asset{path}" if suffix else f"/assets{path}",
        f"/store{path}",
        f"/store-entry{path}",
        f"/events{path}",
    )
    how = " (asset by name or URI in the query)" if suffix else ""

    @router.get(
        asset_path,
        response_model=AssetDetailOut,
        summary="Show an asset" + how,
        description="The asset's record, its latest event, the latest event of each "
        "partition, and the partitions that hold store entries.",
        responses=errors(404),
        operation_id=f"show_asset{suffix}",
    )
    def show_asset(where: Locator, scope: ReadScope) -> JSONResponse:
        record = where.resolve(scope)
        backend = scope.backend
        latest = backend.latest_events([record.name]).get(record.name)
        return _json(
            {
                "asset": record_out(record),
                "latest_event": event_out(latest) if latest else None,
                "latest_partition_events": {
                    p: event_out(e) for p, e in backend.latest_partition_events(record.name).items()
                },
                "store_partitions": backend.store_partitions(record.name),
            }
        )

    @router.delete(
        asset_path,
        response_model=DeactivatedOut,
        summary="Deactivate an asset" + how,
        description="Mark the asset inactive: its store turns read-only and is removed by "
        "the next sweep; its events stay readable. Registering it again reactivates it.",
        responses=errors(403, 404),
        operation_id=f"deactivate_asset{suffix}",
    )
    def deactivate_asset(where: Locator, scope: WriteScope, instance: InstanceDep) -> Any:
        record = where.resolve(scope)
        return _json({"name": record.name, "deactivated": instance.deactivate(record.name)})

    @router.get(
        store_path,
        response_model=EntriesOut,
        summary="List store entries" + how,
        description="Every key of one namespace (the asset level, or one partition) with "
        "its value and version, sorted by key.",
        tags=["store"],
        responses=errors(404),
        operation_id=f"list_store{suffix}",
    )
    def list_store(where: Locator, scope: ReadScope, partition: Partition = None) -> Any:
        record = where.resolve(scope)
        part = _partition(partition)
        entries = scope.backend.store_entries(record.name, part)
        return _json(
            {
                "asset": record.name,
                "partition": part,
                "entries": [
                    _entry_out(e.key, e.value, e.version, e.partition, e.updated_at)
                    for e in entries
                ],
            }
        )

    @router.delete(
        store_path,
        response_model=ClearedOut,
        summary="Clear an asset's store" + how,
        description="Delete every key of one partition, or (without `partition`) of the whole "
        "asset, partitions included.",
        tags=["store"],
        responses=errors(403, 404, 409),
        operation_id=f"clear_store{suffix}",
    )
    def clear_store(
        where: Locator, scope: WriteScope, instance: InstanceDep, partition: Partition = None
    ) -> Any:
        record = where.resolve(scope)
        store = instance.asset_store(record.name)
        if partition is not None:
            store = store.partition(partition)
        return _json({"cleared": store.clear()})

    @router.get(
        entry_path,
        response_model=EntryOut,
        summary="Get a store entry" + how,
        description="The value and version of one key; 404 when the key does not exist.",
        tags=["store"],
        responses=errors(404),
        operation_id=f"get_store_entry{suffix}",
    )
    def get_entry(where: Locator, scope: ReadScope, key: Key, partition: Partition = None) -> Any:
        record = where.resolve(scope)
        entry = scope.backend.store_get(record.name, validate_key(key), _partition(partition))
        if entry is None:
            raise ApiError(
                404,
                "key_not_found",
                f"asset {record.name!r} has no store key {key!r}"
                + (f" in partition {partition!r}" if partition is not None else ""),
            )
        return _json(
            _entry_out(entry.key, entry.value, entry.version, entry.partition, entry.updated_at)
        )

    @router.put(
        entry_path,
        response_model=StoreWrittenOut,
        summary="Set a store entry" + how,
        description="Write a JSON value (not null, no NaN/Infinity, within the size limit). "
        "With `expected_version` the write is a compare-and-set: 409 when the entry is not at "
        "that version (`null`: when it already exists).",
        tags=["store"],
        responses=errors(403, 404, 409, 413),
        operation_id=f"set_store_entry{suffix}",
    )
    def set_entry(
        where: Locator,
        body: StoreSetIn,
        scope: WriteScope,
        instance: InstanceDep,
        key: Key,
        partition: Partition = None,
    ) -> Any:
        record = where.resolve(scope)
        store = instance.asset_store(record.name)
        if partition is not None:
            store = store.partition(partition)
        if "expected_version" in body.model_fields_set:
            version = store.compare_and_set(key, body.value, expected_version=body.expected_version)
        else:
            version = store.set(key, body.value)
        return _json({"key": key, "version": version, "partition": store.partition_key})

    @router.delete(
        entry_path,
        response_model=DeletedOut,
        summary="Delete a store entry" + how,
        description="Delete one key (a missing key is a no-op). With `expected_version` the "
        "delete happens only at that version (409 otherwise).",
        tags=["store"],
        responses=errors(403, 404, 409),
        operation_id=f"delete_store_entry{suffix}",
    )
    def delete_entry(
        where: Locator,
        scope: WriteScope,
        key: Key,
        partition: Partition = None,
        expected_version: Annotated[
            int | None, Query(ge=0, le=MAX_ID, description="Delete only at this version.")
        ] = None,
    ) -> Any:
        record = where.resolve(scope)
        deleted = scope.backend.store_delete(
            record.name,
            validate_key(key),
            _partition(partition),
            expected_version=ANY_VERSION if expected_version is None else expected_version,
        )
        return _json({"deleted": deleted})

    @router.get(
        events_path,
        response_model=EventPageOut,
        summary="List events" + how,
        description="The asset's events in id order, filtered by partition and time range, a "
        "page at a time: pass `next_cursor` back as `after` (or `before` when descending).",
        tags=["events"],
        responses=errors(404),
        operation_id=f"list_events{suffix}",
    )
    def list_events(
        where: Locator,
        scope: ReadScope,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Ids above this.")] = None,
        before: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Ids below this.")] = None,
        since: Annotated[
            dt.datetime | None,
            Query(description="Events at or after this time (ISO 8601; send '+' as %2B)."),
        ] = None,
        until: Annotated[
            dt.datetime | None,
            Query(description="Events before this time (ISO 8601; send '+' as %2B)."),
        ] = None,
        partition: Annotated[str | None, Query(description="Only this partition key.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = DEFAULT_PAGE,
        order: Annotated[
            str, Query(pattern="^(asc|desc)$", description="`asc` (oldest first) or `desc`.")
        ] = "asc",
    ) -> Any:
        record = where.resolve(scope)
        descending = order == "desc"
        query = EventQuery(
            record.name,
            after=after,
            before=before,
            since=utc(since),
            until=utc(until),
            partition_key=_partition(partition),
            limit=limit + 1,
            descending=descending,
        )
        events = scope.backend.query_events(query)
        more = len(events) > limit
        events = events[:limit]
        return _json(
            {
                "events": [event_out(e) for e in events],
                "next_cursor": events[-1].id if more else None,
            }
        )

    @router.post(
        events_path,
        response_model=EventOut,
        status_code=201,
        summary="Record an event" + how,
        description="Say that the asset was updated, so that consumers and watchers see it "
        "(for producers outside Python). 404 for an unknown asset, 409 for an inactive one.",
        tags=["events"],
        responses=errors(403, 404, 409, 413),
        operation_id=f"create_event{suffix}",
    )
    def create_event(
        where: Locator, body: EventCreateIn, scope: WriteScope, instance: InstanceDep
    ) -> Any:
        record = where.resolve(scope)
        scope.check_aliases(body.aliases)
        event = instance.record_event(
            record.name,
            extra=body.extra,
            partition_key=body.partition_key,
            aliases=body.aliases,
            source_task_id=body.source_task_id,
            source_run_id=body.source_run_id,
            timestamp=utc(body.timestamp),
        )
        return _json(event_out(event), 201)


def _entry_out(
    key: str, value: Any, version: int, partition: str | None, updated_at: dt.datetime | None
) -> dict[str, Any]:
    return {
        "key": key,
        "value": value,
        "version": version,
        "partition": partition,
        "updated_at": updated_at.isoformat() if updated_at else None,
    }


_asset_routes("/{name:path}", by_path, "")
_asset_routes("", by_query, "_by_query")
