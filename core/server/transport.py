"""How the server meets the network: uvicorn's settings, a protocol that drops clients too
slow to send their request, and an access log that never shows a token.

Both ``assetry serve`` and :class:`assetry.server.live.LiveServer` take their uvicorn
settings from :func:`uvicorn_options`, so a test server behaves like the real one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from typing import Any
from urllib.parse import parse_qsl, quote

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..urls import MASK, is_secret_name
from .auth import Authenticator

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "MAX_HEADER_BYTES",
    "REQUEST_READ_SECONDS",
    "AccessLogRedactor",
    "TimedH11Protocol",
    "install_access_log_redactor",
    "uvicorn_options",
]

#: A client has this long, from its first byte (or from connecting), to send a whole
#: request (line, headers and body); then the connection is closed.
REQUEST_READ_SECONDS = 10.0
#: An idle keep-alive connection is closed after this long.
KEEP_ALIVE_SECONDS = 5
#: The largest request line plus headers h11 buffers before answering 400.
MAX_HEADER_BYTES = 64 * 1024


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline: a request whose line, headers and body
    have not all arrived within ``read_timeout`` seconds of its first byte (or of the
    connection, for a client that sends nothing) closes the connection. uvicorn alone
    waits for ever, so slow half-open connections pile up (slowloris)."""

    read_timeout: float = REQUEST_READ_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm_read_deadline()
        else:
            self._disarm_read_deadline()

    def on_response_complete(self) -> None:
        self._disarm_read_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        if self._read_deadline is None and not self.transport.is_closing():
            self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


# -- the access log ---------------------------------------------------------------------------

_AUTHENTICATORS: weakref.WeakSet[Authenticator] = weakref.WeakSet()


def _is_token(value: str) -> bool:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return any(digest == token.digest for auth in list(_AUTHENTICATORS) for token in auth.tokens)


def redact_target(target: str) -> str:
    """``target`` (a path with its query) with the values of secret-named parameters
    (``token=``, ``api_key=``, ...) and of any configured token masked."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_secret_name(k) or _is_token(v) for k, v in pairs):
        return target
    shown = [
        f"{quote(k, safe='')}=" + (MASK if is_secret_name(k) or _is_token(v) else quote(v, safe=""))
        for k, v in pairs
    ]
    return f"{path}?{'&'.join(shown)}"


class AccessLogRedactor(logging.Filter):
    """Masks secrets in the request target of uvicorn's access-log records (a token put in
    a query string by mistake must not land in the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def install_access_log_redactor(auth: Authenticator) -> None:
    """Redact uvicorn's access log, knowing ``auth``'s tokens (idempotent)."""
    _AUTHENTICATORS.add(auth)
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in logger.filters):
        logger.addFilter(AccessLogRedactor())


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings every assetry server runs with."""
    return {
        "http": TimedH11Protocol,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "proxy_headers": False,
        "server_header": False,
    }
