"""The ``assetry`` commands on state: assets, store, events, gc — run through click's
CliRunner against the memory backend and the sql backend on SQLite."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from assetry import Asset, Instance, plugins
from assetry.cli import main
from assetry.errors import PluginError
from click.testing import CliRunner, Result

ORDERS = Asset("orders", uri="s3://data/orders")
T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@dataclass
class Cli:
    """Runs ``assetry --url URL ...`` in-process; ``inst`` is an Instance on the same state."""

    url: str
    inst: Instance
    runner: CliRunner

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(main, ["--url", self.url, *args], input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)


def isolate(monkeypatch: pytest.MonkeyPatch, cwd: Path) -> None:
    """No configuration from the surroundings: an empty working directory, no ASSETRY_*."""
    monkeypatch.chdir(cwd)
    import os

    for name in list(os.environ):
        if name.startswith("ASSETRY_") and name != "ASSETRY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


def sqlite_url(tmp_path: Path) -> str:
    try:
        plugins.backends.load("sql")
    except PluginError as exc:
        pytest.skip(f"the sql backend is not importable yet: {exc}")
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["memory", "sqlite"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    isolate(monkeypatch, tmp_path)
    url = sqlite_url(tmp_path) if request.param == "sqlite" else f"memory://{uuid.uuid4().hex}"
    inst = Instance.from_url(url)
    inst.upgrade()
    try:
        yield Cli(url, inst, CliRunner())
    finally:
        inst.close()


@pytest.fixture
def seeded(cli: Cli) -> Cli:
    """orders: two store namespaces, five events (two partitions), one consumer cursor."""
    store = cli.inst.asset_store(ORDERS)
    store.set("watermark", "2024-06-01")
    store.partition("2024-06-01").set("rows", 10)
    for i in range(5):
        cli.inst.record_event(
            ORDERS,
            extra={"i": i},
            partition_key="2024-06-01" if i % 2 else None,
            timestamp=T0 + dt.timedelta(hours=i),
            source_task_id="load",
        )
    cli.inst.backend.set_cursors("report", {"orders": 2})
    cli.inst.register(Asset("customers", uri="s3://data/customers"))
    return cli


# -- assets ----------------------------------------------------------------------------------------


def test_assets_list_shows_each_asset_with_its_newest_event(seeded: Cli) -> None:
    rows = seeded.json("assets", "list")
    assert [(r["name"], r["active"]) for r in rows] == [("customers", True), ("orders", True)]
    assert rows[0]["latest_event"] is None
    assert rows[1]["latest_event"]["id"] == 5
    text = seeded.ok("assets", "list").stdout
    assert "orders" in text and "s3://data/orders" in text and "customers" in text


def test_assets_list_filters_active_and_inactive(seeded: Cli) -> None:
    seeded.inst.deactivate("customers")
    assert [r["name"] for r in seeded.json("assets", "list", "--active")] == ["orders"]
    assert [r["name"] for r in seeded.json("assets", "list", "--inactive")] == ["customers"]


def test_assets_list_on_empty_state_says_so(cli: Cli) -> None:
    assert "no assets are registered" in cli.ok("assets", "list").stdout
    assert cli.json("assets", "list") == []


def test_assets_show_reports_store_events_and_cursors(seeded: Cli) -> None:
    shown = seeded.json("assets", "show", "orders")
    assert shown["uri"] == "s3://data/orders"
    assert shown["store"] == [
        {"partition": None, "keys": 1},
        {"partition": "2024-06-01", "keys": 1},
    ]
    assert shown["latest_event"]["id"] == 5
    assert {k: e["id"] for k, e in shown["latest_partition_events"].items()} == {"2024-06-01": 4}
    assert shown["consumer_cursors"] == {"report": 2}
    text = seeded.ok("assets", "show", "orders").stdout
    assert "report" in text and "2024-06-01" in text


def test_assets_show_of_unknown_asset_fails_in_one_line(seeded: Cli) -> None:
    result = seeded("assets", "show", "nope")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: asset 'nope' is not registered; `assetry assets list` shows the registered "
        "ones and `assetry assets register nope --uri URI` registers it"
    ]


def test_assets_deactivate_makes_the_store_read_only(seeded: Cli) -> None:
    assert seeded.json("assets", "deactivate", "orders", "--yes") == {
        "asset": "orders",
        "active": False,
        "changed": True,
    }
    assert not seeded.inst.get_asset("orders").active
    again = seeded.ok("assets", "deactivate", "orders", "--yes")
    assert "already inactive" in again.stdout
    refused = seeded("store", "set", "orders", "k", "1")
    assert refused.exit_code == 1
    assert "inactive" in refused.output and "Traceback" not in refused.output
    assert seeded.inst.asset_store("orders").get("watermark") == "2024-06-01"


# -- store -----------------------------------------------------------------------------------------


def test_store_list_of_asset_level_partition_and_all(seeded: Cli) -> None:
    level = seeded.json("store", "list", "orders")
    assert [(e["key"], e["value"], e["version"]) for e in level] == [("watermark", "2024-06-01", 1)]
    part = seeded.json("store", "list", "orders", "--partition", "2024-06-01")
    assert [(e["partition"], e["key"], e["value"]) for e in part] == [("2024-06-01", "rows", 10)]
    everything = seeded.json("store", "list", "orders", "--all-partitions")
    assert [e["key"] for e in everything] == ["watermark", "rows"]
    assert "watermark" in seeded.ok("store", "list", "orders").stdout


def test_store_list_rejects_partition_with_all_partitions(seeded: Cli) -> None:
    result = seeded("store", "list", "orders", "--partition", "p", "--all-partitions")
    assert result.exit_code == 2


def test_store_get_prints_the_json_value(seeded: Cli) -> None:
    assert seeded.ok("store", "get", "orders", "watermark").stdout == '"2024-06-01"\n'
    entry = seeded.json("store", "get", "orders", "rows", "--partition", "2024-06-01")
    assert (entry["value"], entry["version"]) == (10, 1)


def test_store_get_of_missing_key_fails(seeded: Cli) -> None:
    result = seeded("store", "get", "orders", "nope")
    assert result.exit_code == 1
    assert "key 'nope' is not set in asset 'orders'" in result.output


def test_store_set_writes_json_values_through_the_api_rules(seeded: Cli) -> None:
    seeded.ok("store", "set", "orders", "cfg", '{"cols": ["a", "b"], "limit": 5}')
    seeded.ok("store", "set", "orders", "label", "plain text", "--string")
    seeded.ok("store", "set", "orders", "rows", "11", "--partition", "2024-06-01")
    seeded.ok("store", "set", "orders", "from-stdin", "-", input="[1, 2.5, true]\n")
    store = seeded.inst.asset_store("orders")
    assert store.get("cfg") == {"cols": ["a", "b"], "limit": 5}
    assert store.get("label") == "plain text"
    assert store.get("from-stdin") == [1, 2.5, True]
    assert store.partition("2024-06-01").get_entry("rows").version == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not-json", "is not JSON"),
        ("null", "None cannot be stored"),
        ("NaN", "NaN"),
        ('"' + "x" * 70_000 + '"', "over the limit"),
    ],
)
def test_store_set_rejects_invalid_values_as_usage_errors(
    seeded: Cli, value: str, message: str
) -> None:
    result = seeded("store", "set", "orders", "watermark", value)
    assert result.exit_code == 2
    assert message in result.output
    assert seeded.inst.asset_store("orders").get("watermark") == "2024-06-01"


def test_store_set_rejects_an_invalid_key(seeded: Cli) -> None:
    result = seeded("store", "set", "orders", "k" * 513, "1")
    assert result.exit_code == 2
    assert "at most 512 characters" in result.output


def test_store_set_compare_and_set(seeded: Cli) -> None:
    lost = seeded("store", "set", "orders", "watermark", '"x"', "--if-absent")
    assert lost.exit_code == 1
    assert "compare-and-set" in lost.output
    stale = seeded("store", "set", "orders", "watermark", '"x"', "--expected-version", "7")
    assert stale.exit_code == 1
    written = seeded.json("store", "set", "orders", "watermark", '"x"', "--expected-version", "1")
    assert written["version"] == 2
    assert seeded.json("store", "set", "orders", "fresh", "1", "--if-absent")["version"] == 1


def test_store_set_on_unknown_asset_fails(seeded: Cli) -> None:
    result = seeded("store", "set", "nope", "k", "1")
    assert result.exit_code == 1
    assert "asset 'nope' is not registered" in result.output


def test_store_delete_existing_and_missing_key(seeded: Cli) -> None:
    assert seeded.json("store", "delete", "orders", "watermark")["deleted"] is True
    assert "nothing to delete" in seeded.ok("store", "delete", "orders", "watermark").stdout
    assert seeded.inst.asset_store("orders").get("watermark") is None


def test_store_clear_asks_then_clears_everything(
    seeded: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetry import cli_common

    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)
    declined = seeded("store", "clear", "orders", input="n\n")
    assert declined.exit_code == 1
    assert seeded.inst.asset_store("orders").keys() == ["watermark"]
    assert "deleted 2 key(s)" in seeded.ok("store", "clear", "orders", input="y\n").stdout
    store = seeded.inst.asset_store("orders")
    assert store.keys() == [] and store.partitions() == []


def test_store_clear_of_one_partition(seeded: Cli) -> None:
    out = seeded.json("store", "clear", "orders", "--partition", "2024-06-01", "--yes")
    assert out["deleted"] == 1
    assert seeded.inst.asset_store("orders").keys() == ["watermark"]


# -- events ----------------------------------------------------------------------------------------


def _ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in events]


def test_events_list_in_order_with_every_field(seeded: Cli) -> None:
    events = seeded.json("events", "list", "orders")
    assert _ids(events) == [1, 2, 3, 4, 5]
    assert events[1] | {"timestamp": None} == {
        "id": 2,
        "asset_name": "orders",
        "asset_uri": "s3://data/orders",
        "timestamp": None,
        "extra": {"i": 1},
        "partition_key": "2024-06-01",
        "source_task_id": "load",
        "source_run_id": None,
        "aliases": [],
    }
    assert dt.datetime.fromisoformat(events[1]["timestamp"]) == T0 + dt.timedelta(hours=1)
    text = seeded.ok("events", "list", "orders").stdout
    assert '{"i":4}' in text and "load" in text


def test_events_list_filters(seeded: Cli) -> None:
    assert _ids(seeded.json("events", "list", "orders", "--partition", "2024-06-01")) == [2, 4]
    assert _ids(seeded.json("events", "list", "orders", "--after", "2", "--before", "5")) == [3, 4]
    window = ["--since", "2024-06-01T01:00:00Z", "--until", "2024-06-01T03:00:00+00:00"]
    assert _ids(seeded.json("events", "list", "orders", *window)) == [2, 3]
    assert _ids(seeded.json("events", "list", "orders", "--since", "2024-06-01T02:00:00")) == [
        3,
        4,
        5,
    ]
    assert _ids(seeded.json("events", "list", "orders", "--limit", "2", "--desc")) == [5, 4]
    assert seeded.json("events", "list", "orders", "--since", "1h") == []


def test_events_list_says_when_the_limit_cut_it_short(seeded: Cli) -> None:
    result = seeded.ok("events", "list", "orders", "--limit", "2")
    assert "newest 2 shown" in result.stderr
    assert "shown" not in seeded.ok("events", "list", "orders", "--limit", "0").stderr


def test_events_list_rejects_a_bad_time(seeded: Cli) -> None:
    result = seeded("events", "list", "orders", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "neither an ISO 8601 time" in result.output


def test_events_tail_prints_the_backlog_then_follows_new_events(seeded: Cli) -> None:
    def record_later() -> None:
        time.sleep(0.3)
        seeded.inst.record_event(ORDERS, extra={"late": 1})
        seeded.inst.record_event(ORDERS, extra={"late": 2}, partition_key="2024-06-02")

    writer = threading.Thread(target=record_later)
    writer.start()
    try:
        result = seeded.ok(
            "--json", "events", "tail", "orders", "-n", "2", "--interval", "0.05",
            "--count", "2", "--timeout", "20",
        )  # fmt: skip
    finally:
        writer.join()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["id"] for e in lines] == [4, 5, 6, 7]
    assert [e["extra"] for e in lines[2:]] == [{"late": 1}, {"late": 2}]


def test_events_tail_of_every_asset_stops_at_the_timeout(seeded: Cli) -> None:
    started = time.monotonic()
    result = seeded.ok("events", "tail", "-n", "1", "--interval", "0.05", "--timeout", "0.3")
    assert time.monotonic() - started < 10
    assert result.stdout.splitlines() == [
        f"{(T0 + dt.timedelta(hours=4)).isoformat()} orders#5 " + '{"i":4}'
    ]


def test_events_tail_of_unknown_asset_fails(seeded: Cli) -> None:
    assert seeded("events", "tail", "nope", "--timeout", "0").exit_code == 1


def test_events_prune_by_options(seeded: Cli) -> None:
    seeded.inst.backend.set_cursors("report", {"orders": 5})
    dry = seeded.json("events", "prune", "--keep-last", "1", "--dry-run")
    assert (dry["deleted"], dry["dry_run"]) == (3, True)
    assert len(seeded.inst.events("orders")) == 5
    out = seeded.ok("events", "prune", "--keep-last", "1", "--asset", "orders", "--yes")
    assert "deleted 3 event(s) of 1 asset(s)" in out.stdout
    assert [e.id for e in seeded.inst.events("orders")] == [4, 5]
    assert seeded.inst.asset_store("orders").get("watermark") == "2024-06-01"


def test_events_prune_keeps_what_a_consumer_has_not_seen(seeded: Cli) -> None:
    out = seeded.json("events", "prune", "--keep-last", "1", "--older-than", "1d", "--yes")
    assert out["deleted"] == 2  # 1 and 2; 3 is unseen by "report" (cursor 2)
    assert [e.id for e in seeded.inst.events("orders")] == [3, 4, 5]


def test_events_prune_uses_the_configured_policy(seeded: Cli) -> None:
    Path("pyproject.toml").write_text("[tool.assetry]\nretention = {keep_last = 1}\n")
    seeded.inst.backend.set_cursors("report", {"orders": 5})
    out = seeded.json("events", "prune", "--yes")
    assert out["policy"] == {"keep_last": 1}
    assert [e.id for e in seeded.inst.events("orders")] == [4, 5]


def test_events_prune_without_a_policy_is_a_usage_error(seeded: Cli) -> None:
    result = seeded("events", "prune")
    assert result.exit_code == 2
    assert "--keep-last" in result.output


def test_events_prune_rejects_a_bad_duration(seeded: Cli) -> None:
    result = seeded("events", "prune", "--older-than", "a while")
    assert result.exit_code == 2
    assert "not a duration" in result.output


# -- gc --------------------------------------------------------------------------------------------


def test_gc_sweeps_the_store_of_inactive_assets(seeded: Cli) -> None:
    seeded.inst.deactivate("orders")
    dry = seeded.json("gc", "--dry-run")
    assert (dry["store_entries_removed"], dry["inactive_assets"]) == (2, ["orders"])
    assert seeded.inst.asset_store("orders").keys() == ["watermark"]
    assert "removed 2 store entries of 1 inactive asset(s)" in seeded.ok("gc", "--yes").stdout
    assert seeded.inst.backend.store_entries("orders") == []
    assert seeded.inst.backend.store_partitions("orders") == []
    assert len(seeded.inst.events("orders")) == 5


def test_gc_applies_the_configured_retention(seeded: Cli) -> None:
    Path("pyproject.toml").write_text("[tool.assetry]\nretention = {keep_last = 1}\n")
    seeded.inst.backend.set_cursors("report", {"orders": 5})
    out = seeded.json("gc", "-y")
    assert (out["events_deleted"], out["retention"]) == (3, {"keep_last": 1})
    assert seeded.inst.asset_store("orders").get("watermark") == "2024-06-01"


# -- errors and exit codes -------------------------------------------------------------------------


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    assert cli("nope").exit_code == 2
    assert cli("store", "get").exit_code == 2


def test_a_failure_is_one_line_without_traceback_unless_debug(seeded: Cli) -> None:
    plain = seeded("store", "set", "orders", "watermark", '"x"', "--if-absent")
    assert plain.exit_code == 1
    assert len(plain.output.strip().splitlines()) == 1
    assert "Traceback" not in plain.output
    debug = seeded.runner.invoke(
        main,
        [
            "--url",
            seeded.url,
            "--debug",
            "store",
            "set",
            "orders",
            "watermark",
            '"x"',
            "--if-absent",
        ],
    )
    assert debug.exit_code == 1
    assert type(debug.exception).__name__ == "ConflictError"


def test_the_url_option_picks_its_backend_over_the_environment(
    seeded: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "objectstore")
    assert [r["name"] for r in seeded.json("assets", "list")] == ["customers", "orders"]


def test_a_bad_configuration_file_fails_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, tmp_path)
    Path("pyproject.toml").write_text("[tool.assetry]\nbakend = 'memory'\n")
    result = CliRunner().invoke(main, ["assets", "list"])
    assert result.exit_code == 1
    assert "unknown setting(s) bakend" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_backend_fails_naming_the_installed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, tmp_path)
    result = CliRunner().invoke(main, ["--backend", "nope", "assets", "list"])
    assert result.exit_code == 1
    assert "no state backend called 'nope' is installed" in result.output
