"""A single file (parquet, csv, json lines, feather) on object storage."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from assetry import localfs
from assetry.urls import render_url

from .formats import conform, read_bytes, writer_for
from .handle import ObjectStorageHandle
from .location import forget_listings
from .publish import LOCAL_STAGING_DIR, local_staging, locked, write_buffer, write_remote

if TYPE_CHECKING:
    import pyarrow as pa
    from assetry import Asset

    from .location import Location
    from .manager import ObjectStorageIOManager

APPEND_RETRIES = 8


class FileHandle(ObjectStorageHandle):
    """One file (parquet, csv, json lines, feather); an insert rewrites it with the new rows
    appended, published atomically, and guarded against concurrent appenders."""

    kind = "file"

    def __init__(
        self,
        manager: ObjectStorageIOManager,
        asset: Asset,
        partition: str | None,
        loc: Location,
        fmt: str,
    ) -> None:
        super().__init__(manager, asset, partition, loc)
        self.format = fmt

    def _exists(self) -> bool:
        forget_listings(self.location)
        return bool(self.fs.isfile(self.location.path))

    def _read_table(self) -> pa.Table:
        import pyarrow as pa

        loc = self.location
        forget_listings(loc)
        try:
            if loc.kind == "local":
                return read_bytes(self.format, loc.path)
            if loc.kind == "memory":
                return read_bytes(self.format, pa.BufferReader(loc.fs.cat_file(loc.path)))
            if self.format == "parquet":  # ranged reads, column chunks fetched concurrently
                import pyarrow.parquet as pq

                return pq.read_table(loc.path, filesystem=loc.arrow_filesystem())
            with loc.fs.open(loc.path, "rb") as fh:
                return read_bytes(self.format, fh)
        except FileNotFoundError:
            raise self._not_written() from None

    def _write_data(
        self, data: pa.Table | pa.RecordBatchReader, mode: str
    ) -> tuple[int, int | None]:
        loc = self.location
        forget_listings(loc)
        with locked(loc, loc.path, exclusive=True):
            if loc.kind == "atomic-put" and mode == "insert":
                return self._append_conditionally(data)
            if mode == "insert" and self.exists():
                writer, rows = self._append_writer(data, self._current_bytes())
            else:
                writer, rows = writer_for(self.format, data, self.manager.parquet_options)
            nbytes = self._publish(writer)
            return rows[0], nbytes

    def _current_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.location.path))

    def _append_writer(
        self, data: pa.Table | pa.RecordBatchReader, current: bytes
    ) -> tuple[Callable[[IO[bytes]], None], list[int]]:
        """A writer of the file's current content followed by ``data``'s rows."""
        import pyarrow as pa

        what = f"asset {self.asset.name!r}"
        if self.format in {"parquet", "feather"}:
            old = read_bytes(self.format, pa.BufferReader(current))
            new = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
            new = conform(new, old.schema, what)
            writer, rows = writer_for(
                self.format, pa.concat_tables([old, new]), self.manager.parquet_options
            )
            added = [0]

            def rewrite(fh: IO[bytes]) -> None:
                writer(fh)
                added[0] = rows[0] - old.num_rows

            return rewrite, added
        if self.format == "csv":
            header_line = current.split(b"\n", 1)[0].decode("utf-8").strip("\r")
            import csv as pycsv

            header = next(pycsv.reader([header_line])) if header_line else []
            if header:
                if sorted(header) != sorted(data.schema.names):
                    raise ValueError(
                        f"{what}: the data's columns {data.schema.names} do not match the file's "
                        f"header {header}; overwrite() to change the columns"
                    )
                if isinstance(data, pa.RecordBatchReader):
                    data = data.read_all()
                data = data.select(header)
            body, rows = writer_for("csv", data, {}, header=not header)
        else:
            body, rows = writer_for(self.format, data, {})

        def append(fh: IO[bytes]) -> None:
            fh.write(current)
            if current and not current.endswith(b"\n"):
                fh.write(b"\n")
            body(fh)

        return append, rows

    def _publish(self, write: Callable[[IO[bytes]], None]) -> int:
        loc = self.location
        if loc.kind == "local":
            folder = os.path.dirname(loc.path) or "."
            os.makedirs(folder, exist_ok=True)
            with local_staging(folder) as staging:
                size = localfs.atomic_write(
                    loc.path, write, fsync=self.manager.fsync, staging_dir=staging.dir
                )
            return size
        if loc.kind == "memory":
            payload = write_buffer(write)
            loc.fs.pipe_file(loc.path, payload)
            return len(payload)
        if loc.kind == "atomic-put":
            return write_remote(loc.fs, loc.path, write)
        staged = f"{loc.parent()}/{LOCAL_STAGING_DIR}/{localfs.new_id()}-{loc.path.rsplit('/', 1)[-1]}.tmp"
        loc.fs.makedirs(staged.rsplit("/", 1)[0], exist_ok=True)
        try:
            size = write_remote(loc.fs, staged, write)
            loc.fs.mv(staged, loc.path)
        finally:
            with contextlib.suppress(Exception):
                loc.fs.rm(staged)
        return size

    def _append_conditionally(
        self, data: pa.Table | pa.RecordBatchReader
    ) -> tuple[int, int | None]:
        """Read-modify-write with ``If-Match``/``If-None-Match``: a concurrent appender makes
        the PUT fail, and the append is redone on the new content (no lost rows)."""
        import pyarrow as pa

        loc = self.location
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        for _attempt in range(APPEND_RETRIES):
            try:
                info = loc.fs.info(loc.path)
                current: bytes | None = bytes(loc.fs.cat_file(loc.path))
                etag = info.get("ETag") or info.get("etag")
            except FileNotFoundError:
                current, etag = None, None
            if current is None:
                writer, rows = writer_for(self.format, data, self.manager.parquet_options)
                condition = {"IfNoneMatch": "*"}
            else:
                writer, rows = self._append_writer(data, current)
                condition = {"IfMatch": etag} if etag else {}
            payload = write_buffer(writer)
            try:
                loc.fs.pipe_file(loc.path, payload, **condition)
            except OSError as exc:
                if isinstance(exc, FileExistsError) or "pre-condition" in str(exc).lower():
                    loc.fs.invalidate_cache(loc.path)
                    continue
                raise
            return rows[0], len(payload)
        raise OSError(
            f"asset {self.asset.name!r}: {APPEND_RETRIES} concurrent writers changed "
            f"{render_url(self.asset.uri)!r} while appending; retry the insert"
        )
