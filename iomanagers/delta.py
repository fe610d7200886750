"""The Delta Lake IO manager: assets as Delta tables through the ``deltalake`` package.

URIs: ``delta+file:///abs/path/table`` (local disk), ``delta+s3://bucket/prefix/table`` (S3,
credentials and endpoint from the connection, ``aws_default`` unless ``conn_id`` names
another) and ``delta+memory://name/table``, kept for the life of the process in a temporary
directory (deltalake has no in-memory store shared between calls), for tests.

Every write is one Delta commit, atomic for every reader (Spark, Trino, DuckDB, polars, ...):
``insert`` appends, ``overwrite`` writes a new version that replaces the content, and
``overwrite`` on a partition replaces only the rows whose ``partition_column`` holds the key,
by predicate, in the same single commit. The asset's checks run before anything is written.
On S3, concurrent writers are safe: deltalake commits the next log entry with a conditional
PUT (``If-None-Match``), and a writer that loses retries on the new version (appends and
partition overwrites commute). Each write reports the version it committed, which the
task's event carries as ``extra["assetry"]["table_version"]``; ``connect(asset,
as_of=event)`` reads that version.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
import uuid
from typing import TYPE_CHECKING, Any

from assetry import AssetNotFoundError, AssetValueError, IOManager, PluginError, TableVersionError
from assetry.config import storage_options_for
from assetry.urls import parse_asset_uri, render_url

from ._lakehouse import (
    RowCounter,
    TableFormatHandle,
    check_partition,
    delta_storage_options,
    prepare_partition,
)
from .table_schema import conform_columns

if TYPE_CHECKING:
    import pyarrow as pa
    from assetry import Asset, Settings

__all__ = ["DeltaHandle", "DeltaIOManager"]

INSTALL_HINT = "pip install 'assetry[lakehouse]'"
#: How many commits back a first write looks for its own commit.
HISTORY_LOOKBACK = 100

_memory_root: str | None = None
_memory_lock = threading.Lock()


def _memory_dir() -> str:
    """The process's directory behind ``delta+memory://``, removed when the process exits."""
    global _memory_root
    with _memory_lock:
        if _memory_root is None:
            _memory_root = tempfile.mkdtemp(prefix="assetry-delta-memory-")
            atexit.register(shutil.rmtree, _memory_root, True)
        return _memory_root


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError:
        raise PluginError(
            f"the Delta Lake IO manager needs the deltalake package; try: {INSTALL_HINT}"
        ) from None
    return deltalake


