"""The IOManager contract and the dispatcher that picks an IO manager by URI scheme.

Routing reads like SQLAlchemy's ``dialect+driver``: a URI ``delta+s3://bucket/t`` goes to
the IO manager declaring the ``format+scheme`` pair ``delta+s3`` (or ``delta+*``), a plain
``s3://bucket/t`` to the one claiming (or serving) the scheme ``s3``.

An IO manager opens a handle on one asset (optionally one partition); the handle reads and
writes dataframes. Validation (the asset's ``checks``) runs here, in core, before a handle
writes anything, so every IO manager gets it the same way.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import plugins
from .errors import TableVersionError, UnsupportedSchemeError
from .models import Asset, AssetEvent
from .uri import uri_scheme
from .urls import render_url, split_format

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .config import Settings

__all__ = [
    "AsOf",
    "AssetHandle",
    "IOManager",
    "IOManagerDispatcher",
    "WriteResult",
    "semi_join_keys",
    "table_version_of",
    "to_arrow",
]

#: What ``connect(asset, as_of=...)`` takes: an event (whose write it pins) or a version.
AsOf = AssetEvent | int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: rows, bytes (where known), seconds, check warnings and, for table
    formats, the table version the write committed (Delta version, Iceberg snapshot id)."""

    rows: int
    bytes: int | None
    seconds: float
    mode: str
    partition: str | None = None
    warnings: tuple[str, ...] = ()
    table_version: int | None = None

    def to_extra(self) -> dict[str, Any]:
        """The figures as JSON-compatible event extra."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "seconds": round(self.seconds, 6),
            "mode": self.mode,
        }
        if self.bytes is not None:
            out["bytes"] = self.bytes
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.table_version is not None:
            out["table_version"] = self.table_version
        return out


def table_version_of(as_of: AsOf) -> int:
    """The table version ``as_of`` names: an int as it is, or the version an event's write
    committed (``extra["assetry"]["table_version"]``); a TableVersionError otherwise."""
    if isinstance(as_of, bool) or not isinstance(as_of, int | AssetEvent):
        raise TypeError(
            f"as_of takes an AssetEvent or a table version (int), not {type(as_of).__name__}"
        )
    if isinstance(as_of, int):
        return as_of
    figures = as_of.extra.get("assetry")
    version = figures.get("table_version") if isinstance(figures, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        raise TableVersionError(
            f"event {as_of.id} of asset {as_of.asset_name!r} names no table version "
            "(extra['assetry']['table_version']): only writes through a table-format IO "
            "manager (delta+..., iceberg+...) within a task record one"
        )
    return version


def to_arrow(data: Any) -> pa.Table | pa.RecordBatchReader:
    """Accept a pandas DataFrame, a pyarrow Table or a RecordBatchReader; anything else is a
    clear TypeError."""
    import pyarrow as pa

    if isinstance(data, pa.Table | pa.RecordBatchReader):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(
        f"cannot write {type(data).__name__}: pass a pandas DataFrame, a pyarrow Table "
        "or a pyarrow RecordBatchReader"
    )


WriteListener = Callable[[Asset, WriteResult], None]


def semi_join_keys(stored: pa.Table, keys: pa.Table, columns: list[str]) -> pa.Table:
    """The distinct rows of ``stored`` (its ``columns``) whose values are among ``keys``."""
    if stored.num_rows == 0:
        return keys.slice(0, 0)
    stored = stored.select(columns).drop_null()
    keys = keys.select(columns).cast(stored.schema)
    found = stored.join(keys, keys=columns, join_type="left semi")
    return found.group_by(columns, use_threads=False).aggregate([])


class AssetHandle(abc.ABC):
    """A handle on one asset (and partition) opened by an IO manager.

    Subclasses implement :meth:`_write` and the readers; :meth:`insert` and
    :meth:`overwrite` run the asset's checks first and report the figures afterwards.
    """

    def __init__(self, asset: Asset, partition: str | None = None) -> None:
        self.asset = asset
        self.partition = partition
        self._listeners: list[WriteListener] = []
        #: Set by a table-format handle's ``_write``: the version that write committed.
        self._committed_version: int | None = None

    # -- writing -----------------------------------------------------------------------------

    def insert(self, data: Any) -> WriteResult:
        """Append ``data`` (DataFrame, Table or RecordBatchReader)."""
        return self._checked_write(data, "insert")

    def overwrite(self, data: Any) -> WriteResult:
        """Replace the asset's content (or only this partition's) with ``data``."""
        return self._checked_write(data, "overwrite")

    def _checked_write(self, data: Any, mode: str) -> WriteResult:
        from .checks import run_checks

        start = time.perf_counter()
        table = to_arrow(data)
        warnings: tuple[str, ...] = ()
        if self.asset.checks:
            import pyarrow as pa

            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
            warnings = run_checks(
                self.asset, table, lambda cols, keys: self._stored_keys(cols, keys, mode)
            )
        self._committed_version = None
        rows, nbytes = self._write(table, mode)
        result = WriteResult(
            rows=rows,
            bytes=nbytes,
            seconds=time.perf_counter() - start,
            mode=mode,
            partition=self.partition,
            warnings=warnings,
            table_version=self._committed_version,
        )
        for listener in self._listeners:
            listener(self.asset, result)
        return result

    def _stored_keys(self, columns: list[str], keys: pa.Table, mode: str) -> pa.Table:
        """The stored rows' values in ``columns`` that are among ``keys`` (distinct), for
        ``Unique(..., against="table")``; what an overwrite replaces is left out. This
        default scans what :meth:`to_pyarrow` reads; IO managers ask their engine instead."""
        if mode == "overwrite" or not self.exists():
            return keys.slice(0, 0)
        return semi_join_keys(self.to_pyarrow().select(columns), keys, columns)

    @abc.abstractmethod
    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        """Write validated data (``mode`` is ``insert`` or ``overwrite``); publish atomically;
        return (rows, bytes or None)."""

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
    def to_pyarrow(self) -> pa.Table:
        """The asset's (partition's) content as a pyarrow Table."""

    def to_pandas(self) -> pd.DataFrame:
        """The asset's (partition's) content as a pandas DataFrame."""
        return self.to_pyarrow().to_pandas()

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the asset (partition) has been written."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the handle holds."""

    def __enter__(self) -> AssetHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IOManager(abc.ABC):
    """Reads and writes dataframes for assets whose URI scheme it serves.

    Instantiated as ``cls(settings=settings, **options)``; ``settings`` gives access to
    named connections. ``schemes`` lists the plain schemes it claims, ``format_schemes``
    the ``format+scheme`` pairs (``"delta+s3"``, or ``"delta+*"`` for the format on any
    storage scheme); :meth:`serves` may accept more (an fsspec IO manager serves any
    protocol fsspec knows).
    """

    name: ClassVar[str] = ""
    schemes: ClassVar[tuple[str, ...]] = ()
    format_schemes: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`open` accepts ``as_of`` (reads pinned to a table version).
    supports_as_of: ClassVar[bool] = False

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self.settings = settings
        self.options = options

    @classmethod
    def serves(cls, scheme: str) -> bool:
        """Whether this IO manager can handle URIs of ``scheme`` beyond those it claims."""
        return scheme in cls.schemes

    @abc.abstractmethod
    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> AssetHandle:
        """A handle on ``asset`` (and ``partition``)."""

    def open_as_of(
        self,
        asset: Asset,
        version: int,
        partition: str | None = None,
        *,
        conn_id: str | None = None,
    ) -> AssetHandle:
        """A read-only handle on ``asset`` exactly as table version ``version`` left it.

        Only IO managers with ``supports_as_of`` implement it; the others keep no versions.
        """
        raise TableVersionError(
            f"the {self.name or type(self).__name__} IO manager keeps no table versions, so "
            f"asset {asset.name!r} cannot be read as of version {version}; use a table "
            "format (delta+..., iceberg+...) for reads pinned to events"
        )

    def vacuum(
        self,
        asset: Asset,
        keep: set[int],
        *,
        conn_id: str | None = None,
        dry_run: bool = False,
    ) -> list[int]:
        """Expire the table versions older than the oldest of ``keep`` (never the current
        one); return the versions expired (or, in a dry run, that would be). Only IO
        managers with ``supports_as_of`` keep versions; the others have nothing to expire."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release cached connections."""


