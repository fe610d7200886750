"""The web view in a real browser: headless Chromium signs in, finds an asset seeded by
the test, follows it to its timeline, and the test saves a screenshot of it."""

from __future__ import annotations

import datetime as dt
import importlib.util
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from assetry import Asset, Instance
from assetry.backends.memory import MemoryBackend
from assetry.server.app import create_app
from assetry.server.auth import ApiToken
from assetry.server.live import LiveServer
from conftest import service_missing

TOKEN = secrets.token_urlsafe(24)
ORDERS = Asset("sales/orders ✓", uri="s3://lake/sales/orders", group="sales")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    # the network is off: only loopback resolves, so a page that needs a CDN fails here
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium through chromedriver, with a fresh profile."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        service_missing("Chromium and chromedriver", "apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        service_missing("selenium", "pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    # an explicit driver path: selenium-manager never tries to download one
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server() -> Iterator[tuple[LiveServer, Instance]]:
    instance = Instance(backend=MemoryBackend())
    other = Asset("crm/customers", uri="s3://lake/crm/customers", group="crm")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2, hours=1)
    for day in range(3):
        partition = (start + dt.timedelta(days=day)).strftime("%Y-%m-%d")
        instance.record_event(
            ORDERS,
            extra={"rows": 100 * (day + 1), "source": "<b>not html</b>"},
            partition_key=partition,
            source_task_id="load_orders",
            timestamp=start + dt.timedelta(days=day),
        )
    store = instance.asset_store(ORDERS)
    store.set("watermark", "2024-06-03T00:00:00Z")
    store.partition("2024-06-03").set("row_count", 300)
    instance.record_event(other, extra={"rows": 7})
    app = create_app(instance, tokens=[ApiToken("analyst", TOKEN, "read", frozenset({"sales"}))])
    with LiveServer(app) as live:
        yield live, instance


