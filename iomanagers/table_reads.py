"""Each engine's bulk read path for the ibis IO manager.

PostgreSQL reads through ADBC (``adbc-driver-postgresql``), whose driver runs ``COPY ...
TO STDOUT (FORMAT binary)`` and builds the Arrow columns in C, instead of ibis's
row-by-row fetch. The result has the types ibis would return (its schema of the query):
each column is cast to them, so both paths give the same table. A column ADBC returns in a
form that does not cast (intervals, ``timetz``), or a missing driver, takes ibis's path.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa

    from .tables import TableHandle

__all__ = ["close_reader", "read_postgres"]

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


def read_postgres(handle: TableHandle, expr: ir.Table) -> pa.Table | None:
    """``expr``'s rows through ADBC with the types ibis gives them, or None when a column
    does not convert (the caller then reads through ibis)."""
    reader = _adbc_connection(handle)
    if reader is None:
        return None
    schema = expr.schema().to_pyarrow()
    sql = handle.con.compile(expr)
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
    return conform(fetched, schema)


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
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
