"""Freshness judged against the declared policy: fresh, late, stale, per partition, and
``assetry assets list --late`` failing for cron when any asset is overdue."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from assetry import Asset, Instance
from assetry.cli import main
from assetry.contracts import Freshness
from assetry.freshness import assess, assess_assets, status_of
from click.testing import CliRunner

NOW = dt.datetime(2024, 6, 10, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (dt.timedelta(0), "fresh"),
        (HOUR, "fresh"),
        (HOUR + dt.timedelta(seconds=1), "late"),
        (2 * HOUR, "late"),
        (2 * HOUR + dt.timedelta(seconds=1), "stale"),
        (dt.timedelta(days=30), "stale"),
    ],
)
def test_status_against_max_age(age: dt.timedelta, status: str) -> None:
    assert status_of(Freshness(HOUR), NOW - age, NOW) == status


def test_never_updated_is_stale_and_no_policy_is_undeclared() -> None:
    assert status_of(Freshness(HOUR), None, NOW) == "stale"
    assert status_of(None, NOW - dt.timedelta(days=400), NOW) == "undeclared"


def test_assets_judged_whole_or_per_partition() -> None:
    with Instance(backend="memory") as inst:
        whole = Asset("whole", freshness=HOUR)
        parts = Asset("parts", freshness=Freshness(HOUR, per_partition=True))
        free = Asset("free")
        inst.record_event(whole, timestamp=NOW - 3 * HOUR, partition_key="a")
        inst.record_event(whole, timestamp=NOW - dt.timedelta(minutes=5))
        inst.record_event(parts, timestamp=NOW - dt.timedelta(minutes=5), partition_key="new")
        inst.record_event(parts, timestamp=NOW - 90 * dt.timedelta(minutes=1), partition_key="old")
        inst.record_event(free, timestamp=NOW - dt.timedelta(days=9))
        records = inst.backend.list_assets()
        judged = assess_assets(inst.backend, records, now=NOW)
        assert judged["whole"].status == "fresh"  # the newest event counts
        assert judged["whole"].partitions == {}  # its old partition "a" is not judged
        assert judged["parts"].status == "late"  # the worst partition counts
        assert judged["parts"].partitions == {"new": "fresh", "old": "late"}
        assert judged["parts"].overdue and not judged["whole"].overdue
        assert judged["free"].status == "undeclared" and not judged["free"].overdue
        record = inst.backend.get_asset("parts")
        assert record is not None
        assert assess(record, None, {}, NOW).status == "stale"  # no partition updated yet


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str]:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("ASSETRY_")]:
        monkeypatch.delenv(name)
    return CliRunner(), f"sqlite:///{tmp_path / 'state.db'}"


def test_assets_list_late_exits_1_when_an_asset_is_overdue(cli: tuple[CliRunner, str]) -> None:
    runner, url = cli
    now = dt.datetime.now(dt.UTC)
    with Instance.from_url(url) as inst:
        inst.record_event(Asset("hourly", freshness=HOUR), timestamp=now - 10 * HOUR)
        inst.record_event(Asset("daily", freshness=dt.timedelta(days=1)), timestamp=now)
        inst.record_event(Asset("free"), timestamp=now - dt.timedelta(days=99))
    result = runner.invoke(main, ["--url", url, "assets", "list", "--late"])
    assert result.exit_code == 1, result.output
    assert "hourly" in result.output and "stale" in result.output
    assert "daily" not in result.output and "free" not in result.output
    listed = runner.invoke(main, ["--url", url, "--json", "assets", "list"])
    assert listed.exit_code == 0
    status = {a["name"]: a["freshness_status"] for a in json.loads(listed.stdout)}
    assert status == {"daily": "fresh", "free": "undeclared", "hourly": "stale"}
    with Instance.from_url(url) as inst:
        inst.record_event(Asset("hourly", freshness=HOUR))
        inst.record_event(Asset("retired", freshness=HOUR), timestamp=now - 99 * HOUR)
        inst.deactivate("retired")  # being removed: never alerted on
    result = runner.invoke(main, ["--url", url, "assets", "list", "--late"])
    assert result.exit_code == 0 and "no asset is late" in result.output
