"""Asset contracts: the declared extra schema is stored with the asset and checked on every
path that makes an event (record_event(s), task outlets, yielded Metadata, watchers, the
HTTP API), before anything is stored; freshness and schema_evolution are stored alike."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from assetry import (
    Asset,
    AssetWatcher,
    Instance,
    Metadata,
    Trigger,
    ValidationError,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend
from assetry.contracts import DEFAULT_CONTRACT, AssetContract, Freshness
from assetry.errors import AssetTypeError, AssetValueError
from pydantic import BaseModel

SCHEMA = {
    "type": "object",
    "properties": {"rows": {"type": "integer", "minimum": 0}, "source": {"type": "string"}},
    "required": ["rows"],
    "additionalProperties": False,
}


class OrdersExtra(BaseModel):
    rows: int
    source: str = "api"


def _orders(**contract: Any) -> Asset:
    return Asset("orders", uri="s3://data/orders", **({"extra_schema": SCHEMA} | contract))


@pytest.fixture(params=["memory", "sql"])
def inst(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    if request.param == "memory":
        instance = Instance(backend=MemoryBackend())
    else:
        instance = Instance("sql", url=f"sqlite:///{tmp_path}/state.db")
    with instance, use_instance(instance):
        yield instance


# -- the model ------------------------------------------------------------------------------


def test_asset_takes_a_schema_dict_a_policy_and_a_freshness() -> None:
    asset = _orders(schema_evolution="add_columns", freshness=dt.timedelta(hours=1))
    assert asset.extra_schema == SCHEMA
    assert asset.schema_evolution == "add_columns"
    assert asset.freshness == Freshness(dt.timedelta(hours=1), per_partition=False)
    assert Asset("plain").contract == DEFAULT_CONTRACT
    assert pickle.loads(pickle.dumps(asset)).contract == asset.contract


def test_a_pydantic_model_becomes_its_json_schema() -> None:
    asset = Asset("orders", extra_schema=OrdersExtra)
    assert asset.extra_schema == OrdersExtra.model_json_schema()
    asset.contract.validate_extra("orders", {"rows": 1})
    with pytest.raises(ValidationError, match="field rows"):
        asset.contract.validate_extra("orders", {"rows": "many"})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"extra_schema": {"type": "no-such-type"}}, AssetValueError),
        ({"extra_schema": "rows: int"}, AssetTypeError),
        ({"extra_schema": {"enum": [float("nan")]}}, AssetValueError),
        ({"schema_evolution": "merge"}, AssetValueError),
        ({"freshness": 3600}, AssetTypeError),
        ({"freshness": dt.timedelta(0)}, AssetValueError),
    ],
)
def test_a_bad_contract_is_refused_when_the_asset_is_made(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Asset("orders", **kwargs)


def test_the_contract_round_trips_through_json() -> None:
    contract = _orders(freshness=Freshness(dt.timedelta(minutes=90), per_partition=True)).contract
    assert AssetContract.from_json(contract.to_json()) == contract
    assert AssetContract.from_json("{}") == DEFAULT_CONTRACT
    assert contract.declared_fields() == ["rows", "source"]


def test_freshness_judges_the_age_of_the_last_update() -> None:
    fresh = Freshness(dt.timedelta(hours=1))
    now = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    assert not fresh.is_late(now - dt.timedelta(minutes=59), now)
    assert fresh.is_late(now - dt.timedelta(minutes=61), now)
    assert fresh.is_late(None, now)


# -- every way an event is made -------------------------------------------------------------


def test_record_event_checks_the_schema_and_stores_nothing_on_failure(inst: Instance) -> None:
    orders = _orders()
    good = inst.record_event(orders, {"rows": 2, "source": "crm"})
    with pytest.raises(ValidationError, match=r"asset 'orders'.*field rows") as caught:
        inst.record_events(orders, [{"rows": 3}, {"rows": -1}])
    assert caught.value.check == "extra_schema"
    assert [d["field"] for d in caught.value.details] == ["rows"]
    with pytest.raises(ValidationError, match="field rows: 'rows' is a required property"):
        inst.record_event(orders, {"source": "crm"})
    with pytest.raises(ValidationError, match="Additional properties"):
        inst.record_event(orders, {"rows": 1, "unexpected": True})
    assert inst.events(orders) == [good]


def test_assetrys_own_figures_are_outside_the_schema(inst: Instance) -> None:
    event = inst.record_event(_orders(), {"rows": 1, "assetry": {"rows": 1, "mode": "insert"}})
    assert event.extra["assetry"]["mode"] == "insert"


def test_the_stored_schema_checks_producers_that_do_not_declare_it(inst: Instance) -> None:
    inst.register(_orders())
    with pytest.raises(ValidationError, match="rows"):
        inst.record_event("orders", {"rows": "x"})
    with pytest.raises(ValidationError, match="rows"):
        inst.record_event(Asset("orders", uri="s3://data/orders"), {"rows": "x"})
    assert inst.events("orders") == []


def test_a_declared_contract_replaces_the_stored_one(inst: Instance) -> None:
    inst.register(Asset("orders", uri="s3://data/orders"))
    other = Instance(backend=inst.backend)  # another process declaring the contract
    other.record_event(_orders(), {"rows": 1})
    record = inst.get_asset("orders")
    assert record is not None and record.contract.extra_schema == SCHEMA
    assert inst.resolve(Asset.ref("orders")).extra_schema == SCHEMA


def test_task_outlet_events_are_checked_before_anything_is_stored(inst: Instance) -> None:
    orders = _orders()

    @task(outlets=[orders])
    def load(outlet_events):
        outlet_events[orders].extra["rows"] = "three"

    with pytest.raises(ValidationError, match="field rows"):
        load()
    assert inst.events(orders) == []

    @task(outlets=[orders])
    def good(outlet_events):
        outlet_events[orders].extra["rows"] = 3

    assert [e.extra for e in good.run().events] == [{"rows": 3}]


def test_yielded_metadata_is_checked(inst: Instance) -> None:
    orders = _orders()

    @task(outlets=[orders])
    def load():
        yield Metadata(orders, {"rows": 1, "source": 7})

    with pytest.raises(ValidationError, match="field source"):
        load()
    assert inst.events(orders) == []


class _ListTrigger(Trigger):
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def poll(self, state):
        seen = state.get("seen", default=0)
        yield from self.items[seen:]
        state.set("seen", len(self.items))


def test_watcher_events_are_checked_and_the_watermark_stays(inst: Instance) -> None:
    schema = {
        "type": "object",
        "properties": {"payload": {"type": "object", "required": ["file"]}},
    }
    items: list[Any] = [{"name": "a.csv"}]
    feed = Asset(
        "feed",
        uri="s3://data/feed",
        extra_schema=schema,
        watchers=[AssetWatcher("poller", _ListTrigger(items))],
    )
    inst.register(feed)
    with pytest.raises(ValidationError, match="payload"):
        inst.watch()
    assert inst.events(feed) == []
    items[0] = {"file": "a.csv"}
    assert [e.extra["payload"] for e in inst.watch()] == [{"file": "a.csv"}]


def test_the_http_api_answers_422_and_a_remote_producer_is_checked() -> None:
    pytest.importorskip("fastapi")
    from assetry.server import create_app
    from assetry.server.auth import ApiToken
    from fastapi.testclient import TestClient

    server = Instance(backend=MemoryBackend())
    client = TestClient(
        create_app(server, tokens=[ApiToken("admin", "contracts-test-token-0123456789", "write")])
    )
    client.headers.update({"Authorization": "Bearer contracts-test-token-0123456789"})
    body = {"name": "orders", "uri": "s3://data/orders", "contract": {"extra_schema": SCHEMA}}
    created = client.post("/api/v1/assets", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["contract"]["extra_schema"] == SCHEMA
    refused = client.post("/api/v1/events/orders", json={"extra": {"rows": "x"}})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "validation_failed" and "field rows" in error["message"]
    assert error["details"]["errors"][0]["field"] == "rows"
    assert client.post("/api/v1/events/orders", json={"extra": {"rows": 1}}).status_code == 201
    assert len(server.events("orders")) == 1
    # the web view shows the contract and the declared fields as timeline columns
    token = "contracts-test-token-0123456789"
    client.post(
        "/ui/login",
        content=f"token={token}&next=/ui/".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    page = client.get("/ui/timeline", params={"name": "orders"})
    assert page.status_code == 200, page.text
    assert '<th class="declared">rows</th><th class="declared">source</th>' in page.text
    assert '<td class="declared"><code>1</code></td>' in page.text
    shown = client.get("/ui/asset", params={"name": "orders"})
    assert 'id="extra-schema"' in shown.text and "Schema evolution" in shown.text


def test_assets_show_prints_the_contract(tmp_path: Path) -> None:
    from assetry.cli import main
    from click.testing import CliRunner

    url = f"sqlite:///{tmp_path}/state.db"
    with Instance("sql", url=url) as instance:
        instance.register(_orders(freshness=Freshness(dt.timedelta(hours=2), per_partition=True)))
    result = CliRunner().invoke(main, ["--url", url, "assets", "show", "orders"])
    assert result.exit_code == 0, result.output
    assert "extra schema" in result.output and '"rows"' in result.output
    assert "every 2:00:00 per partition" in result.output
    shown = CliRunner().invoke(main, ["--url", url, "--json", "assets", "show", "orders"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["contract"]["extra_schema"] == SCHEMA


def test_assetry_events_record_is_checked(tmp_path: Path) -> None:
    from assetry.cli import main
    from click.testing import CliRunner

    url = f"sqlite:///{tmp_path}/state.db"
    with Instance("sql", url=url) as instance:
        instance.register(_orders())
    bad = CliRunner().invoke(
        main, ["--url", url, "events", "record", "orders", "--extra", '{"rows": "x"}']
    )
    assert bad.exit_code != 0
    assert "field rows" in bad.output
    good = CliRunner().invoke(
        main, ["--url", url, "events", "record", "orders", "--extra", '{"rows": 4}']
    )
    assert good.exit_code == 0, good.output
    with Instance("sql", url=url) as instance:
        assert [e.extra for e in instance.events("orders")] == [{"rows": 4}]


@pytest.mark.parametrize(
    "contract",
    [
        {"extra_schema": {"type": "no-such-type"}},
        {"schema_evolution": "merge"},
        {"freshness": {"max_age_seconds": 1e300}},
        {"freshness": {"max_age_seconds": -5}},
    ],
)
def test_the_http_api_refuses_a_bad_contract_with_422(contract: dict[str, Any]) -> None:
    pytest.importorskip("fastapi")
    from assetry.server import create_app
    from assetry.server.auth import ApiToken
    from fastapi.testclient import TestClient

    token = "contracts-test-token-0123456789"
    server = Instance(backend=MemoryBackend())
    client = TestClient(create_app(server, tokens=[ApiToken("admin", token, "write")]))
    client.headers.update({"Authorization": f"Bearer {token}"})
    answer = client.post("/api/v1/assets", json={"name": "orders", "contract": contract})
    assert answer.status_code == 422, answer.text
    assert server.get_asset("orders") is None
