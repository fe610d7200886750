"""The backend family: one route per :class:`StateBackend` method, under ``/api/v1/backend``.

This is what :class:`assetry.backends.http.HTTPBackend` speaks, so that a process on
another machine uses the served instance as its state backend. Each route is a POST of
the method's arguments as JSON (reads too: names, keys and partitions travel in the body,
never in a path or a log line) and answers the method's result. Values and extra travel
as JSON text, and the server validates them again (JSON only, no NaN, within its own size
limit) before its backend sees them: a client is never trusted to have done it.

Scopes apply here as everywhere: an asset outside the token's groups reads as absent and
answers writes with 404; sweeping needs a token that reaches every group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ..backend import AssetRecord, EventQuery, NewEvent, StoreEntry, StoreWrite
from ..contracts import AssetContract
from ..errors import StoreValueError
from ..models import AssetEvent, validate_name
from ..uri import normalize_uri
from ..values import encode_extra, encode_value, validate_key, validate_partition_key
from .api import errors
from .backend_models import (
    MAX_RAW_PAGE,
    AliasIn,
    AliasTargetsOut,
    AppendIn,
    AppliedOut,
    ApplyIn,
    AssetIn,
    AssetMaybeOut,
    AssetsOut,
    BackendInfoOut,
    ConsumerIn,
    CountOut,
    CursorsOut,
    DeleteEventsIn,
    EntriesRawOut,
    EntryMaybeOut,
    EventsOut,
    FlagOut,
    ImportAssetIn,
    ImportIn,
    ImportStoreIn,
    KeyIn,
    LatestEventsOut,
    LatestIn,
    ListAssetsIn,
    NameIn,
    NamesOut,
    NamespaceIn,
    NewEventIn,
    QueryIn,
    RegisterRawIn,
    SchemaStatusOut,
    SetCursorsIn,
    StoreClearIn,
    StoreDeleteRawIn,
    StoreSetRawIn,
    SweepIn,
    UriIn,
    VersionOut,
    expected_version,
    raw_entry,
)
from .deps import Scope, read_scope, write_scope
from .protocol import BACKEND_PREFIX
from .schemas import utc

__all__ = ["router"]


class _BearerRoute(APIRoute):
    """A backend route: its OpenAPI operation names the bearer scheme, which the routes
    check through :func:`read_scope` / :func:`write_scope` rather than a dependency."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = kwargs.get("openapi_extra") or {}
        kwargs["openapi_extra"] = {"security": [{"bearer": []}], **extra}
        super().__init__(path, endpoint, **kwargs)


router = APIRouter(prefix=BACKEND_PREFIX, tags=["backend"], route_class=_BearerRoute)


# -- helpers ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise StoreValueError(f"{name} is not JSON (NaN and ±Infinity are not)")


