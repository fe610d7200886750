"""Request and response bodies of the backend family (``/api/v1/backend/<method>``): the
one statement of that contract, used by the server's routes, by
:class:`assetry.backends.http.HTTPBackend` to build its requests and read the answers, and
by the OpenAPI document. Needs pydantic only (not the web framework).

The conversions between these bodies and the core's values (:class:`AssetRecord`,
:class:`StoreEntry`, :class:`AssetEvent`, :class:`NewEvent`, :class:`StoreWrite`) live
here too, so each shape is written once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ..backend import ANY_VERSION, AssetRecord, NewEvent, StoreEntry, StoreWrite
from ..contracts import DEFAULT_CONTRACT, AssetContract
from ..models import MAX_NAME_LENGTH, AssetEvent
from ..values import canonical_json
from .protocol import MAX_EVENTS_PER_REQUEST
from .schemas import MAX_ID, Aliases, AssetOut, ContractOut, EventOut, SourceId, Text

MAX_RAW_PAGE = MAX_EVENTS_PER_REQUEST

_forbid = ConfigDict(extra="forbid")
Name = Annotated[Text, Field(description="An asset name.")]
Id = Annotated[StrictInt, Field(ge=0, le=MAX_ID)]
#: A name that is stored (a consumer, the assets of its cursors): what every backend's
#: name columns hold.
BoundedName = Annotated[Text, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


# -- request bodies --------------------------------------------------------------------------


class NameIn(BaseModel):
    model_config = _forbid
    name: Name


class UriIn(BaseModel):
    model_config = _forbid
    uri: Text


class RegisterRawIn(BaseModel):
    model_config = _forbid
    name: Name
    uri: Text
    group: Text = "asset"
    extra_json: Text = "{}"
    contract_json: Text | None = Field(
        default=None,
        description="The asset's contract (extra_schema, schema_evolution, freshness) as JSON; "
        "leave out to keep the stored one.",
    )


class ListAssetsIn(BaseModel):
    model_config = _forbid
    active: StrictBool | None = None


class AssetIn(BaseModel):
    model_config = _forbid
    asset: Name


class NamespaceIn(BaseModel):
    model_config = _forbid
    asset: Name
    partition: Text | None = None


class KeyIn(NamespaceIn):
    key: Text


class StoreSetRawIn(KeyIn):
    """Leave ``expected_version`` out to write unconditionally; ``null`` means "only if
    absent"."""

    value_json: Text
    expected_version: Id | None = None


class StoreDeleteRawIn(KeyIn):
    expected_version: Id | None = None


class StoreClearIn(NamespaceIn):
    all_partitions: StrictBool = False


class NewEventIn(BaseModel):
    model_config = _forbid
    asset: Name
    extra_json: Text = "{}"
    partition_key: Text | None = None
    source_task_id: SourceId | None = None
    source_run_id: SourceId | None = None
    aliases: Aliases = []
    timestamp: dt.datetime | None = None


class AppendIn(BaseModel):
    model_config = _forbid
    events: list[NewEventIn]


class QueryIn(BaseModel):
    model_config = _forbid
    asset: Name
    after: Id | None = None
    before: Id | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    partition_key: Text | None = None
    alias: Text | None = None
    limit: Annotated[StrictInt, Field(ge=0, le=MAX_RAW_PAGE)] | None = Field(
        default=None, description=f"At most {MAX_RAW_PAGE}; leave out for a full page."
    )
    descending: StrictBool = False


class LatestIn(BaseModel):
    model_config = _forbid
    assets: list[Name] | None = None


class AliasIn(BaseModel):
    model_config = _forbid
    alias: Text


class EventIn(BaseModel):
    """An event with its id, for import."""

    model_config = _forbid
    id: Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
    asset_name: Name
    asset_uri: Text
    timestamp: dt.datetime
    extra: dict[str, Any] = {}
    partition_key: Text | None = None
    source_task_id: SourceId | None = None
    source_run_id: SourceId | None = None
    aliases: Aliases = []


class ImportIn(BaseModel):
    model_config = _forbid
    events: list[EventIn]


class ImportAssetIn(BaseModel):
    """An asset record as it is, for copying: its active flag and timestamps kept."""

    model_config = _forbid
    name: Name
    uri: Text
    group: Text = "asset"
    extra_json: Text = "{}"
    contract_json: Text | None = Field(
        default=None, description="The asset's contract as JSON; leave out for the default."
    )
    active: StrictBool = True
    created_at: dt.datetime | None = Field(
        default=None, description="Kept as given; leave out for the server's time."
    )
    updated_at: dt.datetime | None = Field(
        default=None, description="Kept as given; leave out for the server's time."
    )


class ImportEntryIn(BaseModel):
    """A store entry as it is, for copying: its version and update time kept."""

    model_config = _forbid
    key: Text
    value_json: Text
    version: Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
    partition: Text | None = None
    updated_at: dt.datetime | None = None


class ImportStoreIn(BaseModel):
    model_config = _forbid
    asset: Name
    entries: list[ImportEntryIn]


class DeleteEventsIn(BaseModel):
    model_config = _forbid
    asset: Name
    ids: list[Id]


class ConsumerIn(BaseModel):
    model_config = _forbid
    consumer: Text


class SetCursorsIn(BaseModel):
    model_config = _forbid
    consumer: BoundedName
    cursors: dict[BoundedName, Id]


class SweepIn(BaseModel):
    model_config = _forbid
    batch_size: Annotated[StrictInt, Field(ge=1, le=100_000)] = 1000


