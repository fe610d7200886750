"""Screenshots of the web view for docs/server.md, taken by headless Chromium.

    python docs/make_screenshots.py [OUT_DIR]     # default: docs/images

Seeds an in-memory instance with a small pipeline (producers, an alias, consumers, assets
that are fresh, late and stale against their declared freshness), serves it on a loopback
port with anonymous read access, and saves one PNG per page with JavaScript disabled (the
pages run none). Needs the server and test extras, Chromium and chromedriver
(``apt-get install chromium chromium-driver``). tests/test_server_browser.py drives the
same seeding and pages.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any

from assetry import Asset, Instance
from assetry.contracts import Freshness

HOUR = dt.timedelta(hours=1)
ORDERS = Asset(
    "sales/orders",
    uri="s3://lake/sales/orders/",
    group="sales",
    freshness=Freshness(HOUR, per_partition=True),  # each region every hour
    extra_schema={
        "type": "object",
        "properties": {"rows": {"type": "integer"}, "bytes": {"type": "integer"}},
    },
)
REVENUE = Asset(
    "sales/daily_revenue",
    uri="duckdb:///warehouse.db/daily_revenue",
    group="sales",
    freshness=dt.timedelta(days=1),
)
CUSTOMERS = Asset("crm/customers", uri="s3://lake/crm/customers/", group="crm", freshness=6 * HOUR)
FEATURES = Asset("ml/features", uri="s3://lake/ml/features/", group="ml")
EXPORT = Asset("exports/revenue.csv", uri="s3://exports/revenue.csv", group="sales")

#: The pages shot, as (file stem, path); the asset pages name ORDERS and REVENUE.
PAGES: tuple[tuple[str, str], ...] = (
    ("ui-assets", "/ui/"),
    ("ui-asset", "/ui/asset?name=sales%2Fdaily_revenue"),
    ("ui-timeline", "/ui/timeline?name=sales%2Forders"),
    ("ui-consumers", "/ui/consumers"),
    ("ui-lineage", "/ui/lineage"),
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def seed(instance: Instance, now: dt.datetime | None = None) -> None:
    """A small pipeline: orders every 20 minutes by region (each region fresh), revenue
    per day (late: its newest day is over a day old), customers three days old (stale), features without a freshness
    policy, an export emitted through the alias ``exports``, and three consumers."""
    now = now or dt.datetime.now(dt.UTC)
    regions = ("eu", "us", "apac")
    for i in range(36):
        at = now - dt.timedelta(minutes=10 + 20 * (35 - i))
        instance.record_event(
            ORDERS,
            extra={"rows": 1000 + 37 * i, "bytes": 52_000 + 1_900 * i},
            partition_key=regions[i % 3],
            source_task_id="ingest.load_orders",
            source_run_id=f"run-{i:03d}",
            timestamp=at,
        )
    for days in (4, 3, 2):
        day = (now - dt.timedelta(days=days)).strftime("%Y-%m-%d")
        instance.record_event(
            REVENUE,
            extra={"total": 10_000 + 250 * days},
            partition_key=day,
            source_task_id="reports.build_revenue",
            timestamp=now - dt.timedelta(days=days - 1, hours=6),
        )
    instance.record_event(
        CUSTOMERS,
        extra={"rows": 48_211},
        source_task_id="ingest.sync_crm",
        timestamp=now - dt.timedelta(days=3),
    )
    instance.record_event(FEATURES, source_task_id="ml.build_features", timestamp=now - 5 * HOUR)
    instance.record_event(
        EXPORT, aliases=["exports"], source_task_id="reports.export", timestamp=now - 2 * HOUR
    )
    instance.asset_store(ORDERS).set("watermark", (now - dt.timedelta(minutes=10)).isoformat())
    instance.asset_store(ORDERS).partition("eu").set("high_id", 981_224)
    backend = instance.backend
    backend.set_cursors("reports.build_revenue", {ORDERS.name: 27})
    backend.set_cursors("ml.train", {FEATURES.name: 1, CUSTOMERS.name: 1})
    backend.set_cursors("reports.notify", {EXPORT.name: 1})


def chromium(profile: Path, *, javascript: bool, width: int = 1100, height: int = 720) -> Any:
    """Headless Chromium through chromedriver (an explicit driver: selenium never downloads
    one); ``javascript=False`` blocks scripts for every site."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        raise RuntimeError(
            "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    return driver


def shoot(driver: Any, base_url: str, out_dir: Path) -> list[Path]:
    """Open each page of :data:`PAGES` and save its screenshot as ``OUT_DIR/<stem>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for stem, path in PAGES:
        driver.get(base_url + path)
        target = out_dir / f"{stem}.png"
        if not driver.save_screenshot(str(target)):
            raise RuntimeError(f"no screenshot of {path}")
        saved.append(target)
    return saved


def main(argv: list[str]) -> int:
    import tempfile

    from assetry.server import create_app
    from assetry.server.live import LiveServer

    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "images"
    with Instance(backend="memory") as instance, tempfile.TemporaryDirectory() as tmp:
        seed(instance)
        with LiveServer(create_app(instance, tokens=[], anonymous="read")) as server:
            driver = chromium(Path(tmp) / "profile", javascript=False)
            try:
                for path in shoot(driver, server.url, out_dir):
                    print(f"{path} ({path.stat().st_size:,} bytes)")
            finally:
                driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
