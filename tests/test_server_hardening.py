"""Hostile requests answer 4xx with a clear body, never 500, on every SQL engine; scoped
tokens cannot reach other groups' consumers through aliases; authentication comes before
validation; cross-site sign-out is refused; tokens never reach the access log; slow
clients are dropped; the sign-in cookie holds a signed session, not the token."""

from __future__ import annotations

import logging
import secrets
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

import sqlalchemy as sa
from assetry import Asset, AssetAlias, Instance
from assetry.backends.memory import MemoryBackend
from assetry.backends.sql import SQLBackend
from assetry.backends.sql.testing import scratch_database
from assetry.server.app import create_app
from assetry.server.auth import ApiToken, Authenticator, SessionSigner
from assetry.server.live import LiveServer
from assetry.server.transport import TimedH11Protocol, redact_target
from conftest import service_missing

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADMIN = secrets.token_urlsafe(24)
SALES = secrets.token_urlsafe(24)
TOKENS = [
    ApiToken("admin", ADMIN, "write"),
    ApiToken("sales", SALES, "write", frozenset({"sales"})),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["memory", "postgresql", "mariadb"])
def backend_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "memory":
        yield None
        return
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    try:
        with scratch_database(url) as scratch:
            yield scratch
    except sa.exc.OperationalError as exc:
        service_missing(request.param, str(exc.orig).strip())


@pytest.fixture
def instance(backend_url: str | None) -> Iterator[Instance]:
    backend = MemoryBackend() if backend_url is None else SQLBackend(backend_url)
    with Instance(backend=backend) as inst:
        inst.register(Asset("orders", uri="s3://data/orders", group="sales"))
        inst.register(Asset("payroll", uri="s3://data/payroll", group="hr"))
        yield inst


@pytest.fixture
def client(instance: Instance) -> TestClient:
    return TestClient(create_app(instance, tokens=TOKENS), follow_redirects=False)


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    assert message and "Traceback" not in response.text
    return message


# -- hostile input answers 4xx on every engine ----------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "before=9223372036854775808",
        "before=-1",
        "before=abc",
        "partition=%00",
        "partition=" + "p" * 600,
        "name=%00",
    ],
)
def test_timeline_refuses_out_of_range_input_with_a_clear_page(
    client: TestClient, query: str
) -> None:
    name = "" if query.startswith("name=") else "name=orders&"
    response = client.get(f"/ui/timeline?{name}{query}", headers=bearer(ADMIN))
    assert response.status_code == 422, response.text
    assert "Invalid request" in response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source_run_id", "r" * 70_000),
        ("source_task_id", "t" * 70_000),
        ("aliases", [f"alias-{i}-" + "x" * 1400 for i in range(50)]),
        ("aliases", [f"a{i}" for i in range(500)]),
        ("source_run_id", "run\x00id"),
    ],
)
def test_event_fields_over_the_limits_answer_422(
    client: TestClient, field: str, value: Any
) -> None:
    public = client.post("/api/v1/events/orders", json={field: value}, headers=bearer(ADMIN))
    assert field in _error(public, 422)
    raw = client.post(
        "/api/v1/backend/append_events",
        json={"events": [{"asset": "orders", field: value}]},
        headers=bearer(ADMIN),
    )
    assert field in _error(raw, 422)


@pytest.mark.parametrize("contract", ["+", "[1]", "5", '"text"', "{"])
@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("register_asset", {"name": "raw", "uri": "s3://data/raw"}),
        (
            "import_asset",
            {"name": "raw", "uri": "s3://data/raw", "created_at": "2024-06-01T00:00Z"},
        ),
    ],
)
def test_a_contract_that_is_not_a_json_object_answers_422_and_registers_nothing(
    client: TestClient, instance: Instance, route: str, body: dict[str, Any], contract: str
) -> None:
    response = client.post(
        f"/api/v1/backend/{route}", json={**body, "contract_json": contract}, headers=bearer(ADMIN)
    )
    assert "contract" in _error(response, 422)
    assert instance.backend.get_asset("raw") is None


