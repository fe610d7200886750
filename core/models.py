"""The core model: assets, references, aliases, conditions, events and metadata."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .contracts import DEFAULT_CONTRACT, AssetContract, Freshness
from .errors import AssetTypeError, AssetValueError
from .uri import MAX_URI_LENGTH, normalize_uri, uri_scheme
from .uri_normalizers import uri_normalizer
from .urls import render_url
from .values import encode_extra

__all__ = [
    "Asset",
    "AssetAlias",
    "AssetAll",
    "AssetAny",
    "AssetCondition",
    "AssetEvent",
    "AssetRef",
    "AssetWatcher",
    "BaseAsset",
    "Metadata",
    "validate_name",
]

MAX_NAME_LENGTH = MAX_URI_LENGTH


def validate_name(name: object, what: str = "an asset name") -> str:
    """Return ``name`` if usable as an asset or alias name, else raise
    :class:`AssetTypeError` / :class:`AssetValueError` (a TypeError / ValueError)."""
    if not isinstance(name, str):
        raise AssetTypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name or not name.strip():
        raise AssetValueError(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise AssetValueError(
            f"{what} must be at most {MAX_NAME_LENGTH} characters, got {len(name)}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise AssetValueError(f"{what} must not contain control characters: {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise AssetValueError(f"{what} must be valid unicode (no lone surrogates)") from None
    return name


class BaseAsset:
    """Something a schedule can depend on: combine with ``&`` (all) and ``|`` (any)."""

    __slots__ = ()

    def __and__(self, other: object) -> AssetAll:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAll(self, other)

    def __or__(self, other: object) -> AssetAny:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAny(self, other)

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __rand__(self, other: object) -> AssetAll:
        raise AssetTypeError(f"cannot combine {type(other).__name__} with an asset using '&'")

    def __ror__(self, other: object) -> AssetAny:
        raise AssetTypeError(f"cannot combine {type(other).__name__} with an asset using '|'")

    def leaves(self) -> Iterator[BaseAsset]:
        """The assets, references and aliases this condition is made of."""
        yield self

    def evaluate(self, is_met: Callable[[BaseAsset], bool]) -> bool:
        """Whether the condition holds, given a predicate on its leaves."""
        return is_met(self)


class Asset(BaseAsset):
    """A data asset, identified by a unique name and a URI.

    At least one of ``name`` and ``uri`` is needed; a missing one copies the other (a name
    copied from a URI has its secret query values masked, as the URI is rendered).
    ``checks`` are data checks run by the IO manager before anything is published;
    ``partition_column`` names the column a partition key maps to in tables.

    The asset's contract (see :mod:`assetry.contracts`) is stored with its registration:
    ``extra_schema`` (a JSON Schema dict or pydantic model class) checks its events' extra,
    ``schema_evolution`` (``"fail"`` or ``"add_columns"``) rules table and dataset writes,
    ``freshness`` (a ``timedelta`` or :class:`~assetry.contracts.Freshness`) says how often
    it should update.
    """

    __slots__ = (
        "checks",
        "contract",
        "extra",
        "group",
        "name",
        "partition_column",
        "uri",
        "watchers",
    )

    name: str
    uri: str
    group: str
    extra: dict[str, Any]
    watchers: tuple[AssetWatcher, ...]
    checks: tuple[Any, ...]
    partition_column: str | None
    contract: AssetContract

    def __init__(
        self,
        name: str | None = None,
        uri: str | os.PathLike[str] | None = None,
        *,
        group: str = "asset",
        extra: Mapping[str, Any] | None = None,
        watchers: Iterable[AssetWatcher] = (),
        checks: Iterable[Any] = (),
        partition_column: str | None = None,
        extra_schema: object = None,
        schema_evolution: str = "fail",
        freshness: Freshness | dt.timedelta | None = None,
    ) -> None:
        if name is None and uri is None:
            raise AssetTypeError("Asset() needs a name or a uri (or both)")
        if name is not None:
            validate_name(name)
        if uri is not None:
            uri = normalize_uri(_uri_text(uri))
        elif name is not None:
            uri = normalize_uri(name)
        if name is None:
            assert uri is not None
            # the URI as shown (secret query values such as a SAS ``sig=`` masked): a name
            # is printed, logged and stored in plain text everywhere
            name = validate_name(render_url(uri))
        validate_name(group, "an asset group")
        if extra is None:
            extra = {}
        elif not isinstance(extra, Mapping):
            raise AssetTypeError(f"Asset extra must be a dict, not {type(extra).__name__}")
        else:
            encode_extra(extra)  # JSON only, checked now rather than at registration
        watchers = tuple(watchers)
        for watcher in watchers:
            if not isinstance(watcher, AssetWatcher):
                raise AssetTypeError(
                    f"watchers must be AssetWatcher objects, got {type(watcher).__name__}"
                )
        if partition_column is not None:
            validate_name(partition_column, "a partition column")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "extra", dict(extra))
        object.__setattr__(self, "watchers", watchers)
        object.__setattr__(self, "checks", tuple(checks))
        object.__setattr__(self, "partition_column", partition_column)
        object.__setattr__(
            self, "contract", AssetContract.build(extra_schema, schema_evolution, freshness)
        )

    @property
    def extra_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the events' extra, or ``None``."""
        return self.contract.extra_schema

    @property
    def schema_evolution(self) -> str:
        """``"fail"`` or ``"add_columns"``: what table and dataset writes may do to the schema."""
        return self.contract.schema_evolution

    @property
    def freshness(self) -> Freshness | None:
        """How often the asset should update, or ``None``."""
        return self.contract.freshness

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Asset is immutable")

    def __fspath__(self) -> str:
        """The URI, so ``os.fspath(asset)`` and path-taking APIs accept an asset."""
        return self.uri

    @property
    def normalized_uri(self) -> str | None:
        """The URI as its scheme's rule leaves it (see :mod:`assetry.uri_normalizers`), or
        ``None`` when no rule is registered for the scheme (as Airflow answers)."""
        scheme = uri_scheme(self.uri)
        if not scheme or uri_normalizer(scheme) is None:
            return None
        return self.uri  # normalize_uri already ran the scheme's rule

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Asset):
            return NotImplemented
        return (self.name, self.uri, self.group) == (other.name, other.uri, other.group)

    def __hash__(self) -> int:
        return hash((Asset, self.name, self.uri))

    def __repr__(self) -> str:
        return f"Asset(name={self.name!r}, uri={render_url(self.uri)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_asset,
            (
                self.name,
                self.uri,
                self.group,
                self.extra,
                self.partition_column,
                self.watchers,
                self.checks,
                self.contract,
            ),
        )

    @staticmethod
    def ref(name: str | None = None, *, uri: str | None = None) -> AssetRef:
        """A reference to an asset by name (``Asset.ref("example")``) or by URI, resolved
        when a task runs."""
        if (name is None) == (uri is None):
            raise AssetTypeError("Asset.ref() takes exactly one of name= or uri=")
        if name is not None:
            return AssetRef(name=validate_name(name))
        return AssetRef(uri=normalize_uri(uri))


