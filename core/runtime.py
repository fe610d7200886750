"""The runtime: ``@task``, its context, outlet events, aliases and asset-scheduled consumers.

Calling a function decorated with :func:`task` runs it as a *task run* against the current
:class:`~assetry.Instance`: its concrete inlets and outlets are registered, the context is
built (``asset_store``, ``outlet_events``, ``inlet_events``, ...), the function runs, and only
when it succeeds one event per concrete outlet (plus those emitted through aliases) is
recorded, carrying the extra set by the task, yielded :class:`~assetry.Metadata` and the IO
manager's write figures. A task with ``schedule=<asset condition>`` is a consumer:
:func:`run_ready` runs it when events newer than its cursor meet the condition.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from .backend import (
    ANY_VERSION,
    EventQuery,
    NewEvent,
    StoreEntry,
    StoreWrite,
    utcnow,
    version_conflict,
)
from .errors import AssetNotFoundError, AssetryError, ConflictError, StoreValueError
from .instance import Instance, current_instance
from .iomanager import IOManagerDispatcher, WriteResult
from .models import (
    Asset,
    AssetAlias,
    AssetEvent,
    AssetRef,
    BaseAsset,
    Metadata,
    validate_name,
)
from .store import AssetStore
from .values import encode_extra, validate_partition_key

if TYPE_CHECKING:
    from .backend import ExpectedVersion, StateBackend

__all__ = [
    "CONTEXT_KEYS",
    "DAG",
    "AliasEventAccessor",
    "BufferedAssetStore",
    "InletEvents",
    "NoTaskContextError",
    "OutletEventAccessor",
    "OutletEvents",
    "StoreBuffer",
    "Task",
    "TaskAssetStores",
    "TaskRun",
    "TriggeringAssetEvents",
    "UndeclaredAssetError",
    "get_current_context",
    "run_ready",
    "task",
]

log = logging.getLogger("assetry.runtime")

#: The keys of a task's context; a parameter with one of these names receives its value.
CONTEXT_KEYS: tuple[str, ...] = (
    "asset_store",
    "io_manager",
    "outlet_events",
    "inlet_events",
    "triggering_asset_events",
    "task_id",
    "run_id",
    "logical_date",
    "partition_key",
    "instance",
    "task",
    "inlets",
    "outlets",
)

#: The key of event extra under which a run records its IO manager's write figures.
FIGURES_KEY = "assetry"

_UNSET: Any = object()

Inlet = Asset | AssetRef | AssetAlias


class NoTaskContextError(AssetryError, RuntimeError):
    """:func:`get_current_context` was called while no task is running."""


class UndeclaredAssetError(AssetryError, KeyError):
    """The task did not declare this asset as an inlet or outlet."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# -- grouping: DAG ---------------------------------------------------------------------------

_ACTIVE_DAG: contextvars.ContextVar[DAG | None] = contextvars.ContextVar(
    "assetry_dag", default=None
)


