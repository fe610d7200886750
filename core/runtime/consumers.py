"""Asset-scheduled consumers: pending events, cursors, and :func:`run_ready`.

A task with ``schedule=<asset condition>`` is a consumer. It is ready when events newer
than its cursor meet the condition; running it fills ``triggering_asset_events``, and its
cursor moves to exactly the events handed to the run, only when the run succeeds.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..backend import EventQuery
from ..errors import AssetNotFoundError
from ..instance import current_instance
from ..models import Asset, AssetAlias, AssetEvent, AssetRef, BaseAsset
from .events import TriggeringAssetEvents
from .execution import RunOptions

if TYPE_CHECKING:
    from ..instance import Instance
    from .execution import TaskRun, TaskRunState

__all__ = ["Consumer", "run_ready"]


@dataclass(frozen=True, slots=True)
class _Pending:
    ready: bool
    events: TriggeringAssetEvents


class Consumer(abc.ABC):
    """What makes a task a consumer: a schedule on assets and a cursor per asset.

    :class:`~assetry.runtime.Task` is the one implementation; :func:`run_ready` runs the
    consumers that are ready. The cursor is kept by the state backend under ``task_id``.
    """

    task_id: str
    schedule: object
    #: Where a consumer first seen after events exist starts: ``"latest"`` (the default, as
    #: Airflow triggers only consumers that existed when the event happened) or
    #: ``"earliest"`` (the backlog too).
    start: str = "latest"
    #: When the consumer came to exist (a ``Task``: when it was defined).
    defined_at: dt.datetime | None = None

    @property
    def is_consumer(self) -> bool:
        """Whether the task is scheduled on assets (and so has a cursor)."""
        return isinstance(self.schedule, BaseAsset)

    @abc.abstractmethod
    def _start(
        self, options: RunOptions, triggering: TriggeringAssetEvents | None, kind: str
    ) -> TaskRunState:
        """Prepare one run of the task with these options and triggering events."""

    # -- consuming -----------------------------------------------------------------------

    def pending_events(self, instance: Instance | None = None) -> TriggeringAssetEvents:
        """The events newer than this consumer's cursor that its schedule refers to."""
        return self._pending(instance or current_instance()).events

    def is_ready(self, instance: Instance | None = None) -> bool:
        """Whether events newer than the cursor meet the schedule's condition."""
        return self._pending(instance or current_instance()).ready

    def skip_pending(self, instance: Instance | None = None) -> int:
        """Move the cursor past every pending event without running; return how many."""
        inst = instance or current_instance()
        pending = self._pending(inst)
        self._advance(inst, pending.events)
        return sum(len(v) for v in pending.events.values())

    def declare(self, instance: Instance | None = None) -> dict[str, int]:
        """Give this consumer its cursors on ``instance`` if it has none yet; return them.

        A consumer starts after each asset's newest event from before it was defined
        (``start="latest"``, the default: Airflow triggers only the consumers that existed
        when an event happened) or before the first (``start="earliest"``). From then on
        retention keeps every event it has not consumed, even before its first run.
        :func:`run_ready`, :meth:`is_ready` and :meth:`pending_events` declare it too.
        """
        inst = instance or current_instance()
        return _declare(inst, self, self._schedule())

    def _schedule(self) -> BaseAsset:
        schedule = self.schedule
        if not isinstance(schedule, BaseAsset):
            raise TypeError(
                f"task {self.task_id!r} is not scheduled on assets (schedule={schedule!r}); "
                "give it schedule=<asset, alias, Asset.ref(...) or condition> to consume events"
            )
        return schedule

    def _pending(self, inst: Instance) -> _Pending:
        schedule = self._schedule()
        cursors = _declare(inst, self, schedule)
        return _pending_events(inst, self.task_id, schedule, cursors)

    def _advance(self, inst: Instance, handed: TriggeringAssetEvents) -> None:
        current = inst.backend.get_cursors(self.task_id)
        moves: dict[str, int] = {}
        for name, events in handed.by_name().items():
            if events:
                last = max(e.id for e in events)
                if last > current.get(name, 0):
                    moves[name] = last
        if moves:
            inst.backend.set_cursors(self.task_id, moves)


START_CHOICES = ("latest", "earliest")


def check_start(start: str) -> str:
    """``start`` if it is ``"latest"`` or ``"earliest"``."""
    if start not in START_CHOICES:
        raise ValueError(f"start must be 'latest' or 'earliest', not {start!r}")
    return start


