"""A parquet dataset folder on object storage: part files and hive-style partition folders.

An insert adds part files; an overwrite of the dataset or of a partition builds the new
content completely before the old goes (a folder swap on local disks, a journal on object
stores, see the package's docstring).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from assetry import AssetValueError, StoreValueError, localfs
from assetry.retry import Backoff
from assetry.values import validate_partition_key

from .formats import conform, evolve, writer_for
from .handle import ObjectStorageHandle
from .location import forget_listings
from .publish import (
    CONTROL_DIR,
    STALE_STAGING_SECONDS,
    check_local_name,
    local_staging,
    locked,
    part_name,
    write_buffer,
    write_remote,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from assetry import Asset

    from .location import Location
    from .manager import ObjectStorageIOManager

DEFAULT_PARTITION_COLUMN = "partition_key"
READ_RETRIES = 5
#: Pauses between reads of a dataset that an overwrite replaced while it was being read.
_REREAD_BACKOFF = Backoff(base=0.01, cap=0.05, jitter=False, max_attempts=READ_RETRIES)


class DatasetHandle(ObjectStorageHandle):
    """A parquet dataset folder: part files, hive-style partition folders."""

    kind = "dataset"

    def __init__(
        self, manager: ObjectStorageIOManager, asset: Asset, partition: str | None, loc: Location
    ) -> None:
        super().__init__(manager, asset, partition, loc)
        self.partition_column = asset.partition_column or DEFAULT_PARTITION_COLUMN
        if partition is not None and loc.kind == "local":
            check_local_name(asset, self._segment(partition))

    # -- layout ------------------------------------------------------------------------------

    def _segment(self, value: str) -> str:
        return f"{self.partition_column}={quote(value, safe='')}"

    @property
    def scope(self) -> str:
        """The folder this handle reads and replaces: the partition's, or the dataset's."""
        if self.partition is None:
            return self.location.path
        return self.location.join(self._segment(self.partition))

    def _visible_files(self, under: str) -> list[str]:
        """Data files under ``under`` that dataset readers see (no ``.``/``_`` segments)."""
        fs = self.location.fs
        root = self.location.path.rstrip("/")
        try:
            found = fs.find(under)
        except FileNotFoundError:
            return []
        files = []
        for path in found:
            rel = path[len(root) :].lstrip("/") if path.startswith(root) else path
            parts = rel.split("/")
            if any(p.startswith((".", "_")) for p in parts):
                continue
            if parts[-1].endswith(".parquet"):
                files.append(path)
        return sorted(files)

    def _journal_dir(self) -> str:
        return self.location.join(CONTROL_DIR, "journal")

    def _journals(self) -> list[dict[str, Any]]:
        fs = self.location.fs
        try:
            names = fs.ls(self._journal_dir(), detail=False)
        except FileNotFoundError:
            return []
        out = []
        for name in sorted(names):
            if not name.endswith(".json"):
                continue
            try:
                out.append(json.loads(fs.cat_file(name)))
            except (FileNotFoundError, ValueError):
                continue  # finished (or never committed) meanwhile
        return out

    def _files(self) -> list[str]:
        """The files making up this handle's scope, as of the last committed write."""
        forget_listings(self.location)
        files = self._visible_files(self.scope)
        if self.location.kind == "local":
            return files
        journals = self._journals()
        if not journals:
            return files
        view = set(files)
        fs = self.location.fs
        for journal in journals:
            view -= set(journal["old"])
            for staged, final in journal["new"]:
                if final.startswith(self.scope.rstrip("/") + "/") or final == self.scope:
                    view.discard(final)
                    view.add(final if fs.exists(final) else staged)
        return sorted(view)

    def _partitioning(self, files: list[str]) -> Any:
        import pyarrow as pa
        import pyarrow.dataset as ds

        prefix = f"/{self.partition_column}="
        if any(prefix in f[len(self.location.path) :] for f in files):
            return ds.partitioning(pa.schema([(self.partition_column, pa.string())]), flavor="hive")
        return ds.HivePartitioning.discover(infer_dictionary=False)

    def _dataset(self, files: list[str]) -> Any:
        import pyarrow as pa
        import pyarrow.dataset as ds

        schema = None
        if self._evolves:
            # columns added over time: every part file's columns, nulls where a file lacks one
            schema = self._unified_schema(files)
            prefix = f"/{self.partition_column}="
            hive = any(prefix in f[len(self.location.path) :] for f in files)
            if hive and self.partition_column not in schema.names:
                schema = schema.append(pa.field(self.partition_column, pa.string()))
        return ds.dataset(
            files,
            schema=schema,
            format="parquet",
            filesystem=self.location.arrow_filesystem(),
            partitioning=self._partitioning(files),
            partition_base_dir=self.location.path,
        )

    @property
    def _evolves(self) -> bool:
        """Whether the asset lets writes add columns (``schema_evolution="add_columns"``)."""
        return self.asset.schema_evolution == "add_columns"

    def _unified_schema(self, files: list[str]) -> pa.Schema:
        """The union of the part files' columns (a key scan of every file's footer)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs = self.location.arrow_filesystem()
        return pa.unify_schemas([pq.read_schema(f, filesystem=fs) for f in files])

    # -- reading -----------------------------------------------------------------------------

    def _exists(self) -> bool:
        return bool(self._files())

    def _read_table(self) -> pa.Table:
        for attempt in range(READ_RETRIES):
            files = self._files()
            if not files:
                if self.partition is not None:
                    whole = DatasetHandle(self.manager, self.asset, None, self.location)._files()
                    if whole:
                        return self._dataset(whole[:1]).schema.empty_table()
                raise self._not_written()
            try:
                return self._dataset(files).to_table()
            except FileNotFoundError:
                # an overwrite replaced the files between listing and reading: list again
                if _REREAD_BACKOFF.exhausted(attempt + 1):
                    raise
                _REREAD_BACKOFF.sleep(attempt + 1)
        raise AssertionError("unreachable")

    def _stored_keys(self, columns: list[str], keys: pa.Table, mode: str) -> pa.Table:
        """A key scan: the ``columns`` of the dataset's part files (the partition an
        overwrite replaces left out), semi-joined with ``keys``."""
        from assetry.iomanager import semi_join_keys

        if mode == "overwrite" and self.partition is None:
            return keys.slice(0, 0)
        files = DatasetHandle(self.manager, self.asset, None, self.location)._files()
        if mode == "overwrite":
            replaced = set(self._files())
            files = [f for f in files if f not in replaced]
        if not files:
            return keys.slice(0, 0)
        stored = self._dataset(files).to_table(columns=columns)
        return semi_join_keys(stored, keys, columns)

    # -- writing -----------------------------------------------------------------------------

    def _split(self, data: pa.Table | pa.RecordBatchReader) -> list[tuple[str | None, Any]]:
        """(partition, data without the partition column) pieces to write."""
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.partition_column
        if col not in data.schema.names:
            return [(self.partition, data)]
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        column = table.column(col)
        if column.null_count:
            raise AssetValueError(
                f"asset {self.asset.name!r}: the partition column {col!r} has null values; "
                "every row needs a partition"
            )
        values = pc.cast(column, pa.string()) if not pa.types.is_string(column.type) else column
        for value in pc.unique(values).to_pylist():
            self._check_partition_value(value)
        rest = table.drop_columns([col])
        if self.partition is not None:
            others = pc.unique(pc.filter(values, pc.not_equal(values, self.partition)))
            if len(others):
                raise ValueError(
                    f"asset {self.asset.name!r}: writing partition {self.partition!r} but the "
                    f"column {col!r} also holds {others.to_pylist()[:3]}; write each partition "
                    "through its own handle"
                )
            return [(self.partition, rest)]
        if table.num_rows == 0:
            return [(self.partition, rest)]
        pieces = []
        for value in pc.unique(values).to_pylist():
            pieces.append((value, rest.filter(pc.equal(values, value))))
        return pieces

    def _check_partition_value(self, value: str) -> None:
        """Refuse a partition value that cannot name a folder here, before anything is
        staged, so a write spanning several partitions fails whole."""
        col = self.partition_column
        try:
            validate_partition_key(value)
            if self.location.kind == "local":
                check_local_name(self.asset, self._segment(value))
        except (StoreValueError, AssetValueError) as exc:
            raise AssetValueError(
                f"asset {self.asset.name!r}: the partition column {col!r} holds the value "
                f"{value[:40]!r}{'...' if len(value) > 40 else ''}, which cannot be a "
                f"partition: {exc}; nothing was written"
            ) from None

    def _dir_for(self, partition: str | None) -> str:
        if partition is None:
            return self.location.path
        return self.location.join(self._segment(partition))

    def _existing_schema(self, exclude_partition: bool = True) -> pa.Schema | None:
        """The schema of the dataset's data files, to keep appended parts readable together."""
        import pyarrow.parquet as pq

        files = DatasetHandle(self.manager, self.asset, None, self.location)._files()
        if not files:
            return None
        fs = self.location.arrow_filesystem()
        if self._evolves:
            schema = self._unified_schema(files)
        else:
            schema = pq.read_schema(files[0], filesystem=fs)
        if exclude_partition and self.partition_column in schema.names:
            schema = schema.remove(schema.get_field_index(self.partition_column))
        return schema

    def _write_data(
        self, data: pa.Table | pa.RecordBatchReader, mode: str
    ) -> tuple[int, int | None]:
        loc = self.location
        if loc.kind not in {"local"}:
            self._recover()
        pieces = self._split(data)
        if mode == "insert":
            schema = self._existing_schema()
            if schema is not None:
                what = f"asset {self.asset.name!r}"
                fit = evolve if self._evolves else conform
                pieces = [(p, fit(piece, schema, what)) for p, piece in pieces]
            with locked(loc, loc.path, exclusive=False):
                if loc.kind == "local":
                    return self._insert_local(pieces)
                if len(pieces) == 1:
                    return self._insert_part(self._dir_for(pieces[0][0]), pieces[0][1])
                return self._publish_journaled(pieces, replace=False)
        with locked(loc, loc.path, exclusive=True):
            if loc.kind == "local":
                return self._overwrite_local(pieces)
            return self._publish_journaled(pieces, replace=True)

    def _insert_part(self, folder: str, data: Any) -> tuple[int, int]:
        """Add one part file to ``folder`` on an object store, published atomically."""
        loc = self.location
        writer, rows = writer_for("parquet", data, self.manager.parquet_options)
        final = f"{folder}/{part_name()}"
        if loc.kind == "memory":
            payload = write_buffer(writer)
            loc.fs.pipe_file(final, payload)
            return rows[0], len(payload)
        if loc.kind == "atomic-put":
            size = write_remote(loc.fs, final, writer)
            return rows[0], size
        staged = self._staging_path(localfs.new_id(), final)
        size = write_remote(loc.fs, staged, writer)
        loc.fs.mv(staged, final)
        return rows[0], size

    def _insert_local(self, pieces: list[tuple[str | None, Any]]) -> tuple[int, int]:
        """Stage one part file per partition, then publish them all; a failure before the
        last is published withdraws those already published."""
        rows = nbytes = 0
        with local_staging(self.location.parent()) as staging:
            staged: list[tuple[str, str]] = []
            for partition, piece in pieces:
                writer, r = writer_for("parquet", piece, self.manager.parquet_options)
                name = part_name()
                temp = os.path.join(staging.dir, f"{len(staged)}-{name}.tmp")
                nbytes += localfs.write_file(temp, writer, fsync=self.manager.fsync)
                rows += r[0]
                staged.append((temp, f"{self._dir_for(partition)}/{name}"))
            published: list[str] = []
            try:
                for temp, final in staged:
                    os.makedirs(os.path.dirname(final), exist_ok=True)
                    localfs.publish(temp, final, exclusive=False)
                    published.append(final)
                    if self.manager.fsync:
                        localfs.fsync_dir(os.path.dirname(final))
            except BaseException:
                for final in published:
                    with contextlib.suppress(OSError):
                        os.unlink(final)
                raise
        return rows, nbytes

    def _overwrite_local(self, pieces: list[tuple[str | None, Any]]) -> tuple[int, int]:
        """Build the new folder in staging, then swap it in with one atomic exchange."""
        rows = nbytes = 0
        target = self.scope
        with local_staging(self.location.parent()) as staging:
            new = os.path.join(staging.dir, "new")
            os.makedirs(new)
            for partition, piece in pieces:
                folder = new
                if partition is not None and partition != self.partition:
                    folder = os.path.join(new, self._segment(partition))
                os.makedirs(folder, exist_ok=True)
                writer, r = writer_for("parquet", piece, self.manager.parquet_options)
                name = part_name() + ".tmp"
                nbytes += localfs.write_file(
                    os.path.join(folder, name), writer, fsync=self.manager.fsync
                )
                rows += r[0]
                os.rename(os.path.join(folder, name), os.path.join(folder, name[: -len(".tmp")]))
            if self.manager.fsync:
                localfs.fsync_dir(new)
            localfs.swap_dir(new, target)
            if self.manager.fsync:
                localfs.fsync_dir(os.path.dirname(target))
        return rows, nbytes

    # -- journaled overwrite (object stores) -------------------------------------------------

    def _staging_path(self, txid: str, final: str) -> str:
        rel = final[len(self.location.path) :].lstrip("/")
        return self.location.join(CONTROL_DIR, "staging", txid, rel + ".tmp")

    def _publish_journaled(
        self, pieces: list[tuple[str | None, Any]], *, replace: bool
    ) -> tuple[int, int]:
        """Stage every piece, then commit them in one journal write (replacing the scope's
        files when ``replace``): a failure before the journal leaves nothing visible."""
        loc = self.location
        fs = loc.fs
        txid = localfs.new_id()
        moves: list[tuple[str, str]] = []
        rows = nbytes = 0
        for partition, piece in pieces:
            folder = self.scope if partition in (None, self.partition) else self._dir_for(partition)
            final = f"{folder}/{part_name()}"
            staged = self._staging_path(txid, final)
            writer, r = writer_for("parquet", piece, self.manager.parquet_options)
            if loc.kind == "memory":
                payload = write_buffer(writer)
                fs.pipe_file(staged, payload)
                nbytes += len(payload)
            else:
                nbytes += write_remote(fs, staged, writer)
            rows += r[0]
            moves.append((staged, final))
        old = self._files() if replace else []
        journal = {"txid": txid, "scope": self.scope, "old": old, "new": moves}
        fs.pipe_file(f"{self._journal_dir()}/{txid}.json", json.dumps(journal).encode())
        self._apply(journal)
        return rows, nbytes

    def _apply(self, journal: dict[str, Any]) -> None:
        """Roll a committed journal forward: copy new files in, delete the old, clean up."""
        fs = self.location.fs
        for staged, final in journal["new"]:
            if fs.exists(final):
                continue
            try:
                fs.copy(staged, final)
            except FileNotFoundError:
                # another writer rolled this journal forward meanwhile; it copies every
                # file in before it removes the staged ones
                fs.invalidate_cache(final)
                if not fs.exists(final):
                    raise
        old = [p for p in journal["old"] if p not in {f for _, f in journal["new"]}]
        if old:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(old)
        with contextlib.suppress(FileNotFoundError):
            fs.rm([s for s, _ in journal["new"]])
        with contextlib.suppress(FileNotFoundError):
            fs.rm(f"{self._journal_dir()}/{journal['txid']}.json")
        with contextlib.suppress(FileNotFoundError):
            fs.rm(self.location.join(CONTROL_DIR, "staging", journal["txid"]), recursive=True)

    def _recover(self) -> None:
        """Finish overwrites a crashed writer committed; drop old uncommitted staging."""
        forget_listings(self.location)
        for journal in self._journals():
            self._apply(journal)
        fs = self.location.fs
        staging = self.location.join(CONTROL_DIR, "staging")
        try:
            entries = fs.ls(staging, detail=False)
        except FileNotFoundError:
            return
        now = time.time_ns()
        for entry in entries:
            try:
                born = int(entry.rstrip("/").rsplit("/", 1)[-1].split("-", 1)[0])
            except ValueError:
                continue
            if (now - born) / 1e9 > STALE_STAGING_SECONDS:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(entry, recursive=True)