def _uri_text(uri: object) -> object:
    """An ``ObjectStoragePath`` (any universal path) or ``os.PathLike`` as URI text."""
    if isinstance(uri, str):
        return uri
    if isinstance(uri, os.PathLike) or hasattr(uri, "storage_options"):
        return str(uri)
    return uri


def _rebuild_asset(
    name: str,
    uri: str,
    group: str,
    extra: dict[str, Any],
    partition_column: str | None,
    watchers: tuple[AssetWatcher, ...] = (),
    checks: tuple[Any, ...] = (),
    contract: AssetContract = DEFAULT_CONTRACT,
) -> Asset:
    return Asset(
        name,
        uri,
        group=group,
        extra=extra,
        partition_column=partition_column,
        watchers=watchers,
        checks=checks,
        extra_schema=contract.extra_schema,
        schema_evolution=contract.schema_evolution,
        freshness=contract.freshness,
    )


class AssetRef(BaseAsset):
    """A reference to an asset declared elsewhere, by name or by URI."""

    __slots__ = ("name", "uri")

    def __init__(self, *, name: str | None = None, uri: str | None = None) -> None:
        if (name is None) == (uri is None):
            raise AssetTypeError("AssetRef takes exactly one of name= or uri=")
        # checked here, not where it is resolved: a name or URI no backend can store
        # must be a typed error, never a driver's
        object.__setattr__(self, "name", None if name is None else validate_name(name))
        object.__setattr__(self, "uri", None if uri is None else normalize_uri(uri))

    name: str | None
    uri: str | None

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("AssetRef is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetRef):
            return NotImplemented
        return (self.name, self.uri) == (other.name, other.uri)

    def __hash__(self) -> int:
        return hash((AssetRef, self.name, self.uri))

    def __repr__(self) -> str:
        if self.name:
            return f"Asset.ref(name={self.name!r})"
        return f"Asset.ref(uri={render_url(self.uri)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ref, (self.name, self.uri))


def _rebuild_ref(name: str | None, uri: str | None) -> AssetRef:
    return AssetRef(name=name, uri=uri)


class AssetAlias(BaseAsset):
    """An outlet whose concrete assets are chosen while the task runs."""

    __slots__ = ("group", "name")

    name: str
    group: str

    def __init__(self, name: str, *, group: str = "asset") -> None:
        object.__setattr__(self, "name", validate_name(name, "an alias name"))
        object.__setattr__(self, "group", validate_name(group, "an alias group"))

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("AssetAlias is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetAlias):
            return NotImplemented
        return self.name == other.name

    def __hash__(self) -> int:
        return hash((AssetAlias, self.name))

    def __repr__(self) -> str:
        return f"AssetAlias(name={self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_alias, (self.name, self.group))


def _rebuild_alias(name: str, group: str) -> AssetAlias:
    return AssetAlias(name, group=group)


class AssetCondition(BaseAsset):
    """A boolean combination of assets, references and aliases."""

    __slots__ = ("objects",)

    objects: tuple[BaseAsset, ...]
    _symbol = "?"

    def __init__(self, *objects: BaseAsset) -> None:
        flat: list[BaseAsset] = []
        for obj in objects:
            if not isinstance(obj, BaseAsset):
                raise AssetTypeError(
                    f"{type(self).__name__} takes assets, references, aliases or conditions, "
                    f"not {type(obj).__name__}"
                )
            if type(obj) is type(self):
                flat.extend(obj.objects)  # type: ignore[attr-defined]
            else:
                flat.append(obj)
        if not flat:
            raise AssetValueError(f"{type(self).__name__} needs at least one operand")
        object.__setattr__(self, "objects", tuple(flat))

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.objects == other.objects  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.objects))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.objects))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.objects)

    def leaves(self) -> Iterator[BaseAsset]:
        for obj in self.objects:
            yield from obj.leaves()


