"""S3 driver: conditional writes (``If-None-Match``, ``If-Match``) on s3fs's aiobotocore
client, with throttling, 5xx and connection errors retried with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from assetry.errors import BackendUnavailableError
from assetry.retry import Backoff

from .base import PAGE_SIZE, Blob, Listed, ObjectStorage, PreconditionFailed

__all__ = ["DEFAULT_RETRY", "S3Storage", "single_send_session_class"]

T = TypeVar("T")

#: Backoff on throttling, 5xx and connection errors: 8 attempts, 50 ms doubling up to 5 s.
DEFAULT_RETRY = Backoff(base=0.05, cap=5.0, max_attempts=8)

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
