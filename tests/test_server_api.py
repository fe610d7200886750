"""The HTTP API of ``assetry serve``: every route, every error status, tokens and scopes.

Runs the application in process with FastAPI's TestClient on a memory backend. The
remote-backend behaviour (every StateBackend method through the server) is proved by the
conformance suite in ``test_http_backend.py``; here the routes are checked one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx
from assetry import Asset, Instance
from assetry.backend import Capabilities
from assetry.backends.memory import MemoryBackend
from assetry.config import load_settings
from assetry.errors import BackendUnavailableError, ConfigurationError, SchemaVersionError
from assetry.server.app import create_app
from assetry.server.auth import ApiToken, Authenticator, load_server_settings, parse_tokens
from assetry.server.live import LiveServer

with warnings.catch_warnings():  # starlette asks for httpx2, which is not needed here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADMIN = secrets.token_urlsafe(24)
READER = secrets.token_urlsafe(24)
SALES_WRITER = secrets.token_urlsafe(24)
SALES_READER = secrets.token_urlsafe(24)
TOKENS = [
    ApiToken("admin", ADMIN, "write"),
    ApiToken("reader", READER, "read"),
    ApiToken("sales-writer", SALES_WRITER, "write", frozenset({"sales"})),
    ApiToken("sales-reader", SALES_READER, "read", frozenset({"sales"})),
]
BODY_LIMIT = 256 * 1024

# names that break naive path handling: separators, escapes, dots, unicode
ODD_NAMES = ["a/b", "a%2Fb", "ключ/🚀", "..", ".", "a b?x=1#f", "a/"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def path_of(name: str) -> str:
    """The name as the last path segments: percent-encoded, dots too (else URL parsers
    resolve '.' and '..' away)."""
    return quote(name, safe="").replace(".", "%2E")


@pytest.fixture
def instance() -> Iterator[Instance]:
    with Instance(backend=MemoryBackend()) as inst:
        inst.register(Asset("orders", uri="s3://data/orders", group="sales"))
        inst.register(Asset("customers", uri="s3://data/customers", group="crm"))
        yield inst


@pytest.fixture(scope="module")
def shared_app() -> Any:
    return create_app(Instance(backend=MemoryBackend()), tokens=TOKENS, max_body_bytes=BODY_LIMIT)


@pytest.fixture
def app(shared_app: Any, instance: Instance) -> Any:
    """The module's app, serving this test's fresh instance."""
    shared_app.state.instance = instance
    return shared_app


@pytest.fixture
def client(app: Any) -> TestClient:
    return TestClient(app)


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    client.headers.update(bearer(ADMIN))
    return client


def assert_error(response: Any, status: int, type_: str) -> dict[str, Any]:
    """The response is ``status`` with the JSON error body of ``type_``; return the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]


# == every route =================================================================================