class IOManagerDispatcher:
    """Dispatches ``connect(asset)`` to the IO manager serving the asset URI's scheme."""

    def __init__(
        self,
        settings: Settings | None = None,
        managers: Mapping[str, IOManager] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self._options = dict(options or {})
        self._by_scheme: dict[str, IOManager] = dict(managers or {})
        self._instances: dict[str, IOManager] = {}
        self._lock = threading.RLock()
        self.listeners: list[WriteListener] = []

    def _instance(self, name: str, cls: type[IOManager]) -> IOManager:
        if name not in self._instances:
            self._instances[name] = cls(settings=self.settings, **self._options.get(name, {}))
        return self._instances[name]

    def manager_for(self, scheme: str) -> IOManager:
        """The IO manager for ``scheme`` (``s3``, ``delta+s3``, ``postgresql+psycopg``).

        An exact claim (``schemes`` or ``format_schemes``) wins, then a ``format+*``
        wildcard, then :meth:`IOManager.serves`; a clear error when there is none (naming
        the installed ``format+scheme`` pairs), or when two claim the same one.
        """
        scheme = scheme.lower()
        with self._lock:
            if scheme in self._by_scheme:
                return self._by_scheme[scheme]
            classes: dict[str, type[IOManager]] = plugins.iomanagers.load_all()
            fmt, _ = split_format(scheme)
            claimants: list[str] = []
            for wanted in (scheme, f"{fmt}+*" if fmt else None):
                if wanted is None:
                    continue
                claimants = [name for name, cls in classes.items() if wanted in _claims(cls)]
                if len(claimants) > 1:
                    raise plugins.PluginError(
                        f"URI scheme {wanted!r} is claimed by more than one IO manager: "
                        f"{' and '.join(sorted(claimants))}; uninstall one of them"
                    )
                if claimants:
                    break
            if not claimants:
                claimants = [name for name, cls in classes.items() if cls.serves(scheme)]
            if not claimants:
                raise UnsupportedSchemeError(_no_manager_message(scheme, fmt, classes))
            manager = self._instance(claimants[0], classes[claimants[0]])
            self._by_scheme[scheme] = manager
            return manager

    def manager_of(self, asset: Asset) -> IOManager:
        """The IO manager serving ``asset``'s URI."""
        if not isinstance(asset, Asset):
            raise TypeError(f"connect() needs an Asset, not {type(asset).__name__}")
        scheme = uri_scheme(asset.uri)
        if not scheme:
            raise UnsupportedSchemeError(
                f"asset {asset.name!r} has URI {render_url(asset.uri)!r} with no scheme, so no IO manager "
                "can read or write it; give it a URI such as file:///path/data.parquet"
            )
        return self.manager_for(scheme)

    def open(
        self,
        asset: Asset,
        partition: str | None = None,
        *,
        conn_id: str | None = None,
        as_of: AsOf | None = None,
    ) -> AssetHandle:
        """Open a handle without a ``with`` block (close it yourself).

        ``as_of`` (an :class:`AssetEvent` of this asset, or a table version) pins the handle,
        read-only, to the table exactly as that write left it.
        """
        manager = self.manager_of(asset)
        if as_of is None:
            handle = manager.open(asset, partition, conn_id=conn_id)
            handle._listeners.extend(self.listeners)
            return handle
        if isinstance(as_of, AssetEvent) and as_of.asset_name != asset.name:
            raise TableVersionError(
                f"as_of is an event of asset {as_of.asset_name!r}, not of {asset.name!r}"
            )
        version = table_version_of(as_of)
        if not manager.supports_as_of:
            return IOManager.open_as_of(manager, asset, version, partition, conn_id=conn_id)
        return manager.open_as_of(asset, version, partition, conn_id=conn_id)

    @contextmanager
    def connect(
        self,
        asset: Asset,
        partition: str | None = None,
        *,
        conn_id: str | None = None,
        as_of: AsOf | None = None,
    ) -> Iterator[AssetHandle]:
        """A handle on ``asset`` (and ``partition``), closed when the block ends; with
        ``as_of``, read-only and pinned to that event's (or version's) table state."""
        handle = self.open(asset, partition, conn_id=conn_id, as_of=as_of)
        try:
            yield handle
        finally:
            handle.close()

    def close(self) -> None:
        """Close every IO manager this dispatcher opened."""
        with self._lock:
            for manager in {
                id(m): m for m in [*self._instances.values(), *self._by_scheme.values()]
            }.values():
                manager.close()
            self._instances.clear()
            self._by_scheme.clear()


def _claims(cls: type[IOManager]) -> tuple[str, ...]:
    """The schemes and ``format+scheme`` pairs an IO manager class declares, lower-cased."""
    declared = (*getattr(cls, "schemes", ()), *getattr(cls, "format_schemes", ()))
    return tuple(s.lower() for s in declared)


def _no_manager_message(scheme: str, fmt: str | None, classes: Mapping[str, type]) -> str:
    """Why no IO manager serves ``scheme``: the installed schemes and pairs, what to install."""
    known = sorted({s for cls in classes.values() for s in getattr(cls, "schemes", ())})
    pairs = sorted({s for cls in classes.values() for s in getattr(cls, "format_schemes", ())})
    what = f"format+scheme {scheme!r}" if fmt else f"URI scheme {scheme!r}"
    hint = plugins.INSTALL_HINTS.get(fmt or scheme)
    broken = [i.error for i in plugins.iomanagers.info() if i.error]
    return (
        f"no IO manager serves {what} (known: {', '.join(known) or 'none'}; "
        f"format+scheme pairs: {', '.join(pairs) or 'none'})"
        + (f"; try: {hint}" if hint else "; install a package that adds one")
        + (f"; note: {'; '.join(broken)}" if broken else "")
    )
