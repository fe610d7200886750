"""The event views of a task's context: what a run will record and what it may read.

``context["outlet_events"]`` holds the extra of each outlet's event and the events emitted
through aliases; ``context["inlet_events"]`` reads each inlet's events lazily;
``context["triggering_asset_events"]`` holds the events that made a consumer ready.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from ..backend import EventQuery
from ..models import Asset, AssetAlias, AssetEvent, AssetRef
from ..values import validate_partition_key
from .context import UndeclaredAssetError, lookup

if TYPE_CHECKING:
    from ..instance import Instance

__all__ = [
    "AliasEventAccessor",
    "InletEventAccessors",
    "InletEvents",
    "OutletEventAccessor",
    "OutletEvents",
    "TriggeringAssetEvents",
]


def _partition_keys(keys: str | Iterable[str]) -> list[str]:
    """``keys`` (one key or several) checked as partition keys."""
    if isinstance(keys, str):
        keys = [keys]
    return [validate_partition_key(k) for k in keys]


class _ForAsset:
    """``for_asset(name=..., uri=...)`` and ``for_asset_alias(name=...)``, as in Airflow."""

    def __getitem__(self, key: Any) -> Any:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> Any:
        """The entry of the asset with this name and/or URI."""
        if name and uri:
            return self[Asset(name=name, uri=uri)]
        if name:
            return self[Asset.ref(name=name)]
        if uri:
            return self[Asset.ref(uri=uri)]
        raise ValueError("for_asset() needs name= or uri=")

    def for_asset_alias(self, *, name: str) -> Any:
        """The entry of the alias ``name``."""
        return self[AssetAlias(name)]


class OutletEventAccessor:
    """``context["outlet_events"][asset]``: the extra of the event the run will record, and
    the partitions it is recorded in (``add_partitions``: one event per partition key)."""

    __slots__ = ("asset", "extra", "partition_keys")

    def __init__(self, asset: Asset) -> None:
        self.asset = asset
        self.extra: dict[str, Any] = {}
        self.partition_keys: set[str] = set()

    def __repr__(self) -> str:
        return f"OutletEventAccessor(asset={self.asset!r}, extra={self.extra!r})"

    def add_partitions(self, keys: str | list[str]) -> None:
        """Record the outlet's event in these partitions (one event each) when the run
        succeeds, instead of in the run's partition."""
        self.partition_keys.update(_partition_keys(keys))


@dataclass(frozen=True, slots=True)
class _AliasEmission:
    asset: Asset
    extra: dict[str, Any]
    partition_key: str | None


class AliasEventAccessor:
    """``context["outlet_events"][alias]``: emit events to assets chosen while running."""

    __slots__ = ("_default_partition", "_resolve", "alias", "emissions")

    def __init__(
        self,
        alias: AssetAlias,
        default_partition: str | None,
        resolve: Callable[[AssetRef], Asset] | None = None,
    ) -> None:
        self.alias = alias
        self.emissions: list[_AliasEmission] = []
        self._default_partition = default_partition
        self._resolve = resolve

    def add_partitions(self, keys: str | list[str]) -> None:
        """Not for aliases (as in Airflow): pass ``partition_key=`` to :meth:`add`."""
        raise TypeError(
            f"add_partitions() is for an asset's outlet events, not {self.alias!r}: "
            "pass partition_key= to add()"
        )

    def __repr__(self) -> str:
        return f"AliasEventAccessor(alias={self.alias!r}, emissions={len(self.emissions)})"

    def add(
        self,
        asset: Asset | AssetRef,
        extra: Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
    ) -> None:
        """Record an event for ``asset`` through this alias when the run succeeds.

        The asset is registered if it is new. Asset names are unique: an asset whose name is
        registered with another URI is a :class:`ConflictError` when the run ends, and the
        run records nothing (give each asset its own name). An ``Asset.ref(...)`` is resolved
        against the registry now (active assets only).
        """
        if isinstance(asset, AssetRef) and self._resolve is not None:
            asset = self._resolve(asset)
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


class OutletEvents(_ForAsset):
    """``context["outlet_events"]``: per outlet, the extra of its event; per alias, ``add``."""

    def __init__(
        self,
        outlets: Mapping[str, Asset],
        aliases: Mapping[str, AssetAlias],
        task_id: str,
        partition_key: str | None,
        resolve: Callable[[AssetRef], Asset] | None = None,
    ) -> None:
        self._resolve = resolve
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
                accessor = AliasEventAccessor(alias, self._partition_key, self._resolve)
                self._alias_accessors[alias.name] = accessor
            return accessor
        asset = lookup(self._outlets, key, "outlets", self._task_id)
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

    def partition_keys_of(self, name: str) -> list[str]:
        """The partitions ``add_partitions`` named for outlet ``name``, sorted."""
        acc = self._assets.get(name)
        return sorted(acc.partition_keys) if acc is not None else []

    def alias_emissions(self) -> Iterator[tuple[AssetAlias, _AliasEmission]]:
        for accessor in self._alias_accessors.values():
            for emission in accessor.emissions:
                yield accessor.alias, emission