def route_calls() -> list[tuple[str, str, dict[str, Any]]]:
    """One successful call of every API route: (method, path, request keywords)."""
    entry = {"params": {"key": "k"}}
    by_uri = {"uri": "s3://data/orders"}
    event_body = {"extra": {"rows": 1}, "partition_key": "2024-06-01"}
    return [
        ("GET", "/api/v1/health", {}),
        ("GET", "/api/v1/ready", {}),
        ("GET", "/api/v1/assets", {}),
        ("POST", "/api/v1/assets", {"json": {"name": "new", "uri": "s3://data/new"}}),
        ("GET", "/api/v1/assets/orders", {}),
        ("DELETE", "/api/v1/assets/orders", {}),
        ("GET", "/api/v1/asset", {"params": by_uri}),
        ("DELETE", "/api/v1/asset", {"params": by_uri}),
        ("GET", "/api/v1/store/orders", {}),
        ("DELETE", "/api/v1/store/orders", {}),
        ("GET", "/api/v1/store", {"params": by_uri}),
        ("DELETE", "/api/v1/store", {"params": by_uri}),
        ("GET", "/api/v1/store-entry/orders", entry),
        ("PUT", "/api/v1/store-entry/orders", {**entry, "json": {"value": 2}}),
        ("DELETE", "/api/v1/store-entry/orders", entry),
        ("GET", "/api/v1/store-entry", {"params": {**by_uri, "key": "k"}}),
        ("PUT", "/api/v1/store-entry", {"params": {**by_uri, "key": "k"}, "json": {"value": 3}}),
        ("DELETE", "/api/v1/store-entry", {"params": {**by_uri, "key": "k"}}),
        ("GET", "/api/v1/events/orders", {}),
        ("POST", "/api/v1/events/orders", {"json": event_body}),
        ("GET", "/api/v1/events", {"params": by_uri}),
        ("POST", "/api/v1/events", {"params": by_uri, "json": event_body}),
        ("GET", "/api/v1/backend/info", {}),
        ("POST", "/api/v1/backend/schema_status", {"json": {}}),
        (
            "POST",
            "/api/v1/backend/register_asset",
            {"json": {"name": "raw", "uri": "s3://data/raw", "extra_json": '{"a":1}'}},
        ),
        ("POST", "/api/v1/backend/deactivate_asset", {"json": {"name": "orders"}}),
        ("POST", "/api/v1/backend/get_asset", {"json": {"name": "orders"}}),
        ("POST", "/api/v1/backend/get_asset_by_uri", {"json": {"uri": "s3://data/orders"}}),
        ("POST", "/api/v1/backend/list_assets", {"json": {}}),
        ("POST", "/api/v1/backend/store_get", {"json": {"asset": "orders", "key": "k"}}),
        (
            "POST",
            "/api/v1/backend/store_set",
            {"json": {"asset": "orders", "key": "k", "value_json": "[1, 2]"}},
        ),
        ("POST", "/api/v1/backend/store_delete", {"json": {"asset": "orders", "key": "k"}}),
        ("POST", "/api/v1/backend/store_clear", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/store_entries", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/store_keys", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/store_partitions", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/append_events", {"json": {"events": [{"asset": "orders"}]}}),
        ("POST", "/api/v1/backend/query_events", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/latest_events", {"json": {}}),
        ("POST", "/api/v1/backend/latest_partition_events", {"json": {"asset": "orders"}}),
        ("POST", "/api/v1/backend/alias_targets", {"json": {"alias": "al"}}),
        (
            "POST",
            "/api/v1/backend/import_events",
            {
                "json": {
                    "events": [
                        {
                            "id": 9,
                            "asset_name": "orders",
                            "asset_uri": "s3://data/orders",
                            "timestamp": "2024-06-01T00:00:00+00:00",
                        }
                    ]
                }
            },
        ),
        (
            "POST",
            "/api/v1/backend/import_asset",
            {"json": {"name": "raw", "uri": "s3://data/raw", "created_at": "2024-06-01T00:00Z"}},
        ),
        (
            "POST",
            "/api/v1/backend/import_store",
            {
                "json": {
                    "asset": "orders",
                    "entries": [{"key": "k", "value_json": "2", "version": 9}],
                }
            },
        ),
        ("POST", "/api/v1/backend/delete_events", {"json": {"asset": "orders", "ids": [1]}}),
        ("POST", "/api/v1/backend/get_cursors", {"json": {"consumer": "c"}}),
        (
            "POST",
            "/api/v1/backend/set_cursors",
            {"json": {"consumer": "c", "cursors": {"orders": 1}}},
        ),
        ("POST", "/api/v1/backend/list_consumers", {"json": {}}),
        ("POST", "/api/v1/backend/sweep", {"json": {}}),
        ("POST", "/api/v1/backend/apply", {"json": {"writes": [], "events": []}}),
    ]


def test_every_route_in_the_openapi_document_is_called_here(admin: TestClient) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in admin.get("/api/v1/openapi.json").json()["paths"].items()
        for method in operations
    }
    called = {(method, path.replace("/orders", "/{name}")) for method, path, _ in route_calls()}
    assert called == documented


@pytest.mark.parametrize(
    ("method", "path", "request_kw"),
    [pytest.param(*call, id=f"{call[0]} {call[1]}") for call in route_calls()],
)
def test_every_route_answers_with_an_admin_token(
    admin: TestClient, instance: Instance, method: str, path: str, request_kw: dict[str, Any]
) -> None:
    instance.asset_store("orders").set("k", 1)
    response = admin.request(method, path, **request_kw)
    assert response.status_code in (200, 201), response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("method", "path", "request_kw"),
    [pytest.param(*call, id=f"{call[0]} {call[1]}") for call in route_calls()[2:]],
)
def test_every_route_but_health_needs_a_token(
    client: TestClient, method: str, path: str, request_kw: dict[str, Any]
) -> None:
    error = assert_error(client.request(method, path, **request_kw), 401, "unauthorized")
    assert "Bearer" in error["message"]


def writes(call: tuple[str, str, dict[str, Any]]) -> bool:
    method, path, _ = call
    reads = {"get_asset", "get_asset_by_uri", "list_assets", "store_get", "store_entries"}
    reads |= {"store_keys", "store_partitions", "query_events", "latest_events"}
    reads |= {"latest_partition_events", "alias_targets", "get_cursors", "list_consumers"}
    reads |= {"schema_status", "info"}
    if path.startswith("/api/v1/backend/"):
        return path.rsplit("/", 1)[1] not in reads
    return method != "GET"


@pytest.mark.parametrize(
    ("method", "path", "request_kw"),
    [pytest.param(*c, id=f"{c[0]} {c[1]}") for c in route_calls()[2:] if writes(c)],
)
def test_read_only_token_gets_403_from_every_writing_route(
    client: TestClient, instance: Instance, method: str, path: str, request_kw: dict[str, Any]
) -> None:
    instance.asset_store("orders").set("k", 1)
    response = client.request(method, path, headers=bearer(READER), **request_kw)
    error = assert_error(response, 403, "forbidden")
    assert "read-only" in error["message"]
    assert instance.asset_store("orders").get("k") == 1
    assert instance.backend.get_asset("orders").active  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "path", "request_kw"),
    [pytest.param(*c, id=f"{c[0]} {c[1]}") for c in route_calls()[2:] if not writes(c)],
)
def test_read_only_token_reads_every_reading_route(
    client: TestClient, instance: Instance, method: str, path: str, request_kw: dict[str, Any]
) -> None:
    instance.asset_store("orders").set("k", 1)
    response = client.request(method, path, headers=bearer(READER), **request_kw)
    assert response.status_code == 200, response.text


# == authentication ==============================================================================


