"""Each engine's bulk write path for the ibis IO manager, in one transaction per write.

DuckDB inserts from a registered Arrow table, PostgreSQL runs ``COPY ... FROM STDIN`` fed
with CSV that pyarrow renders, SQLite and MySQL use batched ``executemany``; any other ibis
backend goes through ibis's own insert. Overwriting deletes the handle's scope (the table,
or its partition) in the same transaction; on PostgreSQL a whole table is TRUNCATEd
instead, so an overwrite leaves no dead rows behind.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from .tables import TableHandle

__all__ = ["ENGINE_WRITERS", "write_generic"]


def write_duckdb(handle: TableHandle, data: Any, overwrite: bool) -> tuple[int, int | None]:
    """DuckDB: register the Arrow data, INSERT ... BY NAME SELECT, in one transaction."""
    view = f"__assetry_{uuid.uuid4().hex}"
    cur = handle.con.con.cursor()
    try:
        cur.register(view, data)
        cur.execute("BEGIN TRANSACTION")
        try:
            if overwrite:
                params = [handle.partition] if handle.partition is not None else []
                cur.execute(handle._delete_sql("?"), params)
            cur.execute(
                f"INSERT INTO {handle.qualified_name} BY NAME SELECT * FROM {handle._ident(view)}"
            )
            row = cur.fetchone()
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                cur.execute("ROLLBACK")
            raise
    finally:
        with contextlib.suppress(Exception):
            cur.unregister(view)
        cur.close()
    return int(row[0]) if row else _num_rows(data), None


class _TruncateRefused(Exception):
    """TRUNCATE was refused before any row was sent: the write runs again with DELETE."""


def write_postgres(handle: TableHandle, data: Any, overwrite: bool) -> tuple[int, int | None]:
    """PostgreSQL: COPY ... FROM STDIN, CSV rendered by pyarrow, in one transaction.

    An overwrite of the whole table empties it with TRUNCATE in that transaction: a new,
    empty file, so the old rows leave no dead tuples behind (DELETE would leave every one of
    them for VACUUM). A table TRUNCATE cannot take (referenced by a foreign key, or without
    the TRUNCATE privilege) and a partition are DELETEd instead.
    """
    empty = None if not overwrite else ("delete" if handle.partition is not None else "truncate")
    try:
        return _copy_postgres(handle, data, empty)
    except _TruncateRefused:
        return _copy_postgres(handle, data, "delete")


def _copy_postgres(handle: TableHandle, data: Any, empty: str | None) -> tuple[int, int | None]:
    import psycopg

    raw = handle.con.con
    names = list(data.schema.names)
    cols = ", ".join(handle._ident(n) for n in names)
    text = all(_csv_safe(f.type) for f in data.schema)
    copy_sql = f"COPY {handle.qualified_name} ({cols}) FROM STDIN" + (
        " (FORMAT csv)" if text else ""
    )
    rows = nbytes = 0
    with raw.transaction(), raw.cursor() as cur:
        if empty == "truncate":
            try:
                cur.execute(f"TRUNCATE {handle.qualified_name}")
            except (psycopg.errors.FeatureNotSupported, psycopg.errors.InsufficientPrivilege):
                raise _TruncateRefused from None  # rolls the transaction back
        elif empty == "delete":
            params = [handle.partition] if handle.partition is not None else []
            cur.execute(handle._delete_sql("%s"), params)
        with cur.copy(copy_sql) as copy:
            if text:
                for chunk, n in _csv_chunks(data, _chunk_rows(data, handle.manager.batch_rows)):
                    copy.write(chunk)
                    rows += n
                    nbytes += len(chunk)
            else:
                for batch in _batches(data, handle.manager.batch_rows):
                    for row in _python_rows(batch, naive_utc=False):
                        copy.write_row(row)
                    rows += batch.num_rows
    return rows, (nbytes or None)


def write_sqlite(handle: TableHandle, data: Any, overwrite: bool) -> tuple[int, int | None]:
    """SQLite: executemany in one IMMEDIATE transaction."""
    raw = handle.con.con
    names = list(data.schema.names)
    insert = (
        f"INSERT INTO {handle.qualified_name} ({', '.join(handle._ident(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    rows = 0
    raw.execute("BEGIN IMMEDIATE")
    try:
        if overwrite:
            raw.execute(handle._delete_sql("?"), [handle.partition] if handle.partition else [])
        for batch in _batches(data, handle.manager.batch_rows):
            raw.executemany(insert, _python_rows(batch, naive_utc=False, text_times=True))
            rows += batch.num_rows
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            raw.execute("ROLLBACK")
        raise
    return rows, None


def write_mysql(handle: TableHandle, data: Any, overwrite: bool) -> tuple[int, int | None]:
    """MySQL / MariaDB: multi-row INSERTs (executemany) in one transaction."""
    raw = handle.con.con
    names = list(data.schema.names)
    target = f"{handle.qualified_name} ({', '.join(handle._ident(n) for n in names)})"
    insert = f"INSERT INTO {target.replace('%', '%%')} VALUES ({', '.join('%s' for _ in names)})"
    rows = 0
    cur = raw.cursor()
    try:
        cur.execute("START TRANSACTION")
        try:
            if overwrite:
                cur.execute(
                    handle._delete_sql("%s"), [handle.partition] if handle.partition else []
                )
            for batch in _batches(data, handle.manager.batch_rows):
                cur.executemany(insert, _python_rows(batch, naive_utc=True))
                rows += batch.num_rows
            raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
    finally:
        cur.close()
    return rows, None


def write_generic(handle: TableHandle, data: Any, overwrite: bool) -> tuple[int, int | None]:
    """Any other ibis backend: ibis's own insert (not transactional across delete + insert)."""
    import ibis
    import pyarrow as pa

    table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
    if overwrite and handle.partition is not None:
        import sqlglot.expressions as sge

        delete = handle._delete_sql("__p__").replace(
            "__p__", sge.convert(handle.partition).sql(handle.dialect)
        )
        handle.con.raw_sql(delete)
        overwrite = False
    handle.con.insert(
        handle.location.table,
        ibis.memtable(table),
        database=handle.location.schema,
        overwrite=overwrite,
    )
    return table.num_rows, None