class DAG:
    """A named group of tasks, for code written against Airflow's ``with DAG(...):``.

    assetry is not an orchestrator: a DAG runs nothing. Tasks declared inside the block get
    ``"<dag_id>.<task name>"`` as task id and, when they declare none, the DAG's
    ``schedule`` (an asset condition makes them consumers; a string such as ``"@daily"``
    is kept for the orchestrator that calls them).
    """

    def __init__(
        self,
        dag_id: str,
        schedule: BaseAsset | str | None = None,
        *,
        description: str | None = None,
    ) -> None:
        self.dag_id = validate_name(dag_id, "a dag_id")
        self.schedule = _check_schedule(schedule, f"DAG {dag_id!r}")
        self.description = description
        self.tasks: list[Task] = []
        self._tokens: list[contextvars.Token[DAG | None]] = []

    def __repr__(self) -> str:
        return f"DAG(dag_id={self.dag_id!r}, schedule={self.schedule!r})"

    def __enter__(self) -> DAG:
        self._tokens.append(_ACTIVE_DAG.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE_DAG.reset(self._tokens.pop())


def _check_schedule(schedule: object, owner: str) -> BaseAsset | str | None:
    if schedule is None or isinstance(schedule, str | BaseAsset):
        return schedule
    raise TypeError(
        f"the schedule of {owner} must be an Asset, Asset.ref(...), AssetAlias, a condition "
        f"(a & b, a | b), a time schedule string or None, not {type(schedule).__name__}"
    )


def _check_assets(objects: Iterable[object] | None, what: str, owner: str) -> tuple[Inlet, ...]:
    if objects is None:
        return ()
    if isinstance(objects, BaseAsset | str):
        raise TypeError(f"{what} of {owner} must be a list, e.g. {what}=[asset]")
    out: list[Inlet] = []
    for obj in objects:
        if not isinstance(obj, Asset | AssetRef | AssetAlias):
            raise TypeError(
                f"{what} of {owner} must be Asset, Asset.ref(...) or AssetAlias objects, "
                f"not {type(obj).__name__}"
            )
        if obj not in out:
            out.append(obj)
    return tuple(out)


# -- the task --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRun:
    """What one run of a task did: its ids, its return value and the events it recorded."""

    task_id: str
    run_id: str
    logical_date: dt.datetime
    partition_key: str | None
    value: Any
    events: tuple[AssetEvent, ...] = ()
    triggering_asset_events: TriggeringAssetEvents | None = None


class Task:
    """A function that runs as a task run when called (see :func:`task`)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        task_id: str | None = None,
        inlets: Iterable[Inlet] | None = None,
        outlets: Iterable[Inlet] | None = None,
        schedule: BaseAsset | str | None = None,
        partition_key: str | Callable[[dt.datetime], str] | None = None,
        atomic: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, not {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        name = task_id if task_id is not None else getattr(fn, "__name__", None)
        if not name or name == "<lambda>":
            raise TypeError("a task needs a name: decorate a named function or pass task_id=")
        dag = _ACTIVE_DAG.get()
        self.dag = dag
        self.task_id = validate_name(f"{dag.dag_id}.{name}" if dag else name, "a task_id")
        owner = f"task {self.task_id!r}"
        self.inlets = _check_assets(inlets, "inlets", owner)
        self.outlets = _check_assets(outlets, "outlets", owner)
        if schedule is None and dag is not None:
            schedule = dag.schedule
        self.schedule = _check_schedule(schedule, owner)
        if partition_key is not None and not callable(partition_key):
            validate_partition_key(partition_key)
        self.partition_key = partition_key
        self.atomic = bool(atomic)
        self._signature = inspect.signature(fn)
        if dag is not None:
            dag.tasks.append(self)

    def __repr__(self) -> str:
        return f"<Task {self.task_id!r}>"

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        # Decorating a method: bind the instance like a function would.
        return self if obj is None else functools.partial(self.__call__, obj)

    @property
    def is_consumer(self) -> bool:
        """Whether the task is scheduled on assets (and so has a cursor)."""
        return isinstance(self.schedule, BaseAsset)

    # -- running -------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task and return the function's return value.

        ``partition_key=``, ``logical_date=``, ``run_id=`` and ``instance=`` set the run's
        options (they are context keys, so a parameter of that name sees the same value).
        """
        return self.run(*args, **kwargs).value

    def run(self, *args: Any, **kwargs: Any) -> TaskRun:
        """Run the task like a call, and return the :class:`TaskRun` with its events."""
        options = _RunOptions.pop(kwargs)
        return self._start(options, None, "manual").execute(args, kwargs)

    async def arun(self, *args: Any, **kwargs: Any) -> TaskRun:
        """Run the task from async code (inside a running event loop)."""
        options = _RunOptions.pop(kwargs)
        return await self._start(options, None, "manual").execute_async(args, kwargs)

    def _start(
        self,
        options: _RunOptions,
        triggering: TriggeringAssetEvents | None,
        kind: str,
    ) -> _TaskRunState:
        instance = options.instance if options.instance is not None else current_instance()
        if not isinstance(instance, Instance):
            raise TypeError(f"instance must be an Instance, not {type(instance).__name__}")
        logical_date = options.logical_date if options.logical_date is not None else utcnow()
        if not isinstance(logical_date, dt.datetime):
            raise TypeError(f"logical_date must be a datetime, not {type(logical_date).__name__}")
        if logical_date.tzinfo is None or logical_date.utcoffset() is None:
            raise ValueError(f"the logical_date of task {self.task_id!r} must be timezone-aware")
        logical_date = logical_date.astimezone(dt.UTC)
        if options.partition_key is not _UNSET:
            partition_key = options.partition_key
        elif callable(self.partition_key):
            partition_key = self.partition_key(logical_date)
        else:
            partition_key = self.partition_key
        if partition_key is not None:
            validate_partition_key(partition_key)
        run_id = options.run_id or f"{kind}__{logical_date.isoformat()}__{uuid.uuid4().hex[:8]}"
        if not isinstance(run_id, str):
            raise TypeError(f"run_id must be a str, not {type(run_id).__name__}")
        return _TaskRunState(self, instance, run_id, logical_date, partition_key, triggering)

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

    def _pending(self, inst: Instance) -> _Pending:
        schedule = self.schedule
        if not isinstance(schedule, BaseAsset):
            raise TypeError(
                f"task {self.task_id!r} is not scheduled on assets (schedule={schedule!r}); "
                "give it schedule=<asset, alias, Asset.ref(...) or condition> to consume events"
            )
        return _pending_events(inst, self.task_id, schedule)

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


@overload
def task(fn: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    task_id: str | None = None,
    inlets: Iterable[Inlet] | None = None,
    outlets: Iterable[Inlet] | None = None,
    schedule: BaseAsset | str | None = None,
    partition_key: str | Callable[[dt.datetime], str] | None = None,
    atomic: bool = False,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    task_id: str | None = None,
    inlets: Iterable[Inlet] | None = None,
    outlets: Iterable[Inlet] | None = None,
    schedule: BaseAsset | str | None = None,
    partition_key: str | Callable[[dt.datetime], str] | None = None,
    atomic: bool = False,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Make a function a task: calling it runs it against the current instance.

    ``inlets``/``outlets`` declare the assets it reads and writes (``Asset``,
    ``Asset.ref(...)``, ``AssetAlias``); ``schedule`` an asset condition that makes it a
    consumer for :func:`run_ready`; ``partition_key`` (a string, or a function of the logical
    date) the partition its events belong to; ``atomic=True`` holds the run's store writes
    back and commits them with its events (in one transaction where the backend has them).
    Works with plain, async and generator functions (a generator may ``yield Metadata``).
    """
    options: dict[str, Any] = {
        "task_id": task_id,
        "inlets": inlets,
        "outlets": outlets,
        "schedule": schedule,
        "partition_key": partition_key,
        "atomic": atomic,
    }
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)


@dataclass(slots=True)
class _RunOptions:
    partition_key: Any = _UNSET
    logical_date: dt.datetime | None = None
    run_id: str | None = None
    instance: Instance | None = None

    @classmethod
    def pop(cls, kwargs: dict[str, Any]) -> _RunOptions:
        options = cls()
        for name in ("partition_key", "logical_date", "run_id", "instance"):
            if name in kwargs:
                setattr(options, name, kwargs.pop(name))
        return options


# -- the context -----------------------------------------------------------------------------

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "assetry_task_context", default=None
)
_RUN: contextvars.ContextVar[_TaskRunState | None] = contextvars.ContextVar(
    "assetry_task_run", default=None
)


def get_current_context() -> dict[str, Any]:
    """The context of the task running in this thread or asyncio task."""
    context = _CONTEXT.get()
    if context is None:
        raise NoTaskContextError(
            "get_current_context() was called while no task is running; call it from inside "
            "a function decorated with @task (it is filled while the task runs)"
        )
    return context


_LISTENER_LOCK = threading.Lock()


def _collect_write(asset: Asset, result: WriteResult) -> None:
    """IO manager listener: give a write's figures to the task run of this context."""
    run = _RUN.get()
    if run is not None:
        run.writes.append((asset, result))


def _lookup(assets: Mapping[str, Asset], key: object, what: str, task_id: str) -> Asset:
    """The declared asset ``key`` denotes (an Asset, a reference, or a name)."""
    if isinstance(key, AssetAlias):
        raise UndeclaredAssetError(
            f"{key!r} is an alias, not a concrete asset: {what} of task {task_id!r} has "
            "entries for concrete assets only; use the assets the alias emits to"
        )
    found: Asset | None = None
    if isinstance(key, Asset):
        found = assets.get(key.name)
        if found is not None and found.uri != key.uri:
            found = None
    elif isinstance(key, AssetRef):
        if key.name is not None:
            found = assets.get(key.name)
        else:
            found = next((a for a in assets.values() if a.uri == key.uri), None)
    elif isinstance(key, str):
        found = assets.get(key)
    else:
        raise TypeError(
            f"{what} is keyed by an Asset, Asset.ref(...) or asset name, not {type(key).__name__}"
        )
    if found is None:
        declared = ", ".join(repr(n) for n in assets) or "none"
        raise UndeclaredAssetError(
            f"{key!r} is not among the {what} of task {task_id!r} (declared: {declared}); "
            "add it to the task's inlets or outlets"
        )
    return found


class TaskAssetStores:
    """``context["asset_store"]``: the asset stores of the task's concrete inlets and outlets.

    Subscript it with an asset (``stores[orders]``); with exactly one concrete asset the
    store methods also work on it directly (``stores.get("watermark")``).
    """

    def __init__(
        self,
        instance: Instance,
        assets: Mapping[str, Asset],
        task_id: str,
        buffer: StoreBuffer | None = None,
    ) -> None:
        self._instance = instance
        self._assets = dict(assets)
        self._task_id = task_id
        self._buffer = buffer
        self._stores: dict[str, AssetStore] = {}

    def __repr__(self) -> str:
        return f"<asset stores of task {self._task_id!r}: {', '.join(self._assets) or 'none'}>"

    def __getitem__(self, asset: Asset | AssetRef | str) -> AssetStore:
        return self._store(_lookup(self._assets, asset, "asset stores", self._task_id).name)

    def __contains__(self, asset: object) -> bool:
        try:
            _lookup(self._assets, asset, "asset stores", self._task_id)
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[Asset]:
        return iter(list(self._assets.values()))

    def __len__(self) -> int:
        return len(self._assets)

    @property
    def assets(self) -> list[Asset]:
        """The concrete assets that have a store here."""
        return list(self._assets.values())

    def _store(self, name: str) -> AssetStore:
        store = self._stores.get(name)
        if store is None:
            if self._buffer is not None:
                store = BufferedAssetStore(self._instance, name, self._buffer)
            else:
                store = AssetStore(self._instance, name)
            self._stores[name] = store
        return store

    def _single(self, method: str) -> AssetStore:
        if len(self._assets) != 1:
            names = ", ".join(repr(n) for n in self._assets) or "none"
            raise ValueError(
                f"context['asset_store'].{method}() works only when the task has exactly one "
                f"concrete inlet or outlet; task {self._task_id!r} has {len(self._assets)} "
                f"({names}): use context['asset_store'][asset].{method}(...)"
            )
        return self._store(next(iter(self._assets)))

    # -- single-asset shorthand ----------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the only asset's store, or ``default``."""
        return self._single("get").get(key, default)

    def set(self, key: str, value: Any) -> int:
        """Write ``key`` in the only asset's store."""
        return self._single("set").set(key, value)

    def delete(self, key: str) -> bool:
        """Delete ``key`` from the only asset's store (no-op when missing)."""
        return self._single("delete").delete(key)

    def clear(self) -> int:
        """Delete every key of the only asset's store."""
        return self._single("clear").clear()

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomic read-modify-write of ``key`` in the only asset's store."""
        return self._single("update").update(key, fn, default)

    def advance(self, key: str, value: Any) -> bool:
        """Move the watermark ``key`` of the only asset forward to ``value`` if greater."""
        return self._single("advance").advance(key, value)

    def compare_and_set(self, key: str, value: Any, *, expected_version: int | None) -> int:
        """Compare-and-set ``key`` in the only asset's store."""
        return self._single("compare_and_set").compare_and_set(
            key, value, expected_version=expected_version
        )

    def get_entry(self, key: str) -> StoreEntry | None:
        """The entry (value and version) of ``key`` in the only asset's store."""
        return self._single("get_entry").get_entry(key)

    def partition(self, partition_key: str) -> AssetStore:
        """The store of one partition of the only asset."""
        return self._single("partition").partition(partition_key)


class OutletEventAccessor:
    """``context["outlet_events"][asset]``: the extra of the event the run will record."""

    __slots__ = ("asset", "extra")

    def __init__(self, asset: Asset) -> None:
        self.asset = asset
        self.extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"OutletEventAccessor(asset={self.asset!r}, extra={self.extra!r})"


@dataclass(frozen=True, slots=True)
class _AliasEmission:
    asset: Asset
    extra: dict[str, Any]
    partition_key: str | None


class AliasEventAccessor:
    """``context["outlet_events"][alias]``: emit events to assets chosen while running."""

    __slots__ = ("_default_partition", "alias", "emissions")

    def __init__(self, alias: AssetAlias, default_partition: str | None) -> None:
        self.alias = alias
        self.emissions: list[_AliasEmission] = []
        self._default_partition = default_partition

    def __repr__(self) -> str:
        return f"AliasEventAccessor(alias={self.alias!r}, emissions={len(self.emissions)})"

    def add(
        self,
        asset: Asset,
        extra: Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
    ) -> None:
        """Record an event for ``asset`` through this alias when the run succeeds.

        The asset is registered if it is new. Asset names are unique: an asset whose name is
        registered with another URI is a :class:`ConflictError` when the run ends, and the
        run records nothing (give each asset its own name).
        """
        if not isinstance(asset, Asset):
            raise TypeError(
                f"outlet_events[{self.alias!r}].add() needs an Asset, not {type(asset).__name__}"
            )
        if extra is not None and not isinstance(extra, Mapping):
            raise TypeError(f"extra must be a dict, not {type(extra).__name__}")
        if partition_key is not None:
            validate_partition_key(partition_key)
        self.emissions.append(
            _AliasEmission(asset, dict(extra or {}), partition_key or self._default_partition)
        )


class OutletEvents:
    """``context["outlet_events"]``: per outlet, the extra of its event; per alias, ``add``."""

    def __init__(
        self,
        outlets: Mapping[str, Asset],
        aliases: Mapping[str, AssetAlias],
        task_id: str,
        partition_key: str | None,
    ) -> None:
        self._outlets = dict(outlets)
        self._aliases = dict(aliases)
        self._task_id = task_id
        self._partition_key = partition_key
        self._assets: dict[str, OutletEventAccessor] = {}
        self._alias_accessors: dict[str, AliasEventAccessor] = {}

    def __repr__(self) -> str:
        names = [*self._outlets, *(f"alias {a}" for a in self._aliases)]
        return f"<outlet events of task {self._task_id!r}: {', '.join(names) or 'none'}>"

    def __getitem__(self, key: Asset | AssetRef | AssetAlias | str) -> Any:
        if isinstance(key, AssetAlias):
            alias = self._aliases.get(key.name)
            if alias is None:
                raise UndeclaredAssetError(
                    f"{key!r} is not among the outlets of task {self._task_id!r}; "
                    "add the alias to the task's outlets"
                )
            accessor = self._alias_accessors.get(alias.name)
            if accessor is None:
                accessor = AliasEventAccessor(alias, self._partition_key)
                self._alias_accessors[alias.name] = accessor
            return accessor
        asset = _lookup(self._outlets, key, "outlets", self._task_id)
        acc = self._assets.get(asset.name)
        if acc is None:
            acc = self._assets[asset.name] = OutletEventAccessor(asset)
        return acc

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def extra_of(self, name: str) -> dict[str, Any]:
        acc = self._assets.get(name)
        return acc.extra if acc is not None else {}

    def alias_emissions(self) -> Iterator[tuple[AssetAlias, _AliasEmission]]:
        for accessor in self._alias_accessors.values():
            for emission in accessor.emissions:
                yield accessor.alias, emission


class InletEvents(Sequence[AssetEvent]):
    """``context["inlet_events"][asset]``: the asset's events, ascending, fetched lazily.

    ``after``/``before`` take an event id (exclusive) or a datetime (``after`` inclusive of
    that time, ``before`` exclusive); ``limit`` keeps the first ``n``; ``partition_key``
    keeps one partition. Each returns a new, still lazy, sequence. For an alias the events
    are those emitted through it, ordered by time, and bounds must be datetimes.
    """

    _PAGE = 1000

    def __init__(
        self,
        instance: Instance,
        target: Asset | AssetAlias,
        *,
        after: int | None = None,
        before: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        partition_key: str | None = None,
        limit: int | None = None,
    ) -> None:
        self._instance = instance
        self.target = target
        self._after = after
        self._before = before
        self._since = since
        self._until = until
        self._partition_key = partition_key
        self._limit = limit

    def __repr__(self) -> str:
        return f"InletEvents({self.target!r})"

    def _copy(self, **changes: Any) -> InletEvents:
        state: dict[str, Any] = {
            "after": self._after,
            "before": self._before,
            "since": self._since,
            "until": self._until,
            "partition_key": self._partition_key,
            "limit": self._limit,
        }
        state.update(changes)
        return InletEvents(self._instance, self.target, **state)

    def after(self, bound: int | dt.datetime) -> InletEvents:
        """Only events after ``bound`` (an id, exclusive, or a datetime, inclusive)."""
        if isinstance(bound, dt.datetime):
            _aware(bound)
            return self._copy(since=bound)
        return self._copy(after=self._event_id(bound))

    def before(self, bound: int | dt.datetime) -> InletEvents:
        """Only events before ``bound`` (an id or a datetime, both exclusive)."""
        if isinstance(bound, dt.datetime):
            _aware(bound)
            return self._copy(until=bound)
        return self._copy(before=self._event_id(bound))

    def limit(self, n: int) -> InletEvents:
        """Only the first ``n`` events."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("limit must be a non-negative int")
        return self._copy(limit=n if self._limit is None else min(n, self._limit))

    def partition_key(self, key: str) -> InletEvents:
        """Only events of partition ``key``."""
        return self._copy(partition_key=validate_partition_key(key))

    def _event_id(self, bound: object) -> int:
        if isinstance(self.target, AssetAlias):
            raise TypeError(
                f"events through {self.target!r} span several assets whose ids are unrelated; "
                "bound them with a datetime"
            )
        if isinstance(bound, bool) or not isinstance(bound, int):
            raise TypeError(f"an event bound must be an event id or a datetime, not {bound!r}")
        return bound

    def _fetch(self, after: int | None, limit: int | None, descending: bool) -> list[AssetEvent]:
        if isinstance(self.target, AssetAlias):
            return self._instance.events(
                self.target,
                since=self._since,
                until=self._until,
                partition_key=self._partition_key,
                limit=limit,
                descending=descending,
            )
        return self._instance.backend.query_events(
            EventQuery(
                self.target.name,
                after=after,
                before=self._before,
                since=self._since,
                until=self._until,
                partition_key=self._partition_key,
                limit=limit,
                descending=descending,
            )
        )

    def __iter__(self) -> Iterator[AssetEvent]:
        if isinstance(self.target, AssetAlias):
            yield from self._fetch(None, self._limit, False)
            return
        remaining = self._limit
        cursor = self._after
        while remaining is None or remaining > 0:
            size = self._PAGE if remaining is None else min(self._PAGE, remaining)
            page = self._fetch(cursor, size, False)
            yield from page
            if remaining is not None:
                remaining -= len(page)
            if len(page) < size:
                return
            cursor = page[-1].id

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self._fetch(self._after, 1 if self._limit != 0 else 0, False))

    @overload
    def __getitem__(self, index: int) -> AssetEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[AssetEvent]: ...

    def __getitem__(self, index: int | slice) -> AssetEvent | list[AssetEvent]:
        if isinstance(index, slice):
            return list(self)[index]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"inlet events are indexed by int or slice, not {type(index).__name__}")
        if index >= 0:
            if self._limit is not None and index >= self._limit:
                raise IndexError(f"inlet event index {index} out of range")
            page = self._fetch(self._after, index + 1, False)
        elif self._limit is not None:
            return list(self)[index]
        else:
            page = self._fetch(self._after, -index, True)
        if len(page) < abs(index) + (1 if index >= 0 else 0):
            raise IndexError(f"inlet event index {index} out of range for {self.target!r}")
        return page[-1]


def _aware(moment: dt.datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("event time bounds must be timezone-aware datetimes")


class InletEventAccessors(Mapping[Any, InletEvents]):
    """``context["inlet_events"]``: the events of each inlet (asset, resolved reference or
    alias), as lazy :class:`InletEvents` sequences."""

    def __init__(
        self,
        instance: Instance,
        assets: Mapping[str, Asset],
        aliases: Mapping[str, AssetAlias],
        task_id: str,
    ) -> None:
        self._instance = instance
        self._assets = dict(assets)
        self._aliases = dict(aliases)
        self._task_id = task_id

    def __getitem__(self, key: Any) -> InletEvents:
        if isinstance(key, AssetAlias):
            alias = self._aliases.get(key.name)
            if alias is None:
                raise UndeclaredAssetError(
                    f"{key!r} is not among the inlets of task {self._task_id!r}; "
                    "add the alias to the task's inlets"
                )
            return InletEvents(self._instance, alias)
        return InletEvents(self._instance, _lookup(self._assets, key, "inlets", self._task_id))

    def __iter__(self) -> Iterator[Any]:
        return iter([*self._assets.values(), *self._aliases.values()])

    def __len__(self) -> int:
        return len(self._assets) + len(self._aliases)


class TriggeringAssetEvents(Mapping[Any, list[AssetEvent]]):
    """``context["triggering_asset_events"]``: the events that made a consumer ready.

    Keyed by asset (an ``Asset``, ``Asset.ref(...)`` or name); each value is the list of
    that asset's events, ascending. Subscripting with an alias of the schedule gives the
    events emitted through it, ordered by time. Empty when the task was called directly.
    """

    def __init__(
        self,
        events: Mapping[str, list[AssetEvent]] | None = None,
        assets: Mapping[str, Asset] | None = None,
        aliases: Iterable[AssetAlias] = (),
    ) -> None:
        self._events = {name: list(evs) for name, evs in (events or {}).items()}
        self._assets = dict(assets or {})
        for name, evs in self._events.items():
            if name not in self._assets and evs:
                self._assets[name] = evs[0].asset
        for name in self._assets:
            self._events.setdefault(name, [])
        self._aliases = {a.name: a for a in aliases}

    def __repr__(self) -> str:
        counts = ", ".join(f"{n!r}: {len(v)}" for n, v in self._events.items())
        return f"TriggeringAssetEvents({{{counts}}})"

    def by_name(self) -> dict[str, list[AssetEvent]]:
        """The events by asset name."""
        return {name: list(evs) for name, evs in self._events.items()}

    def __getitem__(self, key: Any) -> list[AssetEvent]:
        if isinstance(key, AssetAlias):
            if key.name not in self._aliases:
                raise KeyError(key)
            through = [e for evs in self._events.values() for e in evs if key.name in e.aliases]
            return sorted(through, key=lambda e: (e.timestamp, e.asset_name, e.id))
        if isinstance(key, Asset):
            known = self._assets.get(key.name)
            if known is None or known.uri != key.uri:
                raise KeyError(key)
            return self._events[key.name]
        if isinstance(key, AssetRef):
            for name, asset in self._assets.items():
                if (key.name is not None and name == key.name) or (
                    key.uri is not None and asset.uri == key.uri
                ):
                    return self._events[name]
            raise KeyError(key)
        if isinstance(key, str) and key in self._events:
            return self._events[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[Asset]:
        return iter(list(self._assets.values()))

    def __len__(self) -> int:
        return len(self._assets)


# -- buffered store writes (atomic runs, watcher polls) --------------------------------------

_Slot = tuple[str, str | None, str]  # (asset, partition, key)


class StoreBuffer:
    """Holds store writes back until they are committed with events by ``backend.apply``.

    Reads through the buffer see the pending writes. A compare-and-set decided against the
    stored version (``update``, ``advance``, ``compare_and_set``) is re-checked by
    :meth:`check_guards` just before the commit, so a concurrent change fails the commit
    instead of being overwritten.
    """

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self._pending: dict[_Slot, tuple[str | None, int | None]] = {}
        self._guards: dict[_Slot, int | None] = {}
        self._writable: set[str] = set()

    def __repr__(self) -> str:
        return f"<StoreBuffer: {len(self._pending)} pending write(s)>"

    def _stored_version(self, slot: _Slot) -> int | None:
        entry = self.backend.store_get(slot[0], slot[2], slot[1])
        return entry.version if entry is not None else None

    def _version(self, slot: _Slot) -> int | None:
        if slot in self._pending:
            value, version = self._pending[slot]
            return version if value is not None else None
        return self._stored_version(slot)

    def _check_writable(self, asset: str) -> None:
        if asset not in self._writable:
            self.backend._check_writable(asset)
            self._writable.add(asset)

    def _check_expected(self, slot: _Slot, expected: ExpectedVersion) -> int | None:
        current = self._version(slot)
        if expected is not ANY_VERSION:
            if current != expected:
                raise version_conflict(slot[0], slot[2], expected, current)
            if slot not in self._pending:
                self._guards.setdefault(slot, current)
        return current

    # -- the StateBackend store methods AssetStore uses ----------------------------------

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        slot = (asset, partition, key)
        if slot in self._pending:
            value, version = self._pending[slot]
            if value is None or version is None:
                return None
            return StoreEntry(key, value, version, partition)
        return self.backend.store_get(asset, key, partition)

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: ExpectedVersion = ANY_VERSION,
    ) -> int:
        self._check_writable(asset)
        slot = (asset, partition, key)
        current = self._check_expected(slot, expected_version)
        version = (current or 0) + 1
        self._pending[slot] = (value_json, version)
        return version

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: ExpectedVersion = ANY_VERSION,
    ) -> bool:
        self._check_writable(asset)
        slot = (asset, partition, key)
        current = self._check_expected(slot, expected_version)
        self._pending[slot] = (None, None)
        return current is not None

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        self._check_writable(asset)
        partitions: list[str | None] = (
            [None, *self.store_partitions(asset)] if all_partitions else [partition]
        )
        count = 0
        for part in partitions:
            for entry in self.store_entries(asset, part):
                self._pending[(asset, part, entry.key)] = (None, None)
                count += 1
        return count

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        merged = {e.key: e for e in self.backend.store_entries(asset, partition)}
        for (name, part, key), (value, version) in self._pending.items():
            if name == asset and part == partition:
                if value is None or version is None:
                    merged.pop(key, None)
                else:
                    merged[key] = StoreEntry(key, value, version, partition)
        return [merged[k] for k in sorted(merged)]

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        return [entry.key for entry in self.store_entries(asset, partition)]

    def store_partitions(self, asset: str) -> list[str]:
        candidates = set(self.backend.store_partitions(asset))
        candidates.update(p for (a, p, _) in self._pending if a == asset and p is not None)
        return sorted(p for p in candidates if self.store_entries(asset, p))

    # -- commit ----------------------------------------------------------------------------

    def writes(self) -> list[StoreWrite]:
        """The pending writes, as :class:`StoreWrite` for ``backend.apply``; a write decided
        by a compare-and-set carries the version it relied on, so ``apply`` checks it again
        in its transaction (a change between :meth:`check_guards` and the commit fails it)."""
        return [
            StoreWrite(
                asset,
                key,
                value,
                partition,
                self._guards.get((asset, partition, key), ANY_VERSION),
            )
            for (asset, partition, key), (value, _) in self._pending.items()
        ]

    def check_guards(self) -> None:
        """Raise :class:`ConflictError` if a key a compare-and-set relied on has changed."""
        for slot, expected in self._guards.items():
            actual = self._stored_version(slot)
            if actual != expected:
                asset, partition, key = slot
                where = f" partition {partition!r}" if partition is not None else ""
                raise ConflictError(
                    f"asset {asset!r}{where} key {key!r} was changed by another writer while "
                    f"this run held its writes back (version {expected} -> {actual}); "
                    "nothing was committed: run it again"
                )


class BufferedAssetStore(AssetStore):
    """An :class:`AssetStore` whose writes go to a :class:`StoreBuffer`."""

    __slots__ = ()

    def __init__(
        self,
        instance: Instance,
        asset: str,
        buffer: StoreBuffer,
        partition_key: str | None = None,
    ) -> None:
        super().__init__(instance, asset, partition_key)
        self._backend = buffer  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Buffered" + super().__repr__()

    def partition(self, partition_key: str) -> AssetStore:
        scoped = super().partition(partition_key)
        return BufferedAssetStore(
            self._instance,
            self.asset,
            self._backend,  # type: ignore[arg-type]
            scoped.partition_key,
        )


# -- one run ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _EventSpec:
    asset: Asset
    extra: dict[str, Any]
    partition_key: str | None
    aliases: set[str] = field(default_factory=set)


class _TaskRunState:
    """Everything one run of a task holds: resolved assets, context, collected output."""

    def __init__(
        self,
        task: Task,
        instance: Instance,
        run_id: str,
        logical_date: dt.datetime,
        partition_key: str | None,
        triggering: TriggeringAssetEvents | None,
    ) -> None:
        self.task = task
        self.instance = instance
        self.run_id = run_id
        self.logical_date = logical_date
        self.partition_key = partition_key
        self.triggering = triggering or TriggeringAssetEvents()
        self.writes: list[tuple[Asset, WriteResult]] = []

        inlet_assets: dict[str, Asset] = {}
        inlet_aliases: dict[str, AssetAlias] = {}
        self.outlets: dict[str, Asset] = {}
        self.aliases: dict[str, AssetAlias] = {}
        for obj in task.inlets:
            if isinstance(obj, AssetAlias):
                inlet_aliases[obj.name] = obj
            else:
                asset = self._resolve(obj)
                inlet_assets.setdefault(asset.name, asset)
        for obj in task.outlets:
            if isinstance(obj, AssetAlias):
                self.aliases[obj.name] = obj
            else:
                asset = self._resolve(obj)
                self.outlets.setdefault(asset.name, asset)
        concrete = {**inlet_assets}
        for name, asset in self.outlets.items():
            concrete.setdefault(name, asset)

        self.buffer = StoreBuffer(instance.backend) if task.atomic else None
        self.outlet_events = OutletEvents(self.outlets, self.aliases, task.task_id, partition_key)
        dispatcher: IOManagerDispatcher = instance.io_manager
        with _LISTENER_LOCK:
            if _collect_write not in dispatcher.listeners:
                dispatcher.listeners.append(_collect_write)
        self.context: dict[str, Any] = {
            "asset_store": TaskAssetStores(instance, concrete, task.task_id, self.buffer),
            "io_manager": dispatcher,
            "outlet_events": self.outlet_events,
            "inlet_events": InletEventAccessors(
                instance, inlet_assets, inlet_aliases, task.task_id
            ),
            "triggering_asset_events": self.triggering,
            "task_id": task.task_id,
            "run_id": run_id,
            "logical_date": logical_date,
            "partition_key": partition_key,
            "instance": instance,
            "task": task,
            "inlets": [*inlet_assets.values(), *inlet_aliases.values()],
            "outlets": [*self.outlets.values(), *self.aliases.values()],
        }

    def _resolve(self, obj: Asset | AssetRef) -> Asset:
        if isinstance(obj, AssetRef):
            return self.instance.resolve(obj)
        self.instance.ensure(obj)
        return obj

    # -- calling the function --------------------------------------------------------------

    def _arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        params = self.task._signature.parameters
        positional = [
            name
            for name, p in params.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        taken = set(positional[: len(args)]) | set(kwargs)
        call_kwargs = dict(kwargs)
        for name, p in params.items():
            if (
                p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and name in self.context
                and name not in taken
            ):
                call_kwargs[name] = self.context[name]
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            named = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
            for key, value in self.context.items():
                if key not in call_kwargs and key not in named:
                    call_kwargs[key] = value
        return args, call_kwargs

    def _enter(self) -> tuple[contextvars.Token[Any], contextvars.Token[Any]]:
        log.debug("task %s run %s starting", self.task.task_id, self.run_id)
        return _CONTEXT.set(self.context), _RUN.set(self)

    def _exit(self, tokens: tuple[contextvars.Token[Any], contextvars.Token[Any]]) -> None:
        _CONTEXT.reset(tokens[0])
        _RUN.reset(tokens[1])

    def execute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRun:
        fn = self.task.fn
        call_args, call_kwargs = self._arguments(args, kwargs)
        tokens = self._enter()
        try:
            if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                value = self._run_coroutine(self._call_async(call_args, call_kwargs))
            else:
                value = fn(*call_args, **call_kwargs)
                if inspect.isgenerator(value):
                    value = self._drain(value)
                elif inspect.iscoroutine(value):
                    value = self._run_coroutine(self._await(value))
            events = self._commit()
        except BaseException:
            log.debug("task %s run %s failed; no events recorded", self.task.task_id, self.run_id)
            raise
        finally:
            self._exit(tokens)
        return self._result(value, events)

    async def execute_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRun:
        fn = self.task.fn
        call_args, call_kwargs = self._arguments(args, kwargs)
        tokens = self._enter()
        try:
            if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                value = await self._call_async(call_args, call_kwargs)
            else:
                value = fn(*call_args, **call_kwargs)
                if inspect.isgenerator(value):
                    value = self._drain(value)
                elif inspect.iscoroutine(value):
                    value = await value
            events = self._commit()
        finally:
            self._exit(tokens)
        return self._result(value, events)

    def _run_coroutine(self, coro: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        coro.close()
        raise RuntimeError(
            f"task {self.task.task_id!r} is async and an event loop is already running in "
            f"this thread; use `await {self.task.fn.__name__}.arun(...)` instead of calling it"
        )

    async def _await(self, awaitable: Any) -> Any:
        return await awaitable

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = self.task.fn
        if inspect.isasyncgenfunction(fn):
            agen = fn(*args, **kwargs)
            try:
                async for item in agen:
                    self._handle_yield(item)
            finally:
                await agen.aclose()
            return None
        return await fn(*args, **kwargs)

    def _drain(self, gen: Any) -> Any:
        try:
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return stop.value
                self._handle_yield(item)
        finally:
            gen.close()

    def _handle_yield(self, item: object) -> None:
        if not isinstance(item, Metadata):
            raise TypeError(
                f"task {self.task.task_id!r} yielded a {type(item).__name__}; a task may only "
                "yield Metadata(asset, extra, alias=...) objects"
            )
        if item.alias is not None:
            self.outlet_events[item.alias].add(item.asset, item.extra)
            return
        if item.asset.name not in self.outlets:
            raise UndeclaredAssetError(
                f"task {self.task.task_id!r} yielded Metadata for {item.asset!r}, which is not "
                "among its outlets; declare it in outlets=[...] or pass alias="
            )
        self.outlet_events[item.asset].extra.update(item.extra)

    # -- recording the events --------------------------------------------------------------

    def _commit(self) -> list[AssetEvent]:
        inst = self.instance
        specs: dict[str, _EventSpec] = {}
        for name, asset in self.outlets.items():
            specs[name] = _EventSpec(
                asset, dict(self.outlet_events.extra_of(name)), self.partition_key
            )
        alias_specs: dict[tuple[str, str | None, str], _EventSpec] = {}
        for alias, emission in self.outlet_events.alias_emissions():
            asset = emission.asset
            inst.ensure(asset)  # alias targets are registered as needed
            direct = specs.get(asset.name)
            if direct is not None and direct.asset.uri != asset.uri:
                raise ConflictError(
                    f"task {self.task.task_id!r} emitted {asset!r} through {alias!r}, but its "
                    f"outlet {asset.name!r} has uri {direct.asset.uri!r}"
                )
            if direct is not None and direct.partition_key == emission.partition_key:
                direct.extra.update(emission.extra)
                direct.aliases.add(alias.name)
                continue
            group = (
                asset.name,
                emission.partition_key,
                json.dumps(emission.extra, sort_keys=True, default=repr),
            )
            spec = alias_specs.get(group)
            if spec is None:
                spec = alias_specs[group] = _EventSpec(
                    asset, dict(emission.extra), emission.partition_key
                )
            spec.aliases.add(alias.name)
        all_specs = [*specs.values(), *alias_specs.values()]
        self._attach_figures(all_specs)
        new_events = [self._new_event(spec) for spec in all_specs]
        if self.buffer is not None:
            self.buffer.check_guards()
            writes = self.buffer.writes()
            if not writes and not new_events:
                return []
            return inst.backend.apply(writes, new_events)
        return inst.backend.append_events(new_events) if new_events else []

    def _attach_figures(self, specs: list[_EventSpec]) -> None:
        # A write is matched to an event by asset name, else by URI (a DatabaseClient or
        # ObjectStoragePath addresses the asset by its URI alone).
        names = {spec.asset.name for spec in specs}
        by_uri = {spec.asset.uri: spec.asset.name for spec in reversed(specs)}
        by_asset: dict[str, list[WriteResult]] = {}
        for asset, result in self.writes:
            name = asset.name if asset.name in names else by_uri.get(asset.uri)
            if name is not None:
                by_asset.setdefault(name, []).append(result)
        seen: set[str] = set()
        for spec in specs:
            name = spec.asset.name
            results = by_asset.get(name)
            if not results or name in seen:
                continue
            seen.add(name)
            if FIGURES_KEY in spec.extra:
                raise StoreValueError(
                    f"the extra of the event of {spec.asset!r} sets {FIGURES_KEY!r}, which "
                    "assetry reserves for the IO manager's write figures; use another key"
                )
            spec.extra[FIGURES_KEY] = _figures(results)
            partitions = {r.partition for r in results}
            if spec.partition_key is None and len(partitions) == 1:
                spec.partition_key = partitions.pop()

    def _new_event(self, spec: _EventSpec) -> NewEvent:
        try:
            extra_json = encode_extra(spec.extra, max_bytes=self.instance.max_value_bytes)
        except StoreValueError as exc:
            raise StoreValueError(
                f"the extra of the event of {spec.asset!r} from task {self.task.task_id!r} "
                f"is not acceptable: {exc}"
            ) from None
        return NewEvent(
            asset=spec.asset.name,
            extra_json=extra_json,
            partition_key=spec.partition_key,
            source_task_id=self.task.task_id,
            source_run_id=self.run_id,
            aliases=tuple(sorted(spec.aliases)),
        )

    def _result(self, value: Any, events: list[AssetEvent]) -> TaskRun:
        log.debug(
            "task %s run %s succeeded with %d event(s)",
            self.task.task_id,
            self.run_id,
            len(events),
        )
        return TaskRun(
            task_id=self.task.task_id,
            run_id=self.run_id,
            logical_date=self.logical_date,
            partition_key=self.partition_key,
            value=value,
            events=tuple(events),
            triggering_asset_events=self.triggering,
        )


def _figures(results: list[WriteResult]) -> dict[str, Any]:
    """The write figures of one asset in one run, summed over its writes."""
    modes = {r.mode for r in results}
    out: dict[str, Any] = {
        "rows": sum(r.rows for r in results),
        "seconds": round(sum(r.seconds for r in results), 6),
        "writes": len(results),
        "mode": modes.pop() if len(modes) == 1 else "mixed",
    }
    sizes = [r.bytes for r in results if r.bytes is not None]
    if sizes:
        out["bytes"] = sum(sizes)
    partitions = sorted({r.partition for r in results if r.partition is not None})
    if len(partitions) > 1:
        out["partitions"] = partitions
    warnings = [w for r in results for w in r.warnings]
    if warnings:
        out["warnings"] = warnings
    return out


# -- consumers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    ready: bool
    events: TriggeringAssetEvents


def _pending_events(inst: Instance, consumer: str, schedule: BaseAsset) -> _Pending:
    """Events newer than ``consumer``'s cursors for each leaf of ``schedule``, and whether
    they meet it."""
    backend = inst.backend
    cursors = backend.get_cursors(consumer)
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


def run_ready(*tasks: Task, instance: Instance | None = None) -> list[TaskRun]:
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
        if not isinstance(item, Task):
            raise TypeError(f"run_ready() takes tasks made with @task, not {type(item).__name__}")
        pending = item._pending(inst)
        if not pending.ready:
            continue
        state = item._start(_RunOptions(instance=inst), pending.events, "asset_triggered")
        result = state.execute((), {})
        item._advance(inst, pending.events)
        runs.append(result)
    return runs