def test_unknown_token_is_refused_without_echoing_it(client: TestClient) -> None:
    guess = "guess-" + secrets.token_urlsafe(16)
    response = client.get("/api/v1/assets", headers=bearer(guess))
    error = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert guess not in response.text and "not one the server knows" in error["message"]


@pytest.mark.parametrize(
    "header",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Token abc", ADMIN, "bearer  "],
    ids=["basic", "bearer-without-token", "other-scheme", "token-without-scheme", "blank-token"],
)
def test_malformed_authorization_headers_are_401(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/assets", headers={"Authorization": header})
    assert_error(response, 401, "unauthorized")
    assert ADMIN not in response.text


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    response = client.get("/api/v1/assets", headers={"Authorization": f"bearer {ADMIN}"})
    assert response.status_code == 200


def test_cookie_from_the_web_view_does_not_authenticate_the_api(client: TestClient) -> None:
    client.cookies.set("assetry_token", ADMIN)
    assert_error(client.get("/api/v1/assets"), 401, "unauthorized")
    assert_error(
        client.put("/api/v1/store-entry/orders", params={"key": "k"}, json={"value": 1}),
        401,
        "unauthorized",
    )


def test_anonymous_read_access_reads_but_cannot_write(instance: Instance) -> None:
    client = TestClient(create_app(instance, tokens=[], anonymous="read"))
    assert [a["name"] for a in client.get("/api/v1/assets").json()["assets"]] == [
        "customers",
        "orders",
    ]
    response = client.put("/api/v1/store-entry/orders", params={"key": "k"}, json={"value": 1})
    assert_error(response, 403, "forbidden")


def test_tokens_compare_by_digest_and_secrets_stay_out_of_reprs() -> None:
    token = ApiToken("ci", ADMIN, "write", frozenset({"sales"}))
    auth = Authenticator([token])
    assert ADMIN not in repr(token) and ADMIN not in repr(auth)
    assert token.secret == ""  # only the digest is kept
    principal = auth.authenticate(ADMIN)
    assert principal is not None and (principal.name, principal.access) == ("ci", "write")
    assert principal.groups == frozenset({"sales"})
    assert auth.authenticate(ADMIN[:-1]) is None
    assert auth.authenticate(None) is None


# == scopes ======================================================================================


def test_scoped_token_lists_only_its_groups(client: TestClient) -> None:
    names = [
        a["name"]
        for a in client.get("/api/v1/assets", headers=bearer(SALES_READER)).json()["assets"]
    ]
    assert names == ["orders"]


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("GET", "/api/v1/assets/customers", {}),
        ("GET", "/api/v1/asset", {"params": {"uri": "s3://data/customers"}}),
        ("GET", "/api/v1/store/customers", {}),
        ("GET", "/api/v1/store-entry/customers", {"params": {"key": "k"}}),
        ("GET", "/api/v1/events/customers", {}),
        ("PUT", "/api/v1/store-entry/customers", {"params": {"key": "k"}, "json": {"value": 9}}),
        ("DELETE", "/api/v1/store/customers", {}),
        ("DELETE", "/api/v1/assets/customers", {}),
        ("POST", "/api/v1/events/customers", {"json": {}}),
    ],
)
def test_asset_outside_the_token_groups_looks_absent(
    client: TestClient, instance: Instance, method: str, path: str, kw: dict[str, Any]
) -> None:
    instance.asset_store("customers").set("k", 1)
    out_of_scope = client.request(method, path, headers=bearer(SALES_WRITER), **kw)
    missing = client.request(
        method, path.replace("customers", "nowhere"), headers=bearer(SALES_WRITER), **kw
    )
    assert_error(out_of_scope, 404, "asset_not_found")
    assert_error(missing, 404, "asset_not_found")
    assert out_of_scope.json()["error"]["message"] == missing.json()["error"]["message"].replace(
        "nowhere", "customers"
    )
    assert instance.asset_store("customers").get("k") == 1
    assert instance.backend.get_asset("customers").active  # type: ignore[union-attr]


def test_scoped_token_works_on_its_own_group(client: TestClient, instance: Instance) -> None:
    headers = bearer(SALES_WRITER)
    put = client.put(
        "/api/v1/store-entry/orders", params={"key": "k"}, json={"value": 5}, headers=headers
    )
    assert put.status_code == 200
    assert client.post("/api/v1/events/orders", json={}, headers=headers).status_code == 201
    assert instance.asset_store("orders").get("k") == 5


def test_scoped_token_registers_only_into_its_groups(
    client: TestClient, instance: Instance
) -> None:
    headers = bearer(SALES_WRITER)
    outside = client.post(
        "/api/v1/assets", json={"name": "x", "uri": "s3://x", "group": "crm"}, headers=headers
    )
    assert_error(outside, 403, "forbidden")
    inside = client.post(
        "/api/v1/assets", json={"name": "x", "uri": "s3://x", "group": "sales"}, headers=headers
    )
    assert inside.status_code == 201 and inside.json()["group"] == "sales"
    assert instance.backend.get_asset("x") is not None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "customers", "uri": "s3://data/customers", "group": "sales"},
        {"name": "other", "uri": "s3://data/customers", "group": "sales"},
    ],
    ids=["same-name", "same-uri"],
)
def test_scoped_token_cannot_take_over_an_asset_of_another_group(
    client: TestClient, instance: Instance, body: dict[str, str]
) -> None:
    response = client.post("/api/v1/assets", json=body, headers=bearer(SALES_WRITER))
    assert_error(response, 403, "forbidden")
    record = instance.backend.get_asset("customers")
    assert record is not None and record.group == "crm"


