"""The runtime: ``@task``, its context, outlet events, aliases and asset-scheduled consumers.

Calling a function decorated with :func:`task` runs it as a *task run* against the current
:class:`~assetry.Instance`: its concrete inlets and outlets are registered, the context is
built (``asset_store``, ``outlet_events``, ``inlet_events``, ...), the function runs, and only
when it succeeds one event per concrete outlet (plus those emitted through aliases) is
recorded, carrying the extra set by the task, yielded :class:`~assetry.Metadata` and the IO
manager's write figures. A task with ``schedule=<asset condition>`` is a consumer:
:func:`run_ready` runs it when events newer than its cursor meet the condition.

Modules: :mod:`~assetry.runtime.tasks` (the task and ``@task``), :mod:`~assetry.runtime.dag`
(``DAG`` and declaration checks), :mod:`~assetry.runtime.context` (context keys, asset
stores), :mod:`~assetry.runtime.events` (outlet, inlet and triggering events),
:mod:`~assetry.runtime.execution` (one run and its commit), :mod:`~assetry.runtime.consumers`
(cursors and :func:`run_ready`).
"""

from __future__ import annotations

from ..store import BufferedAssetStore, StoreBuffer
from .consumers import Consumer, run_ready
from .context import (
    CONTEXT_KEYS,
    NoTaskContextError,
    TaskAssetStores,
    UndeclaredAssetError,
    get_current_context,
)
from .dag import DAG, Inlet
from .events import (
    AliasEventAccessor,
    InletEventAccessors,
    InletEvents,
    OutletEventAccessor,
    OutletEvents,
    TriggeringAssetEvents,
)
from .execution import FIGURES_KEY, TaskRun
from .tasks import Task, task

__all__ = [
    "CONTEXT_KEYS",
    "DAG",
    "FIGURES_KEY",
    "AliasEventAccessor",
    "BufferedAssetStore",
    "Consumer",
    "Inlet",
    "InletEventAccessors",
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