def _declare(inst: Instance, item: Consumer, schedule: BaseAsset) -> dict[str, int]:
    """The cursors of consumer ``item``, written first if it has none (see Consumer.declare)."""
    backend = inst.backend
    consumer = item.task_id
    cursors = backend.get_cursors(consumer)
    if cursors:
        return cursors
    names: list[str] = []
    for leaf in dict.fromkeys(schedule.leaves()):
        if isinstance(leaf, AssetAlias):
            names.extend(backend.alias_targets(leaf.name))
        elif isinstance(leaf, Asset):
            names.append(leaf.name)  # known by name even before it is registered
        elif isinstance(leaf, AssetRef):
            try:
                names.append(inst.resolve(leaf).name)
            except AssetNotFoundError:
                if leaf.name is not None:
                    names.append(leaf.name)
    fresh: dict[str, int] = {}
    for name in dict.fromkeys(names):
        newest = 0
        if item.start == "latest":
            query = EventQuery(name, until=item.defined_at, limit=1, descending=True)
            last = backend.query_events(query)
            newest = last[0].id if last else 0
        fresh[name] = newest
    # An alias with no assets yet leaves nothing to write: the consumer stays unseen, and
    # its start is still measured from when it was defined.
    if fresh:
        backend.set_cursors(consumer, fresh)
    return fresh


def _pending_events(
    inst: Instance, consumer: str, schedule: BaseAsset, cursors: dict[str, int]
) -> _Pending:
    """Events newer than ``consumer``'s cursors for each leaf of ``schedule``, and whether
    they meet it."""
    backend = inst.backend
    by_asset: dict[str, dict[int, AssetEvent]] = {}
    assets: dict[str, Asset] = {}
    aliases: list[AssetAlias] = []
    met: dict[BaseAsset, bool] = {}

    def newer(name: str, alias: str | None = None) -> list[AssetEvent]:
        return backend.query_events(EventQuery(name, after=cursors.get(name), alias=alias))

    for leaf in dict.fromkeys(schedule.leaves()):
        if isinstance(leaf, AssetAlias):
            aliases.append(leaf)
            found = False
            for target in backend.alias_targets(leaf.name):
                events = newer(target, leaf.name)
                if events:
                    found = True
                    by_asset.setdefault(target, {}).update((e.id, e) for e in events)
            met[leaf] = found
            continue
        asset: Asset | None
        if isinstance(leaf, AssetRef):
            try:
                asset = inst.resolve(leaf)
            except AssetNotFoundError:
                asset = None
        elif isinstance(leaf, Asset):
            assets.setdefault(leaf.name, leaf)  # a key even before it has events
            record = backend.get_asset(leaf.name)
            asset = leaf if record is not None and record.uri == leaf.uri else None
        else:  # pragma: no cover - leaves() yields only the three kinds
            raise TypeError(f"cannot schedule on {type(leaf).__name__}")
        if asset is None:
            met[leaf] = False
            continue
        assets.setdefault(asset.name, asset)
        events = newer(asset.name)
        met[leaf] = bool(events)
        by_asset.setdefault(asset.name, {}).update((e.id, e) for e in events)
    ready = schedule.evaluate(lambda leaf: met.get(leaf, False))
    ordered = {name: [evs[i] for i in sorted(evs)] for name, evs in by_asset.items()}
    return _Pending(ready, TriggeringAssetEvents(ordered, assets, aliases))


def run_ready(*tasks: Consumer, instance: Instance | None = None) -> list[TaskRun]:
    """Run each ready consumer once, with ``triggering_asset_events`` filled.

    A consumer's cursor moves to exactly the events handed to its run, and only when the
    run succeeds; a failing run raises (the remaining tasks are not run, and stay ready).
    Events committed while a run is in progress are left for the next one. The cursor moves
    after the run's own events are recorded, so a crash in between hands the same events
    again (at least once). Returns the runs that happened, in order. Run one ``run_ready``
    per consumer at a time.
    """
    inst = instance or current_instance()
    runs: list[TaskRun] = []
    for item in tasks:
        if not isinstance(item, Consumer):
            raise TypeError(f"run_ready() takes tasks made with @task, not {type(item).__name__}")
        pending = item._pending(inst)
        if not pending.ready:
            continue
        state = item._start(RunOptions(instance=inst), pending.events, "asset_triggered")
        result = state.execute((), {})
        item._advance(inst, pending.events)
        runs.append(result)
    return runs