class DeltaIOManager(IOManager):
    """Reads and writes dataframes as Delta Lake tables on local disk, S3 or in memory.

    Options (``io_manager_options={"delta": {...}}``): ``storage_options`` merged over the
    connection's (object_store keys such as ``AWS_S3_ALLOW_UNSAFE_RENAME``);
    ``writer_properties`` passed to ``deltalake.WriterProperties`` (``compression``, ...).
    """

    name = "delta"
    format_schemes = ("delta+file", "delta+s3", "delta+s3a", "delta+memory")
    supports_as_of = True

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        storage_options: dict[str, str] | None = None,
        writer_properties: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(settings=settings, **options)
        self.storage_options = dict(storage_options or {})
        self.writer_properties = dict(writer_properties or {})

    def location(self, asset: Asset, conn_id: str | None = None) -> tuple[str, dict[str, str]]:
        """The table URI deltalake opens for ``asset`` and its storage options."""
        parsed = parse_asset_uri(asset.uri)
        scheme, inner = parsed.full_scheme, parsed.scheme
        rest = parsed.authority + parsed.path
        if not rest.strip("/") or any(seg in (".", "..") for seg in rest.split("/")):
            raise AssetValueError(
                f"asset {asset.name!r}: {render_url(asset.uri)!r} names no table folder (or has "
                "a '.' or '..' segment); use delta+file:///abs/path/table or "
                "delta+s3://bucket/prefix/table"
            )
        if inner == "file":
            return "/" + rest.lstrip("/"), dict(self.storage_options)
        if inner == "memory":
            return f"{_memory_dir()}/{rest.lstrip('/')}", {}
        if inner in ("s3", "s3a"):
            fs_options = storage_options_for(f"s3://{rest}", conn_id, self.settings)
            options = delta_storage_options(fs_options)
            options.update(self.storage_options)
            return f"s3://{rest}", options
        raise AssetValueError(
            f"asset {asset.name!r}: the Delta IO manager serves {', '.join(self.format_schemes)}, "
            f"not {scheme!r}"
        )

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> DeltaHandle:
        check_partition(asset, partition)
        _deltalake()
        uri, options = self.location(asset, conn_id)
        return DeltaHandle(self, asset, partition, uri, options, None)

    def open_as_of(
        self,
        asset: Asset,
        version: int,
        partition: str | None = None,
        *,
        conn_id: str | None = None,
    ) -> DeltaHandle:
        check_partition(asset, partition)
        _deltalake()
        uri, options = self.location(asset, conn_id)
        return DeltaHandle(self, asset, partition, uri, options, version)

    def vacuum(
        self,
        asset: Asset,
        keep: set[int],
        *,
        conn_id: str | None = None,
        dry_run: bool = False,
    ) -> list[int]:
        """Delete the files only versions older than ``min(keep)`` need; return those versions
        (none when no file goes). The log entries stay (``cleanup_metadata`` prunes them by
        Delta's own retention), but the versions can no longer be read.
        """
        deltalake = _deltalake()
        uri, options = self.location(asset, conn_id)
        if not deltalake.DeltaTable.is_deltatable(uri, storage_options=options):
            return []
        table = deltalake.DeltaTable(uri, storage_options=options)
        current = table.version()
        oldest = min(keep) if keep else current
        oldest = min(oldest, current)
        history = [h["version"] for h in table.history() if h.get("version") is not None]
        expired = sorted(v for v in history if v < oldest)
        if not expired:
            return []
        vacuum_options: dict[str, Any] = {
            "retention_hours": 0,
            "enforce_retention_duration": False,
            "keep_versions": list(range(oldest, current + 1)),
        }
        # The log keeps naming vacuumed versions, and vacuum lists files it already removed:
        # the versions count as expired only while some of their files are still there.
        doomed = table.vacuum(dry_run=True, **vacuum_options)
        if not _any_present(uri, options, doomed):
            return []
        if not dry_run:
            table.vacuum(dry_run=False, **vacuum_options)
        return expired


def _any_present(uri: str, storage_options: dict[str, str], files: list[str]) -> bool:
    """Whether any of ``files`` (paths relative to the table, or absolute) still exists."""
    if not files:
        return False
    import pyarrow.fs as pafs
    from deltalake.fs import DeltaStorageHandler

    fs = pafs.PyFileSystem(DeltaStorageHandler(uri, storage_options))
    prefix = uri.rstrip("/") + "/"
    relative = [f.removeprefix(prefix) for f in files]
    return any(info.type != pafs.FileType.NotFound for info in fs.get_file_info(relative))


