"""The web view, in process: signing in, what the pages show, scopes, and the headers and
escaping that keep a browser safe. (A real browser walks it in test_server_browser.py.)"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from assetry import Asset, Instance
from assetry.backends.memory import MemoryBackend
from assetry.server.app import create_app
from assetry.server.auth import ApiToken

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADMIN = secrets.token_urlsafe(24)
SALES = secrets.token_urlsafe(24)
EVIL = Asset('<script>alert("x")</script>', uri="s3://data/evil", group="sales")


@pytest.fixture
def instance() -> Iterator[Instance]:
    with Instance(backend=MemoryBackend()) as inst:
        inst.register(Asset("orders", uri="s3://data/orders", group="sales"))
        inst.register(Asset("customers", uri="s3://data/customers", group="crm"))
        yield inst


@pytest.fixture(scope="module")
def shared_app() -> Any:
    tokens = [
        ApiToken("admin", ADMIN, "write"),
        ApiToken("sales", SALES, "read", frozenset({"sales"})),
    ]
    return create_app(Instance(backend=MemoryBackend()), tokens=tokens)


@pytest.fixture
def client(shared_app: Any, instance: Instance) -> TestClient:
    shared_app.state.instance = instance
    return TestClient(shared_app, follow_redirects=False)


def sign_in(client: TestClient, token: str, next: str = "/ui/") -> Any:
    return client.post(
        "/ui/login",
        content=f"token={token}&next={next}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def test_pages_redirect_to_sign_in_without_a_token(client: TestClient) -> None:
    for page in ("/ui/", "/ui/asset?name=orders", "/ui/timeline?name=orders"):
        response = client.get(page)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F")


def test_sign_in_sets_a_strict_http_only_cookie(client: TestClient) -> None:
    response = sign_in(client, ADMIN, "/ui/asset?name=orders")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/asset?name=orders"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    page = client.get("/ui/asset?name=orders")
    assert page.status_code == 200 and "orders" in page.text


def test_wrong_token_is_refused_with_401_and_no_cookie(client: TestClient) -> None:
    response = sign_in(client, "x" * 30)
    assert response.status_code == 401
    assert "not one this server knows" in response.text
    assert "set-cookie" not in response.headers
    assert "x" * 30 not in response.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui", "/api/v1/assets"])
def test_sign_in_never_redirects_off_the_view(client: TestClient, target: str) -> None:
    response = sign_in(client, ADMIN, target)
    assert response.headers["location"] == "/ui/"


def test_sign_in_posted_from_another_site_is_refused(client: TestClient) -> None:
    response = client.post(
        "/ui/login",
        content=f"token={ADMIN}&next=/ui/".encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "origin": "https://evil.example",
        },
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers
    same = client.post(
        "/ui/login",
        content=f"token={ADMIN}&next=/ui/".encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "origin": "http://testserver",
        },
    )
    assert same.status_code == 303 and "set-cookie" in same.headers


def test_sign_out_clears_the_cookie(client: TestClient) -> None:
    sign_in(client, ADMIN)
    response = client.post("/ui/logout")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert 'assetry_token=""' in response.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/ui/").status_code == 303


def test_assets_page_shows_freshness_and_the_token_scope(
    client: TestClient, instance: Instance
) -> None:
    instance.record_event("orders", extra={"rows": 5}, partition_key="2024-06-01")
    sign_in(client, SALES)
    page = client.get("/ui/").text
    assert "orders" in page and "customers" not in page  # crm is outside the token's groups
    assert "#1" in page and "s ago" in page and "2024-06-01" in page
    assert "sales · read · groups: sales" in page


def test_group_filter(client: TestClient) -> None:
    sign_in(client, ADMIN)
    page = client.get("/ui/?group=crm").text
    assert "customers" in page and ">orders<" not in page


def test_asset_page_shows_partitions_store_and_recent_events(
    client: TestClient, instance: Instance
) -> None:
    for partition in ("2024-06-01", "2024-06-02"):
        instance.record_event("orders", partition_key=partition)
    store = instance.asset_store("orders")
    store.set("watermark", "2024-06-02")
    store.partition("2024-06-02").set("rows", 12)
    sign_in(client, ADMIN)
    page = client.get("/ui/asset?name=orders").text
    assert page.count("2024-06-02") >= 3  # freshness row, store partition heading, event
    assert "watermark" in page and "&#34;2024-06-02&#34;" in page and "rows" in page
    assert 'href="/ui/timeline?name=orders"' in page


def test_timeline_pages_back_through_events(client: TestClient, instance: Instance) -> None:
    instance.record_events("orders", [{"i": i} for i in range(60)])
    sign_in(client, ADMIN)
    first = client.get("/ui/timeline?name=orders").text
    assert "<td>60</td>" in first and "<td>11</td>" in first and "<td>10</td>" not in first
    assert 'href="/ui/timeline?name=orders&amp;before=11"' in first
    older = client.get("/ui/timeline?name=orders&before=11").text
    assert "<td>10</td>" in older and "<td>1</td>" in older and "Older events" not in older


def test_unknown_or_out_of_scope_asset_is_a_404_page(client: TestClient) -> None:
    sign_in(client, SALES)
    for name in ("nowhere", "customers"):
        response = client.get(f"/ui/asset?name={name}")
        assert response.status_code == 404 and "No such asset" in response.text


def test_names_and_values_are_escaped(client: TestClient, instance: Instance) -> None:
    instance.register(EVIL)
    instance.asset_store(EVIL).set("<img src=x onerror=alert(1)>", "</code><script>")
    instance.record_event(EVIL, extra={"html": "<b>bold</b>"})
    sign_in(client, ADMIN)
    for page in ("/ui/", f"/ui/asset?name={EVIL.name}", f"/ui/timeline?name={EVIL.name}"):
        html = client.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert" in client.get(f"/ui/asset?name={EVIL.name}").text


def test_pages_carry_a_content_security_policy(client: TestClient) -> None:
    sign_in(client, ADMIN)
    response = client.get("/ui/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    css = client.get("/ui/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_anonymous_read_server_shows_pages_without_sign_in(instance: Instance) -> None:
    client = TestClient(create_app(instance, tokens=[], anonymous="read"))
    page = client.get("/ui/")
    assert page.status_code == 200 and "orders" in page.text and "Sign out" not in page.text


def test_root_leads_to_the_view(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 307 and response.headers["location"] == "/ui/"


def test_pages_show_fresh_late_and_stale_against_the_declared_freshness(
    client: TestClient, instance: Instance
) -> None:
    import datetime as dt

    from assetry.contracts import Freshness

    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    instance.record_event(Asset("hourly", freshness=hour), timestamp=now - 90 * hour / 60)
    instance.record_event(Asset("daily", freshness=dt.timedelta(days=1)), timestamp=now)
    parts = Asset("parts", freshness=Freshness(hour, per_partition=True))
    instance.record_event(parts, partition_key="p-new", timestamp=now)
    instance.record_event(parts, partition_key="p-old", timestamp=now - 5 * hour)
    sign_in(client, ADMIN)
    page = client.get("/ui/").text
    row = {
        name: page.split(f">{name}</a>")[1].split("</tr>")[0]
        for name in ("hourly", "daily", "parts", "orders")
    }
    assert '<span class="status late">late</span>' in row["hourly"]
    assert '<span class="status fresh">fresh</span>' in row["daily"]
    assert '<span class="status stale">stale</span>' in row["parts"]  # its worst partition
    assert 'class="status undeclared"' in row["orders"]  # nothing declared: not judged
    instance.record_event("hourly", partition_key="p-old", timestamp=now - 9 * hour)
    whole = client.get("/ui/asset?name=hourly").text
    assert "every 1h per partition" not in whole and "every 1h ·" in whole
    table = whole.split('id="partitions"')[1].split("</table>")[0]
    assert "status stale" not in table and "status undeclared" in table  # judged as a whole
    asset = client.get("/ui/asset?name=parts").text
    partitions = asset.split('id="partitions"')[1]
    assert partitions.split("p-old")[2].split("</tr>")[0].count("status stale") == 1
    assert partitions.split("p-new")[2].split("</tr>")[0].count("status fresh") == 1
