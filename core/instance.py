"""Instance: the one object that binds a state backend and the IO managers."""

from __future__ import annotations

import datetime as dt
import heapq
import inspect
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from . import plugins
from .backend import AssetRecord, EventQuery, NewEvent, StateBackend
from .config import Connection, Settings, load_settings, settings_scope
from .contracts import check_new_events
from .current import _current, instance_scope
from .errors import (
    AssetNotFoundError,
    AssetTypeError,
    ConfigurationError,
    ConflictError,
    PluginError,
    StateNotFoundError,
)
from .inputs import check_aliases, check_id, check_source_id, check_timestamp
from .iomanager import IOManager, IOManagerDispatcher
from .models import Asset, AssetAlias, AssetEvent, AssetRef, validate_name
from .retention import VacuumResult, vacuum_tables
from .store import AssetStore
from .threads import to_thread
from .uri import normalize_uri
from .urls import render_url, scrub_text
from .values import encode_extra, validate_partition_key

__all__ = ["Instance", "current_instance", "use_instance"]

AssetLike = Asset | AssetRef | str


class Instance:
    """A configured assetry: state backend, asset store, event log and IO managers.

    ``Instance()`` resolves the configuration (arguments > environment > pyproject.toml /
    assetry.toml > the embedded SQLite default). ``backend`` is an entry-point name or a
    ready :class:`StateBackend`; ``url`` alone picks the backend by its scheme.

    State is created on first use (tables, folders, files). ``create=False`` opens existing
    state only, for reading: nothing is created or migrated, and where there is no state
    yet it raises :class:`~assetry.errors.StateNotFoundError`.
    """

    def __init__(
        self,
        backend: str | StateBackend | None = None,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        max_value_bytes: int | None = None,
        io_managers: Mapping[str, IOManager] | None = None,
        io_manager_options: Mapping[str, Mapping[str, Any]] | None = None,
        create: bool = True,
        **options: Any,
    ) -> None:
        if isinstance(backend, StateBackend):
            self.settings = settings or load_settings(
                backend=backend.name or type(backend).__name__,
                url=url,
                max_value_bytes=max_value_bytes,
            )
            self.backend = backend
        else:
            if backend is not None and not isinstance(backend, str):
                raise TypeError(
                    f"backend must be an entry-point name or a StateBackend, not {type(backend).__name__}"
                )
            self.settings = settings or load_settings(
                backend=backend, url=url, options=options or None, max_value_bytes=max_value_bytes
            )
            self.backend = _build_backend(self.settings, create=create)
            if create and self.settings.auto_upgrade:
                self.backend.upgrade()
        if not create:
            _require_existing(self.backend, self.settings)
        self.max_value_bytes = (
            max_value_bytes if max_value_bytes is not None else self.settings.max_value_bytes
        )
        self._io_managers = dict(io_managers or {})
        self._io_manager_options = dict(io_manager_options or {})
        self._dispatcher: IOManagerDispatcher | None = None
        self._known: dict[str, str] = {}
        #: asset name -> (its stored record, when it was read): contracts for event checks
        self._contracts: dict[str, tuple[AssetRecord | None, float]] = {}
        self._watched: dict[str, Asset] = {}  # assets with watchers, for watch()
        self._lock = threading.Lock()

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Instance:
        """An instance whose backend is chosen by the URL's scheme."""
        if not isinstance(url, str) or not url:
            raise ConfigurationError("from_url() needs a URL string such as sqlite:///state.db")
        return cls(backend=plugins.backend_for_url(url), url=url, **options)

    @classmethod
    def from_config(cls, **overrides: Any) -> Instance:
        """An instance from the environment, pyproject.toml / assetry.toml, or the default."""
        return cls(**overrides)

    def __repr__(self) -> str:
        return f"Instance({scrub_text(self.backend.describe())})"

    def close(self) -> None:
        """Close the IO managers and the backend."""
        if self._dispatcher is not None:
            self._dispatcher.close()
        self.backend.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upgrade(self) -> None:
        """Bring the backend's stored schema to this version of assetry."""
        self.backend.upgrade()

    def connection(self, conn_id: str) -> Connection | None:
        """The named connection, or ``None`` when it is not configured."""
        return self.settings.connection(conn_id)

    # -- assets ----------------------------------------------------------------------------

    def register(self, asset: Asset) -> AssetRecord:
        """Register (or reactivate) ``asset``; a name/URI clash raises :class:`ConflictError`."""
        if not isinstance(asset, Asset):
            raise TypeError(f"register() needs an Asset, not {type(asset).__name__}")
        contract: dict[str, Any] = (
            {} if asset.contract.is_default else {"contract_json": asset.contract.to_json()}
        )
        record = self.backend.register_asset(
            asset.name,
            asset.uri,
            group=asset.group,
            extra_json=encode_extra(asset.extra, max_bytes=self.max_value_bytes),
            **contract,
        )
        with self._lock:
            self._known[asset.name] = asset.uri
            self._contracts[asset.name] = (record, time.monotonic())
            if asset.watchers:
                self._watched[asset.name] = asset
        return record

    def ensure(self, asset: Asset) -> str:
        """Register ``asset`` if the backend does not know it yet (an inactive asset stays
        inactive); return its name. Cached per process."""
        with self._lock:
            if asset.watchers:
                self._watched[asset.name] = asset
            known = self._known.get(asset.name)
        if known == asset.uri:
            return asset.name
        record = self.backend.get_asset(asset.name)
        if record is None:
            try:
                record = self.register(asset)
            except ConflictError:
                record = self.backend.get_asset(asset.name)
                if record is None:
                    raise
        elif (
            record.active
            and record.uri == asset.uri
            and not asset.contract.is_default
            and record.contract != asset.contract
        ):
            record = self.register(asset)  # the declared contract replaces the stored one
        if record.uri != asset.uri:
            raise ConflictError(
                f"asset {asset.name!r} is registered with uri {record.uri!r}, not {asset.uri!r}; "
                "give the new asset another name"
            )
        with self._lock:
            self._known[asset.name] = asset.uri
        return asset.name

    def _name(self, asset: AssetLike) -> str:
        if isinstance(asset, Asset):
            return self.ensure(asset)
        if isinstance(asset, AssetRef):
            return self.resolve(asset).name
        if isinstance(asset, str):
            return validate_name(asset)
        raise TypeError(
            f"expected an Asset, Asset.ref(...) or asset name, not {type(asset).__name__}"
        )

    def resolve(self, ref: AssetRef | Asset | str) -> Asset:
        """The registered asset a reference (or name) points to."""
        if isinstance(ref, Asset):
            return ref
        if isinstance(ref, str):
            ref = AssetRef(name=ref)
        if not isinstance(ref, AssetRef):
            raise TypeError(f"cannot resolve {type(ref).__name__} to an asset")
        record = (
            self.backend.get_asset(ref.name)
            if ref.name is not None
            else self.backend.get_asset_by_uri(normalize_uri(ref.uri))
        )
        if record is None or not record.active:
            what = f"name {ref.name!r}" if ref.name is not None else f"uri {ref.uri!r}"
            raise AssetNotFoundError(
                f"no asset with {what} is registered; declare the asset in a task or "
                "register it first"
                if record is None
                else f"the asset with {what} is inactive; reactivate it with "
                f"`assetry assets reactivate {shlex.quote(record.name)}` or Instance.register(asset)"
            )
        return Asset(
            record.name,
            record.uri,
            group=record.group,
            extra=record.extra,
            extra_schema=record.contract.extra_schema,
            schema_evolution=record.contract.schema_evolution,
            freshness=record.contract.freshness,
        )

    def get_asset(self, asset: AssetLike) -> AssetRecord | None:
        """The registry's record of an asset (by object, reference or name), or ``None``."""
        if isinstance(asset, AssetRef) and asset.uri is not None:
            return self.backend.get_asset_by_uri(normalize_uri(asset.uri))
        name = asset.name if isinstance(asset, Asset | AssetRef) else asset
        return self.backend.get_asset(validate_name(name)) if name else None

    def assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        """Registered assets sorted by name."""
        return self.backend.list_assets(active=active)

    def deactivate(self, asset: AssetLike) -> bool:
        """Deactivate an asset: its store turns read-only until :meth:`sweep` removes it."""
        name = asset.name if isinstance(asset, Asset) else self._name(asset)
        with self._lock:
            self._known.pop(name, None)
        return self.backend.deactivate_asset(name)

    def sweep(self, *, batch_size: int = 1000) -> int:
        """Remove the store entries of inactive assets; return how many were removed."""
        size = check_id(batch_size, "batch_size", minimum=1)
        if size is None:  # check_id lets None through; a batch needs a size
            raise AssetTypeError("batch_size must be an int, not NoneType")
        return self.backend.sweep(batch_size=size)

    def vacuum(
        self, assets: Sequence[AssetLike] | None = None, *, dry_run: bool = False
    ) -> list[VacuumResult]:
        """Expire the table versions (Delta, Iceberg) older than the oldest one a live event
        pins, so every event still reads its data (``connect(asset, as_of=event)``); prune
        events first (``assetry events prune``) to let more versions go."""
        names = [self._name(a) for a in assets] if assets is not None else None
        return vacuum_tables(self.backend, self.io_manager, assets=names, dry_run=dry_run)

    # -- async twins -----------------------------------------------------------------------
    # No backend has a native async driver yet: each runs the blocking call in a worker
    # thread (asyncio.to_thread), so a coroutine never blocks the event loop.

    async def aregister(self, asset: Asset) -> AssetRecord:
        """Async :meth:`register`."""
        return await to_thread(self.register, asset)

    async def aresolve(self, ref: AssetRef | Asset | str) -> Asset:
        """Async :meth:`resolve`."""
        return await to_thread(self.resolve, ref)

    async def arecord_event(self, asset: AssetLike, *args: Any, **kwargs: Any) -> AssetEvent:
        """Async :meth:`record_event`."""
        return await to_thread(self.record_event, asset, *args, **kwargs)

    async def aevents(self, asset: AssetLike, **kwargs: Any) -> list[AssetEvent]:
        """Async :meth:`events`."""
        return await to_thread(lambda: self.events(asset, **kwargs))

    async def alatest_event(
        self, asset: AssetLike, partition_key: str | None = None
    ) -> AssetEvent | None:
        """Async :meth:`latest_event`."""
        return await to_thread(self.latest_event, asset, partition_key)

    # -- asset store -----------------------------------------------------------------------

    def asset_store(self, asset: AssetLike) -> AssetStore:
        """The key/value store of ``asset`` (registered on first use)."""
        return AssetStore(self, self._name(asset))

    # -- events ----------------------------------------------------------------------------

    def record_event(
        self,
        asset: AssetLike,
        extra: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        *,
        aliases: Iterable[AssetAlias | str] = (),
        source_task_id: str | None = None,
        source_run_id: str | None = None,
        timestamp: dt.datetime | None = None,
    ) -> AssetEvent:
        """Record that ``asset`` was updated; return the stored event."""
        return self.record_events(
            asset,
            [extra],
            partition_key=partition_key,
            aliases=aliases,
            source_task_id=source_task_id,
            source_run_id=source_run_id,
            timestamp=timestamp,
        )[0]

    def record_events(
        self,
        asset: AssetLike,
        extras: Iterable[Mapping[str, Any] | None],
        partition_key: str | None = None,
        *,
        aliases: Iterable[AssetAlias | str] = (),
        source_task_id: str | None = None,
        source_run_id: str | None = None,
        timestamp: dt.datetime | None = None,
    ) -> list[AssetEvent]:
        """Record several events of one asset in one batch (one round trip where possible)."""
        name = self._name(asset)
        alias_names = check_aliases(aliases)
        if partition_key is not None:
            validate_partition_key(partition_key)
        check_source_id(source_task_id, "source_task_id")
        check_source_id(source_run_id, "source_run_id")
        when = check_timestamp(timestamp, "an event timestamp")
        events = [
            NewEvent(
                asset=name,
                extra_json=encode_extra(extra, max_bytes=self.max_value_bytes),
                partition_key=partition_key,
                source_task_id=source_task_id,
                source_run_id=source_run_id,
                aliases=alias_names,
                timestamp=when,
            )
            for extra in extras
        ]
        self.check_events(events)
        return self.backend.append_events(events) if events else []

    def remember_contract(self, record: AssetRecord) -> None:
        """Check events against ``record``'s contract from now on: for a caller that
        registered an asset through the backend itself (the server's backend routes)."""
        with self._lock:
            self._contracts[record.name] = (record, time.monotonic())

    def check_events(self, events: Sequence[NewEvent]) -> None:
        """Check new events' extra against their assets' stored ``extra_schema`` before
        they are appended (:class:`ValidationError` naming the field). Skipped where the
        backend checks them itself (the HTTP backend: the server does)."""
        if events and not getattr(self.backend, "checks_contracts", False):
            check_new_events(self._contract_record, events)

    #: Seconds a stored contract read for event checks is reused: a contract that another
    #: process replaces is enforced here within this time (this process's own at once).
    contract_ttl: float = 2.0

    def _contract_record(self, name: str) -> AssetRecord | None:
        now = time.monotonic()
        with self._lock:
            cached = self._contracts.get(name)
        if cached is not None and now - cached[1] < self.contract_ttl:
            return cached[0]
        record = self.backend.get_asset(name)
        with self._lock:
            self._contracts[name] = (record, now)
        return record

    def events(
        self,
        asset: AssetLike | AssetAlias,
        *,
        after: int | None = None,
        before: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        partition_key: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[AssetEvent]:
        """Events of an asset (ascending ids) or of an alias (by timestamp), filtered."""
        after = check_id(after, "after")
        before = check_id(before, "before")
        limit = check_id(limit, "limit")
        since = check_timestamp(since, "since")
        until = check_timestamp(until, "until")
        if partition_key is not None:
            validate_partition_key(partition_key)
        if isinstance(asset, AssetAlias):
            return self._alias_events(
                asset, after, before, since, until, partition_key, limit, descending
            )
        name = asset.name if isinstance(asset, Asset) else self._name(asset)
        return self.backend.query_events(
            EventQuery(name, after, before, since, until, partition_key, None, limit, descending)
        )

    def _alias_events(
        self,
        alias: AssetAlias,
        after: int | None,
        before: int | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        partition_key: str | None,
        limit: int | None,
        descending: bool,
    ) -> list[AssetEvent]:
        streams = [
            self.backend.query_events(
                EventQuery(
                    target,
                    after,
                    before,
                    since,
                    until,
                    partition_key,
                    alias.name,
                    limit,
                    descending,
                )
            )
            for target in self.backend.alias_targets(alias.name)
        ]
        merged = heapq.merge(
            *streams, key=lambda e: (e.timestamp, e.asset_name, e.id), reverse=descending
        )
        result = list(merged)
        return result[:limit] if limit is not None else result

    def iter_events(
        self,
        asset: AssetLike,
        *,
        after: int | None = None,
        partition_key: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[AssetEvent]:
        """Every event of ``asset`` after ``after``, fetched page by page."""
        check_id(page_size, "page_size", minimum=1)
        after = check_id(after, "after")
        name = asset.name if isinstance(asset, Asset) else self._name(asset)
        cursor = after
        while True:
            page = self.backend.query_events(
                EventQuery(name, after=cursor, partition_key=partition_key, limit=page_size)
            )
            yield from page
            if len(page) < page_size:
                return
            cursor = page[-1].id

    def latest_event(self, asset: AssetLike, partition_key: str | None = None) -> AssetEvent | None:
        """The newest event of ``asset`` (of one partition, if given)."""
        name = asset.name if isinstance(asset, Asset) else self._name(asset)
        if partition_key is not None:
            return self.backend.latest_partition_events(name).get(partition_key)
        return self.backend.latest_events([name]).get(name)

    def latest_events(self, assets: Iterable[AssetLike] | None = None) -> dict[str, AssetEvent]:
        """The newest event of each asset, by asset name."""
        names = (
            None
            if assets is None
            else [a.name if isinstance(a, Asset) else self._name(a) for a in assets]
        )
        return self.backend.latest_events(names)

    def latest_partition_events(self, asset: AssetLike) -> dict[str, AssetEvent]:
        """The newest event of each partition of ``asset``."""
        name = asset.name if isinstance(asset, Asset) else self._name(asset)
        return self.backend.latest_partition_events(name)

    # -- watchers --------------------------------------------------------------------------

    def watch(
        self,
        *,
        once: bool = True,
        interval: float = 5.0,
        assets: Iterable[Asset] | None = None,
        stop: threading.Event | None = None,
    ) -> list[AssetEvent]:
        """Poll the watchers of the registered assets (or of ``assets``) and record their
        events; see :func:`assetry.watchers.watch`."""
        from .watchers import watch

        return watch(self, once=once, interval=interval, assets=assets, stop=stop)

    # -- IO --------------------------------------------------------------------------------

    @property
    def io_manager(self) -> IOManagerDispatcher:
        """Reads and writes dataframes by asset, dispatched on the URI scheme."""
        if self._dispatcher is None:
            self._dispatcher = IOManagerDispatcher(
                self.settings, self._io_managers, self._io_manager_options
            )
        return self._dispatcher


def _require_existing(backend: StateBackend, settings: Settings) -> None:
    """Raise :class:`StateNotFoundError` (closing ``backend``) when it holds no state yet."""
    try:
        found = backend.exists()
    except BaseException:
        backend.close()
        raise
    if not found:
        backend.close()
        where = render_url(settings.backend_url) or backend.describe()
        raise StateNotFoundError(f"no assetry state at {where}; `assetry db upgrade` creates it")


def _accepts_create(cls: type) -> bool:
    """Whether a backend class takes the ``create`` option (third-party ones may not)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return "create" in params


def _build_backend(settings: Settings, *, create: bool = True) -> StateBackend:
    name = settings.backend
    url = settings.backend_url
    if name is None:
        assert url is not None
        name = plugins.backend_for_url(url)
    cls = plugins.backends.load(name)
    if not (isinstance(cls, type) and issubclass(cls, StateBackend)):
        raise PluginError(f"the state backend plugin {name!r} is not a StateBackend subclass")
    options = dict(settings.backend_options)
    if not create and _accepts_create(cls):
        options["create"] = False
    try:
        with settings_scope(settings):
            return cls(url=url, **options)
    except TypeError as exc:
        raise ConfigurationError(
            f"state backend {name!r} rejected its options ({scrub_text(exc)}); "
            f"url={render_url(url)!r}"
        ) from None


_default: Instance | None = None
_default_lock = threading.Lock()


@contextmanager
def use_instance(instance: Instance) -> Iterator[Instance]:
    """Make ``instance`` the current one inside the block (tests, scripts, tasks)."""
    if not isinstance(instance, Instance):
        raise TypeError(f"use_instance() needs an Instance, not {type(instance).__name__}")
    with instance_scope(instance):
        yield instance


def current_instance() -> Instance:
    """The instance made current by :func:`use_instance`, else one from configuration
    (created once per process)."""
    instance = _current.get()
    if instance is not None:
        return instance
    global _default
    with _default_lock:
        if _default is None:
            _default = Instance.from_config()
        return _default
