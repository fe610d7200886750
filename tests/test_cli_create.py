"""Creating state from the command line: `assets register`, `assets reactivate`,
`events record`, and the hints that name them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from assetry import Instance
from assetry.cli import main
from assetry.errors import AssetInactiveError, AssetNotFoundError
from click.testing import CliRunner, Result


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("ASSETRY_")]:
        monkeypatch.delenv(name)
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path / 'state.db'}"


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url, *args])


def ok(url: str, *args: str) -> Result:
    result = run(url, *args)
    assert result.exit_code == 0, result.output
    return result


def as_json(url: str, *args: str) -> Any:
    return json.loads(ok(url, "--json", *args).stdout)


@pytest.fixture
def inst(url: str) -> Iterator[Instance]:
    with Instance.from_url(url) as instance:
        yield instance


def test_a_cli_only_user_registers_an_asset_then_sets_its_watermark(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    refused = run(url, "store", "set", "customers", "watermark", '"2024-01-01"')
    assert refused.exit_code == 1
    assert "`assetry assets register customers --uri URI` registers it" in refused.output
    out = ok(url, "assets", "register", "customers", "--uri", "s3://lake/customers")
    assert "registered asset 'customers' at 's3://lake/customers'" in out.stdout
    ok(url, "store", "set", "customers", "watermark", '"2024-01-01"')
    with Instance.from_url(url) as inst:
        assert inst.asset_store("customers").get("watermark") == "2024-01-01"
        assert inst.get_asset("customers").uri == "s3://lake/customers"


def test_register_takes_a_group_and_extra_and_defaults_the_uri_to_the_name(
    url: str, inst: Instance
) -> None:
    record = as_json(url, "assets", "register", "orders", "--group", "sales", "--extra", '{"a": 1}')
    assert (record["name"], record["uri"], record["group"], record["extra"]) == (
        "orders",
        "orders",
        "sales",
        {"a": 1},
    )
    assert inst.get_asset("orders").group == "sales"
    again = ok(url, "assets", "register", "orders", "--group", "sales", "--extra", '{"a": 1}')
    assert "already registered" in again.stdout


def test_register_refuses_a_conflicting_uri_and_bad_input(url: str, inst: Instance) -> None:
    ok(url, "assets", "register", "orders", "--uri", "s3://a/orders")
    clash = run(url, "assets", "register", "orders", "--uri", "s3://b/orders")
    assert clash.exit_code == 1 and "already registered with uri" in clash.output
    assert run(url, "assets", "register", "orders", "--extra", "[1]").exit_code == 2
    assert run(url, "assets", "register", "orders", "--extra", "{nope").exit_code == 2
    assert run(url, "assets", "register", "bad name\n").exit_code == 2


def test_reactivate_lets_the_store_and_events_be_written_again(url: str, inst: Instance) -> None:
    ok(url, "assets", "register", "orders")
    inst.asset_store("orders").set("k", 1)
    ok(url, "assets", "deactivate", "orders", "--yes")
    refused = run(url, "store", "set", "orders", "k", "2")
    assert refused.exit_code == 1
    assert "`assetry assets reactivate orders`" in refused.output
    out = as_json(url, "assets", "reactivate", "orders")
    assert out["active"] and out["changed"]
    ok(url, "store", "set", "orders", "k", "2")
    assert inst.asset_store("orders").get("k") == 2
    assert "already active" in ok(url, "assets", "reactivate", "orders").stdout
    assert run(url, "assets", "reactivate", "nope").exit_code == 1


def test_the_inactive_error_of_the_api_names_the_cli_command(inst: Instance) -> None:
    from assetry import Asset

    inst.register(Asset("my orders", "s3://a/o"))
    inst.deactivate("my orders")
    with pytest.raises(AssetInactiveError, match=r"assetry assets reactivate 'my orders'"):
        inst.asset_store("my orders").set("k", 1)
    with pytest.raises(AssetNotFoundError, match=r"assetry assets reactivate 'my orders'"):
        inst.resolve("my orders")


def test_events_record_with_extra_and_partition(url: str, inst: Instance) -> None:
    ok(url, "assets", "register", "orders")
    out = ok(url, "events", "record", "orders", "--extra", '{"rows": 25}', "--partition", "p1")
    assert "recorded event #1 of asset 'orders' partition 'p1'" in out.stdout
    event = as_json(url, "events", "record", "orders")
    assert event["id"] == 2 and event["extra"] == {} and event["partition_key"] is None
    stored = inst.events("orders")
    assert [(e.extra, e.partition_key) for e in stored] == [({"rows": 25}, "p1"), ({}, None)]


def test_events_record_refuses_unknown_inactive_and_bad_input(url: str, inst: Instance) -> None:
    assert run(url, "events", "record", "nope").exit_code == 1
    ok(url, "assets", "register", "orders")
    assert run(url, "events", "record", "orders", "--extra", "[1, 2]").exit_code == 2
    assert run(url, "events", "record", "orders", "--extra", '{"x": NaN}').exit_code == 2
    assert run(url, "events", "record", "orders", "--partition", "").exit_code == 2
    ok(url, "assets", "deactivate", "orders", "--yes")
    inactive = run(url, "events", "record", "orders")
    assert inactive.exit_code == 1 and "assetry assets reactivate orders" in inactive.output
    assert inst.events("orders") == []
