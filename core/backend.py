"""The StateBackend contract: the one interface every state store implements.

A backend stores four things: the asset registry, the per-asset key/value store, the
event log and consumer cursors. Values and event extra reach it as validated JSON text
(see :mod:`assetry.values`), so a backend never re-validates and never decides what is
acceptable. Every implementation passes :class:`assetry.testing.StateBackendConformance`.

A backend class is instantiated as ``cls(url=url, **options)``; ``url_schemes`` lists the
URL schemes that select it when a URL alone is configured.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import functools
import json
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from .contracts import DEFAULT_CONTRACT, AssetContract
from .errors import (
    AssetInactiveError,
    AssetNotFoundError,
    ConflictError,
    UnsupportedOperationError,
)
from .inputs import check_aliases, check_id, check_source_id, check_timestamp
from .models import AssetEvent
from .urls import scrub_text
from .values import validate_partition_key

__all__ = [
    "ANY_VERSION",
    "AssetRecord",
    "Capabilities",
    "EventQuery",
    "NewEvent",
    "StateBackend",
    "StoreEntry",
    "StoreWrite",
    "conflict_for_registration",
    "from_us",
    "inactive_error",
    "not_found_error",
    "now_us",
    "to_us",
    "utcnow",
    "version_conflict",
]


class _AnyVersion(enum.Enum):
    ANY = "ANY"

    def __repr__(self) -> str:
        return "ANY_VERSION"


#: Passed as ``expected_version`` for an unconditional write.
ANY_VERSION: Final = _AnyVersion.ANY

ExpectedVersion = int | None | _AnyVersion


def utcnow() -> dt.datetime:
    """The current time, UTC, timezone-aware, at microsecond precision."""
    return dt.datetime.now(dt.UTC)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def now_us() -> int:
    """Now, in integer microseconds since the Unix epoch (how backends store timestamps)."""
    return time.time_ns() // 1000


def to_us(moment: dt.datetime) -> int:
    """An aware datetime as stored: integer microseconds since the Unix epoch."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"an event timestamp must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def from_us(micros: int) -> dt.datetime:
    """A stored timestamp as an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; the conformance suite reads these, once, per backend.

    - ``persistent``: state outlives the backend object (a new one on the same URL sees it).
    - ``multi_process``: several processes may share the state safely.
    - ``atomic_batches``: :meth:`StateBackend.apply` commits store writes and events
      together or not at all.
    - ``event_import``: :meth:`StateBackend.import_events` keeps given ids (for copying).
    - ``event_deletion``: :meth:`StateBackend.delete_events` removes events (for retention).
    - ``state_import``: :meth:`StateBackend.import_asset` and
      :meth:`StateBackend.import_store` keep an asset's timestamps and the store's versions
      and update times (for copying).
    """

    persistent: bool = True
    multi_process: bool = True
    atomic_batches: bool = False
    event_import: bool = False
    event_deletion: bool = False
    state_import: bool = False


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """An asset as the registry knows it, with the contract it declared."""

    name: str
    uri: str
    group: str = "asset"
    extra: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    contract: AssetContract = DEFAULT_CONTRACT

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict of the record."""
        return {
            "name": self.name,
            "uri": self.uri,
            "group": self.group,
            "extra": self.extra,
            "active": self.active,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "contract": self.contract.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One asset-store entry: its JSON text and its version (1 on creation, +1 per write)."""

    key: str
    value_json: str
    version: int
    partition: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def value(self) -> Any:
        """The decoded value."""
        return json.loads(self.value_json)


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """A buffered store write for :meth:`StateBackend.apply`; ``value_json=None`` deletes.

    ``expected_version`` makes it a compare-and-set (as in :meth:`StateBackend.store_set`),
    checked in the same transaction as the write where the backend has them.
    """

    asset: str
    key: str
    value_json: str | None
    partition: str | None = None
    expected_version: ExpectedVersion = ANY_VERSION

    def __post_init__(self) -> None:
        version = self.expected_version
        if version is not ANY_VERSION and version is not None:
            check_id(version, "expected_version")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; the backend assigns its id (and timestamp when not given)."""

    asset: str
    extra_json: str = "{}"
    partition_key: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    aliases: tuple[str, ...] = ()
    timestamp: dt.datetime | None = None

    def __post_init__(self) -> None:
        """Refuse what no backend can store, with the same typed errors on every backend
        (:mod:`assetry.inputs`); the common event (no sources, aliases or time) costs four
        comparisons."""
        if self.partition_key is not None:
            validate_partition_key(self.partition_key)
        if self.source_task_id is not None:
            check_source_id(self.source_task_id, "source_task_id")
        if self.source_run_id is not None:
            check_source_id(self.source_run_id, "source_run_id")
        if self.aliases or type(self.aliases) is not tuple:  # "abc" is not three aliases
            object.__setattr__(self, "aliases", check_aliases(self.aliases))
        if self.timestamp is not None:
            object.__setattr__(self, "timestamp", check_timestamp(self.timestamp, "timestamp"))


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A query on one asset's events.

    ``after``/``before`` bound the id (exclusive) and are the pagination cursor;
    ``since``/``until`` bound the timestamp (inclusive/exclusive); results are in
    ascending id order unless ``descending``.
    """

    asset: str
    after: int | None = None
    before: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    partition_key: str | None = None
    alias: str | None = None
    limit: int | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        """Refuse bounds no backend can compare (:mod:`assetry.inputs`): ids and the limit
        in ``0..2**63-1``, aware times within range (kept in UTC), storable names."""
        check_id(self.after, "after")
        check_id(self.before, "before")
        check_id(self.limit, "limit")
        if self.since is not None:
            object.__setattr__(self, "since", check_timestamp(self.since, "since"))
        if self.until is not None:
            object.__setattr__(self, "until", check_timestamp(self.until, "until"))
        if self.partition_key is not None:
            validate_partition_key(self.partition_key)

    def matches(self, event: AssetEvent) -> bool:
        """Whether ``event`` satisfies every filter but the limit (for simple backends)."""
        if event.asset_name != self.asset:
            return False
        if self.after is not None and event.id <= self.after:
            return False
        if self.before is not None and event.id >= self.before:
            return False
        if self.since is not None and event.timestamp < self.since:
            return False
        if self.until is not None and event.timestamp >= self.until:
            return False
        if self.partition_key is not None and event.partition_key != self.partition_key:
            return False
        return self.alias is None or self.alias in event.aliases