@pytest.mark.parametrize(
    "body",
    [
        {"consumer": "c" * 70_000, "cursors": {"orders": 1}},
        {"consumer": "c", "cursors": {"o" * 70_000: 1}},
        {"consumer": "", "cursors": {"orders": 1}},
    ],
)
def test_cursors_with_over_long_names_answer_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/backend/set_cursors", json=body, headers=bearer(ADMIN))
    assert "consumer" in _error(response, 422) or "cursors" in response.text


def test_events_at_the_limits_are_stored(client: TestClient, instance: Instance) -> None:
    body = {"source_run_id": "r" * 1024, "aliases": [f"a{i}" for i in range(100)]}
    response = client.post("/api/v1/events/orders", json=body, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    (event,) = instance.events("orders")
    assert event.source_run_id == "r" * 1024 and len(event.aliases) == 100


# -- aliases are scoped ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_scoped_token_cannot_emit_through_another_groups_alias(
    client: TestClient, instance: Instance
) -> None:
    instance.record_event("payroll", aliases=[AssetAlias("hr-feed").name])
    for path, body in (
        ("/api/v1/events/orders", {"aliases": ["hr-feed"]}),
        (
            "/api/v1/backend/append_events",
            {"events": [{"asset": "orders", "aliases": ["hr-feed"]}]},
        ),
        ("/api/v1/backend/apply", {"events": [{"asset": "orders", "aliases": ["hr-feed"]}]}),
    ):
        response = client.post(path, json=body, headers=bearer(SALES))
        assert "hr-feed" in _error(response, 403), path
    assert instance.backend.alias_targets("hr-feed") == ["payroll"]
    # an alias of its own group still works, and the admin may use any alias
    ok = client.post(
        "/api/v1/events/orders", json={"aliases": ["sales-feed"]}, headers=bearer(SALES)
    )
    assert ok.status_code == 201, ok.text
    again = client.post(
        "/api/v1/events/orders", json={"aliases": ["sales-feed"]}, headers=bearer(SALES)
    )
    assert again.status_code == 201, again.text
    admin = client.post(
        "/api/v1/events/orders", json={"aliases": ["hr-feed"]}, headers=bearer(ADMIN)
    )
    assert admin.status_code == 201, admin.text


# -- authentication first ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("POST", "/api/v1/backend/append_events", {"content": b"{not json"}),
        ("POST", "/api/v1/backend/store_set", {"json": {"asset": 1}}),
        ("GET", "/api/v1/events/orders", {"params": {"after": "-5"}}),
        ("GET", "/api/v1/asset", {}),
        ("POST", "/api/v1/assets", {"content": b"x" * (2 * 1024 * 1024)}),
    ],
)
def test_unauthenticated_requests_get_401_before_any_validation(
    client: TestClient, method: str, path: str, kw: dict[str, Any]
) -> None:
    response = client.request(method, path, **kw)
    _error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = client.request(method, path, headers=bearer("not-a-token-at-all"), **kw)
    _error(wrong, 401)


# -- the web view's sign-in ----------------------------------------------------------------------------


def _sign_in(client: TestClient, token: str) -> Any:
    return client.post(
        "/ui/login",
        content=f"token={token}&next=/ui/".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_cross_site_sign_out_is_refused(client: TestClient) -> None:
    assert _sign_in(client, ADMIN).status_code == 303
    for headers in (
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "null"},
    ):
        response = client.post("/ui/logout", headers=headers)
        assert response.status_code == 403, headers
        assert "set-cookie" not in response.headers
    assert client.get("/ui/").status_code == 200  # still signed in
    same = client.post(
        "/ui/logout", headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    )
    assert same.status_code == 303 and "assetry_token=" in same.headers["set-cookie"]


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_sign_in_cookie_holds_a_signed_session_not_the_token(client: TestClient) -> None:
    response = _sign_in(client, SALES)
    cookie = client.cookies.get("assetry_token")
    assert cookie and SALES not in cookie and SALES not in response.headers["set-cookie"]
    page = client.get("/ui/")
    assert page.status_code == 200 and "sales" in page.text
    # a forged or altered session is no session
    body, signature = cookie.split(".")
    for forged in (f"{body}.{signature[:-2]}AA", f"{body}x.{signature}", SALES, "a.b"):
        client.cookies.set("assetry_token", forged, path="/ui")
        assert client.get("/ui/").status_code == 303, forged