def test_scoped_token_sees_backend_family_through_its_scope(
    client: TestClient, instance: Instance
) -> None:
    instance.asset_store("customers").set("k", 1)
    instance.record_event("customers")
    instance.record_event("orders")
    headers = bearer(SALES_WRITER)

    def call(method: str, **body: Any) -> Any:
        return client.post(f"/api/v1/backend/{method}", json=body, headers=headers)

    assert call("get_asset", name="customers").json() == {"asset": None}
    assert call("get_asset_by_uri", uri="s3://data/customers").json() == {"asset": None}
    assert [a["name"] for a in call("list_assets").json()["assets"]] == ["orders"]
    assert call("store_get", asset="customers", key="k").json() == {"entry": None}
    assert call("store_entries", asset="customers").json() == {"entries": []}
    assert call("query_events", asset="customers").json() == {"events": []}
    assert set(call("latest_events").json()["events"]) == {"orders"}
    assert set(call("latest_events", assets=["orders", "customers"]).json()["events"]) == {"orders"}
    assert call("deactivate_asset", name="customers").json() == {"result": False}
    assert_error(
        call("store_set", asset="customers", key="k", value_json="2"), 404, "asset_not_found"
    )
    assert_error(call("append_events", events=[{"asset": "customers"}]), 404, "asset_not_found")
    assert_error(
        call("apply", writes=[{"asset": "customers", "key": "k", "value_json": "3"}]),
        404,
        "asset_not_found",
    )
    assert_error(
        call("set_cursors", consumer="c", cursors={"customers": 1}), 404, "asset_not_found"
    )
    assert_error(call("sweep"), 403, "forbidden")
    instance.backend.set_cursors("c", {"customers": 4, "orders": 2})
    instance.backend.set_cursors("crm-only", {"customers": 1})
    assert call("get_cursors", consumer="c").json() == {"cursors": {"orders": 2}}
    assert call("list_consumers").json() == {"names": ["c"]}
    assert instance.asset_store("customers").get("k") == 1
    assert instance.backend.get_asset("customers").active  # type: ignore[union-attr]


# == assets ======================================================================================


def test_list_assets_with_latest_event_and_filters(admin: TestClient, instance: Instance) -> None:
    instance.record_event("orders", extra={"rows": 3})
    instance.deactivate("customers")
    assets = admin.get("/api/v1/assets").json()["assets"]
    assert [(a["name"], a["active"]) for a in assets] == [("customers", False), ("orders", True)]
    assert assets[1]["latest_event"]["extra"] == {"rows": 3}
    assert assets[0]["latest_event"] is None
    assert [a["name"] for a in admin.get("/api/v1/assets?active=true").json()["assets"]] == [
        "orders"
    ]
    assert [a["name"] for a in admin.get("/api/v1/assets?group=crm").json()["assets"]] == [
        "customers"
    ]


def test_show_asset_has_latest_event_per_partition(admin: TestClient, instance: Instance) -> None:
    instance.record_event("orders", partition_key="2024-06-01")
    instance.record_event("orders", partition_key="2024-06-02")
    instance.record_event("orders", partition_key="2024-06-01", extra={"late": True})
    instance.asset_store("orders").partition("2024-06-01").set("rows", 5)
    body = admin.get("/api/v1/assets/orders").json()
    assert body["asset"]["group"] == "sales"
    assert body["latest_event"]["id"] == 3
    assert {p: e["id"] for p, e in body["latest_partition_events"].items()} == {
        "2024-06-01": 3,
        "2024-06-02": 2,
    }
    assert body["store_partitions"] == ["2024-06-01"]


def test_register_then_register_again_and_conflicts(admin: TestClient) -> None:
    created = admin.post(
        "/api/v1/assets",
        json={
            "name": "sales/daily",
            "uri": "s3://Data/daily/",
            "group": "sales",
            "extra": {"o": 1},
        },
    )
    assert created.status_code == 201
    assert created.json()["uri"] == "s3://Data/daily"
    again = admin.post("/api/v1/assets", json={"name": "sales/daily", "uri": "s3://Data/daily"})
    assert again.status_code == 201
    clash = admin.post("/api/v1/assets", json={"name": "sales/daily", "uri": "s3://elsewhere"})
    assert "sales/daily" in assert_error(clash, 409, "conflict")["message"]


