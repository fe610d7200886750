"""The ``http`` backend: a remote instance through ``assetry serve`` passes the whole
StateBackend conformance suite, on a live server on loopback backed by a memory backend."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from assetry import Instance
from assetry.backend import StateBackend
from assetry.backends.http import HTTPBackend
from assetry.backends.memory import MemoryBackend
from assetry.server.app import create_app
from assetry.server.auth import ApiToken
from assetry.server.live import LiveServer
from assetry.testing import StateBackendConformance

ADMIN = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """One live server for the module; each test swaps in a fresh memory instance."""
    app = create_app(Instance(backend=MemoryBackend()), tokens=[ApiToken("admin", ADMIN, "write")])
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def fresh_server(server: LiveServer) -> LiveServer:
    server.app.state.instance = Instance(backend=MemoryBackend())
    return server


class TestHTTPBackend(StateBackendConformance):
    # every call is a round trip to the server: smaller sizes, the same properties proved
    updates_per_thread = 15
    appends_per_thread = 8

    @pytest.fixture
    def backend(self, fresh_server: LiveServer) -> Iterator[StateBackend]:
        with HTTPBackend(fresh_server.url, token=ADMIN) as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self, fresh_server: LiveServer) -> Callable[[], StateBackend]:
        return lambda: HTTPBackend(fresh_server.url, token=ADMIN)
