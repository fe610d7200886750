"""The web view's consumers, lineage and timeline-chart pages, in process: what the SVG
holds (nodes, edges, points, parsed as XML), scopes, and hostile names kept as text."""

from __future__ import annotations

import datetime as dt
import secrets
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from assetry import Asset, AssetAlias, Instance
from assetry.backends.memory import MemoryBackend
from assetry.lineage import lineage_from_state
from assetry.runtime import run_ready, task
from assetry.server.app import create_app
from assetry.server.auth import ApiToken
from assetry.server.svg import MAX_ROWS, timeline_svg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADMIN = secrets.token_urlsafe(24)
SALES = secrets.token_urlsafe(24)
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</text><script>alert(1)</script><svg onload="x">&amp;'
ORDERS = Asset("orders", uri="s3://data/orders", group="sales")
REPORT = Asset("report", uri="s3://data/report", group="sales")
PEOPLE = Asset("people", uri="s3://data/people", group="hr")
T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def instance() -> Iterator[Instance]:
    with Instance(backend=MemoryBackend()) as inst:
        yield inst


@pytest.fixture
def client(instance: Instance) -> TestClient:
    tokens = [
        ApiToken("admin", ADMIN, "write"),
        ApiToken("sales", SALES, "read", frozenset({"sales"})),
    ]
    return TestClient(create_app(instance, tokens=tokens), follow_redirects=False)


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def svg_of(page: str, svg_id: str) -> ET.Element:
    """The page's inline SVG, parsed as XML (so it must be well formed)."""
    start = page.index(f'<svg id="{svg_id}"')
    return ET.fromstring(page[start : page.index("</svg>", start) + len("</svg>")])


def seed(inst: Instance) -> None:
    """load_orders → orders (directly), publish → report through alias 'reports',
    consumer 'build_report' on orders, consumer 'hr_sync' on people (group hr)."""
    inst.record_event(ORDERS, source_task_id="load_orders", timestamp=T0)
    inst.record_event(ORDERS, source_task_id="load_orders", timestamp=T0 + dt.timedelta(hours=1))
    inst.record_event(REPORT, source_task_id="publish", aliases=["reports"], timestamp=T0)
    inst.record_event(PEOPLE, source_task_id="load_people", timestamp=T0)
    inst.backend.set_cursors("build_report", {"orders": 1})
    inst.backend.set_cursors("hr_sync", {"people": 1})


def test_lineage_from_state_and_declared_tasks(instance: Instance) -> None:
    seed(instance)

    @task(outlets=[AssetAlias("reports")], schedule=ORDERS)
    def never_ran() -> None:
        pass

    records = instance.backend.list_assets()
    graph = lineage_from_state(instance.backend, records, tasks=[never_ran])
    edges = {(e.source.kind, e.source.name, e.target.kind, e.target.name) for e in graph.edges}
    assert edges == {
        ("producer", "load_orders", "asset", "orders"),
        ("producer", "publish", "alias", "reports"),
        ("alias", "reports", "asset", "report"),
        ("producer", "load_people", "asset", "people"),
        ("asset", "orders", "consumer", "build_report"),
        ("asset", "people", "consumer", "hr_sync"),
        ("producer", "never_ran", "alias", "reports"),
        ("asset", "orders", "consumer", "never_ran"),
    }


def test_lineage_page_draws_nodes_and_edges_and_respects_scopes(
    client: TestClient, instance: Instance
) -> None:
    seed(instance)
    page = client.get("/ui/lineage", headers=as_(ADMIN))
    assert page.status_code == 200
    svg = svg_of(page.text, "lineage-graph")
    nodes = {g.get("data-node") for g in svg.iter(f"{SVG}g")}
    assert nodes == {
        "producer:load_orders",
        "producer:publish",
        "producer:load_people",
        "alias:reports",
        "asset:orders",
        "asset:report",
        "asset:people",
        "consumer:build_report",
        "consumer:hr_sync",
    }
    edges = {(p.get("data-source"), p.get("data-target")) for p in svg.iter(f"{SVG}path")}
    assert ("producer:publish", "alias:reports") in edges
    assert ("alias:reports", "asset:report") in edges
    assert ("asset:orders", "consumer:build_report") in edges and len(edges) == 6
    links = {a.get("href") for a in svg.iter(f"{SVG}a")}
    assert "/ui/asset?name=orders" in links and "/ui/consumers?consumer=build_report" in links

    scoped = svg_of(client.get("/ui/lineage", headers=as_(SALES)).text, "lineage-graph")
    names = {g.get("data-node") for g in scoped.iter(f"{SVG}g")}
    assert "asset:people" not in names and "consumer:hr_sync" not in names
    assert "producer:load_people" not in names and "asset:orders" in names
    crm = svg_of(client.get("/ui/lineage?group=hr", headers=as_(ADMIN)).text, "lineage-graph")
    assert {
        g.get("data-node") for g in crm.iter(f"{SVG}g") if "asset:" in g.get("data-node", "")
    } == {"asset:people"}


