"""Storage faults as assetry errors: an unreachable store, refused credentials, a missing
bucket.

Without this, an S3 outage surfaced as a raw botocore error and a missing bucket read as
"no data yet". Reads (idempotent) are retried with :data:`IO_RETRY` on top of s3fs's own
bounded retries; writes are not (an insert whose answer was lost may have landed), and
either way the error names the asset and its URI with secrets hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from assetry import AssetryError, BackendUnavailableError, ConfigurationError
from assetry.retry import Backoff
from assetry.urls import render_url, scrub_text, secrets_of

if TYPE_CHECKING:
    from assetry import Asset

    from .location import Location

T = TypeVar("T")

#: Attempts at an idempotent read while the store is unreachable (s3fs retries each
#: request itself too); then :class:`~assetry.BackendUnavailableError`.
IO_RETRY = Backoff(base=0.5, cap=2.0, max_attempts=2)

#: Text of pyarrow's native S3 errors when the endpoint cannot be reached.
_NETWORK_MARKERS = ("NETWORK_CONNECTION", "curlCode", "Couldn't connect", "Connection refused")

#: Buckets seen to exist, per filesystem: checked once per process, not per read.
_known_buckets: set[tuple[str, str]] = set()


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached (connection refused, timeout,
    dropped connection), as opposed to an answer from it."""
    try:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        if isinstance(
            exc,
            ConnectionClosedError
            | ConnectTimeoutError
            | EndpointConnectionError
            | ReadTimeoutError,
        ):
            return True
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        pass
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and any(m in str(exc) for m in _NETWORK_MARKERS)


def guarded(loc: Location, asset: Asset, what: str, fn: Callable[[], T], *, retry: bool) -> T:
    """``fn()``, with an unreachable store retried (``retry``) and then reported, and
    refused credentials reported, as :class:`~assetry.BackendUnavailableError`."""
    if loc.kind in ("local", "memory"):
        return fn()
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except AssetryError:
            raise
        except PermissionError as exc:
            raise BackendUnavailableError(
                f"asset {asset.name!r}: {what} at {render_url(asset.uri)} was refused: "
                f"{_describe(exc, loc)}; check the connection's credentials and permissions"
            ) from None
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if retry and not IO_RETRY.exhausted(attempt):
                IO_RETRY.sleep(attempt)
                continue
            raise BackendUnavailableError(
                f"asset {asset.name!r}: object storage for {render_url(asset.uri)} is "
                f"unreachable ({what} failed after {attempt} attempt(s) over "
                f"{time.monotonic() - started:.1f}s: {_describe(exc, loc)}); check the "
                "endpoint and the network, then retry"
            ) from None


def check_bucket(loc: Location, asset: Asset) -> None:
    """Raise :class:`~assetry.ConfigurationError` if the bucket (container) of an object
    store location does not exist, so that it is not taken for an asset not written yet."""
    if loc.kind != "atomic-put":  # buckets (containers) are an object-store notion
        return
    bucket = loc.path.split("/", 1)[0]
    key = (str(getattr(loc.fs, "_fs_token", id(loc.fs))), bucket)
    if not bucket or key in _known_buckets:
        return
    if loc.fs.exists(bucket):
        _known_buckets.add(key)
        return
    raise ConfigurationError(
        f"asset {asset.name!r}: the bucket {bucket!r} of {render_url(asset.uri)} does not "
        "exist (or the connection's credentials cannot see it); create it, or fix the asset "
        "URI or the connection"
    )


def _describe(exc: BaseException, loc: Location) -> str:
    """The error's class and message, with any secret of the connection hidden."""
    message = scrub_text(str(exc), secrets_of(loc.storage_options))
    return f"{type(exc).__name__}: {message[:300]}"
