"""A small fault-injecting HTTP proxy for S3 tests: it stands in front of moto on loopback
and, per request, by a seeded coin, answers 500 or 503 itself, drops the connection, or
forwards the request and then answers 503 or drops the connection anyway (so the client
cannot tell whether its write landed).

Point s3fs's ``endpoint_url`` at :attr:`FaultProxy.endpoint_url`. ``rates`` gives the
probability of each fault; :attr:`FaultProxy.counts` says how many of each happened.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Faults the proxy can inject, with what each does.
FAULTS = {
    "error_500": "answer 500 InternalError without forwarding",
    "error_503": "answer 503 SlowDown without forwarding",
    "drop_before": "close the connection without forwarding",
    "error_after": "forward, then answer 503 instead of the real response",
    "drop_after": "forward, then close the connection instead of answering",
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>injected by the test proxy</Message></Error>"
)


class FaultProxy:
    """A threaded proxy to ``upstream`` (``http://host:port``) injecting faults."""

    def __init__(self, upstream: str, rates: dict[str, float] | None = None, seed: int = 0):
        host, _, port = upstream.split("://", 1)[1].partition(":")
        self.upstream = (host, int(port))
        self.rates = dict(rates or {})
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def faults(self) -> int:
        """How many faults were injected."""
        with self._lock:
            return sum(n for kind, n in self.counts.items() if kind in FAULTS)

    def _pick(self) -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            roll = self._random.random()
            for kind, rate in self.rates.items():
                if roll < rate:
                    self.counts[kind] += 1
                    return kind
                roll -= rate
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        fault = self._pick()
        if fault in ("error_500", "error_503"):
            status, code = (500, "InternalError") if fault == "error_500" else (503, "SlowDown")
            _answer_error(handler, status, code)
            return
        if fault == "drop_before":
            _drop(handler)
            return
        try:
            status, reason, headers, payload = self._forward(handler, body)
        except OSError:
            _drop(handler)
            return
        if fault == "error_after":
            _answer_error(handler, 503, "SlowDown")
            return
        if fault == "drop_after":
            _drop(handler)
            return
        handler.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {
                k: v
                for k, v in handler.headers.items()
                if k.lower() not in _HOP_BY_HOP and k.lower() not in ("expect", "content-length")
            }
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _answer_error(handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
    payload = _ERROR_BODY.format(code=code).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _drop(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)
