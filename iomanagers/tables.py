"""The ibis IO manager: dataframes as database tables (DuckDB, SQLite, PostgreSQL, MySQL, ...).

URI grammar:

* servers: ``scheme://[user@]host[:port]/database[/schema]/table``
  (``mysql://myhost/mydb/mytable``, ``postgresql://host/db/public/orders``);
* file databases: the path up to the segment ending in ``.duckdb``, ``.db``, ``.sqlite`` or
  ``.sqlite3`` is the file (three slashes: relative, four: absolute), the rest is
  ``[schema/]table`` (``duckdb:///warehouse.duckdb/orders``, ``sqlite:////data/w.db/orders``);
* an in-memory DuckDB: ``duckdb:///:memory:/[schema/]table``, one database per IO manager.

Passwords come from the connection (``conn_id``, default ``postgres_default`` /
``mysql_default``), never from the URI. Writes take each engine's bulk path inside one
transaction: DuckDB inserts from a registered Arrow table, PostgreSQL runs ``COPY ... FROM
STDIN`` fed with CSV that pyarrow renders (a whole-table overwrite TRUNCATEs first, in the
same transaction), SQLite and MySQL use batched ``executemany``. PostgreSQL reads go
through ADBC's binary COPY into Arrow. A partition maps to the asset's
``partition_column``; overwriting a partition deletes and inserts in one transaction.
Identifiers are quoted by sqlglot for each dialect and values travel as bound parameters.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from assetry import (
    AssetHandle,
    AssetNotFoundError,
    AssetValueError,
    BackendUnavailableError,
    IOManager,
    PluginError,
    ValidationError,
)
from assetry.config import Connection, resolve_connection
from assetry.plugins import INSTALL_HINTS
from assetry.uri import uri_scheme
from assetry.urls import redact, render_url, scrub_text, secrets_of
from assetry.values import validate_partition_key

from .table_reads import arrow_schema, close_reader, postgres_columns, read_postgres
from .table_schema import conform_columns, data_error, is_data_error
from .table_writes import ENGINE_WRITERS, write_generic

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa
    from assetry import Asset, Settings

__all__ = ["IbisIOManager", "TableHandle", "TableLocation", "parse_table_uri"]

#: URI scheme -> ibis backend name.
BACKEND_NAMES: dict[str, str] = {
    "duckdb": "duckdb",
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
}
FILE_BACKENDS = frozenset({"duckdb", "sqlite"})
FILE_SUFFIXES = (".duckdb", ".db", ".sqlite", ".sqlite3", ".ddb")
MEMORY = ":memory:"
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
ROWS_PER_BATCH = 50_000


# -- URIs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLocation:
    """A parsed table URI. ``database`` is the database name on a server, or the file path
    (or ``:memory:``) of a file database."""

    backend: str
    table: str
    database: str | None = None
    schema: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    scheme: str = ""

    @property
    def is_file(self) -> bool:
        return self.backend in FILE_BACKENDS

    def describe(self) -> str:
        where = self.database if self.is_file else f"{self.host}/{self.database}"
        return f"{self.backend} {where} table {'.'.join(filter(None, [self.schema, self.table]))}"


def _segments(path: str) -> list[str]:
    return [unquote(s) for s in path.split("/")]


def parse_table_uri(uri: str) -> TableLocation:
    """Parse a table URI (see the module docstring); a clear :class:`AssetValueError` (a
    ValueError) when it is malformed or names a table or schema the engine cannot hold."""
    scheme = uri_scheme(uri)
    base = scheme.split("+", 1)[0]
    backend = BACKEND_NAMES.get(base, base)
    parts = urlsplit(uri.split("?", 1)[0])
    if backend in FILE_BACKENDS:
        if parts.netloc:
            raise AssetValueError(
                f"{backend} URI {render_url(uri)!r} names a host; a file database URI has three "
                f"slashes for a relative path ({backend}:///warehouse{FILE_SUFFIXES[0] if backend == 'duckdb' else '.db'}/table) "
                "or four for an absolute one"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        segments = path.split("/")
        for i, segment in enumerate(segments):
            name = unquote(segment)
            if name == MEMORY or name.lower().endswith(FILE_SUFFIXES):
                database = MEMORY if name == MEMORY else unquote("/".join(segments[: i + 1]))
                rest = [unquote(s) for s in segments[i + 1 :] if s]
                break
        else:
            raise AssetValueError(
                f"{backend} URI {render_url(uri)!r} names no database file: the path must contain "
                f"a segment ending in {', '.join(FILE_SUFFIXES)} (or be :memory:), followed by "
                "[schema/]table"
            )
        if database == MEMORY and backend != "duckdb":
            raise AssetValueError(
                f"an in-memory database is only supported for duckdb, not {backend}"
            )
        if len(rest) not in (1, 2):
            raise AssetValueError(
                f"{backend} URI {render_url(uri)!r} must name [schema/]table after the database "
                f"file {database!r}"
            )
        location = TableLocation(
            backend=backend,
            database=database,
            schema=rest[0] if len(rest) == 2 else None,
            table=rest[-1],
            scheme=scheme,
        )
        return _checked_names(location, uri)
    segments = [s for s in _segments(parts.path) if s]
    max_segments = 2 if backend == "mysql" else 3
    if not parts.hostname or not 2 <= len(segments) <= max_segments:
        shape = "database/table" if backend == "mysql" else "database[/schema]/table"
        raise AssetValueError(
            f"table URI {render_url(uri)!r} must look like {scheme}://[user@]host[:port]/{shape}"
        )
    location = TableLocation(
        backend=backend,
        host=parts.hostname,
        port=parts.port,
        user=unquote(parts.username) if parts.username else None,
        database=segments[0],
        schema=segments[1] if len(segments) == 3 else None,
        table=segments[-1],
        scheme=scheme,
    )
    return _checked_names(location, uri)


#: The longest name each server keeps whole: PostgreSQL cuts longer ones to 63 bytes
#: without a word (two long names would then be one table), MySQL/MariaDB refuses them.
MAX_NAME_BYTES = {"postgres": 63}
MAX_NAME_CHARS = {"mysql": 64}


def identifier_problem(name: str, backend: str) -> str | None:
    """Why ``name`` cannot be a table, schema or column name on ``backend`` (None: it can).
    Quotes, semicolons, ``%`` and the like are fine: names are always quoted."""
    if not name:
        return "it is empty"
    if "\x00" in name:
        return "it contains a NUL character"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid unicode (a lone surrogate)"
    limit = MAX_NAME_BYTES.get(backend)
    if limit is not None and size > limit:
        return f"it is {size} bytes long and {backend} keeps only {limit}"
    limit = MAX_NAME_CHARS.get(backend)
    if limit is not None and len(name) > limit:
        return f"it is {len(name)} characters long and {backend} allows {limit}"
    if backend == "mysql" and name[-1] in " \t\n\r\x0b\x0c":
        return "MySQL/MariaDB names cannot end with white space"
    if backend == "mysql" and any(ord(c) > 0xFFFF for c in name):
        return "MySQL/MariaDB names cannot hold characters beyond U+FFFF (such as emoji)"
    return None


def _checked_names(location: TableLocation, uri: str) -> TableLocation:
    for what, name in (("table", location.table), ("schema", location.schema)):
        problem = None if name is None else identifier_problem(name, location.backend)
        if problem:
            raise AssetValueError(
                f"table URI {render_url(uri)!r} names a {what} {name!r} that cannot be used: "
                f"{problem}"
            )
    return location


# -- the IO manager --------------------------------------------------------------------------


@dataclass
class _Backend:
    """A cached ibis connection, the lock that serialises its use, and (PostgreSQL) the
    ADBC connection reads go through."""

    con: Any
    location: TableLocation
    lock: threading.RLock = field(default_factory=threading.RLock)
    reader: Any = None


class IbisIOManager(IOManager):
    """Reads and writes dataframes as tables through ibis, with each engine's bulk path.

    Options (``io_manager_options={"ibis": {...}}``): ``redirect_to`` sends every table to
    one database (``"duckdb:///:memory:"`` for tests; a server's database and schema become
    the DuckDB schema ``database`` or ``database_schema``); ``batch_rows`` sets the rows per
    ``executemany``/``COPY`` chunk.
    """

    name = "ibis"
    schemes = ("duckdb", "sqlite", "postgresql", "postgres", "mysql", "mariadb")

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        redirect_to: str | None = None,
        batch_rows: int = ROWS_PER_BATCH,
        **options: Any,
    ) -> None:
        super().__init__(settings=settings, **options)
        self.redirect_to = redirect_to
        if redirect_to is not None:
            target = parse_table_uri(redirect_to.rstrip("/") + "/_")
            if target.backend != "duckdb":
                raise ValueError(f"redirect_to must be a duckdb URI, not {redirect_to!r}")
        self.batch_rows = batch_rows
        self._backends: dict[tuple[Any, ...], _Backend] = {}
        self._lock = threading.Lock()

    @classmethod
    def serves(cls, scheme: str) -> bool:
        base = scheme.split("+", 1)[0]
        if base in BACKEND_NAMES:
            return True
        from importlib.metadata import entry_points

        return base in {ep.name for ep in entry_points(group="ibis.backends")}

    def locate(self, uri: str) -> TableLocation:
        """The table ``uri`` names (after ``redirect_to``)."""
        loc = parse_table_uri(uri)
        if self.redirect_to is None:
            return loc
        target = parse_table_uri(self.redirect_to.rstrip("/") + "/_")
        schema = loc.schema if loc.is_file else "_".join(filter(None, [loc.database, loc.schema]))
        return replace(target, schema=schema, table=loc.table)

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> TableHandle:
        if partition is not None:
            validate_partition_key(partition)
            if not asset.partition_column:
                raise ValueError(
                    f"asset {asset.name!r} has no partition_column, so partition {partition!r} "
                    "cannot map to a column; declare Asset(..., partition_column='...')"
                )
        try:
            loc = self.locate(asset.uri)
        except ValueError as exc:
            raise AssetValueError(f"asset {asset.name!r}: {exc}") from None
        backend = self._backend(loc, conn_id if self.redirect_to is None else None)
        return TableHandle(self, asset, partition, loc, backend)

    def _backend(self, loc: TableLocation, conn_id: str | None) -> _Backend:
        if loc.is_file:
            key: tuple[Any, ...] = (loc.backend, loc.database)
        else:
            key = (loc.backend, conn_id, loc.host, loc.port, loc.user, loc.database)
        with self._lock:
            cached = self._backends.get(key)
            if cached is None:
                cached = _Backend(self._connect(loc, conn_id), loc)
                self._backends[key] = cached
            return cached

    def _connect(self, loc: TableLocation, conn_id: str | None) -> Any:
        import ibis

        if loc.backend == "duckdb":
            if loc.database != MEMORY:
                os.makedirs(os.path.dirname(os.path.abspath(loc.database or ".")), exist_ok=True)
            return ibis.duckdb.connect(loc.database or MEMORY)
        if loc.backend == "sqlite":
            import sqlite3

            assert loc.database is not None
            os.makedirs(os.path.dirname(os.path.abspath(loc.database)), exist_ok=True)
            # our own handle: usable from any thread, transactions under our control
            raw = sqlite3.connect(loc.database, check_same_thread=False, isolation_level=None)
            return ibis.sqlite.from_connection(raw)
        conn = resolve_connection(loc.scheme or loc.backend, conn_id, self.settings)
        conn = conn if conn is not None else Connection(conn_id or "")
        # An asset URI carries the engine's default port as part of its identity (as Airflow
        # keys assets), so that port yields to one the connection names.
        port = None if loc.port == DEFAULT_PORTS.get(loc.backend) else loc.port
        params = conn.to_ibis_kwargs(host=loc.host, port=port, user=loc.user, database=loc.database)
        if "port" not in params and loc.backend in DEFAULT_PORTS:
            params["port"] = DEFAULT_PORTS[loc.backend]
        hint = INSTALL_HINTS.get(loc.scheme.split("+", 1)[0]) or INSTALL_HINTS.get(loc.backend)
        hint = hint or f"pip install 'ibis-framework[{loc.backend}]'"
        try:
            module = getattr(ibis, loc.backend)
        except AttributeError:
            raise ValueError(f"ibis has no backend {loc.backend!r}") from None
        except ImportError as exc:
            raise PluginError(
                f"the {loc.backend} backend of ibis cannot be imported ({exc}); try: {hint}"
            ) from None
        with warnings.catch_warnings():
            # MariaDB without time zone tables cannot take "UTC"; ibis warns and goes on
            warnings.filterwarnings("ignore", message="Unable to set session timezone")
            try:
                return module.connect(**params)
            except ImportError as exc:
                raise PluginError(
                    f"the {loc.backend} driver cannot be imported ({exc}); try: {hint}"
                ) from None
            except Exception as exc:
                raise BackendUnavailableError(
                    f"cannot connect to {loc.backend} with {redact(params)} (connection "
                    f"{conn.conn_id or None!r}): {scrub_text(exc, conn.secrets() | secrets_of(params))}"
                ) from None

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        for cached in backends:
            close_reader(cached)
            with contextlib.suppress(Exception):
                cached.con.disconnect()


# -- the handle ------------------------------------------------------------------------------


class TableHandle(AssetHandle):
    """A handle on one table (and partition)."""

    def __init__(
        self,
        manager: IbisIOManager,
        asset: Asset,
        partition: str | None,
        location: TableLocation,
        backend: _Backend,
    ) -> None:
        super().__init__(asset, partition)
        self.manager = manager
        self.location = location
        self._backend = backend
        self.con = backend.con
        self.partition_column = asset.partition_column

    def __repr__(self) -> str:
        part = f", partition={self.partition!r}" if self.partition is not None else ""
        return f"TableHandle({render_url(self.asset.uri)!r}{part})"

    # -- names -------------------------------------------------------------------------------

    @property
    def dialect(self) -> Any:
        return self.con.dialect

    def _ident(self, name: str) -> str:
        import sqlglot as sg

        return sg.to_identifier(name, quoted=True).sql(self.dialect)

    @property
    def qualified_name(self) -> str:
        """The table's quoted, schema-qualified name in the engine's dialect."""
        import sqlglot as sg

        return sg.table(self.location.table, db=self.location.schema, quoted=True).sql(self.dialect)

    # -- reading -----------------------------------------------------------------------------

    def _not_in_catalog(self) -> bool:
        """Whether DuckDB's catalog lacks the table. DuckDB answers a query on a missing
        table by reading a file of that name ("replacement scan"), so a table called
        ``/etc/hosts.csv`` would serve that file: ask the catalog before ibis asks DuckDB."""
        if self.location.backend != "duckdb":
            return False
        with self._cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE lower(table_name) = "
                "lower(?) AND lower(table_schema) = lower(coalesce(?, current_schema()))",
                [self.location.table, self.location.schema],
            )
            row = cur.fetchone()
        return not row or row[0] == 0

    def _table(self) -> ir.Table:
        from ibis.common.exceptions import TableNotFound

        try:
            if self._not_in_catalog():
                raise TableNotFound(self.location.table)
            return self.con.table(self.location.table, database=self.location.schema)
        except TableNotFound:
            raise AssetNotFoundError(
                f"asset {self.asset.name!r}: the table {self.location.describe()} does not exist "
                "yet; write it first (exists() tells)"
            ) from None

    def to_ibis(self) -> ir.Table:
        """The table (filtered to the partition) as a lazy ibis expression."""
        return self._scoped(self._table())

    def _scoped(self, table: ir.Table) -> ir.Table:
        """``table`` filtered to this handle's partition."""
        import ibis

        if self.partition is None:
            return table
        assert self.partition_column is not None
        column = table[self.partition_column]
        return table.filter(column == ibis.literal(self.partition).cast(column.type()))

    def to_pyarrow(self) -> pa.Table:
        with self._backend.lock:
            if self.location.backend == "postgres":
                table = read_postgres(self)
                if table is not None:
                    return table
            return self.to_ibis().to_pyarrow()

    def exists(self) -> bool:
        with self._backend.lock:
            try:
                expr = self.to_ibis()
            except AssetNotFoundError:
                return False
            if self.partition is None:
                return True
            return bool(expr.limit(1).count().execute())

    def _stored_keys(self, columns: list[str], keys: pa.Table, mode: str) -> pa.Table:
        """The engine's own query: the table's distinct values in ``columns`` among ``keys``
        (a semi join with the keys as an in-memory table), the partition an overwrite
        replaces left out."""
        import ibis

        if mode == "overwrite" and self.partition is None:
            return keys.slice(0, 0)
        with self._backend.lock:
            try:
                table = self._table()
            except AssetNotFoundError:
                return keys.slice(0, 0)
            if mode == "overwrite":
                assert self.partition_column is not None
                column = table[self.partition_column]
                table = table.filter(column != ibis.literal(self.partition).cast(column.type()))
            stored = table.select(*columns)
            found = stored.semi_join(ibis.memtable(keys), columns).distinct()
            return found.to_pyarrow()

    # -- writing -----------------------------------------------------------------------------

    def _prepare(self, data: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
        """Add or check the partition column."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.partition is None:
            return data
        col = self.partition_column
        assert col is not None
        if col not in data.schema.names:
            table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
            return table.append_column(
                col, pa.array([self.partition] * table.num_rows, pa.string())
            )
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        values = pc.cast(table.column(col), pa.string())
        wrong = pc.sum(pc.fill_null(pc.not_equal(values, self.partition), True)).as_py()
        if wrong:
            raise ValidationError(
                f"asset {self.asset.name!r}: writing partition {self.partition!r} but "
                f"{wrong} row(s) have another value in column {col!r}"
            )
        return table

    def _stored_schema(self) -> pa.Schema | None:
        """The table's columns and types as Arrow sees them, or None if it does not exist."""
        from ibis.common.exceptions import TableNotFound

        if self._not_in_catalog():
            return None
        if self.location.backend == "postgres":
            columns = postgres_columns(self)
            return None if columns is None else arrow_schema(columns)
        try:
            schema = self.con.get_schema(self.location.table, database=self.location.schema)
        except TableNotFound:
            return None
        return schema.to_pyarrow()

    def _add_columns(self, fields: list[pa.Field]) -> None:
        """ALTER TABLE ... ADD COLUMN, nullable, for each new field (schema evolution)."""
        import ibis
        import pyarrow as pa

        schema = pa.schema(fields)
        if self.location.backend == "sqlite":
            schema = _sqlite_schema(schema)
        defs = ibis.Schema.from_pyarrow(schema).to_sqlglot_column_defs(self.dialect)
        with self._cursor() as cur:
            for col in defs:
                cur.execute(f"ALTER TABLE {self.qualified_name} ADD COLUMN {col.sql(self.dialect)}")
        self._commit_ddl()

    def _ensure_table(self, schema: pa.Schema) -> pa.Schema | None:
        """Create the table from the Arrow schema on first write; return the stored schema
        of a table that existed (None when it was just created from ``schema``)."""
        stored = self._stored_schema()
        if stored is not None:
            return stored
        import ibis
        import sqlglot as sg
        import sqlglot.expressions as sge

        if self.location.backend == "sqlite":
            schema = _sqlite_schema(schema)
        defs = ibis.Schema.from_pyarrow(schema).to_sqlglot_column_defs(self.dialect)
        create = sge.Create(
            kind="TABLE",
            exists=True,
            this=sge.Schema(
                this=sg.table(self.location.table, db=self.location.schema, quoted=True),
                expressions=defs,
            ),
        )
        with self._cursor() as cur:
            if self.location.backend == "duckdb" and self.location.schema:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self._ident(self.location.schema)}")
            cur.execute(create.sql(self.dialect))
        self._commit_ddl()
        return None

    def _commit_ddl(self) -> None:
        raw = self.con.con
        if self.location.backend in {"postgres", "mysql"} and not _autocommit(raw):
            raw.commit()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        cur = self.con.con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _delete_sql(self, placeholder: str) -> str:
        """The DELETE of this handle's scope with ``placeholder`` for the partition; for the
        ``%s`` drivers every other ``%`` (in a quoted name) is doubled, so a name such as
        ``t%s`` is not taken for a placeholder."""
        import sqlglot as sg
        import sqlglot.expressions as sge

        marker = f"__assetry_{uuid.uuid4().hex}__"
        stmt = sge.delete(sg.table(self.location.table, db=self.location.schema, quoted=True))
        if self.partition is not None:
            assert self.partition_column is not None
            stmt = stmt.where(sg.column(self.partition_column, quoted=True).eq(sge.var(marker)))
        sql = stmt.sql(self.dialect)
        if placeholder == "%s":
            sql = sql.replace("%", "%%")
        return sql.replace(marker, placeholder)

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        data = self._prepare(data)
        for name in data.schema.names:
            problem = identifier_problem(name, self.location.backend)
            if problem:
                raise ValidationError(
                    f"asset {self.asset.name!r}: column {name!r} cannot be stored in "
                    f"{self.location.describe()}: {problem}; rename it"
                )
        where = f"the table {self.location.describe()}"
        with self._backend.lock:
            stored = self._ensure_table(data.schema)
            if stored is not None:
                data, new = conform_columns(
                    data,
                    stored,
                    what=f"asset {self.asset.name!r}",
                    where=where,
                    add_columns=self.asset.schema_evolution == "add_columns",
                )
                if new:
                    self._add_columns(new)
            writer = ENGINE_WRITERS.get(self.location.backend, write_generic)
            try:
                return writer(self, data, mode == "overwrite")
            except Exception as exc:
                if is_data_error(exc):
                    raise data_error(self.asset.name, where, exc) from exc
                raise


# -- data conversion -------------------------------------------------------------------------


def _sqlite_schema(schema: pa.Schema) -> pa.Schema:
    """SQLite has no decimal type (and ibis cannot read one back): store decimals as REAL."""
    import pyarrow as pa

    return pa.schema(
        [f.with_type(pa.float64()) if pa.types.is_decimal(f.type) else f for f in schema]
    )


def _autocommit(raw: Any) -> bool:
    getter = getattr(raw, "get_autocommit", None)  # MySQLdb
    return bool(getter() if callable(getter) else getattr(raw, "autocommit", False))
