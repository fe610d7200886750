"""`assetry demo`: run twice, the watermark advances and only the new orders are loaded."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from assetry import Asset, Instance
from assetry.cli import main
from click.testing import CliRunner


def _field(output: str, label: str) -> str:
    match = re.search(rf"{label}\s+(\S+)", output)
    assert match, f"{label!r} not in the demo's output:\n{output}"
    return match.group(1)


def _run(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, ["demo", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_run_twice_advances_the_watermark_and_loads_only_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # the demo uses the embedded default whatever the environment configures
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "memory://not-the-demo")
    runner = CliRunner()

    first = _run(runner)
    assert _field(first, "watermark before") == "1970-01-01T00:00:00Z"
    assert "fetched           25 orders" in first
    assert "loaded            25 rows into the warehouse (it now holds 25)" in first

    second = _run(runner, "--orders", "7")
    before, after = _field(second, "watermark before"), _field(second, "watermark after")
    assert before == _field(first, "watermark after")
    assert after > before
    assert "fetched           7 orders" in second
    assert "loaded            7 rows into the warehouse (it now holds 32)" in second
    assert "(it now holds 32)" in second.split("1. land_orders")[1].splitlines()[0]

    events = second.split("3. events")[1]
    assert "incremental_orders.load_new_orders" in events
    assert events.count("orders ") >= 2 and f"watermark={after}" in events

    # what the output claims is what is stored
    import duckdb

    warehouse = tmp_path / ".assetry" / "demo" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        total, distinct = con.execute(
            "select count(*), count(distinct order_id) from orders"
        ).fetchone()
        newest = con.execute("select max(created_at) from orders").fetchone()[0]
    assert (total, distinct) == (32, 32)
    assert newest == after
    state = tmp_path / ".assetry" / "state.db"
    with Instance(backend="sql", url=f"sqlite:///{state}") as inst:
        orders = inst.resolve(Asset.ref(name="orders"))
        assert inst.asset_store(orders).get("watermark") == after
        assert [e.extra["assetry"]["rows"] for e in inst.events(orders)] == [25, 7]


def test_demo_loader_with_nothing_new_keeps_the_watermark(tmp_path: Path) -> None:
    from assetry import use_instance
    from assetry.backends.memory import MemoryBackend
    from assetry.demo import _pipeline, run_demo

    inst = Instance(backend=MemoryBackend())
    report = run_demo(tmp_path, new_orders=3, instance=inst)
    feed = Asset("order_feed", uri=report.feed_uri)
    orders = Asset("orders", uri=report.warehouse_uri)
    _, load_new_orders = _pipeline(feed, orders, new_orders=1)
    with use_instance(inst):
        again = load_new_orders.run()
    assert again.value == {
        "watermark_before": report.watermark_after,
        "fetched": 0,
        "watermark_after": report.watermark_after,
    }
    assert inst.asset_store(orders).get("watermark") == report.watermark_after
    assert "assetry" not in again.events[0].extra  # nothing was written
    inst.close()


def test_readme_first_command_runs_the_demo(tmp_path: Path) -> None:
    script = shutil.which("assetry")
    command = [script] if script else [sys.executable, "-m", "assetry"]
    for _ in range(2):
        done = subprocess.run(
            [*command, "demo", "--orders", "3"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    assert "watermark after" in done.stdout
    assert "loaded            3 rows into the warehouse (it now holds 6)" in done.stdout
