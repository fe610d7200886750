"""Task definition: the :class:`Task` a function becomes, and the :func:`task` decorator.

Calling a task runs it against the current :class:`~assetry.Instance` (see
:mod:`assetry.runtime.execution`); a task scheduled on assets is also a consumer (see
:mod:`assetry.runtime.consumers`).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import uuid
from collections.abc import Callable, Iterable
from typing import Any, overload

from ..backend import utcnow
from ..instance import Instance, current_instance
from ..models import BaseAsset, validate_name
from ..values import validate_partition_key
from .consumers import Consumer, check_start
from .dag import Inlet, check_assets, check_schedule, current_dag
from .events import TriggeringAssetEvents
from .execution import UNSET, RunOptions, TaskRun, TaskRunState

__all__ = ["Task", "task"]


class Task(Consumer):
    """A function that runs as a task run when called (see :func:`task`)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        task_id: str | None = None,
        inlets: Iterable[Inlet] | None = None,
        outlets: Iterable[Inlet] | None = None,
        schedule: BaseAsset | str | dt.timedelta | None = None,
        partition_key: str | Callable[[dt.datetime], str] | None = None,
        atomic: bool = False,
        start: str = "latest",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, not {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        name = task_id if task_id is not None else getattr(fn, "__name__", None)
        if not name or name == "<lambda>":
            raise TypeError("a task needs a name: decorate a named function or pass task_id=")
        dag = current_dag()
        self.dag = dag
        self.task_id = validate_name(f"{dag.dag_id}.{name}" if dag else name, "a task_id")
        owner = f"task {self.task_id!r}"
        self.inlets = check_assets(inlets, "inlets", owner)
        self.outlets = check_assets(outlets, "outlets", owner)
        if schedule is None and dag is not None:
            schedule = dag.schedule
        self.schedule = check_schedule(schedule, owner)
        if partition_key is not None and not callable(partition_key):
            validate_partition_key(partition_key)
        self.partition_key = partition_key
        self.atomic = bool(atomic)
        self.start = check_start(start)
        # the consumer exists from now on, as an Airflow DAG does once parsed
        self.defined_at = utcnow()
        self._signature = inspect.signature(fn)
        if dag is not None:
            dag.tasks.append(self)

    def __repr__(self) -> str:
        return f"<Task {self.task_id!r}>"

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        # Decorating a method: bind the instance like a function would.
        return self if obj is None else functools.partial(self.__call__, obj)

    # -- running -------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task and return the function's return value.

        ``partition_key=``, ``logical_date=``, ``run_id=`` and ``instance=`` set the run's
        options (they are context keys, so a parameter of that name sees the same value).
        """
        return self.run(*args, **kwargs).value

    def run(self, *args: Any, **kwargs: Any) -> TaskRun:
        """Run the task like a call, and return the :class:`TaskRun` with its events."""
        options = RunOptions.pop(kwargs)
        return self._start(options, None, "manual").execute(args, kwargs)

    async def arun(self, *args: Any, **kwargs: Any) -> TaskRun:
        """Run the task from async code (inside a running event loop)."""
        options = RunOptions.pop(kwargs)
        return await self._start(options, None, "manual").execute_async(args, kwargs)

    def _start(
        self,
        options: RunOptions,
        triggering: TriggeringAssetEvents | None,
        kind: str,
    ) -> TaskRunState:
        instance = options.instance if options.instance is not None else current_instance()
        if not isinstance(instance, Instance):
            raise TypeError(f"instance must be an Instance, not {type(instance).__name__}")
        logical_date = options.logical_date if options.logical_date is not None else utcnow()
        if not isinstance(logical_date, dt.datetime):
            raise TypeError(f"logical_date must be a datetime, not {type(logical_date).__name__}")
        if logical_date.tzinfo is None or logical_date.utcoffset() is None:
            raise ValueError(f"the logical_date of task {self.task_id!r} must be timezone-aware")
        logical_date = logical_date.astimezone(dt.UTC)
        if options.partition_key is not UNSET:
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
        return TaskRunState(self, instance, run_id, logical_date, partition_key, triggering)


@overload
def task(fn: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    task_id: str | None = None,
    inlets: Iterable[Inlet] | None = None,
    outlets: Iterable[Inlet] | None = None,
    schedule: BaseAsset | str | dt.timedelta | None = None,
    partition_key: str | Callable[[dt.datetime], str] | None = None,
    atomic: bool = False,
    start: str = "latest",
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    task_id: str | None = None,
    inlets: Iterable[Inlet] | None = None,
    outlets: Iterable[Inlet] | None = None,
    schedule: BaseAsset | str | dt.timedelta | None = None,
    partition_key: str | Callable[[dt.datetime], str] | None = None,
    atomic: bool = False,
    start: str = "latest",
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Make a function a task: calling it runs it against the current instance.

    ``inlets``/``outlets`` declare the assets it reads and writes (``Asset``,
    ``Asset.ref(...)``, ``AssetAlias``); ``schedule`` an asset condition that makes it a
    consumer for :func:`run_ready`; ``partition_key`` (a string, or a function of the logical
    date) the partition its events belong to; ``atomic=True`` holds the run's store writes
    back and commits them with its events (in one transaction where the backend has them);
    ``start`` where a consumer first seen after events exist begins: ``"latest"`` (Airflow's
    behaviour) or ``"earliest"`` (the backlog).
    Works with plain, async and generator functions (a generator may ``yield Metadata``).
    """
    options: dict[str, Any] = {
        "task_id": task_id,
        "inlets": inlets,
        "outlets": outlets,
        "schedule": schedule,
        "partition_key": partition_key,
        "atomic": atomic,
        "start": start,
    }
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)
