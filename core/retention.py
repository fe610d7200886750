"""Event retention: bounded growth of the event log without losing what matters.

A :class:`RetentionPolicy` keeps the newest ``keep_last`` events of each asset and partition
and/or the events younger than ``older_than``; everything else may be deleted. Whatever the
policy says, :func:`prune_events`

- never touches the asset store (it only deletes events);
- never deletes the newest event of an asset, nor the newest event of any of its partitions
  (nor the newest unpartitioned one), so "latest event" answers never change;
- never deletes an event newer than the lowest cursor any consumer holds on the asset, so
  no consumer misses an event it has not seen yet.

It is built on :meth:`StateBackend.query_events`, :meth:`~StateBackend.get_cursors` and
:meth:`~StateBackend.delete_events` and works on every backend that declares
``capabilities.event_deletion``.

Table formats (Delta, Iceberg) keep old table versions that events pin
(``extra["assetry"]["table_version"]``). Since pruning keeps every event a consumer has not
read, the versions those events name stay readable; :func:`vacuum_tables` then expires the
table versions older than the oldest one any live event (and so any cursor) still needs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .backend import EventQuery, StateBackend, utcnow
from .errors import ConfigurationError, PluginError, UnsupportedOperationError

__all__ = [
    "PruneResult",
    "RetentionPolicy",
    "VacuumResult",
    "format_duration",
    "parse_duration",
    "prune_events",
    "vacuum_tables",
]

_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(min|[a-z]*)", re.IGNORECASE)
_ISO_RE = re.compile(
    r"P(?:(?P<w>\d+(?:[.,]\d+)?)W)?(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<min>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?",
    re.IGNORECASE,
)
#: The longest duration accepted (far beyond any retention; keeps datetime arithmetic safe).
MAX_DURATION = dt.timedelta(days=100 * 366)
_EXAMPLES = "90s, 30min, 12h, 30d, 2w, 1d12h or ISO 8601 (PT30M, P1D)"


def parse_duration(text: str) -> dt.timedelta:
    """A duration such as ``90s``, ``30min``, ``12h``, ``30d``, ``2w``, ``1d12h`` or an ISO 8601
    duration (``PT10M``, ``P1D``, ``P2W``).

    ``m``/``M`` alone is refused: it reads as minutes to some and months to others
    (``1M`` once deleted events one minute old); write ``min``, or ``PT1M``. Years and
    months (``P1Y``, ``P1M``) have no fixed length and are refused too.
    """
    if not isinstance(text, str):
        raise TypeError(f"a duration must be a str such as '30d', not {type(text).__name__}")
    compact = text.strip().replace(" ", "")
    if compact[:1] in ("P", "p"):
        return _parse_iso_duration(text, compact)
    pos, seconds = 0, 0.0
    for match in _DURATION_RE.finditer(compact):
        if match.start() != pos:
            break
        unit = match.group(2)
        if unit in ("m", "M"):
            raise ValueError(
                f"{text!r} is ambiguous: 'm'/'M' could mean minutes or months; write "
                f"{match.group(1)}min for minutes (months have no fixed length: use days)"
            )
        if unit.lower() not in _UNITS:
            break
        seconds += float(match.group(1)) * _UNITS[unit.lower()]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: {_EXAMPLES}")
    return _bounded(text, seconds)


def _parse_iso_duration(text: str, compact: str) -> dt.timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds."""
    upper = compact.upper()
    match = _ISO_RE.fullmatch(upper)
    if match is None or not any(match.groupdict().values()) or upper.endswith("T"):
        date_part = upper.split("T", 1)[0]
        if "Y" in date_part or "M" in date_part:
            raise ValueError(
                f"{text!r}: ISO 8601 years and months have no fixed length; "
                "give days or weeks (P30D, P4W)"
            )
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: {_EXAMPLES}")
    seconds = sum(
        float(value.replace(",", ".")) * _UNITS[unit]
        for unit, value in match.groupdict().items()
        if value is not None
    )
    return _bounded(text, seconds)


def _bounded(text: str, seconds: float) -> dt.timedelta:
    if not seconds <= MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than the longest duration accepted (100 years)")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    """The shortest ``parse_duration`` text for ``delta`` (``30d``, ``90min``, ...)."""
    seconds = int(delta.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds and seconds % size == 0 and seconds == delta.total_seconds():
            return f"{seconds // size}{unit}"
    return f"{delta.total_seconds():g}s"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Which events to keep: the newest ``keep_last`` per asset and partition, and/or those
    younger than ``older_than``. An event is deleted only when no rule keeps it."""

    keep_last: int | None = None
    older_than: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep_last is None and self.older_than is None:
            raise ValueError("a retention policy needs keep_last, older_than or both")
        if self.keep_last is not None and (
            isinstance(self.keep_last, bool)
            or not isinstance(self.keep_last, int)
            or self.keep_last < 1
        ):
            raise ValueError(f"keep_last must be a whole number >= 1, got {self.keep_last!r}")
        if self.older_than is not None and (
            not isinstance(self.older_than, dt.timedelta) or self.older_than <= dt.timedelta(0)
        ):
            raise ValueError(f"older_than must be a positive duration, got {self.older_than!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "retention") -> RetentionPolicy:
        """The policy of a ``retention = {keep_last = 1000, older_than = "30d"}`` table."""
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where} must be a table such as {{keep_last = 1000}}")
        unknown = set(table) - {"keep_last", "older_than"}
        if unknown:
            raise ConfigurationError(
                f"unknown key(s) {', '.join(sorted(unknown))} in {where}; "
                "known: keep_last, older_than"
            )
        older = table.get("older_than")
        try:
            return cls(
                keep_last=table.get("keep_last"),
                older_than=parse_duration(older) if older is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The policy as a configuration table."""
        out: dict[str, Any] = {}
        if self.keep_last is not None:
            out["keep_last"] = self.keep_last
        if self.older_than is not None:
            out["older_than"] = format_duration(self.older_than)
        return out

    def __str__(self) -> str:
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep the last {self.keep_last} per asset and partition")
        if self.older_than is not None:
            parts.append(f"keep events younger than {format_duration(self.older_than)}")
        return " and ".join(parts)


@dataclass(slots=True)
class PruneResult:
    """What pruning did (or, in a dry run, would do) to one asset's events."""

    asset: str
    examined: int = 0
    deleted: int = 0
    kept_for_consumers: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "examined": self.examined,
            "deleted": self.deleted,
            "kept_for_consumers": self.kept_for_consumers,
            "dry_run": self.dry_run,
        }