class InletEvents(Sequence[AssetEvent]):
    """``context["inlet_events"][asset]``: the asset's events, ascending, fetched lazily.

    ``after``/``before`` take an event id (exclusive) or a datetime or ISO 8601 string
    (``after`` inclusive of that time, ``before`` exclusive; a string without an offset is
    UTC); ``limit`` keeps the first ``n``; ``partition_key`` keeps one partition;
    ``ascending(False)`` reverses the order (``limit`` then keeps the newest ``n``). Each
    returns a new, still lazy, sequence. For an alias the events
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
        descending: bool = False,
    ) -> None:
        self._descending = descending
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
            "descending": self._descending,
        }
        state.update(changes)
        return InletEvents(self._instance, self.target, **state)

    def after(self, bound: int | dt.datetime | str) -> InletEvents:
        """Only events after ``bound`` (an id, exclusive, or a time, inclusive)."""
        if isinstance(bound, str):
            bound = _parse_time(bound)
        if isinstance(bound, dt.datetime):
            _aware(bound)
            return self._copy(since=bound)
        return self._copy(after=self._event_id(bound))

    def before(self, bound: int | dt.datetime | str) -> InletEvents:
        """Only events before ``bound`` (an id or a time, both exclusive)."""
        if isinstance(bound, str):
            bound = _parse_time(bound)
        if isinstance(bound, dt.datetime):
            _aware(bound)
            return self._copy(until=bound)
        return self._copy(before=self._event_id(bound))

    def limit(self, n: int) -> InletEvents:
        """Only the first ``n`` events."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("limit must be a non-negative int")
        return self._copy(limit=n if self._limit is None else min(n, self._limit))

    def ascending(self, ascending: bool = True) -> InletEvents:
        """Oldest first (the default), or newest first with ``ascending(False)``."""
        return self._copy(descending=not ascending)

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

    def _fetch(
        self,
        after: int | None,
        limit: int | None,
        descending: bool,
        before: int | None = None,
    ) -> list[AssetEvent]:
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
                before=self._before if before is None else before,
                since=self._since,
                until=self._until,
                partition_key=self._partition_key,
                limit=limit,
                descending=descending,
            )
        )

    def __iter__(self) -> Iterator[AssetEvent]:
        descending = self._descending
        if isinstance(self.target, AssetAlias):
            yield from self._fetch(None, self._limit, descending)
            return
        remaining = self._limit
        cursor = self._before if descending else self._after
        while remaining is None or remaining > 0:
            size = self._PAGE if remaining is None else min(self._PAGE, remaining)
            if descending:
                page = self._fetch(self._after, size, True, before=cursor)
            else:
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
        if self._descending:  # newest first: position i is the i-th newest
            return list(self)[index] if self._limit is not None else self._reversed_at(index)
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

    def _reversed_at(self, index: int) -> AssetEvent:
        ascending = self._copy(descending=False)
        return ascending[-index - 1]


def _parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time bound; without an offset it is UTC (as Airflow reads it)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"an event time bound must be ISO 8601, not {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _aware(moment: dt.datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("event time bounds must be timezone-aware datetimes")


class InletEventAccessors(_ForAsset, Mapping[Any, InletEvents]):
    """``context["inlet_events"]``: the events of each inlet (asset, resolved reference or
    alias), as lazy :class:`InletEvents` sequences; ``[0]`` is the first declared inlet."""

    def __init__(
        self,
        instance: Instance,
        assets: Mapping[str, Asset],
        aliases: Mapping[str, AssetAlias],
        task_id: str,
        order: Sequence[Asset | AssetAlias] | None = None,
    ) -> None:
        self._instance = instance
        self._assets = dict(assets)
        self._aliases = dict(aliases)
        self._task_id = task_id
        self._order = list(order) if order is not None else None

    def __getitem__(self, key: Any) -> InletEvents:
        if isinstance(key, int) and not isinstance(key, bool):
            inlets = list(self)
            try:
                key = inlets[key]
            except IndexError:
                raise IndexError(
                    f"task {self._task_id!r} has {len(inlets)} inlet(s), no inlet {key}"
                ) from None
        if isinstance(key, AssetAlias):
            alias = self._aliases.get(key.name)
            if alias is None:
                raise UndeclaredAssetError(
                    f"{key!r} is not among the inlets of task {self._task_id!r}; "
                    "add the alias to the task's inlets"
                )
            return InletEvents(self._instance, alias)
        return InletEvents(self._instance, lookup(self._assets, key, "inlets", self._task_id))

    def __iter__(self) -> Iterator[Any]:
        if self._order is not None:
            return iter(self._order)
        return iter([*self._assets.values(), *self._aliases.values()])

    def __len__(self) -> int:
        return len(self._assets) + len(self._aliases)


class TriggeringAssetEvents(_ForAsset, Mapping[Any, list[AssetEvent]]):
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
