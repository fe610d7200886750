"""The Iceberg IO manager: assets as Apache Iceberg tables through ``pyiceberg``.

URIs name the table's location, whose last two segments are the namespace and the table:
``iceberg+file:///WAREHOUSE/NAMESPACE/TABLE`` and ``iceberg+s3://BUCKET/WAREHOUSE/NAMESPACE/TABLE``.

* ``iceberg+file``: with no connection, the catalog is a SQLite database inside the warehouse
  folder (``WAREHOUSE/catalog.db``), created on first use: nothing to set up.
* ``iceberg+s3``: the catalog is named by a connection (``conn_id``, default
  ``iceberg_default``): a SQLAlchemy URL (``postgresql+psycopg://user@host/db``, password in
  the connection's options) for pyiceberg's SQL catalog, or ``http(s)://...`` for a REST
  catalog. The S3 credentials and endpoint come from the connection named by its
  ``storage_conn_id`` option (default ``aws_default``). Other option keys are pyiceberg
  catalog properties (``s3.endpoint``, ``token``, ``warehouse``, ...).

Each write is one catalog commit, atomic for every reader: ``insert`` appends, ``overwrite``
replaces the table's rows, ``overwrite`` on a partition replaces the rows whose
``partition_column`` holds the key (the table is partitioned by identity on that column). The
first write creates the table and appends in the same commit. A commit that loses a race with
another writer is retried on the new table state. The snapshot id each write commits travels
in the task's event (``extra["assetry"]["table_version"]``); ``connect(asset, as_of=event)``
scans that snapshot.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from assetry import (
    AssetNotFoundError,
    AssetValueError,
    BackendUnavailableError,
    ConfigurationError,
    IOManager,
    PluginError,
    TableVersionError,
)
from assetry.config import resolve_connection, storage_options_for
from assetry.urls import parse_asset_uri, render_url, scrub_text, secrets_of

from ._lakehouse import TableFormatHandle, check_partition, iceberg_properties, prepare_partition
from .table_schema import conform_columns

if TYPE_CHECKING:
    import pyarrow as pa
    from assetry import Asset, Settings

__all__ = ["IcebergHandle", "IcebergIOManager", "IcebergLocation"]

INSTALL_HINT = "pip install 'assetry[lakehouse]'"
DEFAULT_CATALOG_CONN_ID = "iceberg_default"
CATALOG_FILE = "catalog.db"
CATALOG_NAME = "assetry"
#: How many times a commit that lost a race is retried on the new table state.
COMMIT_RETRIES = 20
#: Connection option keys that are assetry's, not pyiceberg catalog properties.
_OWN_KEYS = {"uri", "storage_conn_id", "catalog_name", "login", "user", "username", "password"}


def _pyiceberg() -> Any:
    try:
        import pyiceberg.catalog
    except ImportError:
        raise PluginError(
            f"the Iceberg IO manager needs the pyiceberg package; try: {INSTALL_HINT}"
        ) from None
    return pyiceberg


class IcebergLocation:
    """Where an Iceberg asset lives: warehouse, namespace, table and storage scheme."""

    def __init__(self, asset: Asset) -> None:
        parsed = parse_asset_uri(asset.uri)
        segments = [s for s in parsed.path.split("/") if s]
        if parsed.scheme == "file" and parsed.authority:
            segments.insert(0, parsed.authority)
        if len(segments) < 3 or any(s in (".", "..") for s in segments):
            raise AssetValueError(
                f"asset {asset.name!r}: {render_url(asset.uri)!r} must name a warehouse, a "
                "namespace and a table: iceberg+file:///WAREHOUSE/NAMESPACE/TABLE or "
                "iceberg+s3://BUCKET/WAREHOUSE/NAMESPACE/TABLE"
            )
        self.scheme = parsed.scheme
        self.namespace, self.table = segments[-2], segments[-1]
        if parsed.scheme == "file":
            self.warehouse = "/" + "/".join(segments[:-2])
            self.warehouse_uri = f"file://{self.warehouse}"
        else:
            self.warehouse = "/".join([parsed.authority, *segments[:-2]])
            self.warehouse_uri = f"{parsed.scheme}://{self.warehouse}"
        self.location = f"{self.warehouse_uri}/{self.namespace}/{self.table}"

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.table)


class IcebergIOManager(IOManager):
    """Reads and writes dataframes as Iceberg tables (SQL or REST catalog, local disk or S3).

    Options (``io_manager_options={"iceberg": {...}}``): ``catalog_properties`` merged over
    the catalog's (pyiceberg properties such as ``s3.endpoint``).
    """

    name = "iceberg"
    format_schemes = ("iceberg+file", "iceberg+s3", "iceberg+s3a")
    supports_as_of = True

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalog_properties: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(settings=settings, **options)
        self.catalog_properties = dict(catalog_properties or {})
        self._catalogs: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Forget the catalogs (their SQL engines are disposed with them)."""
        with self._lock:
            for catalog in self._catalogs.values():
                engine = getattr(catalog, "engine", None)
                if engine is not None:
                    engine.dispose()
            self._catalogs.clear()

    def catalog(self, loc: IcebergLocation, conn_id: str | None = None) -> Any:
        """The pyiceberg catalog for ``loc``: a SQLite one inside a local warehouse unless a
        connection names another."""
        _pyiceberg()
        conn = None
        if conn_id is not None or loc.scheme != "file":
            conn = resolve_connection("iceberg", conn_id or DEFAULT_CATALOG_CONN_ID, self.settings)
        key = (loc.scheme, loc.warehouse_uri, conn.conn_id if conn else "")
        with self._lock:
            if key not in self._catalogs:
                try:
                    self._catalogs[key] = self._make_catalog(loc, conn)
                except (ConfigurationError, PluginError):
                    raise
                except Exception as exc:  # a driver's or REST client's own error
                    where = (
                        f"connection {conn.conn_id!r} ({render_url(conn.uri or '')})"
                        if conn is not None
                        else f"{loc.warehouse}/{CATALOG_FILE}"
                    )
                    known = secrets_of(conn.options) | {conn.password} if conn else set()
                    raise BackendUnavailableError(
                        f"the Iceberg catalog of {where} cannot be opened: {scrub_text(exc, known)}"
                    ) from None
            return self._catalogs[key]

    def _make_catalog(self, loc: IcebergLocation, conn: Any) -> Any:
        from pyiceberg.catalog.rest import RestCatalog
        from pyiceberg.catalog.sql import SqlCatalog

        props: dict[str, str] = {}
        if loc.scheme in ("s3", "s3a"):
            storage_conn = conn.options.get("storage_conn_id") if conn is not None else None
            fs_options = storage_options_for(f"s3://{loc.warehouse}", storage_conn, self.settings)
            props.update(iceberg_properties(fs_options))
            # s3fs, as everywhere else in assetry (pyarrow's S3 writer always uploads in parts)
            props["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"
        if conn is None:
            import os

            os.makedirs(loc.warehouse, exist_ok=True)
            props.update(self.catalog_properties)
            return SqlCatalog(
                CATALOG_NAME,
                uri=f"sqlite:///{loc.warehouse}/{CATALOG_FILE}",
                warehouse=loc.warehouse_uri,
                **props,
            )
        name = str(conn.options.get("catalog_name") or CATALOG_NAME)
        props.update(
            {k: str(v) for k, v in conn.options.items() if k not in _OWN_KEYS and v is not None}
        )
        props.setdefault("warehouse", loc.warehouse_uri)
        props.update(self.catalog_properties)
        uri = conn.uri
        if not uri:
            raise ConfigurationError(
                f"connection {conn.conn_id!r} names no Iceberg catalog: give it a uri, "
                "postgresql+psycopg://user@host/db (SQL catalog) or https://host/path (REST)"
            )
        if uri.split("://", 1)[0].lower() in ("http", "https"):
            if conn.password and "token" not in props:
                props["token"] = conn.password
            return RestCatalog(name, uri=uri, **props)
        url = conn.to_sqlalchemy_url()  # the URI, with the connection's credentials
        return SqlCatalog(name, uri=render_url(url, hide_secrets=False), **props)

    def _open(
        self, asset: Asset, partition: str | None, conn_id: str | None, as_of: int | None
    ) -> IcebergHandle:
        check_partition(asset, partition)
        loc = IcebergLocation(asset)
        return IcebergHandle(self, asset, partition, loc, self.catalog(loc, conn_id), as_of)

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> IcebergHandle:
        return self._open(asset, partition, conn_id, None)

    def open_as_of(
        self,
        asset: Asset,
        version: int,
        partition: str | None = None,
        *,
        conn_id: str | None = None,
    ) -> IcebergHandle:
        return self._open(asset, partition, conn_id, version)

    def vacuum(
        self,
        asset: Asset,
        keep: set[int],
        *,
        conn_id: str | None = None,
        dry_run: bool = False,
    ) -> list[int]:
        """Expire the snapshots older than the oldest of ``keep`` (never the current one)."""
        handle = self._open(asset, None, conn_id, None)
        table = handle._load()
        if table is None or table.current_snapshot() is None:
            return []
        current = table.current_snapshot()

        def order(snapshot: Any) -> tuple[int, int]:  # commit order; ms alone can tie
            return (snapshot.sequence_number or 0, snapshot.timestamp_ms)

        ranks = {s.snapshot_id: order(s) for s in table.snapshots()}
        kept = [ranks[v] for v in keep if v in ranks] or [order(current)]
        floor = min(min(kept), order(current))
        expired = sorted(
            sid
            for sid, rank in ranks.items()
            if rank < floor and sid != current.snapshot_id and sid not in keep
        )
        if expired and not dry_run:
            table.maintenance.expire_snapshots().by_ids(expired).commit()
        return expired


class IcebergHandle(TableFormatHandle):
    """A handle on one Iceberg table (and partition), optionally pinned to a snapshot."""

    def __init__(
        self,
        manager: IcebergIOManager,
        asset: Asset,
        partition: str | None,
        loc: IcebergLocation,
        catalog: Any,
        as_of: int | None,
    ) -> None:
        super().__init__(asset, partition, as_of)
        self.manager = manager
        self.loc = loc
        self.catalog = catalog

    def _load(self) -> Any:
        """The table as the catalog has it now, or None."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            return self.catalog.load_table(self.loc.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    # -- reading -----------------------------------------------------------------------------

    def _filter(self) -> Any:
        from pyiceberg.expressions import AlwaysTrue, EqualTo

        if self.partition is None:
            return AlwaysTrue()
        assert self.asset.partition_column is not None
        return EqualTo(term=self.asset.partition_column, value=self.partition)

    def table_version(self) -> int | None:
        """The snapshot this handle reads: the pinned one, else the current (None if none)."""
        if self.as_of is not None:
            return self.as_of
        table = self._load()
        snapshot = table.current_snapshot() if table is not None else None
        return snapshot.snapshot_id if snapshot is not None else None

    def to_pyarrow(self) -> pa.Table:
        table = self._load()
        if table is None:
            raise AssetNotFoundError(
                f"asset {self.asset.name!r}: no Iceberg table {'.'.join(self.loc.identifier)} "
                f"in the catalog of {render_url(self.asset.uri)!r} yet; write it first "
                "(exists() tells)"
            )
        col = self.asset.partition_column
        row_filter = self._filter()
        if self.partition is not None and col not in table.schema().column_names:
            return self._partition_filter(table.scan().to_arrow())
        if self.as_of is None:
            return table.scan(row_filter=row_filter).to_arrow()
        if table.snapshot_by_id(self.as_of) is None:
            raise TableVersionError(
                f"asset {self.asset.name!r} has no snapshot {self.as_of} (never written, or "
                "expired by a vacuum)"
            )
        return table.scan(row_filter=row_filter, snapshot_id=self.as_of).to_arrow()

    def exists(self) -> bool:
        table = self._load()
        if table is None:
            return False
        if self.partition is None:
            return True
        return self.to_pyarrow().num_rows > 0

    # -- writing -----------------------------------------------------------------------------

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        import pyarrow as pa
        from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError

        prepared = prepare_partition(self.asset, self.partition, data)
        table_data = prepared.read_all() if isinstance(prepared, pa.RecordBatchReader) else prepared
        for _ in range(COMMIT_RETRIES):
            table = self._load()
            try:
                if table is None:
                    self._committed_version = self._create(table_data)
                else:
                    self._committed_version = self._commit(table, table_data, mode)
                return table_data.num_rows, None
            except (CommitFailedException, TableAlreadyExistsError):
                continue  # another writer committed first: retry on the new table state
        raise TableVersionError(
            f"asset {self.asset.name!r}: the commit lost to other writers {COMMIT_RETRIES} "
            "times in a row; nothing was written, try again"
        )

    def _commit(self, table: Any, data: pa.Table, mode: str) -> int:
        """Append or overwrite in one transaction, adding the new columns the asset's
        ``schema_evolution="add_columns"`` lets in (a column's type never changes)."""
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        data, new = conform_columns(
            data,
            schema_to_pyarrow(table.schema(), include_field_ids=False),
            what=f"asset {self.asset.name!r}",
            where=f"the Iceberg table {'.'.join(self.loc.identifier)}",
            add_columns=self.asset.schema_evolution == "add_columns",
        )
        with table.transaction() as txn:
            if new:
                import pyarrow as pa

                with txn.update_schema() as update:
                    update.union_by_name(pa.schema(new))
            if mode == "insert":
                txn.append(data)
            elif self.partition is not None:
                txn.overwrite(data, overwrite_filter=self._filter())
            else:
                txn.overwrite(data)
        return int(table.current_snapshot().snapshot_id)

    def _create(self, data: pa.Table) -> int | None:
        """Create the table and append ``data`` in one commit."""
        from pyiceberg.exceptions import NamespaceAlreadyExistsError

        with contextlib.suppress(NamespaceAlreadyExistsError):  # another writer made it
            self.catalog.create_namespace_if_not_exists(self.loc.namespace)
        txn = self.catalog.create_table_transaction(
            self.loc.identifier, schema=data.schema, location=self.loc.location
        )
        col = self.asset.partition_column
        if col and col in data.schema.names:
            with txn.update_spec() as spec:
                spec.add_identity(col)
        txn.append(data)
        txn.commit_transaction()
        table = self._load()
        # the first snapshot is this write's; a writer racing in after it adds later ones
        snapshots = sorted(table.snapshots(), key=lambda s: s.sequence_number) if table else []
        return int(snapshots[0].snapshot_id) if snapshots else None
