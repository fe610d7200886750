"""The client of ``assetry serve``: use a remote instance from another process or machine.

The usual way is not to touch this module at all::

    import assetry
    inst = assetry.Instance.from_url("http://assetry.internal:8000")   # token: ASSETRY_HTTP_TOKEN
    inst.asset_store(orders).advance("watermark", "2024-06-01")

``Instance.from_url`` picks the ``http`` state backend (:mod:`assetry.backends.http`) by
the URL's scheme, and that backend speaks through :class:`Client`. :func:`connect` does the
same with the token given in code. Errors come back as the exceptions the server raised
(:class:`~assetry.AssetNotFoundError`, :class:`~assetry.ConflictError`, ...); a refused
token is an :class:`AccessDeniedError`; an unreachable server is a
:class:`~assetry.BackendUnavailableError`.

Needs the ``server`` extra (``pip install 'assetry[server]'``): ``httpx`` for the
transport and ``pydantic`` for the request and response bodies, which are the server's own
models (:mod:`assetry.server.backend_models`), so client and server state the contract once.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import (
    AssetryError,
    BackendUnavailableError,
    ConfigurationError,
    ValidationError,
)
from .server.protocol import BACKEND_PREFIX, ERROR_TYPES, AccessDeniedError
from .urls import render_url
from .values import canonical_json

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

    from .instance import Instance

__all__ = [
    "DEFAULT_CONN_ID",
    "TOKEN_ENV",
    "AccessDeniedError",
    "Client",
    "connect",
    "resolve_token",
]

#: The environment variable holding the token of a remote instance.
TOKEN_ENV = "ASSETRY_HTTP_TOKEN"
#: The connection whose password (or ``token`` option) is the token when none is given.
DEFAULT_CONN_ID = "assetry_default"


M = TypeVar("M", bound="BaseModel")


def resolve_token(token: str | None = None, conn_id: str | None = None) -> str | None:
    """The token to send: the argument, else the password (or ``token`` option) of the
    connection ``conn_id`` when one is named, else ``$ASSETRY_HTTP_TOKEN``, else that of
    the connection ``assetry_default``."""
    if token:
        return token
    if conn_id is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    from .config import get_connection

    conn = get_connection(conn_id or DEFAULT_CONN_ID)
    if conn is None:
        if conn_id is not None:
            raise ConfigurationError(
                f"connection {conn_id!r} is not configured; set ASSETRY_CONN_{conn_id.upper()}"
            )
        return None
    found = conn.password or conn.get("token")
    return str(found) if found else None


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"an assetry server URL looks like http://host:8000, not {render_url(url)!r}"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            "put the server's token in ASSETRY_HTTP_TOKEN or a connection, not in the URL"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class Client:
    """One connection (pool) to an assetry server: bearer auth, JSON in and out, and the
    server's errors raised again as exceptions. Safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            import httpx
            import pydantic  # noqa: F401  (the bodies of the backend family)
        except ImportError as exc:  # pragma: no cover - both come with the server extra
            raise ConfigurationError(
                f"the assetry HTTP client needs {exc.name}: pip install 'assetry[server]'"
            ) from None
        self.url = _base_url(url)
        headers = {"accept": "application/json", "user-agent": "assetry-client"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._httpx = httpx
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            verify=verify,
            transport=transport
            or httpx.HTTPTransport(
                retries=1,  # connection attempts only: a request is never sent twice
                verify=verify,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request to ``path`` (below the server URL) and return the decoded JSON."""
        content = None
        if body is not None:
            content = canonical_json(body).encode("utf-8")
        data = self._send(method, path, content, params)
        return json.loads(data) if data else None

    def _send(
        self,
        method: str,
        path: str,
        content: bytes | None,
        params: Mapping[str, Any] | None = None,
    ) -> bytes:
        """One request; the response body, or the server's error raised as an exception."""
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except self._httpx.TransportError as exc:
            raise BackendUnavailableError(
                f"cannot reach the assetry server at {self.url}: {type(exc).__name__}: {exc}; "
                "is 'assetry serve' running there?"
            ) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response.content

    def call(self, method: str, body: BaseModel | None, returns: type[M]) -> M:
        """Call one StateBackend method on the server's backend (the backend family): the
        request and the answer are the bodies of :mod:`assetry.server.backend_models`."""
        content = body.model_dump_json(exclude_unset=True) if body is not None else "{}"
        data = self._send("POST", f"{BACKEND_PREFIX}/{method}", content.encode("utf-8"))
        return returns.model_validate_json(data)

    def _error(self, response: httpx.Response) -> BaseException:
        kind, message, details = "", "", None
        try:
            error = response.json().get("error", {})
            kind, message = str(error.get("type", "")), str(error.get("message", ""))
            details = error.get("details")
        except (ValueError, AttributeError):
            pass
        row = ERROR_TYPES.get(kind)
        if row is None:
            status = response.status_code
            text = message or response.reason_phrase
            if status >= 500:
                return BackendUnavailableError(
                    f"the assetry server at {self.url} failed ({status}): {text}"
                )
            return AssetryError(f"the assetry server at {self.url} answered {status}: {text}")
        if row.raised_as is AccessDeniedError:
            message = f"the assetry server at {self.url} refused: {message}"
        if row.raised_as is ValidationError and isinstance(details, dict):
            # which check failed and where (an extra_schema names the fields)
            return ValidationError(
                message, check=details.get("check"), details=details.get("errors")
            )
        return row.raised_as(message)


def connect(
    url: str,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    **options: Any,
) -> Instance:
    """An :class:`~assetry.Instance` whose state lives on the server at ``url``."""
    from .instance import Instance

    return Instance.from_url(url, token=token, timeout=timeout, **options)