def test_consumers_page_shows_cursors_and_events_behind(
    client: TestClient, instance: Instance
) -> None:
    seed(instance)
    instance.record_events("orders", [{"i": i} for i in range(3)])  # events 3, 4, 5 of orders

    @task(schedule=REPORT)
    def read_report() -> None:
        pass

    run_ready(read_report, instance=instance)  # a real consumer moves its cursor
    page = client.get("/ui/consumers", headers=as_(ADMIN)).text
    table = page.split('id="consumers"')[1]
    build = table.split(">build_report</a>")[1].split("</tr>")[0]
    assert ">orders</a>" in build and "<td>#1</td>" in build and "<td>#5</td>" in build
    assert '<td class="behind waiting">4</td>' in build  # events 2 to 5
    report = table.split(">read_report</a>")[1].split("</tr>")[0]
    assert '<td class="behind">0</td>' in report
    assert ">hr_sync</a>" in table
    scoped = client.get("/ui/consumers", headers=as_(SALES)).text
    assert "hr_sync" not in scoped and "people" not in scoped and "build_report" in scoped
    one = client.get("/ui/consumers?consumer=hr_sync", headers=as_(ADMIN)).text
    assert "hr_sync" in one and ">build_report</a>" not in one


def test_consumers_behind_is_capped(client: TestClient, instance: Instance) -> None:
    from assetry.server.pages import BEHIND_CAP

    instance.record_events(ORDERS, [{} for _ in range(BEHIND_CAP + 5)])
    instance.backend.set_cursors("slow", {"orders": 1})
    page = client.get("/ui/consumers", headers=as_(ADMIN)).text
    assert f'<td class="behind waiting">{BEHIND_CAP}+</td>' in page


def test_timeline_chart_plots_each_event_by_partition(
    client: TestClient, instance: Instance
) -> None:
    for day in range(3):
        for part in ("eu", "us"):
            instance.record_event(ORDERS, partition_key=part, timestamp=T0 + dt.timedelta(days=day))
    page = client.get("/ui/timeline?name=orders", headers=as_(ADMIN)).text
    svg = svg_of(page, "timeline-chart")
    points = list(svg.iter(f"{SVG}circle"))
    assert sorted(int(p.get("data-id", "0")) for p in points) == [1, 2, 3, 4, 5, 6]
    rows = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "row-label"]
    assert sorted(rows) == ["eu", "us"]
    by_id = {int(p.get("data-id", "0")): p for p in points}
    assert by_id[1].get("cy") == by_id[3].get("cy") != by_id[2].get("cy")  # one row each
    assert (
        float(by_id[1].get("cx", 0)) < float(by_id[3].get("cx", 0)) < float(by_id[5].get("cx", 0))
    )
    assert by_id[1].get("cx") == by_id[2].get("cx")  # same time, same x
    assert page.index('id="timeline-chart"') < page.index('id="timeline"')  # above the table
    links = {a.get("href") for a in svg.iter(f"{SVG}a")}
    assert "/ui/timeline?name=orders&before=4#event-3" in links
    only = svg_of(
        client.get("/ui/timeline?name=orders&partition=eu", headers=as_(ADMIN)).text,
        "timeline-chart",
    )
    assert sorted(int(p.get("data-id", "0")) for p in only.iter(f"{SVG}circle")) == [1, 3, 5]