class StateBackend(abc.ABC):
    """Where assetry keeps its state. Subclass, implement the abstract methods, declare
    ``capabilities``, and prove it with :class:`assetry.testing.StateBackendConformance`.

    Assets are addressed by name. Partition ``None`` is the asset-level namespace of the
    store; a partition key opens a separate namespace for the same keys.
    """

    #: The entry-point name of the backend.
    name: ClassVar[str] = ""
    #: URL schemes that select this backend when only a URL is configured.
    url_schemes: ClassVar[tuple[str, ...]] = ()
    #: What the backend can do: declared on the class, and refined per instance by a
    #: backend whose abilities depend on where it stores (SQLite in memory, a local folder).
    capabilities: Capabilities = Capabilities()

    # -- lifecycle ------------------------------------------------------------------------

    def __init__(self, url: str | None = None, **options: Any) -> None:  # noqa: B027
        """Backends are built as ``cls(url=url, **options)``; unknown options are a TypeError.

        A backend that creates files, folders or tables when opened takes ``create: bool =
        True``; ``create=False`` opens existing state only (see :meth:`exists`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the backend must not be used afterwards."""

    def upgrade(self) -> None:  # noqa: B027 - optional hook
        """Bring the stored schema to the version of this code (no-op where there is none)."""

    def schema_status(self) -> dict[str, str | None]:
        """The stored schema revision and the one this code expects, as ``{"current": ...,
        "head": ...}``; empty where the backend has no versioned schema (``assetry db``)."""
        return {}

    def exists(self) -> bool:
        """Whether assetry state is already stored where this backend points, found without
        creating anything (``Instance(..., create=False)`` asks before reading). Backends
        that create nothing on open (memory, a server's state) always answer ``True``; one
        opened with ``create=False`` must also create nothing on open."""
        return True

    def describe(self) -> str:
        """A one-line description with secrets masked, for logs and ``repr``."""
        return type(self).__name__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Pass every subclass's :meth:`describe` through :func:`assetry.urls.scrub_text`,
        so no backend (a plugin's included) can print a URL's secrets."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("describe")
        if own is not None and not getattr(own, "_scrubbed", False):

            @functools.wraps(own)
            def describe(self: StateBackend) -> str:
                return scrub_text(own(self))

            describe._scrubbed = True  # type: ignore[attr-defined]
            setattr(cls, "describe", describe)  # noqa: B010

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def __enter__(self) -> StateBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asset registry --------------------------------------------------------------------

    @abc.abstractmethod
    def register_asset(
        self,
        name: str,
        uri: str,
        *,
        group: str = "asset",
        extra_json: str = "{}",
        contract_json: str | None = None,
    ) -> AssetRecord:
        """Create the asset, or (re)activate it; return its record.

        ``contract_json`` (:meth:`AssetContract.to_json`) replaces the stored contract;
        ``None`` keeps it (the default contract for a new asset).

        Raises :class:`ConflictError` when the name is registered with another URI, or the
        URI under another name.
        """

    @abc.abstractmethod
    def deactivate_asset(self, name: str) -> bool:
        """Mark the asset inactive; return whether it was active. Its store becomes
        read-only and is removed by :meth:`sweep`."""

    @abc.abstractmethod
    def get_asset(self, name: str) -> AssetRecord | None:
        """The record of the asset called ``name``, active or not."""

    @abc.abstractmethod
    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        """The record of the asset with this (normalised) URI."""

    @abc.abstractmethod
    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        """Registered assets sorted by name, optionally only active or inactive ones."""

    # -- asset store -----------------------------------------------------------------------

    @abc.abstractmethod
    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        """The entry under ``key``, or ``None``. Reading an inactive asset's store works."""

    def store_value(self, asset: str, key: str, partition: str | None = None) -> str | None:
        """The JSON text of the entry under ``key``, or ``None``: what ``AssetStore.get``
        needs, which a backend may read without building the entry's version and time."""
        entry = self.store_get(asset, key, partition)
        return None if entry is None else entry.value_json

    @abc.abstractmethod
    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: ExpectedVersion = ANY_VERSION,
    ) -> int:
        """Write ``key`` and return its new version.

        ``expected_version``: ``ANY_VERSION`` writes unconditionally, ``None`` only if the
        key does not exist, an int only if the current version is that int; otherwise
        :class:`ConflictError`. Raises :class:`AssetNotFoundError` /
        :class:`AssetInactiveError` for an unknown / inactive asset.
        """

    @abc.abstractmethod
    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: ExpectedVersion = ANY_VERSION,
    ) -> bool:
        """Delete ``key``; return whether it existed (a missing key is a no-op)."""

    @abc.abstractmethod
    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        """Delete every key of one namespace (or, with ``all_partitions``, of the whole
        asset); return how many were deleted."""

    @abc.abstractmethod
    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        """Every entry of one namespace, sorted by key."""

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        """The keys of one namespace, sorted."""
        return [entry.key for entry in self.store_entries(asset, partition)]

    @abc.abstractmethod
    def store_partitions(self, asset: str) -> list[str]:
        """The partition keys that hold at least one entry, sorted."""

    # -- event log -------------------------------------------------------------------------

    @abc.abstractmethod
    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        """Append events and return them with ids and timestamps.

        Every named asset is checked (registered, active) before anything is written; where
        ``capabilities.atomic_batches`` the batch is then written all or none, elsewhere a
        crash part-way may keep a prefix of it. Ids increase strictly per asset in the order
        the events are given, and a reader that saw id N never later finds a new event with
        an id <= N.
        """

    @abc.abstractmethod
    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        """Events of one asset matching ``query``."""

    @abc.abstractmethod
    def latest_events(self, assets: Sequence[str] | None = None) -> dict[str, AssetEvent]:
        """The newest event of each asset (of ``assets``, or of all) that has one."""

    @abc.abstractmethod
    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        """The newest event of each partition key of ``asset``."""

    @abc.abstractmethod
    def alias_targets(self, alias: str) -> list[str]:
        """Names of the assets that events were emitted to through ``alias``, sorted."""

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        """Append events keeping their ids, timestamps and sources (copying between backends).

        Events of one asset must have ids greater than its last id, in ascending order;
        return how many were written. Declared by ``capabilities.event_import``.
        """
        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot import events with their ids (capabilities.event_import)"
        )

    def import_asset(self, record: AssetRecord) -> AssetRecord:
        """Register ``record`` as it is, for copying: URI, group, extra, contract, active
        flag, ``created_at`` and ``updated_at`` kept (a name or URI clash raises
        :class:`ConflictError` as in :meth:`register_asset`). Declared by
        ``capabilities.state_import``."""
        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot import assets with their timestamps "
            "(capabilities.state_import)"
        )

    def import_store(self, asset: str, entries: Sequence[StoreEntry]) -> int:
        """Write store entries as they are, for copying: value, version, partition and
        ``updated_at`` kept, replacing what those keys hold, also while the asset is inactive
        (it must be registered). Return how many were written. Declared by
        ``capabilities.state_import``."""
        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot import store entries with their versions "
            "(capabilities.state_import)"
        )

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        """Delete the given events of ``asset``; return how many existed. Ids are never reused.
        Declared by ``capabilities.event_deletion``."""
        raise UnsupportedOperationError(
            f"{type(self).__name__} cannot delete events (capabilities.event_deletion)"
        )

    # -- consumer cursors ------------------------------------------------------------------

    @abc.abstractmethod
    def get_cursors(self, consumer: str) -> dict[str, int]:
        """The last event id seen by ``consumer``, per asset."""

    @abc.abstractmethod
    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        """Set ``consumer``'s cursors for the given assets (others are unchanged)."""

    @abc.abstractmethod
    def list_consumers(self) -> list[str]:
        """Consumers that have cursors, sorted."""

    # -- maintenance -----------------------------------------------------------------------

    @abc.abstractmethod
    def sweep(self, *, batch_size: int = 1000) -> int:
        """Remove the store entries of inactive assets; return how many were removed."""

    # -- batches ---------------------------------------------------------------------------

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        """Apply store writes then append events. Atomic where ``capabilities.atomic_batches``
        (a write whose ``expected_version`` does not match raises :class:`ConflictError` and
        nothing is applied); this default applies them one by one after checking every asset
        is writable, compare-and-set writes first."""
        for name in {w.asset for w in writes} | {e.asset for e in events}:
            self._check_writable(name)
        # compare-and-set writes first, so a lost race is found before anything is written
        for write in sorted(writes, key=lambda w: w.expected_version is ANY_VERSION):
            if write.value_json is None:
                self.store_delete(
                    write.asset, write.key, write.partition, expected_version=write.expected_version
                )
            else:
                self.store_set(
                    write.asset,
                    write.key,
                    write.value_json,
                    write.partition,
                    expected_version=write.expected_version,
                )
        return self.append_events(events) if events else []

    def _check_writable(self, name: str) -> AssetRecord:
        record = self.get_asset(name)
        if record is None:
            raise not_found_error(name)
        if not record.active:
            raise inactive_error(name)
        return record


