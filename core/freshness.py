"""Freshness: is an asset fresh, late or stale against the freshness it declares?

One judgement for every surface (the web view, ``assetry assets list --late``): an asset
(or, under ``Freshness(per_partition=True)``, each partition) whose newest event is at most
``max_age`` old is **fresh**; older than that it is **late**; older than
``STALE_FACTOR`` times ``max_age``, or never updated, it is **stale** (it has missed more
than one update). An asset that declares no freshness is **undeclared**: its age is shown,
never judged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from .backend import AssetRecord, StateBackend
from .contracts import Freshness
from .models import AssetEvent

__all__ = [
    "OVERDUE",
    "STALE_FACTOR",
    "AssetFreshness",
    "FreshnessStatus",
    "assess",
    "assess_assets",
    "status_of",
]

FreshnessStatus = Literal["fresh", "late", "stale", "undeclared"]
#: Older than this many times ``max_age`` (or never updated) is stale, not just late.
STALE_FACTOR: Final = 2
#: The statuses that mean "should have updated by now" (``--late`` fails on either).
OVERDUE: Final = frozenset({"late", "stale"})
_RANK: Final = {"undeclared": 0, "fresh": 1, "late": 2, "stale": 3}


def status_of(
    freshness: Freshness | None, last_update: dt.datetime | None, now: dt.datetime
) -> FreshnessStatus:
    """The status of one asset or partition last updated at ``last_update``."""
    if freshness is None:
        return "undeclared"
    if last_update is None:
        return "stale"
    age = now - last_update
    if age <= freshness.max_age:
        return "fresh"
    return "late" if age <= freshness.max_age * STALE_FACTOR else "stale"


@dataclass(frozen=True, slots=True)
class AssetFreshness:
    """An asset's status (the worst of its partitions' under ``per_partition``) and, under
    ``per_partition``, each partition's status."""

    status: FreshnessStatus
    freshness: Freshness | None = None
    partitions: dict[str, FreshnessStatus] = field(default_factory=dict)

    @property
    def overdue(self) -> bool:
        """Whether the asset is late or stale."""
        return self.status in OVERDUE


def assess(
    record: AssetRecord,
    latest: AssetEvent | None,
    partitions: Mapping[str, AssetEvent] | None = None,
    now: dt.datetime | None = None,
) -> AssetFreshness:
    """Judge one asset from its newest event and the newest event of each partition
    (needed only under ``per_partition``: a per-partition asset without any partitioned
    event is stale)."""
    now = now or dt.datetime.now(dt.UTC)
    fresh = record.contract.freshness
    if fresh is None or not fresh.per_partition:  # partitions are not judged one by one
        latest_at = latest.timestamp if latest else None
        return AssetFreshness(status_of(fresh, latest_at, now), fresh)
    by_partition = {
        key: status_of(fresh, event.timestamp, now) for key, event in (partitions or {}).items()
    }
    worst: FreshnessStatus = max(by_partition.values(), key=_RANK.__getitem__, default="stale")
    return AssetFreshness(worst, fresh, by_partition)


def assess_assets(
    backend: StateBackend,
    records: list[AssetRecord],
    latest: Mapping[str, AssetEvent] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, AssetFreshness]:
    """Judge many assets: the newest events are read once (or passed in), and each
    partition's newest event only for the assets that judge per partition."""
    now = now or dt.datetime.now(dt.UTC)
    if latest is None:
        latest = backend.latest_events([r.name for r in records]) if records else {}
    out: dict[str, AssetFreshness] = {}
    for record in records:
        fresh = record.contract.freshness
        partitions = (
            backend.latest_partition_events(record.name)
            if fresh is not None and fresh.per_partition
            else None
        )
        out[record.name] = assess(record, latest.get(record.name), partitions, now)
    return out
