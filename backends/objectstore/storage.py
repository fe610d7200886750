"""Objects with conditional writes on three kinds of storage: S3, a local directory, memory.

An :class:`ObjectStorage` holds byte objects under one root, addressed by relative keys
(``assets/orders.json``), and offers the two primitives the backend builds everything on:
*create if absent* and *replace if the ETag still matches*. Each driver makes them atomic in
its own way:

- :class:`S3Storage`: S3 conditional writes (``If-None-Match: *``, ``If-Match: <etag>``,
  and ``If-Match`` on delete, which AWS honours on general-purpose buckets since 2025; an
  S3-compatible store that ignores it turns a conditional delete into a plain one), called
  on s3fs's aiobotocore client; throttling, 5xx and connection errors are retried with
  exponential backoff and full jitter, then reported as
  :class:`~assetry.errors.BackendUnavailableError` with the masked URL.
- :class:`LocalStorage`: files; a write goes to a temporary file (fsynced) that is
  ``os.link``-ed into place for a create and ``os.replace``-d for a replace, under an
  ``fcntl.flock`` on one of 64 lock files chosen by the key, so compare-and-set is
  atomic across processes.
- :class:`MemoryStorage`: fsspec's process-wide memory filesystem behind one process-wide
  lock.

ETags are opaque strings: S3's own, or the MD5 of the bytes elsewhere (the backend puts a
random token in every document it writes, so two writes never have the same bytes).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from assetry import localfs
from assetry.errors import BackendUnavailableError
from assetry.retry import Backoff

__all__ = [
    "DEFAULT_RETRY",
    "Blob",
    "Listed",
    "LocalStorage",
    "MemoryStorage",
    "ObjectStorage",
    "PreconditionFailed",
    "S3Storage",
]

T = TypeVar("T")

#: Keys per page when listing (S3's maximum).
PAGE_SIZE = 1000


class PreconditionFailed(Exception):
    """A conditional write or delete lost: the object exists, is gone, or has changed."""


@dataclass(frozen=True, slots=True)
class Blob:
    """An object's bytes and the ETag they were read with."""

    data: bytes
    etag: str


class Listed(NamedTuple):
    """A key from a listing, with the object's size in bytes."""

    key: str
    size: int


#: Backoff on throttling, 5xx and connection errors: 8 attempts, 50 ms doubling up to 5 s.
DEFAULT_RETRY = Backoff(base=0.05, cap=5.0, max_attempts=8)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class ObjectStorage(abc.ABC):
    """Byte objects under one root with atomic create-if-absent and replace-if-match."""

    #: Whether several processes can share the objects safely.
    multi_process: bool = True

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects are, with secrets masked."""

    @abc.abstractmethod
    def get(self, key: str) -> Blob | None:
        """The object under ``key``, or ``None``."""

    def get_many(self, keys: Sequence[str]) -> list[Blob | None]:
        """The objects under ``keys``, in order (concurrently where the storage allows)."""
        return [self.get(k) for k in keys]

    @abc.abstractmethod
    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        """Write ``data`` under ``key`` and return its ETag.

        ``if_none_match``: only if no object exists; ``if_match``: only if the object's
        ETag is that one. Raises :class:`PreconditionFailed` when the condition fails.
        """

    @abc.abstractmethod
    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete ``key`` (a missing key is a no-op unless ``if_match`` is given, which
        raises :class:`PreconditionFailed` when the object is gone or has changed)."""

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write several objects unconditionally (concurrently where the storage allows)."""
        for key, data in items:
            self.put(key, data)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete several keys unconditionally."""
        for key in keys:
            self.delete(key)

    @abc.abstractmethod
    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        """Keys under ``folder`` (which ends in ``/``; recursive) with their sizes, ascending,
        page by page. ``start_after`` is a full key: only keys sorting after it are listed."""

    def list(self, folder: str, *, start_after: str | None = None) -> list[str]:
        """Every key under ``folder``, ascending."""
        return [
            item.key for page in self.list_pages(folder, start_after=start_after) for item in page
        ]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


# -- S3 ---------------------------------------------------------------------------------------

_THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        # a concurrent conditional write on the same key: S3 asks to retry
        "ConditionalRequestConflict",
    }
)
_ABSENT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class S3Storage(ObjectStorage):
    """Objects in ``s3://bucket/prefix`` through s3fs's aiobotocore client."""

    def __init__(
        self,
        fs: Any,
        bucket: str,
        prefix: str,
        *,
        url: str,
        retry: Backoff = DEFAULT_RETRY,
        concurrency: int = 16,
    ) -> None:
        self.fs = fs
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = url
        self.retry = retry
        self.concurrency = concurrency

    def describe(self) -> str:
        return self.url

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _sync(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        from fsspec.asyn import sync

        return sync(self.fs.loop, fn, *args)

    async def _client(self) -> Any:
        await self.fs.set_session()
        return await self.fs.get_s3(self.bucket)

    def client(self) -> Any:
        """The aiobotocore S3 client, e.g. to register botocore event hooks (counting)."""
        return self._sync(self._client)

    async def _call(self, what: str, key: str, method: str, **kwargs: Any) -> Any:
        """Call ``method`` on the client, retrying throttling, 5xx and connection errors."""
        from botocore.exceptions import ClientError

        attempt = 0
        ambiguous = False
        while True:
            attempt += 1
            try:
                client = await self._client()
                try:
                    return await getattr(client, method)(Bucket=self.bucket, **kwargs)
                except ClientError as exc:
                    raise self._classify(exc, what, key) from exc
                except (TimeoutError, OSError) as exc:
                    raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
                except Exception as exc:  # aiohttp / botocore connection errors
                    if _is_connection_error(exc):
                        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
                    if _is_botocore_error(exc):  # no credentials, bad parameters, ...
                        raise BackendUnavailableError(
                            f"object store {self.url} failed {what} {key!r}: "
                            f"{type(exc).__name__}: {exc}; check the connection's settings"
                        ) from None
                    raise
            except _Retryable as exc:
                ambiguous = True
                if self.retry.exhausted(attempt):
                    raise BackendUnavailableError(
                        f"object store {self.url} did not answer {what} {key!r} after "
                        f"{attempt} attempts ({exc.reason}); check that it is reachable and "
                        "not throttling, then retry"
                    ) from None
                await self.retry.sleep_async(attempt)
            except PreconditionFailed as exc:
                # a write that failed ambiguously may have landed: the caller checks
                exc.ambiguous = ambiguous  # type: ignore[attr-defined]
                raise

    def _classify(self, exc: Any, what: str, key: str) -> Exception:
        response = getattr(exc, "response", None) or {}
        error = response.get("Error", {}) or {}
        code = str(error.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(key)
        if status == 404 and code in _ABSENT_CODES:
            return _Absent(key)
        if code in _THROTTLING_CODES or status >= 500 or status == 429:
            return _Retryable(code or f"HTTP {status}")
        if code == "NoSuchBucket":
            return BackendUnavailableError(
                f"bucket {self.bucket!r} of {self.url} does not exist; create it first"
            )
        if status in (401, 403):
            return BackendUnavailableError(
                f"object store {self.url} refused {what} {key!r} ({code or status}); check "
                "the credentials of the connection"
            )
        return BackendUnavailableError(
            f"object store {self.url} failed {what} {key!r}: {code or status} "
            f"{error.get('Message', '')}".rstrip()
        )

    # -- operations ---------------------------------------------------------------------------

    async def _get(self, key: str) -> Blob | None:
        full = self._key(key)
        try:
            resp = await self._call("GET", key, "get_object", Key=full)
        except _Absent:
            return None
        try:
            data = await resp["Body"].read()
        finally:
            resp["Body"].close()
        return Blob(data, resp["ETag"])

    def get(self, key: str) -> Blob | None:
        return self._sync(self._get, key)

    async def _get_many(self, keys: Sequence[str]) -> list[Blob | None]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(key: str) -> Blob | None:
            async with gate:
                return await self._get(key)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    def get_many(self, keys: Sequence[str]) -> list[Blob | None]:
        if len(keys) <= 1:
            return [self.get(k) for k in keys]
        return self._sync(self._get_many, keys)

    async def _put(self, key: str, data: bytes, if_match: str | None, if_none_match: bool) -> str:
        kwargs: dict[str, Any] = {}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            resp = await self._call(
                "PUT", key, "put_object", Key=self._key(key), Body=data, **kwargs
            )
        except _Absent:  # If-Match on a missing object
            raise PreconditionFailed(key) from None
        except PreconditionFailed as exc:
            if getattr(exc, "ambiguous", False):
                # an earlier attempt may have written these very bytes (they carry a token)
                current = await self._get(key)
                if current is not None and current.data == data:
                    return current.etag
            raise
        return str(resp["ETag"])

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        return self._sync(self._put, key, data, if_match, if_none_match)

    async def _put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(key: str, data: bytes) -> None:
            async with gate:
                await self._put(key, data, None, False)

        await asyncio.gather(*(one(k, d) for k, d in items))

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if items:
            self._sync(self._put_many, list(items))

    async def _delete(self, key: str, if_match: str | None) -> None:
        kwargs: dict[str, Any] = {} if if_match is None else {"IfMatch": if_match}
        try:
            await self._call("DELETE", key, "delete_object", Key=self._key(key), **kwargs)
        except _Absent:
            if if_match is not None:
                raise PreconditionFailed(key) from None
        except PreconditionFailed as exc:
            if getattr(exc, "ambiguous", False) and await self._get(key) is None:
                return  # an earlier attempt deleted it
            raise

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._sync(self._delete, key, if_match)

    async def _delete_many(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), PAGE_SIZE):
            chunk = keys[start : start + PAGE_SIZE]
            resp = await self._call(
                "DELETE",
                chunk[0],
                "delete_objects",
                Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
            )
            errors = [e for e in resp.get("Errors", []) if e.get("Code") not in _ABSENT_CODES]
            if errors:
                first = errors[0]
                raise BackendUnavailableError(
                    f"object store {self.url} failed to delete {len(errors)} object(s), e.g. "
                    f"{self._relative(first.get('Key', ''))!r}: {first.get('Code')}"
                )

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._sync(self._delete_many, list(keys))

    async def _list_page(
        self, folder: str, start_after: str | None, token: str | None
    ) -> tuple[list[Listed], str | None]:
        kwargs: dict[str, Any] = {"Prefix": self._key(folder), "MaxKeys": PAGE_SIZE}
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = self._key(start_after)
        resp = await self._call("LIST", folder, "list_objects_v2", **kwargs)
        keys = [
            Listed(self._relative(o["Key"]), int(o.get("Size", 0)))
            for o in resp.get("Contents", [])
        ]
        return keys, resp.get("NextContinuationToken") if resp.get("IsTruncated") else None

    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        token: str | None = None
        while True:
            keys, token = self._sync(self._list_page, folder, start_after, token)
            if keys:
                yield keys
            if not token:
                return


class _Absent(Exception):
    """404: the object does not exist."""


def single_send_session_class() -> type | None:
    """aiobotocore's HTTP session with aiohttp's silent resend turned off, or ``None`` where
    aiobotocore cannot take a session class.

    aiohttp (3.11+) sends a PUT or DELETE a second time on its own when the connection
    drops before the response. Conditional writes are not idempotent: the resend of a
    write that landed fails its precondition, and the caller cannot tell it was its own
    write, so an append would be repeated under a new id and an update applied twice. With
    the resend off, every repeat goes through :meth:`S3Storage._call`, which knows the
    outcome is ambiguous and checks whether the bytes it wrote are there.
    """
    try:
        from aiobotocore.httpsession import AIOHTTPSession
    except ImportError:  # pragma: no cover - another aiobotocore layout
        return None

    class SingleSendSession(AIOHTTPSession):  # type: ignore[misc]
        async def _get_session(self, proxy_url: Any) -> Any:
            session = await super()._get_session(proxy_url)
            session._retry_connection = False
            return session

    return SingleSendSession if hasattr(AIOHTTPSession, "_get_session") else None


def _is_botocore_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        return False
    return isinstance(exc, BotoCoreError)


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        return False
    if isinstance(
        exc,
        ConnectionClosedError | ConnectTimeoutError | EndpointConnectionError | ReadTimeoutError,
    ):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, aiohttp.ClientError)


