"""A running task's context: its keys, ``get_current_context()`` and the asset stores.

The context is the dict a task receives (``**context``, or a parameter named like a key);
``context["asset_store"]`` gives the stores of the task's concrete inlets and outlets. The
event views (``outlet_events``, ``inlet_events``, ``triggering_asset_events``) are in
:mod:`assetry.runtime.events`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AssetryError
from ..models import Asset, AssetAlias, AssetRef
from ..store import AssetStore, BufferedAssetStore, StoreBuffer

if TYPE_CHECKING:
    from ..backend import StoreEntry
    from ..instance import Instance

__all__ = [
    "CONTEXT_KEYS",
    "NoTaskContextError",
    "TaskAssetStores",
    "UndeclaredAssetError",
    "get_current_context",
    "lookup",
]

#: The keys of a task's context; a parameter with one of these names receives its value.
CONTEXT_KEYS: tuple[str, ...] = (
    "asset_store",
    "asset_state_store",
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


class NoTaskContextError(AssetryError, RuntimeError):
    """:func:`get_current_context` was called while no task is running."""


class UndeclaredAssetError(AssetryError, KeyError):
    """The task did not declare this asset as an inlet or outlet."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


#: The context of the task running in this thread or asyncio task (set by the run).
CURRENT_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "assetry_task_context", default=None
)


def get_current_context() -> dict[str, Any]:
    """The context of the task running in this thread or asyncio task."""
    context = CURRENT_CONTEXT.get()
    if context is None:
        raise NoTaskContextError(
            "get_current_context() was called while no task is running; call it from inside "
            "a function decorated with @task (it is filled while the task runs)"
        )
    return context


def lookup(assets: Mapping[str, Asset], key: object, what: str, task_id: str) -> Asset:
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
        return self._store(lookup(self._assets, asset, "asset stores", self._task_id).name)

    def __contains__(self, asset: object) -> bool:
        try:
            lookup(self._assets, asset, "asset stores", self._task_id)
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

    # -- async twins of the shorthand (a worker thread each, see AssetStore.aget) ----------

    async def aget(self, key: str, default: Any = None) -> Any:
        """Async :meth:`get`."""
        return await self._single("aget").aget(key, default)

    async def aset(self, key: str, value: Any) -> int:
        """Async :meth:`set`."""
        return await self._single("aset").aset(key, value)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return await self._single("adelete").adelete(key)

    async def aclear(self) -> int:
        """Async :meth:`clear`."""
        return await self._single("aclear").aclear()
