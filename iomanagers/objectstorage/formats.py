"""File formats of the object-storage IO manager: the suffix table, writers and readers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from assetry.errors import SchemaMismatchError

if TYPE_CHECKING:
    import pyarrow as pa

#: URI suffix -> file format. No suffix means a parquet dataset directory.
FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".feather": "feather",
    ".arrow": "feather",
    ".ipc": "feather",
}


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def iter_batches(data: pa.Table | pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        yield from data.to_batches()
    else:
        yield from data


def writer_for(
    fmt: str,
    data: pa.Table | pa.RecordBatchReader,
    parquet_options: dict[str, Any],
    header: bool = True,
) -> tuple[Callable[[IO[bytes]], None], list[int]]:
    """A function writing ``data`` in ``fmt`` to a binary file, and a one-item list it fills
    with the number of rows written."""
    import pyarrow as pa

    rows = [0]

    def parquet(fh: IO[bytes]) -> None:
        import pyarrow.parquet as pq

        if isinstance(data, pa.Table):
            pq.write_table(data, fh, **parquet_options)
            rows[0] = data.num_rows
            return
        with pq.ParquetWriter(fh, data.schema, **parquet_options) as writer:
            for batch in data:
                writer.write_batch(batch)
                rows[0] += batch.num_rows

    def csv(fh: IO[bytes]) -> None:
        import pyarrow.csv as pcsv

        options = pcsv.WriteOptions(include_header=header)
        with pcsv.CSVWriter(fh, data.schema, write_options=options) as writer:
            for batch in iter_batches(data):
                writer.write_batch(batch)
                rows[0] += batch.num_rows

    def jsonl(fh: IO[bytes]) -> None:
        for batch in iter_batches(data):
            lines = [
                json.dumps(row, default=_json_default, ensure_ascii=False)
                for row in batch.to_pylist()
            ]
            if lines:
                fh.write(("\n".join(lines) + "\n").encode("utf-8"))
            rows[0] += batch.num_rows

    def feather(fh: IO[bytes]) -> None:
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with pa.ipc.new_file(fh, data.schema, options=options) as writer:
            for batch in iter_batches(data):
                writer.write_batch(batch)
                rows[0] += batch.num_rows

    writers = {"parquet": parquet, "csv": csv, "json": jsonl, "feather": feather}
    return writers[fmt], rows


def read_bytes(fmt: str, payload: Any) -> pa.Table:
    """Read a whole file (a path, a file object or a pyarrow buffer reader)."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(payload)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(payload)
    if fmt == "feather":
        import pyarrow.feather as feather

        return feather.read_table(payload)
    import pyarrow.json as pjson

    try:
        return pjson.read_json(payload)
    except pa.ArrowInvalid:
        # not JSON Lines: a JSON array of objects, as other tools write .json files
        if hasattr(payload, "seek"):
            payload.seek(0)
        raw = payload.read() if hasattr(payload, "read") else Path(payload).read_bytes()
        if isinstance(raw, pa.Buffer):
            raw = raw.to_pybytes()
        records = json.loads(raw)
        if not isinstance(records, list):
            raise
        return pa.Table.from_pylist(records)


def conform(new: pa.Table | pa.RecordBatchReader, schema: pa.Schema, what: str) -> Any:
    """``new`` with the columns and types of ``schema``, or a clear error if it cannot be."""
    names = list(schema.names)
    have = new.schema.names
    if sorted(have) != sorted(names):
        missing = [n for n in names if n not in have]
        extra = [n for n in have if n not in names]
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"new column(s) {', '.join(extra)}")
        raise SchemaMismatchError(
            f"{what}: the data does not match the existing columns ({'; '.join(parts)}); "
            'overwrite() to change the columns, or declare schema_evolution="add_columns"',
            column=(extra or missing)[0],
        )
    if new.schema.equals(schema):
        return new
    import pyarrow as pa

    try:
        if isinstance(new, pa.Table):
            return new.select(names).cast(schema)
        return pa.RecordBatchReader.from_batches(
            schema, (batch.select(names).cast(schema) for batch in new)
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaMismatchError(
            f"{what}: the data's types do not match the existing ones ({exc}); "
            "overwrite() to change the types"
        ) from None


def evolve(new: pa.Table | pa.RecordBatchReader, schema: pa.Schema, what: str) -> Any:
    """``new`` fitted to a dataset whose columns may grow (``schema_evolution="add_columns"``):
    stored columns cast losslessly (else :class:`SchemaMismatchError` naming the column),
    columns it lacks filled with nulls, new columns kept (readers see nulls in older files)."""
    import pyarrow as pa

    from ..table_schema import conform_columns

    table = new.read_all() if isinstance(new, pa.RecordBatchReader) else new
    table, _added = conform_columns(table, schema, what=what, where="the dataset", add_columns=True)
    for field in schema:
        if field.name not in table.schema.names:
            table = table.append_column(
                field.with_nullable(True), pa.nulls(table.num_rows, field.type)
            )
    return table