class StoreWriteIn(BaseModel):
    model_config = _forbid
    asset: Name
    key: Text
    value_json: Text | None = Field(description="The value's JSON; null deletes the key.")
    partition: Text | None = None
    expected_version: Id | None = Field(
        default=None,
        description='Leave out to write unconditionally; null means "only if absent".',
    )


class ApplyIn(BaseModel):
    model_config = _forbid
    writes: list[StoreWriteIn] = []
    events: list[NewEventIn] = []


# -- response bodies -----------------------------------------------------------------------


class AssetMaybeOut(BaseModel):
    asset: AssetOut | None


class AssetsOut(BaseModel):
    assets: list[AssetOut]


class EntryMaybeOut(BaseModel):
    entry: RawEntryOut | None


class EntriesRawOut(BaseModel):
    entries: list[RawEntryOut]


class VersionOut(BaseModel):
    version: int


class FlagOut(BaseModel):
    result: bool


class SchemaStatusOut(BaseModel):
    status: dict[str, str | None]


class BackendInfoOut(BaseModel):
    backend: str = Field(description="The entry-point name of the server's state backend.")
    capabilities: dict[str, bool]
    max_value_bytes: int
    max_body_bytes: int


class RawEntryOut(BaseModel):
    key: str
    value_json: str
    version: int
    partition: str | None = None
    updated_at: dt.datetime | None = None


class EventsOut(BaseModel):
    events: list[EventOut]


class LatestEventsOut(BaseModel):
    events: dict[str, EventOut]


class NamesOut(BaseModel):
    names: list[str]


class AliasTargetsOut(BaseModel):
    assets: list[str]


class CountOut(BaseModel):
    count: int


class CursorsOut(BaseModel):
    cursors: dict[str, int]


class AppliedOut(BaseModel):
    events: list[EventOut]


# -- conversions to and from the core's values ------------------------------------------------


def versioned(expected_version: Any) -> dict[str, Any]:
    """``expected_version`` as a request field: absent for an unconditional write."""
    return {} if expected_version is ANY_VERSION else {"expected_version": expected_version}


def expected_version(body: BaseModel) -> Any:
    """The ``expected_version`` a request body carries, or :data:`ANY_VERSION` when left out."""
    if "expected_version" in body.model_fields_set:
        return body.expected_version  # type: ignore[attr-defined]
    return ANY_VERSION


def new_event_in(event: NewEvent) -> NewEventIn:
    return NewEventIn(
        asset=event.asset,
        extra_json=event.extra_json,
        partition_key=event.partition_key,
        source_task_id=event.source_task_id,
        source_run_id=event.source_run_id,
        aliases=list(event.aliases),
        timestamp=event.timestamp,
    )


def store_write_in(write: StoreWrite) -> StoreWriteIn:
    return StoreWriteIn(
        asset=write.asset,
        key=write.key,
        value_json=write.value_json,
        partition=write.partition,
        **versioned(write.expected_version),
    )


def event_in(event: AssetEvent) -> EventIn:
    return EventIn(
        id=event.id,
        asset_name=event.asset_name,
        asset_uri=event.asset_uri,
        timestamp=event.timestamp,
        extra=event.extra,
        partition_key=event.partition_key,
        source_task_id=event.source_task_id,
        source_run_id=event.source_run_id,
        aliases=list(event.aliases),
    )


def import_asset_in(record: AssetRecord) -> ImportAssetIn:
    return ImportAssetIn(
        name=record.name,
        uri=record.uri,
        group=record.group,
        extra_json=canonical_json(record.extra),
        contract_json=None if record.contract.is_default else record.contract.to_json(),
        active=record.active,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def import_entry_in(entry: StoreEntry) -> ImportEntryIn:
    return ImportEntryIn(
        key=entry.key,
        value_json=entry.value_json,
        version=entry.version,
        partition=entry.partition,
        updated_at=entry.updated_at,
    )


def to_record(out: AssetOut | None) -> AssetRecord | None:
    if out is None:
        return None
    return AssetRecord(
        name=out.name,
        uri=out.uri,
        group=out.group,
        extra=out.extra,
        active=out.active,
        created_at=out.created_at,
        updated_at=out.updated_at,
        contract=to_contract(out.contract),
    )


def to_contract(out: ContractOut | None) -> AssetContract:
    """The core's contract value from its wire form."""
    if out is None:
        return DEFAULT_CONTRACT
    return AssetContract.from_dict(out.model_dump())


def to_entry(out: RawEntryOut | None) -> StoreEntry | None:
    if out is None:
        return None
    return StoreEntry(
        key=out.key,
        value_json=out.value_json,
        version=out.version,
        partition=out.partition,
        updated_at=out.updated_at,
    )


def raw_entry(entry: StoreEntry | None) -> dict[str, Any] | None:
    """A :class:`RawEntryOut` body of ``entry``, as JSON-ready data."""
    if entry is None:
        return None
    return {
        "key": entry.key,
        "value_json": entry.value_json,
        "version": entry.version,
        "partition": entry.partition,
        "updated_at": entry.updated_at.isoformat() if entry.updated_at else None,
    }


def to_event(out: EventOut) -> AssetEvent:
    return AssetEvent(
        id=out.id,
        asset_name=out.asset_name,
        asset_uri=out.asset_uri,
        timestamp=out.timestamp,
        extra=out.extra,
        partition_key=out.partition_key,
        source_task_id=out.source_task_id,
        source_run_id=out.source_run_id,
        aliases=tuple(out.aliases),
    )
