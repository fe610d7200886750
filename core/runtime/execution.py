"""One task run: building its context, calling the function, and committing its events.

A run resolves the task's inlets and outlets, builds the context, calls the function
(plain, generator, async or async generator) and, only when it succeeds, records one event
per concrete outlet plus those emitted through aliases, with the IO manager's write
figures attached. An atomic run commits its held-back store writes with those events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import inspect
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backend import NewEvent
from ..errors import AssetNotFoundError, ConflictError, StoreValueError
from ..iomanager import IOManagerDispatcher, WriteResult
from ..models import Asset, AssetAlias, AssetEvent, AssetRef, Metadata
from ..store import StoreBuffer
from ..values import encode_extra
from .context import CURRENT_CONTEXT, TaskAssetStores, UndeclaredAssetError
from .events import InletEventAccessors, OutletEvents, TriggeringAssetEvents

if TYPE_CHECKING:
    from ..instance import Instance
    from .tasks import Task

__all__ = ["FIGURES_KEY", "UNSET", "RunOptions", "TaskRun", "TaskRunState"]

log = logging.getLogger("assetry.runtime")

#: The key of event extra under which a run records its IO manager's write figures.
FIGURES_KEY = "assetry"

#: The default of a run option that was not given (``None`` is a value for some).
UNSET: Any = object()


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


@dataclass(slots=True)
class RunOptions:
    """The options a call of a task may pass besides its arguments."""

    partition_key: Any = UNSET
    logical_date: dt.datetime | None = None
    run_id: str | None = None
    instance: Instance | None = None

    @classmethod
    def pop(cls, kwargs: dict[str, Any]) -> RunOptions:
        """Take the run options out of a call's keyword arguments."""
        options = cls()
        for name in ("partition_key", "logical_date", "run_id", "instance"):
            if name in kwargs:
                setattr(options, name, kwargs.pop(name))
        return options


#: The run in progress in this thread or asyncio task, which collects the IO writes.
_RUN: contextvars.ContextVar[TaskRunState | None] = contextvars.ContextVar(
    "assetry_task_run", default=None
)


_LISTENER_LOCK = threading.Lock()


def _collect_write(asset: Asset, result: WriteResult) -> None:
    """IO manager listener: give a write's figures to the task run of this context."""
    run = _RUN.get()
    if run is not None:
        run.writes.append((asset, result))


@dataclass(slots=True)
class _EventSpec:
    asset: Asset
    extra: dict[str, Any]
    partition_key: str | None
    aliases: set[str] = field(default_factory=set)


class TaskRunState:
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
        inlet_order: list[Asset | AssetAlias] = []  # as declared: inlet_events[0], [1], ...
        self.outlets: dict[str, Asset] = {}
        self.aliases: dict[str, AssetAlias] = {}
        for obj in task.inlets:
            if isinstance(obj, AssetAlias):
                inlet_aliases[obj.name] = obj
                inlet_order.append(obj)
            else:
                asset = self._resolve(obj)
                inlet_assets.setdefault(asset.name, asset)
                inlet_order.append(asset)
        for obj in task.outlets:
            if isinstance(obj, AssetAlias):
                self.aliases[obj.name] = obj
            else:
                asset = self._resolve(obj)
                self.outlets.setdefault(asset.name, asset)
        concrete = {**inlet_assets}
        for name, asset in self.outlets.items():
            concrete.setdefault(name, asset)
        for alias in inlet_aliases.values():  # an alias inlet: the assets it has emitted to
            for target in instance.backend.alias_targets(alias.name):
                if target not in concrete:  # an inactive one's store is not offered
                    with contextlib.suppress(AssetNotFoundError):
                        concrete[target] = instance.resolve(target)

        self.buffer = StoreBuffer(instance.backend) if task.atomic else None
        self.outlet_events = OutletEvents(
            self.outlets, self.aliases, task.task_id, partition_key, instance.resolve
        )
        dispatcher: IOManagerDispatcher = instance.io_manager
        with _LISTENER_LOCK:
            if _collect_write not in dispatcher.listeners:
                dispatcher.listeners.append(_collect_write)
        stores = TaskAssetStores(instance, concrete, task.task_id, self.buffer)
        self.context: dict[str, Any] = {
            "asset_store": stores,
            "asset_state_store": stores,  # Airflow 3.3.2's name for it
            "io_manager": dispatcher,
            "outlet_events": self.outlet_events,
            "inlet_events": InletEventAccessors(
                instance, inlet_assets, inlet_aliases, task.task_id, inlet_order
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
        return CURRENT_CONTEXT.set(self.context), _RUN.set(self)

    def _exit(self, tokens: tuple[contextvars.Token[Any], contextvars.Token[Any]]) -> None:
        CURRENT_CONTEXT.reset(tokens[0])
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
        partitioned: list[_EventSpec] = []  # outlet_events[asset].add_partitions(...)
        for name, asset in self.outlets.items():
            extra = self.outlet_events.extra_of(name)
            keys = self.outlet_events.partition_keys_of(name)
            if keys:
                partitioned.extend(_EventSpec(asset, dict(extra), key) for key in keys)
            else:
                specs[name] = _EventSpec(asset, dict(extra), self.partition_key)
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
        all_specs = [*specs.values(), *partitioned, *alias_specs.values()]
        self._attach_figures(all_specs)
        new_events = [self._new_event(spec) for spec in all_specs]
        inst.check_events(new_events)  # the declared extra_schema, before anything is stored
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
    versions = [r.table_version for r in results if r.table_version is not None]
    if versions:  # the table as the run's last commit left it
        out["table_version"] = versions[-1]
    return out