def conflict_for_registration(name: str, uri: str, existing: AssetRecord) -> ConflictError:
    """The error every backend raises for a name/URI clash, worded once."""
    if existing.name == name:
        return ConflictError(
            f"asset {name!r} is already registered with uri {existing.uri!r}, not {uri!r}; "
            "give the new asset another name"
        )
    return ConflictError(
        f"uri {uri!r} is already registered as asset {existing.name!r}, not {name!r}; "
        "use Asset.ref(uri=...) or the existing name"
    )


def version_conflict(
    asset: str, key: str, expected: ExpectedVersion, actual: int | None
) -> ConflictError:
    """The error every backend raises when a compare-and-set loses, worded once."""
    want = "absent" if expected is None else f"version {expected}"
    have = "absent" if actual is None else f"version {actual}"
    return ConflictError(
        f"compare-and-set on asset {asset!r} key {key!r} lost: expected {want}, found {have}; "
        "read it again and retry (AssetStore.update does this for you)"
    )


def inactive_error(name: str) -> AssetInactiveError:
    """The error every backend raises on a write to an inactive asset."""
    return AssetInactiveError(
        f"asset {name!r} is inactive: its store and events cannot be written; "
        f"`assetry assets reactivate {shlex.quote(name)}` (or Instance.register) reactivates it"
    )


def not_found_error(name: str) -> AssetNotFoundError:
    """The error every backend raises on a write to an unknown asset."""
    return AssetNotFoundError(f"asset {name!r} is not registered; register it first")
