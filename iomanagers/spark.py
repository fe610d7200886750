"""Tables on Spark, through ibis's PySpark backend: the same handle API as the ibis IO manager.

URIs: ``pyspark:///[database/]table`` runs on the Spark master the connection names
(``spark_default``: ``{"master": "spark://host:7077", "spark.sql.warehouse.dir": ...}``,
every ``spark.*`` key is Spark configuration), else in local mode (``local[*]``);
``pyspark://HOST:PORT/[database/]table`` names a standalone master itself
(``spark://HOST:PORT``). One SparkSession serves the process (Spark allows one), made on first
use with the connection's configuration.

Reads go through ibis (``to_ibis()`` is a lazy expression that Spark executes;
``to_pyarrow()`` collects it over Arrow). Writes hand the Arrow data to Spark and write a
table of the session's catalog: the first write creates it (``saveAsTable``, partitioned by
the asset's ``partition_column`` when the data has it), ``insert`` appends (``insertInto``),
``overwrite`` replaces the table, and ``overwrite`` on a partition replaces that partition
only (``insertInto(overwrite=True)`` with dynamic partition overwrite). Spark's own file
tables are not transactional: a reader may see a write half done. For commits atomic to every
reader, write Delta or Iceberg tables (``delta+s3://``, ``iceberg+s3://``) and read them from
Spark with the format's connector.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from assetry import AssetHandle, AssetNotFoundError, AssetValueError, IOManager, PluginError
from assetry.config import resolve_connection
from assetry.urls import parse_asset_uri, render_url

from ._lakehouse import check_partition, prepare_partition

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa
    from assetry import Asset, Settings

__all__ = ["SparkHandle", "SparkIOManager", "spark_session"]

INSTALL_HINT = "pip install 'ibis-framework[pyspark]' (and a Java runtime, 17 or later)"
DEFAULT_CONN_ID = "spark_default"
DEFAULT_MASTER = "local[*]"
#: Spark settings assetry relies on (the connection may add, not remove, these).
BASE_CONF = {
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
}

_session_lock = threading.Lock()


def spark_session(master: str, conf: dict[str, str]) -> Any:
    """The process's SparkSession, made with ``master`` and ``conf`` if there is none yet."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise PluginError(f"the Spark IO manager needs pyspark; try: {INSTALL_HINT}") from None
    with _session_lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = SparkSession.builder.master(master).appName("assetry")
        for key, value in {**BASE_CONF, **conf}.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()


def _spark_frame(session: Any, table: pa.Table) -> Any:
    """A Spark DataFrame of ``table``: straight from Arrow on pyspark 4, else via pandas."""
    import pyspark

    if int(pyspark.__version__.split(".", 1)[0]) >= 4:
        return session.createDataFrame(table.combine_chunks())
    return session.createDataFrame(table.to_pandas())


class SparkIOManager(IOManager):
    """Reads and writes dataframes as Spark tables, through ibis's PySpark backend."""

    name = "spark"
    schemes = ("pyspark", "spark")

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        super().__init__(settings=settings, **options)
        self._ibis: Any = None
        self._lock = threading.Lock()

    def session(self, authority: str, conn_id: str | None) -> Any:
        """The SparkSession (master from the URI, else the connection, else local mode)."""
        conn = resolve_connection("spark", conn_id or DEFAULT_CONN_ID, self.settings)
        options = dict(conn.options) if conn is not None else {}
        master = f"spark://{authority}" if authority else options.get("master", DEFAULT_MASTER)
        conf = {k: str(v) for k, v in options.items() if k.startswith("spark.")}
        return spark_session(str(master), conf)

    def ibis_backend(self, session: Any) -> Any:
        """ibis's PySpark backend on ``session`` (one per IO manager)."""
        with self._lock:
            if self._ibis is None:
                import ibis

                self._ibis = ibis.pyspark.connect(session)
            return self._ibis

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> SparkHandle:
        check_partition(asset, partition)
        parsed = parse_asset_uri(asset.uri)
        segments = [s for s in parsed.path.split("/") if s]
        if not 1 <= len(segments) <= 2 or not all(s.replace("_", "a").isalnum() for s in segments):
            raise AssetValueError(
                f"asset {asset.name!r}: {render_url(asset.uri)!r} must name a table: "
                "pyspark:///[database/]table (letters, digits and _), or "
                "pyspark://HOST:PORT/[database/]table for a standalone master"
            )
        session = self.session(parsed.authority, conn_id)
        database, table = (segments[0], segments[1]) if len(segments) == 2 else (None, segments[0])
        return SparkHandle(self, asset, partition, session, database, table)


class SparkHandle(AssetHandle):
    """A handle on one Spark table (and partition)."""

    def __init__(
        self,
        manager: SparkIOManager,
        asset: Asset,
        partition: str | None,
        session: Any,
        database: str | None,
        table: str,
    ) -> None:
        super().__init__(asset, partition)
        self.manager = manager
        self.session = session
        self.database = database
        self.table = table

    @property
    def qualified_name(self) -> str:
        """``database.table`` (or ``table``), quoted for Spark SQL."""
        parts = [self.database, self.table] if self.database else [self.table]
        return ".".join(f"`{p}`" for p in parts)

    def __repr__(self) -> str:
        return f"SparkHandle({render_url(self.asset.uri)!r}, partition={self.partition!r})"

    # -- reading -----------------------------------------------------------------------------

    def _table_exists(self) -> bool:
        return bool(self.session.catalog.tableExists(self.table, self.database))

    def to_ibis(self) -> ir.Table:
        """The table (filtered to the partition) as a lazy ibis expression run by Spark."""
        import ibis

        if not self._table_exists():
            raise AssetNotFoundError(
                f"asset {self.asset.name!r}: the Spark table {self.qualified_name} does not "
                "exist yet; write it first (exists() tells)"
            )
        con = self.manager.ibis_backend(self.session)
        table = con.table(self.table, database=self.database)
        if self.partition is None:
            return table
        column = table[self.asset.partition_column]
        return table.filter(column.cast("string") == ibis.literal(self.partition))

    def to_pyarrow(self) -> pa.Table:
        return self.to_ibis().to_pyarrow()

    def exists(self) -> bool:
        if not self._table_exists():
            return False
        if self.partition is None:
            return True
        return bool(self.to_ibis().limit(1).count().execute())

    # -- writing -----------------------------------------------------------------------------

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        import pyarrow as pa

        prepared = prepare_partition(self.asset, self.partition, data)
        table = prepared.read_all() if isinstance(prepared, pa.RecordBatchReader) else prepared
        if self.database:
            self.session.sql(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        frame = _spark_frame(self.session, table)
        col = self.asset.partition_column
        exists = self._table_exists()
        if not exists or (mode == "overwrite" and self.partition is None):
            writer = frame.write.format("parquet").mode("overwrite" if exists else "error")
            if col and col in table.schema.names:
                writer = writer.partitionBy(col)
            writer.saveAsTable(self.qualified_name)
        else:
            columns = self.session.table(self.qualified_name).columns  # insertInto is positional
            frame.select(*columns).write.insertInto(
                self.qualified_name, overwrite=mode == "overwrite"
            )
        self.session.catalog.refreshTable(self.qualified_name)
        return table.num_rows, None