@pytest.mark.parametrize(
    "body",
    [{}, {"uri": ""}, {"name": "x", "uri": "assetry://x"}, {"name": "bad\x01name"}, {"name": 5}],
)
def test_register_rejects_invalid_assets_with_422(admin: TestClient, body: dict[str, Any]) -> None:
    response = admin.post("/api/v1/assets", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["type"] in {"invalid_argument", "invalid_request"}


def test_deactivate_makes_store_read_only_and_register_reactivates(
    admin: TestClient, instance: Instance
) -> None:
    instance.asset_store("orders").set("k", 1)
    assert admin.delete("/api/v1/assets/orders").json() == {"name": "orders", "deactivated": True}
    assert admin.delete("/api/v1/assets/orders").json()["deactivated"] is False
    put = admin.put("/api/v1/store-entry/orders", params={"key": "k"}, json={"value": 2})
    assert_error(put, 409, "asset_inactive")
    assert_error(admin.delete("/api/v1/store/orders"), 409, "asset_inactive")
    assert_error(admin.post("/api/v1/events/orders", json={}), 409, "asset_inactive")
    assert admin.get("/api/v1/store-entry/orders", params={"key": "k"}).json()["value"] == 1
    back = admin.post("/api/v1/assets", json={"name": "orders", "uri": "s3://data/orders"})
    assert back.json()["active"] is True


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, httpx.Client]]:
    """The app on uvicorn: the TestClient decodes a path twice, a real server once."""
    app = create_app(Instance(backend=MemoryBackend()), tokens=TOKENS)
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=server.url, headers=bearer(ADMIN)) as http,
    ):
        yield server, http


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_asset_names_work_in_the_path_and_in_the_query(
    live: tuple[LiveServer, httpx.Client], name: str
) -> None:
    server, http = live
    instance = Instance(backend=MemoryBackend())
    server.app.state.instance = instance
    instance.register(Asset(name, uri="s3://odd/asset"))
    in_path = http.get(f"/api/v1/assets/{path_of(name)}")
    in_query = http.get("/api/v1/asset", params={"name": name})
    assert in_path.status_code == 200, in_path.text
    assert in_path.json()["asset"]["name"] == in_query.json()["asset"]["name"] == name
    put = http.put(
        f"/api/v1/store-entry/{path_of(name)}", params={"key": "k/ü"}, json={"value": name}
    )
    assert put.status_code == 200
    assert instance.asset_store(name).get("k/ü") == name
    event = http.post(f"/api/v1/events/{path_of(name)}", json={})
    assert event.json()["asset_name"] == name


def test_slash_in_a_name_can_be_sent_literally(admin: TestClient, instance: Instance) -> None:
    instance.register(Asset("a/b", uri="s3://x/a-b"))
    instance.register(Asset("a", uri="s3://x/a"))
    assert admin.get("/api/v1/assets/a/b").json()["asset"]["name"] == "a/b"
    assert admin.get("/api/v1/assets/a%2Fb").json()["asset"]["name"] == "a/b"
    assert admin.get("/api/v1/assets/a").json()["asset"]["name"] == "a"


def test_asset_by_uri_is_normalised(admin: TestClient) -> None:
    response = admin.get("/api/v1/asset", params={"uri": "S3://data/orders/"})
    assert response.json()["asset"]["name"] == "orders"


@pytest.mark.parametrize(
    "params", [{}, {"name": "orders", "uri": "s3://data/orders"}], ids=["neither", "both"]
)
def test_query_form_needs_exactly_one_of_name_and_uri(
    admin: TestClient, params: dict[str, str]
) -> None:
    assert_error(admin.get("/api/v1/asset", params=params), 422, "invalid_request")


def test_unknown_asset_is_404_everywhere(admin: TestClient) -> None:
    for method, path in [
        ("GET", "/api/v1/assets/nope"),
        ("DELETE", "/api/v1/assets/nope"),
        ("GET", "/api/v1/store/nope"),
        ("GET", "/api/v1/events/nope"),
        ("GET", "/api/v1/asset?uri=s3://nope"),
    ]:
        error = assert_error(admin.request(method, path), 404, "asset_not_found")
        assert "nope" in error["message"]


# == store =======================================================================================


def test_store_set_get_list_delete_clear(admin: TestClient, instance: Instance) -> None:
    url = "/api/v1/store-entry/orders"
    value = {"nested": [1, 2.5, "✓", None], "big": 2**70, "float": 1.0}
    assert admin.put(url, params={"key": "k"}, json={"value": value}).json() == {
        "key": "k",
        "version": 1,
        "partition": None,
    }
    got = admin.get(url, params={"key": "k"})
    assert got.json()["value"] == value and got.json()["version"] == 1
    assert '"float":1.0' in got.text  # a float stays a float
    admin.put(url, params={"key": "p", "partition": "2024-06-01"}, json={"value": 1})
    listing = admin.get("/api/v1/store/orders").json()
    assert [(e["key"], e["version"]) for e in listing["entries"]] == [("k", 1)]
    in_partition = admin.get("/api/v1/store/orders", params={"partition": "2024-06-01"}).json()
    assert [e["key"] for e in in_partition["entries"]] == ["p"]
    assert admin.delete(url, params={"key": "k"}).json() == {"deleted": True}
    assert admin.delete(url, params={"key": "k"}).json() == {"deleted": False}
    assert admin.delete("/api/v1/store/orders", params={"partition": "2024-06-01"}).json() == {
        "cleared": 1
    }
    admin.put(url, params={"key": "a"}, json={"value": 1})
    admin.put(url, params={"key": "b", "partition": "p"}, json={"value": 1})
    assert admin.delete("/api/v1/store/orders").json() == {"cleared": 2}
    assert instance.asset_store("orders").keys() == []


def test_missing_key_is_404_key_not_found(admin: TestClient) -> None:
    error = assert_error(
        admin.get("/api/v1/store-entry/orders", params={"key": "absent"}), 404, "key_not_found"
    )
    assert "absent" in error["message"]