def _decode(text: str, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise StoreValueError(
            f"{what} is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    except RecursionError:
        raise StoreValueError(f"{what} is nested too deeply") from None


def _value(text: str, max_bytes: int) -> str:
    """The canonical JSON of a store value, validated like a value set in Python."""
    return encode_value(_decode(text, "value_json"), max_bytes=max_bytes)


def _extra(text: str, max_bytes: int) -> str:
    extra = _decode(text, "extra_json")
    if not isinstance(extra, dict):
        raise StoreValueError("extra_json must be a JSON object")
    return encode_extra(extra, max_bytes=max_bytes)


def _partition(partition: str | None) -> str | None:
    return validate_partition_key(partition) if partition is not None else None


def _event(event: AssetEvent) -> dict[str, Any]:
    return event.to_dict()


def _new_event(ev: NewEventIn, max_bytes: int) -> NewEvent:
    return NewEvent(
        asset=validate_name(ev.asset),
        extra_json=_extra(ev.extra_json, max_bytes),
        partition_key=_partition(ev.partition_key),
        source_task_id=ev.source_task_id,
        source_run_id=ev.source_run_id,
        aliases=tuple(validate_name(a, "an alias name") for a in ev.aliases),
        timestamp=utc(ev.timestamp),
    )


def _check_all_writable(
    scope: Scope, names: Sequence[str], aliases: Iterable[Iterable[str]] = ()
) -> None:
    """Every asset written, and every alias emitted through, is within the caller's scope."""
    if not scope.principal.unscoped:
        for name in dict.fromkeys(names):
            scope.check_writable(name)
        scope.check_aliases(alias for group in aliases for alias in group)


def ok(data: Any) -> JSONResponse:
    return JSONResponse(data)


# -- routes ----------------------------------------------------------------------------------


@router.get(
    "/info", response_model=BackendInfoOut, summary="The served backend", responses=errors()
)
def info(request: Request) -> Any:
    scope = read_scope(request)
    instance = scope.instance
    backend = instance.backend
    caps = backend.capabilities
    return ok(
        {
            "backend": backend.name or type(backend).__name__,
            "capabilities": {
                "persistent": True,  # the state outlives any one client
                "multi_process": True,  # every client shares the server's state
                "atomic_batches": caps.atomic_batches,
                "event_import": caps.event_import,
                "event_deletion": caps.event_deletion,
                "state_import": caps.state_import,
            },
            "max_value_bytes": instance.max_value_bytes,
            "max_body_bytes": request.app.state.max_body_bytes,
        }
    )


@router.post(
    "/schema_status", response_model=SchemaStatusOut, summary="schema_status()", responses=errors()
)
def schema_status(request: Request) -> Any:
    scope = read_scope(request)
    return ok({"status": scope.backend.schema_status()})


# -- registry


@router.post(
    "/register_asset",
    summary="register_asset()",
    response_model=AssetMaybeOut,
    responses=errors(403, 409, 413),
)
def register_asset(body: RegisterRawIn, request: Request) -> Any:
    scope = write_scope(request)
    instance = scope.instance
    name = validate_name(body.name)
    uri = normalize_uri(body.uri)
    group = validate_name(body.group, "an asset group")
    scope.check_registration(name, uri, group)
    contract = (
        {}
        if body.contract_json is None
        else {"contract_json": AssetContract.from_json(body.contract_json).to_json()}
    )
    record = scope.backend.register_asset(
        name,
        uri,
        group=group,
        extra_json=_extra(body.extra_json, instance.max_value_bytes),
        **contract,
    )
    instance.remember_contract(record)
    return ok({"asset": record.to_dict()})


@router.post(
    "/deactivate_asset", summary="deactivate_asset()", response_model=FlagOut, responses=errors(403)
)
def deactivate_asset(body: NameIn, request: Request) -> Any:
    scope = write_scope(request)
    if not scope.readable(body.name):
        return ok({"result": False})
    return ok({"result": scope.backend.deactivate_asset(body.name)})


@router.post("/get_asset", summary="get_asset()", response_model=AssetMaybeOut, responses=errors())
def get_asset(body: NameIn, request: Request) -> Any:
    scope = read_scope(request)
    record = scope.backend.get_asset(body.name)
    return ok({"asset": record.to_dict() if scope.visible(record) and record else None})


@router.post(
    "/get_asset_by_uri",
    summary="get_asset_by_uri()",
    response_model=AssetMaybeOut,
    responses=errors(),
)
def get_asset_by_uri(body: UriIn, request: Request) -> Any:
    scope = read_scope(request)
    record = scope.backend.get_asset_by_uri(body.uri)
    return ok({"asset": record.to_dict() if scope.visible(record) and record else None})


@router.post("/list_assets", summary="list_assets()", response_model=AssetsOut, responses=errors())
def list_assets(body: ListAssetsIn, request: Request) -> Any:
    scope = read_scope(request)
    records = scope.backend.list_assets(active=body.active)
    return ok({"assets": [r.to_dict() for r in records if scope.visible(r)]})


# -- store


@router.post("/store_get", summary="store_get()", response_model=EntryMaybeOut, responses=errors())
def store_get(body: KeyIn, request: Request) -> Any:
    scope = read_scope(request)
    key, partition = validate_key(body.key), _partition(body.partition)
    if not scope.readable(body.asset):
        return ok({"entry": None})
    return ok({"entry": raw_entry(scope.backend.store_get(body.asset, key, partition))})


@router.post(
    "/store_set",
    summary="store_set()",
    response_model=VersionOut,
    responses=errors(403, 404, 409, 413),
)
def store_set(body: StoreSetRawIn, request: Request) -> Any:
    scope = write_scope(request)
    instance = scope.instance
    key, partition = validate_key(body.key), _partition(body.partition)
    value_json = _value(body.value_json, instance.max_value_bytes)
    scope.check_writable(body.asset)
    version = scope.backend.store_set(
        body.asset, key, value_json, partition, expected_version=expected_version(body)
    )
    return ok({"version": version})


@router.post(
    "/store_delete",
    summary="store_delete()",
    response_model=FlagOut,
    responses=errors(403, 404, 409),
)
def store_delete(body: StoreDeleteRawIn, request: Request) -> Any:
    scope = write_scope(request)
    key, partition = validate_key(body.key), _partition(body.partition)
    scope.check_writable(body.asset)
    deleted = scope.backend.store_delete(
        body.asset, key, partition, expected_version=expected_version(body)
    )
    return ok({"result": deleted})


@router.post(
    "/store_clear",
    summary="store_clear()",
    response_model=CountOut,
    responses=errors(403, 404, 409),
)
def store_clear(body: StoreClearIn, request: Request) -> Any:
    scope = write_scope(request)
    partition = _partition(body.partition)
    scope.check_writable(body.asset)
    count = scope.backend.store_clear(body.asset, partition, all_partitions=body.all_partitions)
    return ok({"count": count})


@router.post(
    "/store_entries", summary="store_entries()", response_model=EntriesRawOut, responses=errors()
)
def store_entries(body: NamespaceIn, request: Request) -> Any:
    scope = read_scope(request)
    partition = _partition(body.partition)
    if not scope.readable(body.asset):
        return ok({"entries": []})
    return ok(
        {"entries": [raw_entry(e) for e in scope.backend.store_entries(body.asset, partition)]}
    )


@router.post("/store_keys", summary="store_keys()", response_model=NamesOut, responses=errors())
def store_keys(body: NamespaceIn, request: Request) -> Any:
    scope = read_scope(request)
    partition = _partition(body.partition)
    if not scope.readable(body.asset):
        return ok({"names": []})
    return ok({"names": scope.backend.store_keys(body.asset, partition)})


@router.post(
    "/store_partitions", summary="store_partitions()", response_model=NamesOut, responses=errors()
)
def store_partitions(body: AssetIn, request: Request) -> Any:
    scope = read_scope(request)
    if not scope.readable(body.asset):
        return ok({"names": []})
    return ok({"names": scope.backend.store_partitions(body.asset)})


# -- events


@router.post(
    "/append_events",
    summary="append_events()",
    response_model=EventsOut,
    responses=errors(403, 404, 409, 413),
)
def append_events(body: AppendIn, request: Request) -> Any:
    scope = write_scope(request)
    instance = scope.instance
    events = [_new_event(ev, instance.max_value_bytes) for ev in body.events]
    _check_all_writable(scope, [ev.asset for ev in events], [ev.aliases for ev in events])
    instance.check_events(events)  # contracts read through the instance's short-lived cache
    appended = scope.backend.append_events(events) if events else []
    return ok({"events": [_event(e) for e in appended]})


@router.post(
    "/query_events", summary="query_events()", response_model=EventsOut, responses=errors()
)
def query_events(body: QueryIn, request: Request) -> Any:
    scope = read_scope(request)
    if not scope.readable(body.asset):
        return ok({"events": []})
    query = EventQuery(
        asset=body.asset,
        after=body.after,
        before=body.before,
        since=utc(body.since),
        until=utc(body.until),
        partition_key=body.partition_key,
        alias=body.alias,
        limit=MAX_RAW_PAGE if body.limit is None else body.limit,
        descending=body.descending,
    )
    return ok({"events": [_event(e) for e in scope.backend.query_events(query)]})


@router.post(
    "/latest_events", summary="latest_events()", response_model=LatestEventsOut, responses=errors()
)
def latest_events(body: LatestIn, request: Request) -> Any:
    scope = read_scope(request)
    names = body.assets
    if not scope.principal.unscoped:
        if names is None:
            names = [r.name for r in scope.backend.list_assets() if scope.visible(r)]
        else:
            names = [n for n in names if scope.readable(n)]
    latest = scope.backend.latest_events(names)
    return ok({"events": {name: _event(e) for name, e in latest.items()}})


@router.post(
    "/latest_partition_events",
    summary="latest_partition_events()",
    response_model=LatestEventsOut,
    responses=errors(),
)
def latest_partition_events(body: AssetIn, request: Request) -> Any:
    scope = read_scope(request)
    if not scope.readable(body.asset):
        return ok({"events": {}})
    latest = scope.backend.latest_partition_events(body.asset)
    return ok({"events": {p: _event(e) for p, e in latest.items()}})


@router.post(
    "/alias_targets", summary="alias_targets()", response_model=AliasTargetsOut, responses=errors()
)
def alias_targets(body: AliasIn, request: Request) -> Any:
    scope = read_scope(request)
    targets = scope.backend.alias_targets(body.alias)
    return ok({"assets": [t for t in targets if scope.readable(t)]})


@router.post(
    "/import_events",
    summary="import_events()",
    response_model=CountOut,
    responses=errors(403, 404, 413, 501),
)
def import_events(body: ImportIn, request: Request) -> Any:
    scope = write_scope(request)
    instance = scope.instance
    events = [
        AssetEvent(
            id=ev.id,
            asset_name=validate_name(ev.asset_name),
            asset_uri=normalize_uri(ev.asset_uri),
            timestamp=utc(ev.timestamp),  # type: ignore[arg-type]
            extra=json.loads(encode_extra(ev.extra, max_bytes=instance.max_value_bytes)),
            partition_key=_partition(ev.partition_key),
            source_task_id=ev.source_task_id,
            source_run_id=ev.source_run_id,
            aliases=tuple(validate_name(a, "an alias name") for a in ev.aliases),
        )
        for ev in body.events
    ]
    _check_all_writable(scope, [ev.asset_name for ev in events], [ev.aliases for ev in events])
    return ok({"count": scope.backend.import_events(events) if events else 0})


@router.post(
    "/import_asset",
    summary="import_asset()",
    response_model=AssetMaybeOut,
    responses=errors(403, 409, 413, 501),
)
def import_asset(body: ImportAssetIn, request: Request) -> Any:
    """Register the asset as it is (active flag, timestamps, contract kept), for copying;
    a scoped token imports only into its groups, as it registers."""
    scope = write_scope(request)
    instance = scope.instance
    name = validate_name(body.name)
    uri = normalize_uri(body.uri)
    group = validate_name(body.group, "an asset group")
    scope.check_registration(name, uri, group)
    record = AssetRecord(
        name=name,
        uri=uri,
        group=group,
        extra=json.loads(_extra(body.extra_json, instance.max_value_bytes)),
        active=body.active,
        created_at=utc(body.created_at),
        updated_at=utc(body.updated_at),
        contract=AssetContract.from_json(body.contract_json),  # None: the default
    )
    stored = scope.backend.import_asset(record)
    instance.remember_contract(stored)
    return ok({"asset": stored.to_dict()})


@router.post(
    "/import_store",
    summary="import_store()",
    response_model=CountOut,
    responses=errors(403, 404, 413, 501),
)
def import_store(body: ImportStoreIn, request: Request) -> Any:
    """Write store entries as they are (versions, update times kept), for copying; also into
    an inactive asset, as :meth:`StateBackend.import_store` does."""
    scope = write_scope(request)
    instance = scope.instance
    entries = [
        StoreEntry(
            key=validate_key(e.key),
            value_json=_value(e.value_json, instance.max_value_bytes),
            version=e.version,
            partition=_partition(e.partition),
            updated_at=utc(e.updated_at),
        )
        for e in body.entries
    ]
    scope.check_writable(body.asset)
    return ok({"count": scope.backend.import_store(body.asset, entries)})


@router.post(
    "/delete_events", summary="delete_events()", response_model=CountOut, responses=errors(403, 501)
)
def delete_events(body: DeleteEventsIn, request: Request) -> Any:
    scope = write_scope(request)
    if not scope.readable(body.asset):
        return ok({"count": 0})
    return ok({"count": scope.backend.delete_events(body.asset, body.ids)})


# -- cursors


@router.post("/get_cursors", summary="get_cursors()", response_model=CursorsOut, responses=errors())
def get_cursors(body: ConsumerIn, request: Request) -> Any:
    scope = read_scope(request)
    cursors = scope.backend.get_cursors(body.consumer)
    if not scope.principal.unscoped:
        cursors = {name: i for name, i in cursors.items() if scope.readable(name)}
    return ok({"cursors": cursors})


@router.post(
    "/set_cursors", summary="set_cursors()", response_model=CountOut, responses=errors(403, 404)
)
def set_cursors(body: SetCursorsIn, request: Request) -> Any:
    scope = write_scope(request)
    _check_all_writable(scope, list(body.cursors))
    scope.backend.set_cursors(body.consumer, body.cursors)
    return ok({"count": len(body.cursors)})


@router.post(
    "/list_consumers", summary="list_consumers()", response_model=NamesOut, responses=errors()
)
def list_consumers(request: Request) -> Any:
    scope = read_scope(request)
    names = scope.backend.list_consumers()
    if not scope.principal.unscoped:
        # a scoped token sees a consumer only through its cursors on readable assets
        names = [
            name
            for name in names
            if any(scope.readable(asset) for asset in scope.backend.get_cursors(name))
        ]
    return ok({"names": names})


# -- maintenance and batches


@router.post("/sweep", summary="sweep()", response_model=CountOut, responses=errors(403))
def sweep(body: SweepIn, request: Request) -> Any:
    scope = write_scope(request)
    scope.check_unscoped("sweeping the store of inactive assets")
    return ok({"count": scope.backend.sweep(batch_size=body.batch_size)})


@router.post(
    "/apply", summary="apply()", response_model=AppliedOut, responses=errors(403, 404, 409, 413)
)
def apply(body: ApplyIn, request: Request) -> Any:
    scope = write_scope(request)
    instance = scope.instance
    limit = instance.max_value_bytes
    writes = [
        StoreWrite(
            asset=validate_name(w.asset),
            key=validate_key(w.key),
            value_json=_value(w.value_json, limit) if w.value_json is not None else None,
            partition=_partition(w.partition),
            expected_version=expected_version(w),
        )
        for w in body.writes
    ]
    events = [_new_event(ev, limit) for ev in body.events]
    _check_all_writable(
        scope, [w.asset for w in writes] + [e.asset for e in events], [e.aliases for e in events]
    )
    if not writes and not events:
        return ok({"events": []})
    instance.check_events(events)
    applied = scope.backend.apply(writes, events)
    return ok({"events": [_event(e) for e in applied]})


# FastAPI tries routes in order, twice per request: the calls a pipeline makes on every
# run come first (the OpenAPI document lists them first too).
_BUSIEST = ("store_get", "store_set", "append_events", "query_events", "apply")


def _busiest_first(route: BaseRoute) -> int:
    name = getattr(route, "name", "")
    return _BUSIEST.index(name) if name in _BUSIEST else len(_BUSIEST)


router.routes.sort(key=_busiest_first)
