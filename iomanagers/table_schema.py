"""Writes checked against the stored schema, for tables and datasets alike.

Before anything is written, each column of the data is matched with the stored one: a new
column is refused (``schema_evolution="fail"``) or added as a nullable column
(``"add_columns"``); a column of another type is cast where the cast is lossless (the
values cast back equal the originals: ``"12"`` into an integer column, ``int32`` into
``int64``) and refused otherwise with :class:`SchemaMismatchError` naming the column. An
engine's own type error (DuckDB, PostgreSQL, MySQL, SQLite) arrives as the same error, and
its transaction is rolled back, so nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from assetry.errors import SchemaMismatchError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DATA_ERRORS", "conform_columns", "data_error", "is_data_error"]

#: Exception class names of the drivers' data errors (a value the column's type refuses,
#: a constraint): raised inside the write's transaction, which the writer rolls back.
DATA_ERRORS = frozenset(
    {
        "ConversionException",  # duckdb
        "InvalidInputException",  # duckdb
        "ConstraintException",  # duckdb
        "MismatchTypeException",  # duckdb
        "DataError",  # DB-API: psycopg, MySQLdb, pymysql, sqlite3
        "IntegrityError",  # DB-API
    }
)


def is_data_error(exc: BaseException) -> bool:
    """Whether a driver raised ``exc`` for the data written (not for the connection)."""
    return any(cls.__name__ in DATA_ERRORS for cls in type(exc).__mro__)


def data_error(asset: str, where: str, exc: BaseException) -> SchemaMismatchError:
    """The typed error for a driver's data error; the first line of its message is kept."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SchemaMismatchError(
        f"asset {asset!r}: {where} refused the data ({type(exc).__name__}: {text}); "
        "nothing was written"
    )


def _simple(dtype: pa.DataType) -> bool:
    import pyarrow as pa

    t = pa.types
    return bool(
        t.is_integer(dtype)
        or t.is_floating(dtype)
        or t.is_decimal(dtype)
        or t.is_boolean(dtype)
        or t.is_string(dtype)
        or t.is_large_string(dtype)
        or t.is_date(dtype)
        or t.is_null(dtype)
    )


def _same_kind(a: pa.DataType, b: pa.DataType) -> bool:
    """Types the writers already pass as they are (texts; timestamps, whose zone the
    writers settle)."""
    import pyarrow as pa

    t = pa.types
    if (t.is_string(a) or t.is_large_string(a)) and (t.is_string(b) or t.is_large_string(b)):
        return True
    return t.is_timestamp(a) and t.is_timestamp(b)


def _lossless(column: Any, target: pa.DataType) -> Any:
    """``column`` cast to ``target``, or ``None`` when the cast would lose or invent data."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.types.is_string(target) or pa.types.is_large_string(target)
    if text and not pa.types.is_null(column.type):
        return None  # a number or date into a text column changes what the column holds
    try:
        cast = pc.cast(column, target, safe=True)
        back = pc.cast(cast, column.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if cast.null_count != column.null_count:
        return None
    same = pc.equal(back, column)
    if pc.sum(pc.fill_null(pc.invert(same), False)).as_py():
        return None
    return cast


def _first_bad(column: Any, target: pa.DataType) -> object:
    """An example value of ``column`` that does not cast to ``target`` losslessly."""
    for value in column.to_pylist():
        if value is None:
            continue
        import pyarrow as pa

        one = pa.array([value], column.type)
        if _lossless(one, target) is None:
            return value
    return None


def conform_columns(
    data: pa.Table | pa.RecordBatchReader,
    stored: pa.Schema,
    *,
    what: str,
    where: str,
    add_columns: bool,
) -> tuple[pa.Table | pa.RecordBatchReader, list[pa.Field]]:
    """``data`` with each column cast to its stored type where that is lossless, and the
    fields to add to the stored schema (new columns, nullable, under ``add_columns``).

    Raises :class:`SchemaMismatchError` naming the first column that cannot be stored.
    """
    import pyarrow as pa

    names = set(stored.names)
    new = [data.schema.field(n).with_nullable(True) for n in data.schema.names if n not in names]
    if new and not add_columns:
        cols = ", ".join(f.name for f in new)
        raise SchemaMismatchError(
            f"{what}: {where} has no column(s) {cols} (it has {', '.join(stored.names)}); "
            'declare the asset with schema_evolution="add_columns" to add them, or drop the '
            "table to start over",
            column=new[0].name,
        )
    casts: dict[str, pa.DataType] = {}
    for field in data.schema:
        if field.name not in names:
            continue
        target = stored.field(field.name).type
        if field.type.equals(target) or _same_kind(field.type, target):
            continue
        if not (_simple(field.type) and _simple(target)):
            continue  # nested, binary, ...: the engine decides (its errors are typed too)
        casts[field.name] = target
    if not casts:
        return data, new

    def cast_batch(batch: Any) -> Any:
        arrays = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            target = casts.get(name)
            if target is None:
                arrays.append(column)
                continue
            cast = _lossless(column, target)
            if cast is None:
                raise SchemaMismatchError(
                    f"{what}: column {name!r} is {target} in {where}; the data's {column.type} "
                    f"value {_first_bad(column, target)!r} cannot be stored as {target} "
                    "without loss, and a column's type never changes; nothing was written",
                    column=name,
                )
            arrays.append(cast)
        schema = pa.schema(
            [
                pa.field(n, casts[n]) if n in casts else batch.schema.field(n)
                for n in batch.schema.names
            ]
        )
        return type(batch).from_arrays(arrays, schema=schema)

    if isinstance(data, pa.Table):
        return cast_batch(data.combine_chunks()), new
    first_schema = pa.schema(
        [pa.field(f.name, casts[f.name]) if f.name in casts else f for f in data.schema]
    )

    def batches() -> Iterator[Any]:
        for batch in data:
            yield cast_batch(batch)

    return pa.RecordBatchReader.from_batches(first_schema, batches()), new