def test_timeline_chart_folds_many_partitions_into_one_row() -> None:
    from assetry.models import AssetEvent

    events = [
        AssetEvent(
            id=i + 1,
            asset_name="a",
            asset_uri="a",
            extra={},
            timestamp=T0 + dt.timedelta(minutes=i),
            partition_key=f"p{i}",
        )
        for i in range(MAX_ROWS + 3)
    ]
    svg = ET.fromstring(str(timeline_svg(events, lambda e: f"#e{e.id}")))
    rows = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "row-label"]
    assert len(rows) == MAX_ROWS and rows[-1] == "other partitions"
    assert len(list(svg.iter(f"{SVG}circle"))) == MAX_ROWS + 3


def test_hostile_names_stay_text_in_every_page_and_svg(
    client: TestClient, instance: Instance
) -> None:
    evil = Asset(HOSTILE, uri="s3://data/evil", group="sales")
    instance.record_event(
        evil, source_task_id=HOSTILE, aliases=[HOSTILE], partition_key="<p>", extra={"x": 1}
    )
    instance.backend.set_cursors(HOSTILE, {HOSTILE: 1})
    for path in ("/ui/lineage", "/ui/consumers", "/ui/timeline", "/ui/", "/ui/asset"):
        response = client.get(path, params={"name": HOSTILE}, headers=as_(ADMIN))
        assert response.status_code == 200, path
        text = response.text
        assert "<script>" not in text and "<svg onload" not in text, path
        assert "&lt;script&gt;alert(1)" in text, path  # shown, as text
        if path in ("/ui/lineage", "/ui/timeline"):
            svg = svg_of(text, "lineage-graph" if path == "/ui/lineage" else "timeline-chart")
            titles = "".join(t.text or "" for t in svg.iter(f"{SVG}title"))
            assert HOSTILE in titles or "<p>" in titles  # the name, shown as text


def test_new_pages_redirect_to_sign_in_and_answer_head(client: TestClient) -> None:
    for page in ("/ui/consumers", "/ui/lineage"):
        assert client.get(page).status_code == 303
        assert client.head(page, headers=as_(ADMIN)).status_code == 200


def test_lineage_of_a_remote_instance_matches_the_served_one(instance: Instance) -> None:
    """The graph is built from stored events and cursors only, so a process that reaches
    the server through the http backend draws the same lineage."""
    from assetry.server.live import LiveServer

    seed(instance)
    served = lineage_from_state(instance.backend, instance.backend.list_assets())
    app = create_app(instance, tokens=[ApiToken("admin", ADMIN, "write")])
    with LiveServer(app) as live, Instance.from_url(live.url, token=ADMIN) as remote:
        seen = lineage_from_state(remote.backend, remote.backend.list_assets())
    assert seen.edges == served.edges and len(seen.edges) == 6


def test_timeline_chart_marks_now_and_the_overdue_stretch(
    client: TestClient, instance: Instance
) -> None:
    from assetry.contracts import Freshness

    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    regions = Asset("regions", freshness=Freshness(hour, per_partition=True))
    instance.record_event(regions, partition_key="us", timestamp=now - 3 * hour)
    instance.record_event(regions, partition_key="eu", timestamp=now - hour / 2)
    svg = svg_of(client.get("/ui/timeline?name=regions", headers=as_(ADMIN)).text, "timeline-chart")
    assert [ln.get("class") for ln in svg.iter(f"{SVG}line")].count("now") == 1
    overdue = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "overdue"]
    assert len(overdue) == 1  # us is two hours past due; eu is due in half an hour
    assert "partition us" in (overdue[0].findtext(f"{SVG}title") or "")
    points = {int(c.get("data-id", "0")): c for c in svg.iter(f"{SVG}circle")}
    assert float(overdue[0].get("y", 0)) < float(points[1].get("cy", 0))  # on us's row
    assert float(overdue[0].get("y", 0)) + float(overdue[0].get("height", 0)) > float(
        points[1].get("cy", 0)
    )
    whole = Asset("whole", freshness=hour)
    instance.record_event(whole, timestamp=now - 5 * hour)
    svg = svg_of(client.get("/ui/timeline?name=whole", headers=as_(ADMIN)).text, "timeline-chart")
    bands = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "overdue"]
    assert len(bands) == 1 and "the asset" in (bands[0].findtext(f"{SVG}title") or "")
    instance.record_event(ORDERS)  # no freshness declared: the chart ends at its events
    page = client.get("/ui/timeline?name=orders", headers=as_(ADMIN)).text
    plain = svg_of(page, "timeline-chart")
    assert not [ln for ln in plain.iter(f"{SVG}line") if ln.get("class") == "now"]
