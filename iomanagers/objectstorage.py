"""The fsspec IO manager: dataframes as files on object storage (s3, gs, az, file, memory, ...).

The format comes from the URI's suffix (``.parquet``, ``.csv``, ``.json``/``.jsonl``,
``.feather``/``.arrow``); a URI without a suffix is a parquet dataset directory of part files
with hive-style partition folders (``key=value/``), readable by ``pyarrow.dataset`` and
DuckDB as it is.

Nothing a reader can see is ever partial:

* A single file is staged and then published in one step: ``os.replace`` from a hidden
  ``.assetry-staging`` folder beside it on local disks; one PUT (or a multipart upload,
  invisible until completed) on object stores.
* A dataset insert adds one part file, published the same way.
* Overwriting a dataset or a partition builds the new content completely before the old
  goes. On local disks the new folder is swapped in with one ``renameat2(RENAME_EXCHANGE)``.
  Object stores cannot swap many objects at once, so the new files are staged under the
  hidden ``.assetry/`` prefix and a journal listing what replaces what is written (the
  commit point) before they are copied into place and the old files deleted. Readers through
  this IO manager read the journal's view; the next writer finishes (or discards) whatever a
  crashed writer left. Staged names never end in ``.parquet``, so ``**/*.parquet`` globs skip
  them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from assetry import AssetHandle, AssetNotFoundError, AssetValueError, IOManager, PluginError
from assetry.config import storage_options_for
from assetry.plugins import INSTALL_HINTS
from assetry.retry import Backoff
from assetry.uri import mask_url, uri_scheme
from assetry.values import validate_partition_key

if TYPE_CHECKING:
    import fsspec
    import pyarrow as pa
    from assetry import Asset, Settings
    from upath import UPath

__all__ = ["FORMATS", "ObjectStorageHandle", "ObjectStorageIOManager"]

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

#: Protocols whose single PUT (or completed multipart upload) is atomic.
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})

DEFAULT_PARTITION_COLUMN = "partition_key"
CONTROL_DIR = ".assetry"  # inside a dataset on object stores: staging/ and journal/
LOCAL_STAGING_DIR = ".assetry-staging"  # beside a local file or dataset
STALE_STAGING_SECONDS = 3600.0
APPEND_RETRIES = 8
READ_RETRIES = 5
#: Pauses between reads of a dataset that an overwrite replaced while it was being read.
_REREAD_BACKOFF = Backoff(base=0.01, cap=0.05, jitter=False, max_attempts=READ_RETRIES)

_memory_locks: dict[str, threading.RLock] = {}
_memory_locks_guard = threading.Lock()


# -- the IO manager --------------------------------------------------------------------------


class ObjectStorageIOManager(IOManager):
    """Reads and writes dataframes as files on any fsspec filesystem.

    Options (``io_manager_options={"objectstorage": {...}}``): ``redirect_to`` maps every
    asset URI under one root (``memory://tests`` -> ``s3://b/k`` lands at
    ``memory://tests/s3/b/k``), for tests (a ``memory://`` root is removed by
    :meth:`close`); ``fsync`` (default True) flushes local files to
    disk before publishing them; ``parquet_options`` are passed to ``pyarrow.parquet``'s
    writer (``compression``, ``row_group_size``, ...).
    """

    name = "objectstorage"
    schemes = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file", "memory")

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        redirect_to: str | None = None,
        fsync: bool = True,
        parquet_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(settings=settings, **options)
        if redirect_to is not None and not uri_scheme(redirect_to):
            raise ValueError(
                f"redirect_to must be a URI such as memory://tests, not {redirect_to!r}"
            )
        self.redirect_to = redirect_to.rstrip("/") if redirect_to else None
        self.fsync = fsync
        self.parquet_options = dict(parquet_options or {})

    def close(self) -> None:
        """Drop a ``memory://`` redirect root: it holds this manager's test data only."""
        if self.redirect_to and uri_scheme(self.redirect_to) == "memory":
            import fsspec

            fs = fsspec.filesystem("memory")
            with contextlib.suppress(FileNotFoundError):
                fs.rm(self.redirect_to, recursive=True)

    @classmethod
    def serves(cls, scheme: str) -> bool:
        if scheme in cls.schemes:
            return True
        import fsspec

        return scheme in fsspec.available_protocols()

    def location(self, uri: str, conn_id: str | None = None) -> Location:
        """Where ``uri``'s data lives: the filesystem (with the connection's options) and path."""
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        target = uri.split("?", 1)[0].split("#", 1)[0]
        if self.redirect_to is not None:
            scheme, _, rest = target.partition("://")
            if any(segment in (".", "..") for segment in rest.split("/")):
                raise AssetValueError(
                    f"asset URI {mask_url(uri)!r} has a '.' or '..' segment, which would lead "
                    f"out of the redirect root {self.redirect_to!r}; remove it"
                )
            target = f"{self.redirect_to}/{scheme}/{rest.lstrip('/')}"
            options: dict[str, Any] = {}
        else:
            options = storage_options_for(uri, conn_id, self.settings)
        try:
            fs, path = fsspec.core.url_to_fs(target, **options)
        except ImportError as exc:
            scheme = uri_scheme(target)
            hint = INSTALL_HINTS.get(scheme)
            raise PluginError(
                f"cannot open {mask_url(uri)!r}: {exc}" + (f"; try: {hint}" if hint else "")
            ) from None
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        kind = (
            "local"
            if isinstance(fs, LocalFileSystem)
            else "memory"
            if protocol == "memory"
            else "atomic-put"
            if protocol in ATOMIC_PUT_PROTOCOLS
            else "other"
        )
        path = path.rstrip("/") or path
        return Location(fs=fs, path=path, kind=kind, uri=target, storage_options=options)

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> ObjectStorageHandle:
        if partition is not None:
            validate_partition_key(partition)
        loc = self.location(asset.uri, conn_id)
        if loc.kind == "local":
            for component in loc.path.split("/"):
                _check_local_name(asset, component)
        name = loc.path.rstrip("/").rsplit("/", 1)[-1]
        suffix = os.path.splitext(name)[1].lower()
        if suffix and suffix not in FORMATS and not loc.fs.isdir(loc.path):
            known = ", ".join(sorted(FORMATS))
            raise AssetValueError(
                f"asset {asset.name!r}: cannot tell the format of {mask_url(asset.uri)!r} from its "
                f"suffix {suffix!r}; use one of {known}, or no suffix for a parquet dataset folder"
            )
        is_dataset = not suffix or (FORMATS.get(suffix) == "parquet" and loc.fs.isdir(loc.path))
        if is_dataset:
            return DatasetHandle(self, asset, partition, loc)
        if partition is not None:
            raise AssetValueError(
                f"asset {asset.name!r} is the single file {mask_url(asset.uri)!r}, which has no "
                "partitions; give the asset a folder URI (no suffix) to write partitions"
            )
        return FileHandle(self, asset, partition, loc, FORMATS[suffix])


