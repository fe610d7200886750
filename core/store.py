"""AssetStore: the per-asset key/value store API, on top of any StateBackend.

:class:`StoreBuffer` holds store writes back so that they commit together with events (an
atomic task run, a watcher poll); :class:`BufferedAssetStore` is the store API on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .backend import ANY_VERSION, StoreEntry, StoreWrite, version_conflict
from .errors import ConflictError
from .inputs import check_id
from .retry import LOST_RACE
from .threads import to_thread
from .values import decode_value, encode_value, validate_key, validate_partition_key

if TYPE_CHECKING:
    from .backend import ExpectedVersion, StateBackend
    from .instance import Instance

__all__ = ["AssetStore", "BufferedAssetStore", "StoreBuffer"]

_MISSING = object()


class AssetStore:
    """The key/value store of one asset (or of one partition of it).

    Values are JSON-compatible (not ``None``, no NaN/±Inf) and persist until deleted,
    cleared, or swept after the asset is deactivated.
    """

    __slots__ = ("_backend", "_instance", "asset", "partition_key")

    def __init__(self, instance: Instance, asset: str, partition_key: str | None = None) -> None:
        self._instance = instance
        self._backend = instance.backend
        self.asset = asset
        self.partition_key = partition_key

    def __repr__(self) -> str:
        part = f", partition={self.partition_key!r}" if self.partition_key is not None else ""
        return f"AssetStore(asset={self.asset!r}{part})"

    def partition(self, partition_key: str) -> AssetStore:
        """The store of one partition of this asset (a separate key namespace)."""
        if self.partition_key is not None:
            raise ValueError("partition() is already scoped; call it on the asset's store")
        return AssetStore(self._instance, self.asset, validate_partition_key(partition_key))

    def _encode(self, value: Any) -> str:
        return encode_value(value, max_bytes=self._instance.max_value_bytes)

    # -- the seed's API ------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``, or ``default`` when it does not exist."""
        text = self._backend.store_value(self.asset, validate_key(key), self.partition_key)
        return default if text is None else decode_value(text)

    def set(self, key: str, value: Any) -> int:
        """Write ``value`` under ``key`` (overwriting); return the entry's new version."""
        return self._backend.store_set(
            self.asset, validate_key(key), self._encode(value), self.partition_key
        )

    def delete(self, key: str) -> bool:
        """Delete ``key``; a missing key is a no-op. Return whether it existed."""
        return self._backend.store_delete(self.asset, validate_key(key), self.partition_key)

    def clear(self) -> int:
        """Delete every key of this asset (asset-level and partitions) or of this partition."""
        if self.partition_key is None:
            return self._backend.store_clear(self.asset, all_partitions=True)
        return self._backend.store_clear(self.asset, self.partition_key)

    # -- async twins (Airflow 3.3's aget/aset/adelete/aclear) ----------------------------------
    # No backend has a native async driver yet: each call runs the blocking one in a worker
    # thread (asyncio.to_thread), so a coroutine never blocks the event loop.

    async def aget(self, key: str, default: Any = None) -> Any:
        """Async :meth:`get`."""
        return await to_thread(self.get, key, default)

    async def aset(self, key: str, value: Any) -> int:
        """Async :meth:`set`."""
        return await to_thread(self.set, key, value)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return await to_thread(self.delete, key)

    async def aclear(self) -> int:
        """Async :meth:`clear`."""
        return await to_thread(self.clear)

    async def aget_entry(self, key: str) -> StoreEntry | None:
        """Async :meth:`get_entry`."""
        return await to_thread(self.get_entry, key)

    async def acompare_and_set(self, key: str, value: Any, *, expected_version: int | None) -> int:
        """Async :meth:`compare_and_set`."""
        return await to_thread(
            lambda: self.compare_and_set(key, value, expected_version=expected_version)
        )

    async def aupdate(
        self, key: str, fn: Callable[[Any], Any], default: Any = None, *, timeout: float = 60.0
    ) -> Any:
        """Async :meth:`update` (``fn`` runs in the worker thread)."""
        return await to_thread(lambda: self.update(key, fn, default, timeout=timeout))

    async def aadvance(self, key: str, value: Any, *, timeout: float = 60.0) -> bool:
        """Async :meth:`advance`."""
        return await to_thread(lambda: self.advance(key, value, timeout=timeout))

    async def akeys(self) -> list[str]:
        """Async :meth:`keys`."""
        return await to_thread(self.keys)

    async def aitems(self) -> dict[str, Any]:
        """Async :meth:`items`."""
        return await to_thread(self.items)

    # -- beyond the seed -------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The keys of this namespace, sorted."""
        return self._backend.store_keys(self.asset, self.partition_key)

    def items(self) -> dict[str, Any]:
        """Every key and value of this namespace."""
        return {
            e.key: decode_value(e.value_json)
            for e in self._backend.store_entries(self.asset, self.partition_key)
        }

    def partitions(self) -> list[str]:
        """Partition keys that hold entries."""
        return self._backend.store_partitions(self.asset)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get_entry(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get_entry(self, key: str) -> StoreEntry | None:
        """The entry (value and version) of ``key``, for compare-and-set."""
        return self._backend.store_get(self.asset, validate_key(key), self.partition_key)

    def compare_and_set(self, key: str, value: Any, *, expected_version: int | None) -> int:
        """Write only if ``key`` is at ``expected_version`` (``None``: absent); return the new
        version, or raise :class:`ConflictError`."""
        check_id(expected_version, "expected_version")
        return self._backend.store_set(
            self.asset,
            validate_key(key),
            self._encode(value),
            self.partition_key,
            expected_version=expected_version,
        )

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any = None,
        *,
        timeout: float = 60.0,
    ) -> Any:
        """Atomically replace the value of ``key`` with ``fn(current)`` and return it.

        ``current`` is ``default`` when the key is absent. Lost races are retried with
        jittered backoff until ``timeout`` seconds; ``fn`` may run more than once, so it
        must not have side effects.
        """
        return self._read_modify_write(
            key, lambda entry: fn(default if entry is None else entry.value), timeout
        )

    def advance(self, key: str, value: Any, *, timeout: float = 60.0) -> bool:
        """Set ``key`` to ``value`` only if the key is absent or ``value`` is greater than the
        stored value: a monotonic watermark. Return whether it moved."""
        self._encode(value)

        def step(entry: StoreEntry | None) -> Any:
            if entry is None:
                return value
            current = entry.value
            try:
                greater = value > current
            except TypeError:
                raise TypeError(
                    f"advance() cannot compare a {type(value).__name__} with the stored "
                    f"{type(current).__name__} of asset {self.asset!r} key {key!r}"
                ) from None
            return value if greater else _MISSING

        return self._read_modify_write(key, step, timeout) is not _MISSING

    def _read_modify_write(
        self, key: str, step: Callable[[StoreEntry | None], Any], timeout: float
    ) -> Any:
        """Compare-and-set ``step(entry)`` until it wins; ``_MISSING`` from ``step`` writes nothing."""
        validate_key(key)
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            entry = self._backend.store_get(self.asset, key, self.partition_key)
            new = step(entry)
            if new is _MISSING:
                return new
            text = self._encode(new)
            try:
                self._backend.store_set(
                    self.asset,
                    key,
                    text,
                    self.partition_key,
                    expected_version=None if entry is None else entry.version,
                )
                return new
            except ConflictError:
                attempt += 1
                if time.monotonic() >= deadline:
                    raise ConflictError(
                        f"read-modify-write of asset {self.asset!r} key {key!r} lost {attempt} "
                        f"races in {timeout:.0f}s; the key is too contended"
                    ) from None
                LOST_RACE.sleep(attempt)


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

    def store_value(self, asset: str, key: str, partition: str | None = None) -> str | None:
        """The JSON text under ``key``: this run's pending write, else the backend's."""
        slot = (asset, partition, key)
        if slot in self._pending:
            value, version = self._pending[slot]
            return None if value is None or version is None else value
        return self.backend.store_value(asset, key, partition)

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