def test_compare_and_set_answers_409_when_it_loses(admin: TestClient, instance: Instance) -> None:
    url, key = "/api/v1/store-entry/orders", {"key": "owner"}
    assert (
        admin.put(url, params=key, json={"value": "a", "expected_version": None}).status_code == 200
    )
    lost = admin.put(url, params=key, json={"value": "b", "expected_version": None})
    assert "owner" in assert_error(lost, 409, "conflict")["message"]
    assert_error(
        admin.put(url, params=key, json={"value": "b", "expected_version": 7}), 409, "conflict"
    )
    won = admin.put(url, params=key, json={"value": "b", "expected_version": 1})
    assert won.json()["version"] == 2
    assert_error(admin.delete(url, params={**key, "expected_version": 1}), 409, "conflict")
    assert admin.delete(url, params={**key, "expected_version": 2}).json() == {"deleted": True}
    assert instance.asset_store("orders").get("owner") is None


@pytest.mark.parametrize(
    "content",
    [
        b'{"value": null}',
        b'{"value": NaN}',
        b'{"value": [1, Infinity]}',
        b'{"value": {"a": "nul\\u0000"}}',
    ],
    ids=["null", "nan", "infinity", "nul-char"],
)
def test_store_rejects_what_the_library_rejects(
    admin: TestClient, instance: Instance, content: bytes
) -> None:
    instance.asset_store("orders").set("k", "before")
    response = admin.put(
        "/api/v1/store-entry/orders",
        params={"key": "k"},
        content=content,
        headers={"content-type": "application/json"},
    )
    assert_error(response, 422, "invalid_value")
    assert instance.asset_store("orders").get("k") == "before"


def test_store_applies_the_instance_value_size_limit(admin: TestClient, instance: Instance) -> None:
    limit = instance.max_value_bytes
    url = "/api/v1/store-entry/orders"
    assert admin.put(url, params={"key": "k"}, json={"value": "x" * (limit - 2)}).status_code == 200
    error = assert_error(
        admin.put(url, params={"key": "k"}, json={"value": "x" * (limit - 1)}), 422, "invalid_value"
    )
    assert str(limit) in error["message"]


@pytest.mark.parametrize(
    "params", [{"key": ""}, {"key": "k" * 513}, {"key": "k", "partition": ""}, {}]
)
def test_store_rejects_bad_keys_and_partitions(admin: TestClient, params: dict[str, str]) -> None:
    response = admin.put("/api/v1/store-entry/orders", params=params, json={"value": 1})
    assert response.status_code == 422
    assert response.json()["error"]["type"] in {"invalid_value", "invalid_request"}


def test_store_set_rejects_unknown_body_fields(admin: TestClient) -> None:
    response = admin.put(
        "/api/v1/store-entry/orders", params={"key": "k"}, json={"value": 1, "version": 3}
    )
    error = assert_error(response, 422, "invalid_request")
    assert error["details"][0]["loc"] == ["body", "version"]


# == events ======================================================================================


def test_create_event_for_an_external_producer(admin: TestClient, instance: Instance) -> None:
    response = admin.post(
        "/api/v1/events",
        params={"uri": "s3://data/orders"},
        json={
            "extra": {"rows": 10},
            "partition_key": "2024-06-01",
            "source_task_id": "spark-job",
            "source_run_id": "run-7",
            "aliases": ["daily"],
            "timestamp": "2024-06-01T12:00:00",
        },
    )
    assert response.status_code == 201
    event = response.json()
    assert (event["id"], event["asset_name"], event["extra"]) == (1, "orders", {"rows": 10})
    stored = instance.latest_event("orders")
    assert stored is not None
    assert stored.timestamp == dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)  # naive means UTC
    assert (stored.source_task_id, stored.aliases) == ("spark-job", ("daily",))


def test_event_pagination_with_cursor_both_ways(admin: TestClient, instance: Instance) -> None:
    instance.record_events("orders", [{"i": i} for i in range(7)])
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = admin.get("/api/v1/events/orders", params=params).json()
        seen += [e["id"] for e in page["events"]]
        if page["next_cursor"] is None:
            break
        params["after"] = page["next_cursor"]
    assert seen == list(range(1, 8))
    seen = []
    params = {"limit": 3, "order": "desc"}
    while True:
        page = admin.get("/api/v1/events/orders", params=params).json()
        seen += [e["id"] for e in page["events"]]
        if page["next_cursor"] is None:
            break
        params["before"] = page["next_cursor"]
    assert seen == list(range(7, 0, -1))