def _consumer_floors(backend: StateBackend) -> dict[str, int]:
    """The lowest cursor any consumer holds, per asset."""
    floors: dict[str, int] = {}
    for consumer in backend.list_consumers():
        for asset, cursor in backend.get_cursors(consumer).items():
            floors[asset] = min(cursor, floors.get(asset, cursor))
    return floors


def prune_events(
    backend: StateBackend,
    policy: RetentionPolicy,
    *,
    assets: Sequence[str] | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    page_size: int = 1000,
    on_asset: Callable[[PruneResult], None] | None = None,
) -> list[PruneResult]:
    """Delete the events ``policy`` does not keep, of ``assets`` (default: every asset).

    Walks each asset's log newest first, one page at a time, and deletes page by page, so
    memory stays bounded. Raises :class:`UnsupportedOperationError` when the backend cannot
    delete events.
    """
    if not dry_run and not backend.capabilities.event_deletion:
        raise UnsupportedOperationError(
            f"{backend.describe()} cannot delete events (capabilities.event_deletion is false); "
            "retention needs a backend that can, such as sql or memory"
        )
    names = list(assets) if assets is not None else [r.name for r in backend.list_assets()]
    cutoff = (now or utcnow()) - policy.older_than if policy.older_than is not None else None
    floors = _consumer_floors(backend)
    results = []
    for name in names:
        result = _prune_asset(backend, name, policy, cutoff, floors.get(name), dry_run, page_size)
        results.append(result)
        if on_asset is not None:
            on_asset(result)
    return results


def _prune_asset(
    backend: StateBackend,
    asset: str,
    policy: RetentionPolicy,
    cutoff: dt.datetime | None,
    floor: int | None,
    dry_run: bool,
    page_size: int,
) -> PruneResult:
    result = PruneResult(asset, dry_run=dry_run)
    seen_per_group: dict[str | None, int] = {}
    before: int | None = None
    while True:
        page = backend.query_events(
            EventQuery(asset, before=before, limit=page_size, descending=True)
        )
        doomed: list[int] = []
        for event in page:
            result.examined += 1
            group = event.partition_key
            rank = seen_per_group.get(group, 0)  # how many newer events this group has
            seen_per_group[group] = rank + 1
            if rank == 0:  # the newest of its partition (the first overall is the asset's)
                continue
            if policy.keep_last is not None and rank < policy.keep_last:
                continue
            if cutoff is not None and event.timestamp >= cutoff:
                continue
            if floor is None or event.id <= floor:
                doomed.append(event.id)
            else:
                result.kept_for_consumers += 1
        if doomed:
            if not dry_run:
                backend.delete_events(asset, doomed)
            result.deleted += len(doomed)
        if len(page) < page_size:
            return result
        before = page[-1].id


# -- table versions --------------------------------------------------------------------------


@dataclass(slots=True)
class VacuumResult:
    """What vacuuming did (or, in a dry run, would do) to one asset's table versions."""

    asset: str
    uri: str
    kept: list[int]
    expired: list[int]
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "uri": self.uri,
            "versions_pinned": self.kept,
            "expired": self.expired,
            "dry_run": self.dry_run,
        }


def pinned_versions(backend: StateBackend, asset: str, *, page_size: int = 1000) -> list[int]:
    """The table versions the live events of ``asset`` pin, in event order (deduplicated)."""
    seen: dict[int, None] = {}
    after: int | None = None
    while True:
        page = backend.query_events(EventQuery(asset, after=after, limit=page_size))
        for event in page:
            figures = event.extra.get("assetry")
            version = figures.get("table_version") if isinstance(figures, dict) else None
            if isinstance(version, int) and not isinstance(version, bool):
                seen.setdefault(version, None)
        if len(page) < page_size:
            return list(seen)
        after = page[-1].id


def vacuum_tables(
    backend: StateBackend,
    io_manager: Any,
    *,
    assets: Sequence[str] | None = None,
    dry_run: bool = False,
    on_asset: Callable[[VacuumResult], None] | None = None,
) -> list[VacuumResult]:
    """Expire, per table-format asset, the versions older than the oldest that a live event
    pins (``io_manager`` is the instance's dispatcher). Assets whose IO manager keeps no
    versions, or with no event pinning one, are left alone: there is nothing to go by."""
    from .models import Asset

    records = (
        [r for r in (backend.get_asset(n) for n in assets) if r is not None]
        if assets is not None
        else backend.list_assets()
    )
    results = []
    for record in records:
        asset = Asset(record.name, record.uri)
        try:
            manager = io_manager.manager_of(asset)
        except (PluginError, ValueError):
            continue
        if not manager.supports_as_of:
            continue
        kept = pinned_versions(backend, record.name)
        if not kept:
            continue
        expired = manager.vacuum(asset, set(kept), dry_run=dry_run)
        result = VacuumResult(record.name, record.uri, kept, expired, dry_run)
        results.append(result)
        if on_asset is not None:
            on_asset(result)
    return results