class DeltaHandle(TableFormatHandle):
    """A handle on one Delta table (and partition), optionally pinned to a version."""

    def __init__(
        self,
        manager: DeltaIOManager,
        asset: Asset,
        partition: str | None,
        uri: str,
        storage_options: dict[str, str],
        as_of: int | None,
    ) -> None:
        super().__init__(asset, partition, as_of)
        self.manager = manager
        self.uri = uri
        self.storage_options = storage_options

    # -- reading -----------------------------------------------------------------------------

    def _table(self) -> Any:
        """The DeltaTable at the pinned version (or the latest), or None if there is none."""
        deltalake = _deltalake()
        from deltalake.exceptions import TableNotFoundError

        try:
            return deltalake.DeltaTable(
                self.uri, version=self.as_of, storage_options=self.storage_options
            )
        except TableNotFoundError:
            return None
        except Exception as exc:  # deltalake raises its own errors for a missing version
            if self.as_of is None:
                raise
            raise TableVersionError(
                f"asset {self.asset.name!r} has no version {self.as_of} to read ({exc})"
            ) from None

    def _not_written(self) -> AssetNotFoundError:
        return AssetNotFoundError(
            f"asset {self.asset.name!r}: no Delta table at {render_url(self.asset.uri)!r} yet; "
            "write it first (exists() tells)"
        )

    def table_version(self) -> int | None:
        """The version this handle reads: the pinned one, else the latest (None if unwritten)."""
        table = self._table()
        return None if table is None else table.version()

    def to_pyarrow(self) -> pa.Table:
        import pyarrow.dataset as pads

        table = self._table()
        if table is None:
            raise self._not_written()
        try:
            if self.partition is None:
                return table.to_pyarrow_table()
            dataset = table.to_pyarrow_dataset()
            col = self.asset.partition_column
            if col in dataset.schema.names:
                return dataset.to_table(filter=pads.field(col) == self.partition)
            return self._partition_filter(dataset.to_table())
        except (FileNotFoundError, OSError) as exc:
            if self.as_of is None:
                raise
            raise TableVersionError(
                f"asset {self.asset.name!r}: version {self.as_of} can no longer be read; its "
                f"files were vacuumed ({type(exc).__name__})"
            ) from None

    def exists(self) -> bool:
        if self._table() is None:
            return False
        if self.partition is None:
            return True
        return self.to_pyarrow().num_rows > 0

    # -- writing -----------------------------------------------------------------------------

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        deltalake = _deltalake()
        import pyarrow as pa

        data = prepare_partition(self.asset, self.partition, data)
        table = self._table()
        kwargs: dict[str, Any] = {"storage_options": self.storage_options}
        if table is not None and not (mode == "overwrite" and self.partition is None):
            # appends and partition overwrites keep the table's schema, per the contract
            data, new = conform_columns(
                data,
                pa.schema(table.schema().to_arrow()),
                what=f"asset {self.asset.name!r}",
                where=f"the Delta table {render_url(self.asset.uri)}",
                add_columns=self.asset.schema_evolution == "add_columns",
            )
            if new:
                kwargs["schema_mode"] = "merge"
        counter = RowCounter(data) if isinstance(data, pa.RecordBatchReader) else None
        source = counter.reader if counter is not None else data
        col = self.asset.partition_column
        if self.manager.writer_properties:
            kwargs["writer_properties"] = deltalake.WriterProperties(
                **self.manager.writer_properties
            )
        if mode == "insert":
            kwargs["mode"] = "append"
        elif self.partition is not None:
            assert col is not None
            kwargs["mode"] = "overwrite"
            quoted_col = '"' + col.replace('"', '""') + '"'
            escaped = self.partition.replace("'", "''")
            kwargs["predicate"] = f"{quoted_col} = '{escaped}'"
        else:
            kwargs["mode"] = "overwrite"
            kwargs["schema_mode"] = "overwrite"
        if table is not None:
            deltalake.write_deltalake(table, source, **kwargs)
            self._committed_version = table.version()
            return self._rows(data, counter), None
        if col and col in source.schema.names:
            kwargs["partition_by"] = [col]
        kwargs.pop("predicate", None)  # a new table has no other partition to keep
        write_id = uuid.uuid4().hex
        kwargs["commit_properties"] = deltalake.CommitProperties(
            custom_metadata={"assetry.write_id": write_id}
        )
        deltalake.write_deltalake(self.uri, source, **kwargs)
        self._committed_version = self._version_of(write_id)
        return self._rows(data, counter), None

    @staticmethod
    def _rows(data: pa.Table | pa.RecordBatchReader, counter: RowCounter | None) -> int:
        return counter.rows if counter is not None else int(data.num_rows)

    def _version_of(self, write_id: str) -> int | None:
        """The version whose commit carries ``write_id`` (a first write cannot hold the table
        object, and another writer may have committed after it)."""
        table = _deltalake().DeltaTable(self.uri, storage_options=self.storage_options)
        with contextlib.suppress(Exception):
            for entry in table.history(limit=HISTORY_LOOKBACK):
                if entry.get("assetry.write_id") == write_id:
                    return int(entry["version"])
        return None