@dataclass(frozen=True)
class Location:
    """A resolved asset location: the fsspec filesystem, the path on it, and its kind
    (``local``, ``memory``, ``atomic-put`` object store, or ``other``)."""

    fs: fsspec.AbstractFileSystem
    path: str
    kind: str
    uri: str
    storage_options: dict[str, Any]

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def parent(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[0] or "/"

    def arrow_filesystem(self) -> Any:
        """The filesystem to hand to pyarrow: its own for local paths, else a wrapper."""
        if self.kind == "local":
            return None
        import pyarrow.fs as pafs

        if self.kind == "memory":
            return pafs.PyFileSystem(_MemoryHandler(self.fs))
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))


def _memory_handler_base() -> type:
    import pyarrow.fs as pafs

    return pafs.FSSpecHandler


class _MemoryHandler(_memory_handler_base()):  # type: ignore[misc]
    """fsspec's memory files are shared objects with one position: read them as bytes."""

    def open_input_file(self, path: str) -> Any:
        import pyarrow as pa

        return pa.BufferReader(self.fs.cat_file(path))

    def open_input_stream(self, path: str) -> Any:
        return self.open_input_file(path)


# -- locks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(loc: Location, path: str, *, exclusive: bool) -> Iterator[None]:
    """Serialise writers of ``path``: an flock on local disks (released if the process
    dies), a process lock for memory://. Object stores use conditional writes instead."""
    if loc.kind == "memory":
        with _memory_locks_guard:
            lock = _memory_locks.setdefault(path, threading.RLock())
        with lock:
            yield
        return
    if loc.kind != "local":
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder = os.path.join(tempfile.gettempdir(), "assetry-locks")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    fd = os.open(os.path.join(folder, f"{digest}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- publishing ------------------------------------------------------------------------------


#: The longest file or folder name a local disk takes (255 bytes on ext4, APFS, NTFS), less
#: the ``.tmp`` suffix a file is staged under.
MAX_LOCAL_NAME_BYTES = 255 - len(".tmp")


def _check_local_name(asset: Asset, name: str) -> None:
    """Refuse a path component a local disk cannot hold, before anything is written."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_LOCAL_NAME_BYTES:
        raise AssetValueError(
            f"asset {asset.name!r}: the path component {name[:40]!r}... is {size} bytes long; a "
            f"local file or folder name can be at most {MAX_LOCAL_NAME_BYTES} bytes here"
        )


def _forget_listings(loc: Location) -> None:
    """Drop the filesystem's cached listings of ``loc``, its folders and their parents.

    s3fs (and other object stores) cache directory listings per process and answer
    ``exists``/``isfile``/sizes from them: once another process overwrote the data, a
    reader would trust deleted files or miss new ones (FileNotFoundError, or a wrong
    size). Each read or write of a handle starts from what the store holds now.
    """
    cache = getattr(loc.fs, "dircache", None)
    if loc.kind in ("local", "memory") or not cache:
        return
    root = loc.fs._strip_protocol(loc.path).rstrip("/")
    for key in list(cache):
        name = str(key).rstrip("/")
        if name == root or name.startswith(root + "/") or root.startswith(name + "/"):
            cache.pop(key, None)


def _new_id() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def _part_name() -> str:
    return f"part-{_new_id()}.parquet"


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_local(path: str, write: Callable[[IO[bytes]], None], fsync: bool) -> int:
    import pyarrow as pa

    # a native file: pyarrow writes to it without going through Python for every chunk
    with pa.OSFile(path, "wb") as fh:
        write(fh)  # type: ignore[arg-type]
        size = fh.tell()
    if fsync:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return int(size)


def _write_remote(
    fs: fsspec.AbstractFileSystem, path: str, write: Callable[[IO[bytes]], None]
) -> int:
    """One upload, committed only when ``write`` completes; discarded if it raises."""
    fh = fs.open(path, "wb")
    try:
        write(fh)
        size = fh.tell()
    except BaseException:
        with contextlib.suppress(Exception):
            fh.discard()
        with contextlib.suppress(Exception):
            fh.closed = True  # fsspec files commit on close(): skip it
        raise
    fh.close()
    return int(size)


def _write_buffer(write: Callable[[IO[bytes]], None]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


class _LocalStaging:
    """A hidden staging folder beside ``anchor`` on a local disk (same filesystem, so
    ``os.replace`` and ``renameat2`` are atomic); removed when empty."""

    def __init__(self, anchor_dir: str) -> None:
        self.root = os.path.join(anchor_dir, LOCAL_STAGING_DIR)
        self.dir = os.path.join(self.root, _new_id())

    def __enter__(self) -> _LocalStaging:
        for attempt in range(3):
            try:
                os.makedirs(self.dir, exist_ok=True)
                break
            except FileNotFoundError:  # another writer removed the empty root meanwhile
                if attempt == 2:
                    raise
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        _sweep_local_staging(self.root)
        with contextlib.suppress(OSError):
            os.rmdir(self.root)


def _sweep_local_staging(root: str) -> None:
    """Remove staging folders left by writers that died long ago."""
    try:
        entries = os.listdir(root)
    except OSError:
        return
    now = time.time_ns()
    for entry in entries:
        try:
            born = int(entry.split("-", 1)[0])
        except ValueError:
            continue
        if (now - born) / 1e9 > STALE_STAGING_SECONDS:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


_RENAME_EXCHANGE = 2
_libc: Any = None


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where that is unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        except OSError:
            _libc = False
    func = getattr(_libc, "renameat2", None) if _libc else None
    if func is None:
        return False
    at_fdcwd = -100
    result = func(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


def _swap_local_dir(staged: str, target: str) -> None:
    """Make ``staged`` the folder at ``target``; what was there goes back to ``staged``."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
        try:
            os.rename(staged, target)
            os.makedirs(staged)  # keep the caller's cleanup uniform
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if _exchange(staged, target):
        return
    # no atomic swap on this platform: two renames, with a brief window without the folder
    aside = staged + ".old"
    os.rename(target, aside)
    os.rename(staged, target)
    os.rename(aside, staged)


# -- formats ---------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _iter_batches(data: pa.Table | pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        yield from data.to_batches()
    else:
        yield from data


def _writer_for(
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
            for batch in _iter_batches(data):
                writer.write_batch(batch)
                rows[0] += batch.num_rows

    def jsonl(fh: IO[bytes]) -> None:
        for batch in _iter_batches(data):
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
            for batch in _iter_batches(data):
                writer.write_batch(batch)
                rows[0] += batch.num_rows

    writers = {"parquet": parquet, "csv": csv, "json": jsonl, "feather": feather}
    return writers[fmt], rows


def _read_bytes(fmt: str, payload: Any) -> pa.Table:
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


def _conform(new: pa.Table | pa.RecordBatchReader, schema: pa.Schema, what: str) -> Any:
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
        raise ValueError(
            f"{what}: the data does not match the existing columns ({'; '.join(parts)}); "
            "overwrite() to change the columns"
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
        raise ValueError(
            f"{what}: the data's types do not match the existing ones ({exc}); "
            "overwrite() to change the types"
        ) from None


# -- handles ---------------------------------------------------------------------------------


class ObjectStorageHandle(AssetHandle):
    """A handle on a file or dataset on object storage; ``path`` is its universal path."""

    kind: ClassVar[str] = ""

    def __init__(
        self, manager: ObjectStorageIOManager, asset: Asset, partition: str | None, loc: Location
    ) -> None:
        super().__init__(asset, partition)
        self.manager = manager
        self.location = loc

    @property
    def path(self) -> UPath:
        """The asset's location as a universal-pathlib path (with the connection's options)."""
        from upath import UPath

        return UPath(self.location.uri, **self.location.storage_options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self.location.fs

    def __repr__(self) -> str:
        part = f", partition={self.partition!r}" if self.partition is not None else ""
        return f"{type(self).__name__}({mask_url(self.asset.uri)!r}{part})"

    def _not_written(self) -> AssetNotFoundError:
        what = f"partition {self.partition!r} of asset" if self.partition else "asset"
        return AssetNotFoundError(
            f"{what} {self.asset.name!r} has no data at {mask_url(self.asset.uri)!r} yet; "
            "write it first (exists() tells)"
        )


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

    def exists(self) -> bool:
        _forget_listings(self.location)
        return bool(self.fs.isfile(self.location.path))

    def to_pyarrow(self) -> pa.Table:
        import pyarrow as pa

        loc = self.location
        _forget_listings(loc)
        try:
            if loc.kind == "local":
                return _read_bytes(self.format, loc.path)
            if loc.kind == "memory":
                return _read_bytes(self.format, pa.BufferReader(loc.fs.cat_file(loc.path)))
            if self.format == "parquet":  # ranged reads, column chunks fetched concurrently
                import pyarrow.parquet as pq

                return pq.read_table(loc.path, filesystem=loc.arrow_filesystem())
            with loc.fs.open(loc.path, "rb") as fh:
                return _read_bytes(self.format, fh)
        except FileNotFoundError:
            raise self._not_written() from None

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        loc = self.location
        _forget_listings(loc)
        with _locked(loc, loc.path, exclusive=True):
            if loc.kind == "atomic-put" and mode == "insert":
                return self._append_conditionally(data)
            if mode == "insert" and self.exists():
                writer, rows = self._append_writer(data, self._current_bytes())
            else:
                writer, rows = _writer_for(self.format, data, self.manager.parquet_options)
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
            old = _read_bytes(self.format, pa.BufferReader(current))
            new = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
            new = _conform(new, old.schema, what)
            writer, rows = _writer_for(
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
            body, rows = _writer_for("csv", data, {}, header=not header)
        else:
            body, rows = _writer_for(self.format, data, {})

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
            with _LocalStaging(folder) as staging:
                staged = os.path.join(staging.dir, os.path.basename(loc.path) + ".tmp")
                size = _write_local(staged, write, self.manager.fsync)
                os.replace(staged, loc.path)
                if self.manager.fsync:
                    _fsync_dir(folder)
            return size
        if loc.kind == "memory":
            payload = _write_buffer(write)
            loc.fs.pipe_file(loc.path, payload)
            return len(payload)
        if loc.kind == "atomic-put":
            return _write_remote(loc.fs, loc.path, write)
        staged = f"{loc.parent()}/{LOCAL_STAGING_DIR}/{_new_id()}-{loc.path.rsplit('/', 1)[-1]}.tmp"
        loc.fs.makedirs(staged.rsplit("/", 1)[0], exist_ok=True)
        try:
            size = _write_remote(loc.fs, staged, write)
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
                writer, rows = _writer_for(self.format, data, self.manager.parquet_options)
                condition = {"IfNoneMatch": "*"}
            else:
                writer, rows = self._append_writer(data, current)
                condition = {"IfMatch": etag} if etag else {}
            payload = _write_buffer(writer)
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
            f"{mask_url(self.asset.uri)!r} while appending; retry the insert"
        )


class DatasetHandle(ObjectStorageHandle):
    """A parquet dataset folder: part files, hive-style partition folders."""

    kind = "dataset"

    def __init__(
        self, manager: ObjectStorageIOManager, asset: Asset, partition: str | None, loc: Location
    ) -> None:
        super().__init__(manager, asset, partition, loc)
        self.partition_column = asset.partition_column or DEFAULT_PARTITION_COLUMN
        if partition is not None and loc.kind == "local":
            _check_local_name(asset, self._segment(partition))

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
        _forget_listings(self.location)
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
        import pyarrow.dataset as ds

        return ds.dataset(
            files,
            format="parquet",
            filesystem=self.location.arrow_filesystem(),
            partitioning=self._partitioning(files),
            partition_base_dir=self.location.path,
        )

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        return bool(self._files())

    def to_pyarrow(self) -> pa.Table:
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
            raise ValueError(
                f"asset {self.asset.name!r}: the partition column {col!r} has null values; "
                "every row needs a partition"
            )
        values = pc.cast(column, pa.string()) if not pa.types.is_string(column.type) else column
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
        schema = pq.read_schema(files[0], filesystem=fs)
        if exclude_partition and self.partition_column in schema.names:
            schema = schema.remove(schema.get_field_index(self.partition_column))
        return schema

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        loc = self.location
        if loc.kind not in {"local"}:
            self._recover()
        pieces = self._split(data)
        if mode == "insert":
            schema = self._existing_schema()
            if schema is not None:
                what = f"asset {self.asset.name!r}"
                pieces = [(p, _conform(piece, schema, what)) for p, piece in pieces]
            rows = nbytes = 0
            with _locked(loc, loc.path, exclusive=False):
                for partition, piece in pieces:
                    r, b = self._insert_part(self._dir_for(partition), piece)
                    rows, nbytes = rows + r, nbytes + b
            return rows, nbytes
        with _locked(loc, loc.path, exclusive=True):
            if loc.kind == "local":
                return self._overwrite_local(pieces)
            return self._overwrite_journaled(pieces)

    def _insert_part(self, folder: str, data: Any) -> tuple[int, int]:
        """Add one part file to ``folder``, published atomically."""
        loc = self.location
        writer, rows = _writer_for("parquet", data, self.manager.parquet_options)
        final = f"{folder}/{_part_name()}"
        if loc.kind == "local":
            os.makedirs(folder, exist_ok=True)
            with _LocalStaging(loc.parent()) as staging:
                staged = os.path.join(staging.dir, os.path.basename(final) + ".tmp")
                size = _write_local(staged, writer, self.manager.fsync)
                os.replace(staged, final)
            return rows[0], size
        if loc.kind == "memory":
            payload = _write_buffer(writer)
            loc.fs.pipe_file(final, payload)
            return rows[0], len(payload)
        if loc.kind == "atomic-put":
            size = _write_remote(loc.fs, final, writer)
            return rows[0], size
        staged = self._staging_path(_new_id(), final)
        size = _write_remote(loc.fs, staged, writer)
        loc.fs.mv(staged, final)
        return rows[0], size

    def _overwrite_local(self, pieces: list[tuple[str | None, Any]]) -> tuple[int, int]:
        """Build the new folder in staging, then swap it in with one atomic exchange."""
        rows = nbytes = 0
        target = self.scope
        with _LocalStaging(self.location.parent()) as staging:
            new = os.path.join(staging.dir, "new")
            os.makedirs(new)
            for partition, piece in pieces:
                folder = new
                if partition is not None and partition != self.partition:
                    folder = os.path.join(new, self._segment(partition))
                os.makedirs(folder, exist_ok=True)
                writer, r = _writer_for("parquet", piece, self.manager.parquet_options)
                name = _part_name() + ".tmp"
                nbytes += _write_local(os.path.join(folder, name), writer, self.manager.fsync)
                rows += r[0]
                os.rename(os.path.join(folder, name), os.path.join(folder, name[: -len(".tmp")]))
            if self.manager.fsync:
                _fsync_dir(new)
            _swap_local_dir(new, target)
            if self.manager.fsync:
                _fsync_dir(os.path.dirname(target))
        return rows, nbytes

    # -- journaled overwrite (object stores) -------------------------------------------------

    def _staging_path(self, txid: str, final: str) -> str:
        rel = final[len(self.location.path) :].lstrip("/")
        return self.location.join(CONTROL_DIR, "staging", txid, rel + ".tmp")

    def _overwrite_journaled(self, pieces: list[tuple[str | None, Any]]) -> tuple[int, int]:
        loc = self.location
        fs = loc.fs
        txid = _new_id()
        moves: list[tuple[str, str]] = []
        rows = nbytes = 0
        for partition, piece in pieces:
            folder = self.scope if partition in (None, self.partition) else self._dir_for(partition)
            final = f"{folder}/{_part_name()}"
            staged = self._staging_path(txid, final)
            writer, r = _writer_for("parquet", piece, self.manager.parquet_options)
            if loc.kind == "memory":
                payload = _write_buffer(writer)
                fs.pipe_file(staged, payload)
                nbytes += len(payload)
            else:
                nbytes += _write_remote(fs, staged, writer)
            rows += r[0]
            moves.append((staged, final))
        old = self._files()
        journal = {"txid": txid, "scope": self.scope, "old": old, "new": moves}
        fs.pipe_file(f"{self._journal_dir()}/{txid}.json", json.dumps(journal).encode())
        self._apply(journal)
        return rows, nbytes

    def _apply(self, journal: dict[str, Any]) -> None:
        """Roll a committed journal forward: copy new files in, delete the old, clean up."""
        fs = self.location.fs
        for staged, final in journal["new"]:
            if not fs.exists(final):
                fs.copy(staged, final)
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
        _forget_listings(self.location)
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
