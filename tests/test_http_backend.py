"""The ``http`` backend: a remote instance through ``assetry serve`` passes the whole
StateBackend conformance suite, on a live server on loopback backed by a memory backend."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from assetry import (
    Asset,
    AssetNotFoundError,
    BackendUnavailableError,
    ConfigurationError,
    Instance,
    StoreValueError,
    plugins,
    task,
    use_instance,
)
from assetry.backend import AssetRecord, EventQuery, StateBackend, StoreEntry
from assetry.backends.http import HTTPBackend
from assetry.backends.memory import MemoryBackend
from assetry.client import AccessDeniedError, connect
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
    @pytest.fixture
    def backend(self, fresh_server: LiveServer) -> Iterator[StateBackend]:
        with HTTPBackend(fresh_server.url, token=ADMIN) as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self, fresh_server: LiveServer) -> Callable[[], StateBackend]:
        return lambda: HTTPBackend(fresh_server.url, token=ADMIN)


# == the client beyond the conformance suite ====================================================

READER = secrets.token_urlsafe(24)
SALES = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def scoped_server() -> Iterator[LiveServer]:
    """A server with read-only and group-scoped tokens and a small body limit."""
    app = create_app(
        Instance(backend=MemoryBackend()),
        tokens=[
            ApiToken("admin", ADMIN, "write"),
            ApiToken("reader", READER, "read"),
            ApiToken("sales", SALES, "write", frozenset({"sales"})),
        ],
        max_body_bytes=32 * 1024,
    )
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def served(scoped_server: LiveServer) -> Instance:
    """The instance behind ``scoped_server``, fresh, with one asset per group."""
    instance = Instance(backend=MemoryBackend())
    instance.register(Asset("orders", uri="s3://data/orders", group="sales"))
    instance.register(Asset("customers", uri="s3://data/customers", group="crm"))
    scoped_server.app.state.instance = instance
    return instance


def test_instance_from_url_reads_the_token_from_the_environment(
    scoped_server: LiveServer, served: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_HTTP_TOKEN", ADMIN)
    with Instance.from_url(scoped_server.url) as remote:
        assert remote.backend.name == "http"
        remote.asset_store("orders").set("watermark", "2024-06-01")
        remote.record_event("orders", extra={"rows": 3})
    assert served.asset_store("orders").get("watermark") == "2024-06-01"
    assert [e.extra for e in served.events("orders")] == [{"rows": 3}]


def test_token_from_a_connection(
    scoped_server: LiveServer, served: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSETRY_HTTP_TOKEN", raising=False)
    monkeypatch.setenv("ASSETRY_CONN_ASSETRY_DEFAULT", json.dumps({"token": READER}))
    monkeypatch.setenv("ASSETRY_CONN_ETL", json.dumps({"password": SALES}))
    with (
        Instance.from_url(scoped_server.url) as default,
        connect(scoped_server.url, conn_id="etl") as named,
    ):
        assert [r.name for r in default.assets()] == ["customers", "orders"]
        assert [r.name for r in named.assets()] == ["orders"]


def test_remote_task_runs_against_the_server(scoped_server: LiveServer, served: Instance) -> None:
    orders = Asset("orders", uri="s3://data/orders", group="sales")

    @task(inlets=[orders], outlets=[orders])
    def load(asset_store: Any) -> None:
        asset_store.set("watermark", asset_store.get("watermark", default=0) + 1)

    with connect(scoped_server.url, token=SALES) as remote, use_instance(remote):
        load()
        load()
    assert served.asset_store(orders).get("watermark") == 2
    assert len(served.events(orders)) == 2


def test_scoped_token_reaches_only_its_group_through_a_remote_instance(
    scoped_server: LiveServer, served: Instance
) -> None:
    served.asset_store("customers").set("k", "crm")
    with connect(scoped_server.url, token=SALES) as remote:
        assert [r.name for r in remote.assets()] == ["orders"]
        assert remote.asset_store("customers").get("k") is None
        with pytest.raises(AssetNotFoundError, match="customers"):
            remote.asset_store("customers").set("k", "stolen")
        with pytest.raises(AccessDeniedError, match="every group"):
            remote.sweep()
    assert served.asset_store("customers").get("k") == "crm"


def test_refused_and_read_only_tokens_raise_access_denied(
    scoped_server: LiveServer, served: Instance
) -> None:
    wrong = secrets.token_urlsafe(24)
    with connect(scoped_server.url, token=wrong) as remote:
        with pytest.raises(AccessDeniedError, match=re.escape(scoped_server.url)) as info:
            remote.assets()
        assert wrong not in str(info.value)
    with connect(scoped_server.url, token=READER) as remote:
        assert remote.asset_store("orders").get("k") is None
        with pytest.raises(AccessDeniedError, match="read-only"):
            remote.asset_store("orders").set("k", 1)


def test_body_over_the_server_limit_is_a_store_value_error(
    scoped_server: LiveServer, served: Instance
) -> None:
    with (
        connect(scoped_server.url, token=ADMIN) as remote,
        pytest.raises(StoreValueError, match="limit"),
    ):
        remote.asset_store("orders").set("big", "x" * 40_000)
    assert served.asset_store("orders").get("big") is None


def test_unreachable_server_is_backend_unavailable() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = HTTPBackend(f"http://127.0.0.1:{port}", token=ADMIN, timeout=2)
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        backend.get_asset("orders")
    backend.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"http://admin:{ADMIN}@127.0.0.1:1", "ASSETRY_HTTP_TOKEN"),
        ("ftp://127.0.0.1", "http://host"),
        ("http://", "http://host"),
    ],
    ids=["token-in-user-info", "not-http", "no-host"],
)
def test_bad_server_urls_are_configuration_errors(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as info:
        HTTPBackend(url, token=ADMIN)
    assert ADMIN not in str(info.value)


def test_token_stays_out_of_reprs(scoped_server: LiveServer) -> None:
    with connect(scoped_server.url, token=ADMIN) as remote:
        assert ADMIN not in repr(remote) and ADMIN not in repr(remote.backend)
        assert ADMIN not in repr(remote.settings)
        assert scoped_server.url in repr(remote)


def test_url_scheme_selects_the_http_backend() -> None:
    assert plugins.backend_for_url("http://127.0.0.1:8000") == "http"
    assert plugins.backend_for_url("https://assetry.internal") == "http"


def test_queries_page_past_the_server_page_size(
    scoped_server: LiveServer, served: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assetry.backends.http as http_backend

    served.record_events("orders", [{"i": i} for i in range(11)])
    monkeypatch.setattr(http_backend, "MAX_EVENTS_PER_REQUEST", 3)
    with HTTPBackend(scoped_server.url, token=ADMIN) as backend:
        assert [e.id for e in backend.query_events(EventQuery("orders"))] == list(range(1, 12))
        assert [e.id for e in backend.query_events(EventQuery("orders", limit=7))] == list(
            range(1, 8)
        )
        newest = backend.query_events(EventQuery("orders", limit=5, descending=True))
        assert [e.id for e in newest] == [11, 10, 9, 8, 7]
        assert backend.query_events(EventQuery("orders", after=11)) == []


def test_capabilities_come_from_the_server(scoped_server: LiveServer, served: Instance) -> None:
    with HTTPBackend(scoped_server.url, token=ADMIN) as backend:
        caps = backend.capabilities
    assert (caps.atomic_batches, caps.event_import, caps.event_deletion) == (True, True, True)
    assert caps.persistent and caps.multi_process and caps.state_import


def test_state_import_is_scoped_like_registration(
    scoped_server: LiveServer, served: Instance
) -> None:
    """A group-scoped token imports assets and store entries only within its groups; a
    read-only token imports nothing."""
    t0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    entry = StoreEntry("k", '"v"', 5, None, t0)
    served.asset_store("customers").set("k", "crm")
    with HTTPBackend(scoped_server.url, token=SALES) as sales:
        mine = AssetRecord("returns", "s3://data/returns", group="sales", created_at=t0)
        assert sales.import_asset(mine).created_at == t0
        assert sales.import_store("returns", [entry]) == 1
        with pytest.raises(AccessDeniedError, match="group 'crm'"):
            sales.import_asset(AssetRecord("leads", "s3://data/leads", group="crm"))
        with pytest.raises(AccessDeniedError, match="outside the groups"):
            sales.import_asset(AssetRecord("customers", "s3://data/customers", group="sales"))
        with pytest.raises(AssetNotFoundError, match="customers"):
            sales.import_store("customers", [entry])
    with HTTPBackend(scoped_server.url, token=READER) as reader:
        with pytest.raises(AccessDeniedError, match="read-only"):
            reader.import_store("orders", [entry])
        with pytest.raises(AccessDeniedError, match="read-only"):
            reader.import_asset(AssetRecord("x", "s3://data/x"))
    assert served.backend.store_get("returns", "k") == entry
    assert served.get_asset("leads") is None
    assert served.get_asset("customers").group == "crm"
    assert served.asset_store("customers").get("k") == "crm"


def test_named_connection_beats_the_environment_token(
    scoped_server: LiveServer, served: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_HTTP_TOKEN", ADMIN)
    monkeypatch.setenv("ASSETRY_CONN_ETL", json.dumps({"password": SALES}))
    with connect(scoped_server.url, conn_id="etl") as named, connect(scoped_server.url) as env:
        assert [r.name for r in named.assets()] == ["orders"]
        assert [r.name for r in env.assets()] == ["customers", "orders"]
    monkeypatch.delenv("ASSETRY_CONN_ETL")
    with pytest.raises(ConfigurationError, match="ASSETRY_CONN_ETL"):
        connect(scoped_server.url, conn_id="etl")


def test_a_contract_registered_through_the_server_checks_the_next_append(
    fresh_server: LiveServer,
) -> None:
    from assetry.errors import ValidationError

    schema = {"type": "object", "properties": {"rows": {"type": "integer"}}}
    with HTTPBackend(fresh_server.url, token=ADMIN) as backend:
        remote = Instance(backend=backend)
        remote.register(Asset("orders", uri="s3://data/orders"))
        remote.record_event("orders", {"rows": "three"})  # no contract yet: accepted
        remote.register(Asset("orders", uri="s3://data/orders", extra_schema=schema))
        with pytest.raises(ValidationError, match="rows"):
            remote.record_event("orders", {"rows": "four"})
        assert [e.extra for e in remote.events("orders")] == [{"rows": "three"}]
