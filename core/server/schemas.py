"""Request and response bodies of the HTTP API, as pydantic models (they make the OpenAPI
document). Values and extra are plain JSON; the backend family carries JSON *text*
(``value_json``, ``extra_json``) so a remote backend stores exactly what the client encoded.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

# the limits are the core's (assetry.inputs), so the API edge refuses what core refuses
from ..inputs import MAX_ALIASES, MAX_ALIASES_BYTES, MAX_ID, MAX_SOURCE_ID_LENGTH
from ..models import MAX_NAME_LENGTH

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIASES_BYTES",
    "MAX_ID",
    "MAX_SOURCE_ID_LENGTH",
    "Aliases",
    "AssetDetailOut",
    "AssetListOut",
    "AssetOut",
    "AssetSummaryOut",
    "ClearedOut",
    "DeactivatedOut",
    "DeletedOut",
    "EntriesOut",
    "EntryOut",
    "ErrorDetailOut",
    "ErrorOut",
    "EventCreateIn",
    "EventOut",
    "EventPageOut",
    "HealthOut",
    "RegisterIn",
    "SourceId",
    "StoreSetIn",
    "StoreWrittenOut",
    "Text",
    "utc",
]


def _storable(text: str) -> str:
    """Text every backend can store and every response can carry: valid unicode (JSON's
    ``\\ud800`` escapes decode to lone surrogates) and no NUL (PostgreSQL refuses it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid unicode (no lone surrogates)") from None
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


#: A string field of a request body.
Text = Annotated[StrictStr, AfterValidator(_storable)]

#: ``source_task_id`` / ``source_run_id``.
SourceId = Annotated[Text, Field(max_length=MAX_SOURCE_ID_LENGTH)]


def _aliases_fit(aliases: list[str]) -> list[str]:
    size = sum(len(a.encode("utf-8")) for a in aliases)
    if size > MAX_ALIASES_BYTES:
        raise ValueError(
            f"the alias names take {size} bytes together; at most {MAX_ALIASES_BYTES} fit"
        )
    return aliases


#: The alias names an event is emitted through.
Aliases = Annotated[
    list[Annotated[Text, Field(min_length=1, max_length=MAX_NAME_LENGTH)]],
    Field(max_length=MAX_ALIASES),
    AfterValidator(_aliases_fit),
]


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A request's time as aware UTC; naive means UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"time {value.isoformat()} is out of range once in UTC") from None


_forbid = ConfigDict(extra="forbid")


class ErrorDetailOut(BaseModel):
    type: str = Field(description="A stable snake_case error type, e.g. `asset_not_found`.")
    message: str = Field(description="What was wrong and what to do.")
    details: Any = Field(default=None, description="Per-field problems of an invalid request.")


class ErrorOut(BaseModel):
    """Every error response has this body; never a stack trace."""

    error: ErrorDetailOut


class HealthOut(BaseModel):
    status: str


class FreshnessOut(BaseModel):
    """How often the asset should update (see :class:`assetry.contracts.Freshness`)."""

    max_age_seconds: float
    per_partition: bool = False


class ContractOut(BaseModel):
    """The contract an asset declared (see :mod:`assetry.contracts`)."""

    extra_schema: dict[str, Any] | None = None
    schema_evolution: Literal["fail", "add_columns"] = "fail"
    freshness: FreshnessOut | None = None


class AssetOut(BaseModel):
    name: str
    uri: str
    group: str
    extra: dict[str, Any]
    active: bool
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    contract: ContractOut | None = None


class EventOut(BaseModel):
    id: int
    asset_name: str
    asset_uri: str
    timestamp: dt.datetime
    extra: dict[str, Any]
    partition_key: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    aliases: list[str] = []


class AssetSummaryOut(AssetOut):
    latest_event: EventOut | None = None


class AssetListOut(BaseModel):
    assets: list[AssetSummaryOut]


class AssetDetailOut(BaseModel):
    asset: AssetOut
    latest_event: EventOut | None = None
    latest_partition_events: dict[str, EventOut] = Field(
        description="The newest event of each partition key, by partition key."
    )
    store_partitions: list[str] = Field(description="Partition keys that hold store entries.")


class RegisterIn(BaseModel):
    """Register (or reactivate) an asset; a missing name or URI copies the other."""

    model_config = _forbid
    name: Text | None = None
    uri: Text | None = None
    group: Text = "asset"
    extra: dict[str, Any] | None = None
    contract: ContractOut | None = Field(
        default=None,
        description="The asset's contract: extra_schema (JSON Schema of its events' extra), "
        "schema_evolution, freshness. Left out, the stored contract is kept.",
    )


class DeactivatedOut(BaseModel):
    name: str
    deactivated: bool = Field(description="Whether the asset was active until now.")


class EntryOut(BaseModel):
    key: str
    value: Any
    version: int
    partition: str | None = None
    updated_at: dt.datetime | None = None


class EntriesOut(BaseModel):
    asset: str
    partition: str | None = None
    entries: list[EntryOut]


class StoreSetIn(BaseModel):
    """A store write. Leave ``expected_version`` out to write unconditionally; give an int
    to write only if the entry is at that version, or ``null`` only if it does not exist
    (compare-and-set: a lost race answers 409)."""

    model_config = _forbid
    value: Any = Field(description="Any JSON value but null (no NaN or Infinity).")
    expected_version: StrictInt | None = Field(default=None, ge=0, le=MAX_ID)


class StoreWrittenOut(BaseModel):
    key: str
    version: int
    partition: str | None = None


class DeletedOut(BaseModel):
    deleted: bool = Field(description="Whether the key existed.")


class ClearedOut(BaseModel):
    cleared: int = Field(description="How many entries were deleted.")


class EventCreateIn(BaseModel):
    """An event that says the asset was updated (for producers outside Python)."""

    model_config = _forbid
    extra: dict[str, Any] | None = None
    partition_key: Text | None = None
    source_task_id: SourceId | None = None
    source_run_id: SourceId | None = None
    aliases: Aliases = []
    timestamp: dt.datetime | None = Field(
        default=None, description="When the update happened (default: now); naive means UTC."
    )


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_cursor: int | None = Field(
        description="Pass as `after` (ascending) or `before` (descending) for the next page; "
        "null when this page is the last."
    )