def test_browser_signs_in_follows_an_asset_to_its_timeline_and_screenshots(
    browser: object, server: tuple[LiveServer, Instance], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    live, _ = server
    wait = WebDriverWait(browser, 20)

    browser.get(f"{live.url}/ui/")
    wait.until(ec.presence_of_element_located((By.ID, "token")))
    assert "/ui/login" in browser.current_url  # no token yet: the view asks for one
    browser.find_element(By.ID, "token").send_keys("not-a-real-token-at-all")
    browser.find_element(By.ID, "sign-in").click()
    error = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
    assert "not one this server knows" in error.text

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    table = wait.until(ec.presence_of_element_located((By.ID, "assets")))
    links = [a.text for a in table.find_elements(By.CSS_SELECTOR, "a.asset-link")]
    assert links == [ORDERS.name]  # the crm asset is outside the token's groups
    assert "#3" in table.text and "1h ago" in table.text  # the last event and its age

    browser.find_element(By.LINK_TEXT, ORDERS.name).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "asset-name"), ORDERS.name))
    partitions = browser.find_element(By.ID, "partitions").text
    assert partitions.count("ago") == 3  # freshness of each partition
    assert "watermark" in browser.page_source and "row_count" in browser.page_source

    browser.find_element(By.ID, "timeline-link").click()
    timeline = wait.until(ec.presence_of_element_located((By.ID, "timeline")))
    rows = timeline.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["3", "2", "1"]
    assert "<b>not html</b>" in timeline.text  # extra is shown as text, never as markup
    assert "load_orders" in timeline.text
    assert browser.title == f"Timeline of {ORDERS.name} · assetry"

    shot = tmp_path / "timeline.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_api_docs_render_in_chromium_with_the_network_off(
    browser: object, server: tuple[LiveServer, Instance], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    live, _ = server
    wait = WebDriverWait(browser, 30)
    browser.get(f"{live.url}/api/docs")
    title = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title"))
    )
    assert "assetry" in title.text
    operations = wait.until(
        lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path") or None
    )
    paths = {op.text.replace("\u200b", "") for op in operations}
    assert "/api/v1/assets" in paths and "/api/v1/backend/store_set" in paths
    # no request left this machine: every resource came from the server itself
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(url.startswith(live.url) for url in loaded), loaded
    shot = tmp_path / "api-docs.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def _screenshot_script() -> ModuleType:
    """docs/make_screenshots.py, whose pipeline seeds the pages shot here."""
    path = Path(__file__).resolve().parent.parent / "docs" / "make_screenshots.py"
    spec = importlib.util.spec_from_file_location("make_screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("javascript", [True, False], ids=["js-on", "js-off"])
def test_every_page_works_in_chromium_with_and_without_javascript(
    javascript: bool, tmp_path: Path
) -> None:
    """Sign in through the form, then the assets, asset, timeline, consumers and lineage
    pages: their freshness badges, tables and SVG (nodes, edges, points) render, the SVG
    links lead on, and each page is saved as a screenshot."""
    if shutil.which("chromedriver") is None or not (
        shutil.which("chromium") or shutil.which("chromium-browser")
    ):
        service_missing("Chromium and chromedriver", "apt-get install chromium chromium-driver")
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = _screenshot_script()
    token = secrets.token_urlsafe(24)
    instance = Instance(backend=MemoryBackend())
    shots.seed(instance)
    app = create_app(instance, tokens=[ApiToken("oncall", token, "read")])
    browser = shots.chromium(tmp_path / "profile", javascript=javascript)
    wait = WebDriverWait(browser, 20)  # a click returns before the page it leads to loads
    try:
        browser.get("data:text/html,<title>off</title><script>document.title='on'</script>")
        assert browser.title == ("on" if javascript else "off")  # scripts really are off
        with LiveServer(app) as live:
            browser.get(f"{live.url}/ui/lineage")
            assert "/ui/login" in browser.current_url
            browser.find_element(By.ID, "token").send_keys(token)
            browser.find_element(By.ID, "sign-in").click()  # a plain form post
            wait.until(ec.url_matches(r"/ui/lineage$"))

            nodes = browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.node")
            names = {n.get_attribute("data-node") for n in nodes}
            assert {"producer:ingest.load_orders", "alias:exports", "asset:sales/orders"} <= names
            assert "consumer:reports.build_revenue" in names and len(names) == 14
            assert len(browser.find_elements(By.CSS_SELECTOR, "#lineage-graph path.edge")) == 10
            box = browser.find_element(By.CSS_SELECTOR, '[data-node="asset:sales/orders"] rect')
            assert box.size["width"] > 100 and box.size["height"] > 20  # drawn, not just sent
            browser.save_screenshot(str(tmp_path / "lineage.png"))
            browser.find_element(By.CSS_SELECTOR, '[data-node="asset:sales/orders"]').click()
            name = wait.until(ec.presence_of_element_located((By.ID, "asset-name")))
            assert name.text == "sales/orders"
            statuses = browser.find_elements(By.CSS_SELECTOR, "#partitions .status")
            assert [s.text for s in statuses] == ["fresh"] * 3  # each region, per partition
            browser.save_screenshot(str(tmp_path / "asset.png"))

            browser.get(f"{live.url}/ui/")
            rows = {
                r.find_element(By.CSS_SELECTOR, "a.asset-link").text: r.text
                for r in browser.find_elements(By.CSS_SELECTOR, "#assets tbody tr")
            }
            assert rows["sales/orders"].endswith("fresh apac")
            assert "late" in rows["sales/daily_revenue"] and "stale" in rows["crm/customers"]
            browser.save_screenshot(str(tmp_path / "assets.png"))

            browser.get(f"{live.url}/ui/timeline?name=sales%2Forders")
            points = browser.find_elements(By.CSS_SELECTOR, "#timeline-chart circle.point")
            assert len(points) == 36
            labels = browser.find_elements(By.CSS_SELECTOR, "#timeline-chart text.row-label")
            assert sorted(t.text for t in labels) == ["apac", "eu", "us"]
            browser.save_screenshot(str(tmp_path / "timeline.png"))
            oldest = min(points, key=lambda p: int(p.get_attribute("data-id")))
            oldest.click()  # a point leads to its row in the table
            wait.until(ec.url_matches(r"before=2#event-1$"))
            assert wait.until(ec.presence_of_element_located((By.ID, "event-1"))).is_displayed()

            browser.get(f"{live.url}/ui/consumers")
            table = browser.find_element(By.ID, "consumers").text
            assert "reports.build_revenue sales/orders #27 #36 9" in table  # 9 events behind
            assert "ml.train" in table and "reports.notify" in table
            browser.save_screenshot(str(tmp_path / "consumers.png"))
    finally:
        browser.quit()
        instance.close()
    for name in ("lineage", "asset", "assets", "timeline", "consumers"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, name
