"""Run the application on a loopback port in a background thread (tests, notebooks, demos).

::

    with LiveServer(create_app(instance, tokens=[...])) as server:
        remote = assetry.Instance.from_url(server.url, token=...)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["LiveServer"]


class LiveServer:
    """uvicorn serving ``app`` on ``host`` (a free port unless ``port`` is given) in a
    daemon thread; ``url`` is where it answers. Stops on :meth:`stop` or leaving the block."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
    ) -> None:
        import uvicorn

        self.app = app
        # IPPROTO_TCP, so that asyncio turns Nagle off on accepted connections (else each
        # response waits ~40 ms for a delayed ACK)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        from .transport import uvicorn_options

        config = uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",
            access_log=access_log,
            lifespan="off",
            **uvicorn_options(),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start serving; return once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"assetry-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on {self.url} did not start in {timeout}s")
            time.sleep(0.01)
        self._wait_until_answering(deadline)
        return self

    def _wait_until_answering(self, deadline: float) -> None:
        """Block until one HTTP request gets a response: ``started`` only means the socket
        listens, and the first request (imports, route compilation) can be slow on a busy
        machine, which callers with short client timeouts would see as a hang."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the server on {self.url} did not answer in time")
            try:
                with socket.create_connection((self.host, self.port), timeout=remaining) as probe:
                    probe.sendall(
                        f"HEAD / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        "Connection: close\r\n\r\n".encode("ascii")
                    )
                    if probe.recv(1):
                        return
            except OSError:
                if not self._thread or not self._thread.is_alive():
                    raise RuntimeError(f"the server on {self.url} stopped while starting") from None
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish its requests and stop; wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
