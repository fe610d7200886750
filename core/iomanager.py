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
from .errors import UnsupportedSchemeError
from .models import Asset
from .uri import uri_scheme
from .urls import render_url, split_format

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .config import Settings

__all__ = ["AssetHandle", "IOManager", "IOManagerDispatcher", "WriteResult", "to_arrow"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: rows, bytes (where known), seconds, and check warnings."""

    rows: int
    bytes: int | None
    seconds: float
    mode: str
    partition: str | None = None
    warnings: tuple[str, ...] = ()

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
        return out


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


class AssetHandle(abc.ABC):
    """A handle on one asset (and partition) opened by an IO manager.

    Subclasses implement :meth:`_write` and the readers; :meth:`insert` and
    :meth:`overwrite` run the asset's checks first and report the figures afterwards.
    """

    def __init__(self, asset: Asset, partition: str | None = None) -> None:
        self.asset = asset
        self.partition = partition
        self._listeners: list[WriteListener] = []

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
            warnings = run_checks(self.asset, table)
        rows, nbytes = self._write(table, mode)
        result = WriteResult(
            rows=rows,
            bytes=nbytes,
            seconds=time.perf_counter() - start,
            mode=mode,
            partition=self.partition,
            warnings=warnings,
        )
        for listener in self._listeners:
            listener(self.asset, result)
        return result

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

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> AssetHandle:
        """Open a handle without a ``with`` block (close it yourself)."""
        if not isinstance(asset, Asset):
            raise TypeError(f"connect() needs an Asset, not {type(asset).__name__}")
        scheme = uri_scheme(asset.uri)
        if not scheme:
            raise UnsupportedSchemeError(
                f"asset {asset.name!r} has URI {render_url(asset.uri)!r} with no scheme, so no IO manager "
                "can read or write it; give it a URI such as file:///path/data.parquet"
            )
        handle = self.manager_for(scheme).open(asset, partition, conn_id=conn_id)
        handle._listeners.extend(self.listeners)
        return handle

    @contextmanager
    def connect(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> Iterator[AssetHandle]:
        """A handle on ``asset`` (and ``partition``), closed when the block ends."""
        handle = self.open(asset, partition, conn_id=conn_id)
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