def test_sessions_expire_and_end_with_their_token() -> None:
    auth = Authenticator(TOKENS)
    signer = SessionSigner(auth)
    session = signer.issue(SALES, now=1000.0)
    assert session is not None and signer.issue("unknown-token-xxxxxxxx") is None
    principal = signer.open(session, now=1001.0)
    assert principal is not None and principal.name == "sales"
    assert signer.open(session, now=1000.0 + 13 * 3600) is None
    # a new secret under the same name, or another server key, ends the session
    rotated = Authenticator([TOKENS[0], ApiToken("sales", secrets.token_urlsafe(24), "write")])
    assert SessionSigner(rotated, key=signer._key).open(session, now=1001.0) is None
    assert SessionSigner(auth).open(session, now=1001.0) is None


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_pages_answer_head(client: TestClient) -> None:
    for page in ("/ui/", "/ui/asset?name=orders", "/ui/timeline?name=orders", "/ui/login"):
        response = client.head(page, headers=bearer(ADMIN))
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        assert response.content == b""
    assert client.head("/").status_code == 307
    docs = client.head("/api/docs")
    assert docs.status_code == 200 and docs.content == b""


# -- the access log and slow clients, on a real server ------------------------------------------------


def test_access_log_never_shows_a_token_from_a_query_string() -> None:
    import httpx

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    app = create_app(Instance(backend=MemoryBackend()), tokens=TOKENS)
    access = logging.getLogger("uvicorn.access")
    with LiveServer(app, access_log=True) as server:
        access.addHandler(handler)
        try:
            for query in (
                f"token={ADMIN}",
                f"access_token={SALES}",
                f"q={ADMIN}",
                "api_key=k-1234",
            ):
                httpx.get(f"{server.url}/api/v1/health?{query}&after=5")
            deadline = time.monotonic() + 5
            while len(records) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            access.removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert len(lines) >= 4, lines
    text = "\n".join(lines)
    assert ADMIN not in text and SALES not in text and "k-1234" not in text
    assert "after=5" in text and "token=***" in text and "q=***" in text
    assert redact_target("/x?name=orders") == "/x?name=orders"


def test_slow_half_open_connections_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimedH11Protocol, "read_timeout", 1.0)
    app = create_app(Instance(backend=MemoryBackend()), tokens=TOKENS)
    with LiveServer(app) as server:
        slow: list[socket.socket] = []
        for i in range(20):
            sock = socket.create_connection((server.host, server.port), timeout=5)
            if i % 2:  # half the clients send part of a request line, then stall
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        started = time.monotonic()
        for sock in slow:
            sock.settimeout(5)
            assert sock.recv(1024) in (b"",), "the server should close a stalled connection"
            sock.close()
        assert time.monotonic() - started < 4.5
        # a client that sends its request slowly but within the deadline is served
        sock = socket.create_connection((server.host, server.port), timeout=5)
        for chunk in (b"GET /api/v1/health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(chunk)
            time.sleep(0.2)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.close()


def test_error_bodies_with_long_words_are_scrubbed_in_linear_time() -> None:
    """A 70,000-character name in an invalid request is echoed in the error's location;
    masking secrets in that text must not backtrack from every position (minutes of CPU)."""
    from assetry.urls import scrub_text

    for text in ("o" * 70_000, "x://h/p?" + "q" * 70_000, "a" * 70_000 + "=1 token=s3cr3t"):
        started = time.monotonic()
        scrubbed = scrub_text(text)
        assert time.monotonic() - started < 1.0
    assert "s3cr3t" not in scrubbed
    assert scrub_text("see password=hunter2 and url postgresql://u:pw@h/db?sslpassword=x") == (
        "see password=*** and url postgresql://u:***@h/db?sslpassword=***"
    )