#: ibis backend name -> its bulk write; other backends use :func:`write_generic`.
ENGINE_WRITERS: dict[str, Callable[[TableHandle, Any, bool], tuple[int, int | None]]] = {
    "duckdb": write_duckdb,
    "postgres": write_postgres,
    "sqlite": write_sqlite,
    "mysql": write_mysql,
}


# -- data conversion -------------------------------------------------------------------------


def _num_rows(data: Any) -> int:
    return int(getattr(data, "num_rows", 0))


def _batches(data: pa.Table | pa.RecordBatchReader, size: int) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    source = data.to_batches(max_chunksize=size) if isinstance(data, pa.Table) else data
    for batch in source:
        if batch.num_rows <= size:
            yield batch
            continue
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


#: A table of fewer than this many chunks' rows is still sent in about as many chunks (of
#: at least MIN_CHUNK_ROWS), so the server parses one chunk while the next is rendered.
COPY_CHUNKS = 8
MIN_CHUNK_ROWS = 1_000


def _chunk_rows(data: pa.Table | pa.RecordBatchReader, batch_rows: int) -> int:
    """Rows per COPY chunk: ``batch_rows``, or less for a small table (see COPY_CHUNKS)."""
    rows = getattr(data, "num_rows", None)  # a RecordBatchReader's size is unknown
    if rows is None:
        return batch_rows
    return min(batch_rows, max(MIN_CHUNK_ROWS, rows // COPY_CHUNKS))


def _csv_safe(dtype: pa.DataType) -> bool:
    """Whether PostgreSQL parses pyarrow's CSV rendering of ``dtype`` back to the value."""
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(dtype):
        return _csv_safe(dtype.value_type)
    return bool(
        t.is_integer(dtype)
        or t.is_floating(dtype)
        or t.is_boolean(dtype)
        or t.is_string(dtype)
        or t.is_large_string(dtype)
        or t.is_date(dtype)
        or t.is_timestamp(dtype)
        or t.is_time(dtype)
        or t.is_decimal(dtype)
        or t.is_null(dtype)
    )


def _csv_chunks(data: pa.Table | pa.RecordBatchReader, size: int) -> Iterator[tuple[bytes, int]]:
    """CSV (no header; nulls as unquoted empty fields, strings always quoted) per batch."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in _batches(data, size):
        if any(pa.types.is_dictionary(f.type) for f in batch.schema):
            batch = pa.RecordBatch.from_arrays(
                [
                    col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
                    for col in batch.columns
                ],
                names=batch.schema.names,
            )
        buffer = io.BytesIO()
        pcsv.write_csv(batch, buffer, write_options=options)
        yield buffer.getvalue(), batch.num_rows


def _python_rows(
    batch: pa.RecordBatch, *, naive_utc: bool, text_times: bool = False
) -> list[tuple[Any, ...]]:
    """The batch's rows as tuples of Python values the DB-API drivers accept."""
    import datetime as dt

    import pyarrow as pa

    columns = []
    for field_, column in zip(batch.schema, batch.columns, strict=True):
        values = column.to_pylist()
        dtype = field_.type
        if pa.types.is_timestamp(dtype) and dtype.tz is not None and naive_utc:
            values = [
                v.astimezone(dt.UTC).replace(tzinfo=None) if v is not None else None for v in values
            ]
        if text_times and (pa.types.is_timestamp(dtype) or pa.types.is_date(dtype)):
            values = [
                v.isoformat(sep=" ")
                if isinstance(v, dt.datetime)
                else (v.isoformat() if v is not None else None)
                for v in values
            ]
        if pa.types.is_decimal(dtype) and text_times:
            values = [str(v) if v is not None else None for v in values]
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else []