# -- local directory --------------------------------------------------------------------------

_LOCK_STRIPES = 64
_LOCK_DIR = "_locks"


class LocalStorage(ObjectStorage):
    """Objects as files under a directory, safe across processes on one machine.

    Writes land in a temporary file in the target's folder, fsynced, then ``os.link``-ed
    (create: fails if the name exists) or ``os.replace``-d (replace) into place, under an
    ``fcntl.flock`` on one of 64 lock files chosen by the key: the check of the current
    ETag and the write are one atomic step for every process that uses the directory.
    Readers take no lock: they see the old file or the new one, never a partial one.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self._lock_dir_ready = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only parent: fine for readers if the folder exists
            if not self.root.is_dir():
                raise self._fail("open", "", exc) from None

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _fail(self, what: str, key: str, exc: OSError) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"object store {self.describe()} failed {what} {key!r}: {exc.strerror or exc}; "
            "check the directory's permissions and free space"
        )

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        if not self._lock_dir_ready:
            (self.root / _LOCK_DIR).mkdir(exist_ok=True)
            self._lock_dir_ready = True
        stripe = int(_md5(key.encode())[:8], 16) % _LOCK_STRIPES
        with localfs.file_lock(self.root / _LOCK_DIR / f"{stripe:02d}.lock"):
            yield

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get(self, key: str) -> Blob | None:
        try:
            data = self._read(self._path(key))
        except OSError as exc:
            raise self._fail("GET", key, exc) from None
        return None if data is None else Blob(data, _md5(data))

    def _sync_dir(self, folder: Path) -> None:
        if self.fsync:
            localfs.fsync_dir(folder)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        path = self._path(key)
        try:
            with self._locked(key):
                if if_match is not None:
                    current = self._read(path)
                    if current is None or _md5(current) != if_match:
                        raise PreconditionFailed(key)
                try:
                    localfs.atomic_write(path, data, fsync=self.fsync, exclusive=if_none_match)
                except FileExistsError:
                    if if_none_match:
                        raise PreconditionFailed(key) from None
                    raise
        except OSError as exc:
            raise self._fail("PUT", key, exc) from None
        return _md5(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        try:
            with self._locked(key):
                if if_match is not None:
                    current = self._read(path)
                    if current is None or _md5(current) != if_match:
                        raise PreconditionFailed(key)
                try:
                    path.unlink()
                except FileNotFoundError:
                    return
                self._sync_dir(path.parent)
        except OSError as exc:
            raise self._fail("DELETE", key, exc) from None
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty (a concurrent writer recreates what it needs)."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        items: list[Listed] = []
        pending = [folder.rstrip("/")]
        try:
            while pending:
                rel = pending.pop()
                try:
                    entries = list(os.scandir(self._path(rel)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(f"{rel}/{entry.name}")
                    elif entry.name.endswith(".json"):
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:  # deleted while listing
                            continue
                        items.append(Listed(f"{rel}/{entry.name}", size))
        except OSError as exc:
            raise self._fail("LIST", folder, exc) from None
        items.sort()
        if start_after is not None:
            items = [i for i in items if i.key > start_after]
        for start in range(0, len(items), PAGE_SIZE):
            yield items[start : start + PAGE_SIZE]


# -- memory -----------------------------------------------------------------------------------

_MEMORY_LOCK = threading.RLock()


class MemoryStorage(ObjectStorage):
    """Objects in fsspec's ``memory://`` filesystem (process-wide) behind one process lock."""

    multi_process = False

    def __init__(self, root: str) -> None:
        import fsspec

        self.fs = fsspec.filesystem("memory")
        self.root = "/" + root.strip("/")

    def describe(self) -> str:
        return f"memory://{self.root.lstrip('/')}"

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def get(self, key: str) -> Blob | None:
        with _MEMORY_LOCK:
            try:
                data = self.fs.cat_file(self._path(key))
            except FileNotFoundError:
                return None
        return Blob(data, _md5(data))

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        path = self._path(key)
        with _MEMORY_LOCK:
            if if_none_match or if_match is not None:
                try:
                    current: bytes | None = self.fs.cat_file(path)
                except FileNotFoundError:
                    current = None
                if if_none_match and current is not None:
                    raise PreconditionFailed(key)
                if if_match is not None and (current is None or _md5(current) != if_match):
                    raise PreconditionFailed(key)
            self.fs.pipe_file(path, data)
        return _md5(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        with _MEMORY_LOCK:
            try:
                current = self.fs.cat_file(path)
            except FileNotFoundError:
                if if_match is not None:
                    raise PreconditionFailed(key) from None
                return
            if if_match is not None and _md5(current) != if_match:
                raise PreconditionFailed(key)
            self.fs.rm_file(path)

    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        base = self._path(folder)
        cut = len(self.root) + 1
        with _MEMORY_LOCK:
            try:
                found = self.fs.find(base.rstrip("/"), detail=True)
            except FileNotFoundError:
                found = {}
        items = sorted(
            Listed(path[cut:], int(info.get("size") or 0))
            for path, info in ((("/" + p.lstrip("/")), i) for p, i in found.items())
            if path.startswith(base)
        )
        if start_after is not None:
            items = [i for i in items if i.key > start_after]
        for start in range(0, len(items), PAGE_SIZE):
            yield items[start : start + PAGE_SIZE]
