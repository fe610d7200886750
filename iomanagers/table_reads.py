"""Each engine's bulk read path for the ibis IO manager.

PostgreSQL reads through ADBC (``adbc-driver-postgresql``), whose driver runs ``COPY ...
TO STDOUT (FORMAT binary)`` and builds the Arrow columns in C, instead of ibis's
row-by-row fetch. The result has the types ibis would return (its schema of the query):
each column is cast to them, so both paths give the same table. A column ADBC returns in a
form that does not cast (intervals, ``timetz``), or a missing driver, takes ibis's path.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from .tables import TableHandle

__all__ = ["arrow_schema", "close_reader", "postgres_columns", "read_postgres"]

log = logging.getLogger(__name__)

#: Marks a backend whose ADBC connection could not be opened: reads take ibis's path.
UNAVAILABLE = object()


def _adbc_connection(handle: TableHandle) -> Any:
    """The backend's ADBC connection (opened on first use, autocommit so that no read
    holds a lock between calls), or None when ADBC cannot connect."""
    backend = handle._backend
    if backend.reader is UNAVAILABLE:
        return None
    if backend.reader is not None:
        return backend.reader
    try:
        import adbc_driver_postgresql.dbapi as adbc
        from psycopg.conninfo import make_conninfo
    except ImportError:
        backend.reader = UNAVAILABLE
        return None
    info = handle.con.con.info
    # the live connection's own parameters (host, port, user, dbname, sslmode, ...)
    conninfo = make_conninfo(info.dsn, password=info.password or None)
    try:
        backend.reader = adbc.connect(conninfo, autocommit=True)
    except Exception as exc:
        from assetry.urls import scrub_text

        secrets = {info.password} if info.password else set()
        log.debug("ADBC cannot connect (%s); reads use ibis", scrub_text(exc, secrets))
        backend.reader = UNAVAILABLE
        return None
    return backend.reader


def close_reader(backend: Any) -> None:
    """Close a backend's ADBC connection, if it has one."""
    reader, backend.reader = backend.reader, None
    if reader is not None and reader is not UNAVAILABLE:
        with contextlib.suppress(Exception):
            reader.close()


#: ibis's own catalog query for a PostgreSQL table's columns (``Backend.get_schema``), run
#: as one statement: the schema named, else the current one and the session's temporary one.
COLUMNS_SQL = """\
SELECT
  a.attname AS column_name,
  CASE
    WHEN EXISTS(
      SELECT 1
      FROM pg_catalog.pg_type t
      INNER JOIN pg_catalog.pg_enum e
              ON e.enumtypid = t.oid
             AND t.typname = pg_catalog.format_type(a.atttypid, a.atttypmod)
    ) THEN 'enum'
    ELSE pg_catalog.format_type(a.atttypid, a.atttypmod)
  END AS data_type,
  NOT a.attnotnull AS nullable
FROM pg_catalog.pg_attribute a
INNER JOIN pg_catalog.pg_class c
   ON a.attrelid = c.oid
INNER JOIN pg_catalog.pg_namespace n
   ON c.relnamespace = n.oid
WHERE a.attnum > 0
  AND NOT a.attisdropped
  AND c.relname = %(name)s
  AND (n.nspname = coalesce(%(schema)s, current_schema())
       OR (%(schema)s IS NULL AND n.oid = pg_catalog.pg_my_temp_schema()))
ORDER BY a.attnum ASC"""


def postgres_columns(handle: TableHandle) -> dict[str, Any] | None:
    """The table's columns and their ibis types as ibis's ``get_schema`` gives them (the
    same query and type mapping, in one round trip), or None when the table does not exist."""
    raw = handle.con.con
    params = {"name": handle.location.table, "schema": handle.location.schema}
    with contextlib.ExitStack() as stack:
        if not raw.autocommit:
            stack.enter_context(raw.transaction())
        cur = stack.enter_context(raw.cursor())
        rows = cur.execute(COLUMNS_SQL, params, prepare=True).fetchall()
    if not rows:
        return None
    mapper = handle.con.compiler.type_mapper
    return {name: _ibis_type(mapper, text, nullable) for name, text, nullable in rows}


@functools.lru_cache(maxsize=1024)
def _ibis_type(mapper: Any, text: str, nullable: bool) -> Any:
    return mapper.from_string(text, nullable=nullable)


def arrow_schema(columns: dict[str, Any]) -> pa.Schema:
    """The Arrow schema ibis gives ``columns`` (``Schema.to_pyarrow``)."""
    import pyarrow as pa
    from ibis.formats.pyarrow import PyArrowType

    return pa.schema(
        pa.field(name, PyArrowType.from_ibis(dtype), nullable=dtype.nullable)
        for name, dtype in columns.items()
    )


def read_postgres(handle: TableHandle) -> pa.Table | None:
    """The table's (partition's) rows through ADBC with the types ibis gives them, or None
    when ADBC is not available, the table does not exist or a column does not convert (the
    caller then reads through ibis)."""
    import ibis

    reader = _adbc_connection(handle)
    if reader is None:
        return None
    columns = postgres_columns(handle)
    if columns is None:
        return None
    if handle.partition is None:
        sql = f"SELECT * FROM {handle.qualified_name}"
    else:
        loc = handle.location
        table = ibis.table(ibis.schema(columns), name=loc.table, database=loc.schema)
        sql = handle.con.compile(handle._scoped(table))
    try:
        with reader.cursor() as cur:
            cur.execute(sql)
            fetched = cur.fetch_arrow_table()
    except Exception as exc:
        import adbc_driver_manager

        if not isinstance(exc, adbc_driver_manager.Error):
            raise
        # a lost or broken connection: open a new one next time, ibis answers this time
        close_reader(handle._backend)
        return None
    return conform(fetched, arrow_schema(columns))


def conform(fetched: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``fetched`` with ``schema`` (names, types, no driver metadata), each column cast
    losslessly; None when a column does not cast."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if fetched.num_columns != len(schema):
        return None
    columns = []
    for column, field in zip(fetched.columns, schema, strict=True):
        if not column.type.equals(field.type):
            if not _castable(column.type, field.type):
                return None
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


#: ADBC's opaque PostgreSQL types (text or bytes it does not interpret) whose content is
#: the value ibis gives: numeric as decimal text, xml as text.
OPAQUE_CASTS = {"numeric": "decimal", "xml": "string"}


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether casting ADBC's ``source`` to ibis's ``target`` keeps the value: plain Arrow
    types cast (or fail) by value; of the extension types only the opaque ones above (a
    uuid's 16 bytes, say, must never be read as text)."""
    import pyarrow as pa

    if not isinstance(source, pa.BaseExtensionType):
        return True
    kind = OPAQUE_CASTS.get(getattr(source, "type_name", ""))
    if kind == "decimal":
        return pa.types.is_decimal(target)
    return kind == "string" and (pa.types.is_string(target) or pa.types.is_large_string(target))