def test_event_filters_by_partition_and_time(admin: TestClient, instance: Instance) -> None:
    t0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    for i, partition in enumerate(["p1", "p2", "p1", "p2"]):
        instance.record_event(
            "orders", partition_key=partition, timestamp=t0 + dt.timedelta(hours=i)
        )
    by_partition = admin.get("/api/v1/events/orders", params={"partition": "p2"}).json()
    assert [e["id"] for e in by_partition["events"]] == [2, 4]
    window = admin.get(
        "/api/v1/events/orders",
        params={"since": "2024-06-01T01:00:00Z", "until": "2024-06-01T03:00:00+00:00"},
    ).json()
    assert [e["id"] for e in window["events"]] == [2, 3]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"after": -1}, {"order": "sideways"}, {"since": "yesterday"}],
)
def test_event_listing_rejects_bad_parameters(admin: TestClient, params: dict[str, Any]) -> None:
    assert_error(admin.get("/api/v1/events/orders", params=params), 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"extra": {"x": float("inf")}},
        {"partition_key": ""},
        {"aliases": [""]},
        {"extra": "not-a-dict"},
    ],
    ids=["inf", "empty-partition", "empty-alias", "extra-not-object"],
)
def test_create_event_rejects_invalid_bodies(
    admin: TestClient, instance: Instance, body: dict[str, Any]
) -> None:
    content = json.dumps(body).encode()
    response = admin.post(
        "/api/v1/events/orders", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert instance.latest_event("orders") is None


# == the backend family ==========================================================================


def test_backend_family_revalidates_values(admin: TestClient, instance: Instance) -> None:
    def store_set(value_json: str) -> Any:
        return admin.post(
            "/api/v1/backend/store_set",
            json={"asset": "orders", "key": "k", "value_json": value_json},
        )

    assert store_set('  { "a" : 1.0 }').json() == {"version": 1}
    entry = instance.backend.store_get("orders", "k")
    assert entry is not None and entry.value_json == '{"a":1.0}'  # canonical text stored
    for bad in ["NaN", "null", "{", "[1, -Infinity]", json.dumps("x" * 70_000)]:
        assert_error(store_set(bad), 422, "invalid_value")
    assert instance.backend.store_get("orders", "k").version == 1  # type: ignore[union-attr]


def test_backend_family_expected_version_semantics(admin: TestClient) -> None:
    def store_set(**extra: Any) -> Any:
        body = {"asset": "orders", "key": "k", "value_json": "1", **extra}
        return admin.post("/api/v1/backend/store_set", json=body)

    assert store_set(expected_version=None).json() == {"version": 1}
    assert_error(store_set(expected_version=None), 409, "conflict")
    assert store_set(expected_version=1).json() == {"version": 2}
    assert store_set().json() == {"version": 3}


def test_backend_info_reports_capabilities_and_limits(admin: TestClient) -> None:
    info = admin.get("/api/v1/backend/info").json()
    assert info["backend"] == "memory"
    assert info["capabilities"]["event_import"] is True
    assert info["max_body_bytes"] == BODY_LIMIT


class _NoImportBackend(MemoryBackend):
    capabilities = Capabilities(persistent=False, multi_process=False)

    def import_events(self, events: Any) -> int:
        return super(MemoryBackend, self).import_events(events)


def test_missing_backend_capability_is_501() -> None:
    instance = Instance(backend=_NoImportBackend())
    instance.register(Asset("orders", uri="s3://data/orders"))
    client = TestClient(create_app(instance, tokens=TOKENS))
    event = {"id": 1, "asset_name": "orders", "asset_uri": "s3://data/orders"}
    response = client.post(
        "/api/v1/backend/import_events",
        json={"events": [{**event, "timestamp": "2024-06-01T00:00:00Z"}]},
        headers=bearer(ADMIN),
    )
    assert "event_import" in assert_error(response, 501, "not_implemented")["message"]


# == request limits and other statuses ===========================================================


def test_body_over_the_limit_is_413_before_anything_runs(
    admin: TestClient, instance: Instance
) -> None:
    big = {"value": "x" * BODY_LIMIT}
    response = admin.put("/api/v1/store-entry/orders", params={"key": "k"}, json=big)
    assert str(BODY_LIMIT) in assert_error(response, 413, "payload_too_large")["message"]
    assert instance.asset_store("orders").get("k") is None


def test_chunked_body_over_the_limit_is_413(admin: TestClient, instance: Instance) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"value": "'
        for _ in range(BODY_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = admin.put(
        "/api/v1/store-entry/orders",
        params={"key": "k"},
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")
    assert instance.asset_store("orders").get("k") is None


def test_unknown_route_and_method_are_json_errors(admin: TestClient) -> None:
    assert_error(admin.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(admin.patch("/api/v1/assets"), 405, "method_not_allowed")


def test_malformed_json_is_422(admin: TestClient) -> None:
    response = admin.put(
        "/api/v1/store-entry/orders",
        params={"key": "k"},
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_error(response, 422, "invalid_request")


class _ExplodingBackend(MemoryBackend):
    def list_assets(self, *, active: bool | None = None) -> Any:
        raise RuntimeError(f"driver failed: postgresql://etl:{ADMIN}@db/prod")

    def latest_events(self, assets: Any = None) -> Any:
        raise BackendUnavailableError("the database at postgresql://etl:***@db/prod is down")


def test_unexpected_failure_is_500_without_trace_or_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(
        create_app(Instance(backend=_ExplodingBackend()), tokens=TOKENS),
        raise_server_exceptions=False,
    )
    caplog.set_level(logging.ERROR, logger="assetry.server")
    response = client.get("/api/v1/assets", headers=bearer(ADMIN))
    error = assert_error(response, 500, "internal")
    assert ADMIN not in response.text and "driver failed" not in response.text
    assert "server log" in error["message"]
    assert "RuntimeError: driver failed: postgresql://etl:***@db/prod" in caplog.text
    assert ADMIN not in caplog.text


def test_backend_unavailable_is_503(admin: TestClient) -> None:
    client = TestClient(create_app(Instance(backend=_ExplodingBackend()), tokens=TOKENS))
    response = client.post("/api/v1/backend/latest_events", json={}, headers=bearer(ADMIN))
    assert "down" in assert_error(response, 503, "backend_unavailable")["message"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    assert client.get("/api/v1/ready").json() == {"status": "ready"}


class _BrokenBackend(MemoryBackend):
    def get_asset(self, name: str) -> Any:
        raise BackendUnavailableError("connection refused by postgresql://db/prod")


class _OldSchemaBackend(MemoryBackend):
    def schema_status(self) -> dict[str, str | None]:
        return {"current": "0001", "head": "0002"}


class _RaisesOldSchemaBackend(MemoryBackend):
    def get_asset(self, name: str) -> Any:
        raise SchemaVersionError("the database is at revision 0001; run assetry db upgrade")


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        (_BrokenBackend(), "does not answer"),
        (_OldSchemaBackend(), "assetry db upgrade"),
        (_RaisesOldSchemaBackend(), "assetry db upgrade"),
    ],
    ids=["unreachable", "old-schema", "old-schema-raised"],
)
def test_readiness_is_503_when_the_backend_is_not_ready(backend: Any, words: str) -> None:
    client = TestClient(create_app(Instance(backend=backend), tokens=TOKENS))
    response = client.get("/api/v1/ready")
    error = assert_error(response, 503, "backend_unavailable")
    assert words in error["message"] and "postgresql" not in response.text


def test_readiness_of_a_new_sql_database_is_ready_on_the_first_probe(tmp_path: Any) -> None:
    inst = Instance.from_url(f"sqlite:///{tmp_path}/new.db")
    try:
        client = TestClient(create_app(inst, tokens=TOKENS))
        assert client.get("/api/v1/ready").json() == {"status": "ready"}
    finally:
        inst.close()


def test_openapi_documents_bearer_auth_and_error_bodies(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    put = doc["paths"]["/api/v1/store-entry/{name}"]["put"]
    for status in ("401", "403", "404", "409", "413", "422"):
        schema = put["responses"][status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorOut")


def test_openapi_names_the_bearer_scheme_on_every_backend_operation(client: TestClient) -> None:
    """The backend routes check the token through read_scope/write_scope, not a dependency;
    their operations still declare the scheme, as the dependency-based routes do."""
    doc = client.get("/api/v1/openapi.json").json()
    backend = {p: ops for p, ops in doc["paths"].items() if p.startswith("/api/v1/backend/")}
    assert len(backend) > 20
    for path, operations in backend.items():
        for method, operation in operations.items():
            assert operation.get("security") == [{"bearer": []}], (method, path)
    assert doc["paths"]["/api/v1/store-entry/{name}"]["put"]["security"] == [{"bearer": []}]


# == configuration ===============================================================================


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI_TOKEN", ADMIN)
    monkeypatch.setenv(
        "ASSETRY_SERVER_TOKENS",
        json.dumps(
            [
                {"name": "ci", "token_env": "CI_TOKEN", "access": "write"},
                {"name": "bot", "token": READER, "groups": ["sales"]},
            ]
        ),
    )
    monkeypatch.setenv("ASSETRY_SERVER_MAX_BODY_BYTES", "4096")
    settings = load_server_settings()
    assert [(t.name, t.access, t.groups) for t in settings.tokens] == [
        ("ci", "write", None),
        ("bot", "read", frozenset({"sales"})),
    ]
    assert settings.max_body_bytes == 4096
    app = create_app(Instance(backend=MemoryBackend()))
    assert TestClient(app).get("/api/v1/assets", headers=bearer(READER)).status_code == 200


def test_tokens_from_pyproject_name_their_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.assetry]\nbackend = 'memory'\n\n[tool.assetry.server]\nmax_body_bytes = 2048\n"
        "tokens = [{name = 'etl', token_env = 'ETL_TOKEN', access = 'write', groups = ['sales']}]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSETRY_SERVER_TOKENS", raising=False)
    monkeypatch.setenv("ETL_TOKEN", SALES_WRITER)
    settings = load_server_settings()
    assert [(t.name, t.groups) for t in settings.tokens] == [("etl", frozenset({"sales"}))]
    assert settings.max_body_bytes == 2048
    assert load_settings().backend == "memory"  # the server table does not upset the rest


@pytest.mark.parametrize(
    ("entries", "source", "words"),
    [
        ([{"name": "x", "token": ADMIN}], "pyproject.toml", "literal secret"),
        ([{"name": "x", "token_env": "UNSET_TOKEN_VAR"}], "environment X", "not set"),
        ([{"name": "x", "token": "short"}], "environment X", "shorter than 16"),
        ([{"name": "x", "token": ADMIN, "access": "admin"}], "environment X", "access"),
        ([{"name": "x", "token": ADMIN, "groups": "sales"}], "environment X", "groups"),
        ([{"name": "x", "token": ADMIN, "scope": 1}], "environment X", "unknown field"),
        ({"name": "x"}, "environment X", "list"),
        ([{"name": "x"}], "environment X", "token_env"),
    ],
)
def test_bad_token_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, entries: Any, source: str, words: str
) -> None:
    monkeypatch.delenv("UNSET_TOKEN_VAR", raising=False)
    with pytest.raises(ConfigurationError, match=words) as info:
        parse_tokens(entries, source=source)
    assert ADMIN not in str(info.value)


def test_duplicate_token_names_or_secrets_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unique"):
        Authenticator([ApiToken("a", ADMIN), ApiToken("a", READER)])
    with pytest.raises(ConfigurationError, match="share one secret"):
        Authenticator([ApiToken("a", ADMIN), ApiToken("b", ADMIN)])