class AssetAll(AssetCondition):
    """Met when every operand is met (``a & b``)."""

    __slots__ = ()

    def evaluate(self, is_met: Callable[[BaseAsset], bool]) -> bool:
        return all(obj.evaluate(is_met) for obj in self.objects)


class AssetAny(AssetCondition):
    """Met when any operand is met (``a | b``)."""

    __slots__ = ()

    def evaluate(self, is_met: Callable[[BaseAsset], bool]) -> bool:
        return any(obj.evaluate(is_met) for obj in self.objects)


class _NoExtra:
    """The default of ``AssetEvent(extra=...)``: a fresh ``{}`` per event."""

    def __repr__(self) -> str:
        return "{}"


_NO_EXTRA: Any = _NoExtra()


@dataclass(frozen=True, slots=True, init=False)
class AssetEvent:
    """One "this asset was updated" record.

    ``id`` is the event's sequence number within its asset: ids of one asset are
    strictly increasing in the order consumers must see them.
    """

    id: int
    asset_name: str
    asset_uri: str
    timestamp: dt.datetime
    extra: dict[str, Any] = field(default_factory=dict)
    partition_key: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    aliases: tuple[str, ...] = ()

    def __init__(
        self,
        id: int,
        asset_name: str,
        asset_uri: str,
        timestamp: dt.datetime,
        extra: dict[str, Any] = _NO_EXTRA,
        partition_key: str | None = None,
        source_task_id: str | None = None,
        source_run_id: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        # The generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__; the slots' own setters do the same at a third less cost,
        # which counts where backends build pages and batches of thousands of events.
        _set_id(self, id)
        _set_asset_name(self, asset_name)
        _set_asset_uri(self, asset_uri)
        _set_timestamp(self, timestamp)
        _set_extra(self, {} if extra is _NO_EXTRA else extra)
        _set_partition_key(self, partition_key)
        _set_source_task_id(self, source_task_id)
        _set_source_run_id(self, source_run_id)
        _set_aliases(self, aliases)

    @property
    def asset(self) -> Asset:
        """The asset this event belongs to."""
        return Asset(self.asset_name, self.asset_uri)

    @property
    def source_dag_run(self) -> str | None:
        """Airflow's name for the run that produced the event (our ``source_run_id``)."""
        return self.source_run_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict of the event."""
        return {
            "id": self.id,
            "asset_name": self.asset_name,
            "asset_uri": self.asset_uri,
            "timestamp": self.timestamp.isoformat(),
            "extra": self.extra,
            "partition_key": self.partition_key,
            "source_task_id": self.source_task_id,
            "source_run_id": self.source_run_id,
            "aliases": list(self.aliases),
        }


(
    _set_id,
    _set_asset_name,
    _set_asset_uri,
    _set_timestamp,
    _set_extra,
    _set_partition_key,
    _set_source_task_id,
    _set_source_run_id,
    _set_aliases,
) = (vars(AssetEvent)[name].__set__ for name in AssetEvent.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Yielded by a task to attach extra (and optionally an alias) to an outlet event."""

    asset: Asset
    extra: dict[str, Any] = field(default_factory=dict)
    alias: AssetAlias | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.asset, Asset):
            raise AssetTypeError(f"Metadata needs an Asset, not {type(self.asset).__name__}")
        if self.alias is not None and not isinstance(self.alias, AssetAlias):
            raise AssetTypeError(
                f"Metadata alias must be an AssetAlias, not {type(self.alias).__name__}"
            )
        if self.extra is None:
            object.__setattr__(self, "extra", {})
        elif not isinstance(self.extra, Mapping):
            raise AssetTypeError(f"Metadata extra must be a dict, not {type(self.extra).__name__}")


class AssetWatcher:
    """Watches something external through a trigger and records events for an asset."""

    __slots__ = ("name", "trigger")

    def __init__(self, name: str, trigger: Any) -> None:
        self.name = validate_name(name, "a watcher name")
        self.trigger = trigger

    def __repr__(self) -> str:
        return f"AssetWatcher(name={self.name!r}, trigger={self.trigger!r})"


def concrete_assets(objects: Sequence[BaseAsset]) -> list[Asset]:
    """The ``Asset`` objects among ``objects`` (aliases and references are not concrete)."""
    return [obj for obj in objects if isinstance(obj, Asset)]
