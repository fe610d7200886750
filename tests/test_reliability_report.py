"""The reliability report renders runs of parts of the stress suite as one section that
names, for every row, the command that produced it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reliability_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_report", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figure(backend: str, operations: int, lost: int = 0) -> dict[str, Any]:
    return {
        "test": f"tests/stress/test_x.py::test_y[{backend}]",
        "backend": backend,
        "kind": "concurrency",
        "writers": 4,
        "operations": operations,
        "faults": 2,
        "hostile_inputs": 0,
        "lost": lost,
        "duplicated": 0,
        "seconds": 1.5,
        "notes": {"scenario": "update shared and distinct keys"},
    }


def _run(command: str, exitstatus: int, *figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_slow": True,
        "scale": "1",
        "exitstatus": exitstatus,
        "figures": list(figures),
        "command": command,
        "started": "2026-12-03T11:09:14+00:00",
        "minutes": 7.5,
        "commit": "abc1234",
    }


def test_merged_parts_name_each_command_with_the_backends_it_produced(
    report: ModuleType,
) -> None:
    runs = [
        _run("python -m pytest tests/stress --run-slow -k http", 0, _figure("http", 10)),
        _run(
            "python -m pytest tests/stress --run-slow -k sqlite",
            0,
            _figure("sqlite", 30),
            _figure("io:sqlite", 5),
        ),
    ]
    section = report.render(report.merge(runs))
    assert "Produced by these 2 commands" in section
    one = report.render(report.merge(runs[:1]))
    assert "Produced by this 1 command, one part" in one
    assert "all tests passed" in section
    sqlite_note = section.index("# sqlite, io:sqlite: 2026-12-03T11:09:14+00:00, 7.5 min")
    assert section.index("python -m pytest tests/stress --run-slow -k sqlite") > sqlite_note
    assert "# http: " in section
    assert "| sqlite | 1 | 4 | 30 | 2 |" in section
    assert "| http | 1 | 4 | 10 | 2 |" in section
    assert section.index("| sqlite | 1 |") < section.index("| http | 1 |")


def test_a_failing_part_marks_the_whole_report_failing(report: ModuleType) -> None:
    runs = [
        _run("python -m pytest tests/stress --run-slow -k http", 0, _figure("http", 10)),
        _run("python -m pytest tests/stress --run-slow -k s3", 1, _figure("s3", 3, lost=1)),
    ]
    merged = report.merge(runs)
    assert merged["exitstatus"] == 1
    section = report.render(merged)
    assert "# s3: 2026-12-03T11:09:14+00:00, 7.5 min, SOME TESTS FAILED" in section
    assert "| s3 | 1 | 4 | 3 | 2 | - | - | 1 | 0 |" in section


def test_a_single_run_keeps_its_one_command(report: ModuleType) -> None:
    run = _run("python -m pytest tests/stress -q -p no:cacheprovider --run-slow", 0)
    section = report.render(run)
    assert "Produced by this command (at commit `abc1234`" in section
    assert "python benchmarks/reliability_report.py   # runs the line above" in section


def test_a_stopped_part_says_so_and_a_failure_still_wins(report: ModuleType) -> None:
    stopped = _run("python -m pytest tests/stress --run-slow -k s3", 2, _figure("s3", 3))
    passed = _run("python -m pytest tests/stress --run-slow -k http", 0, _figure("http", 10))
    failed = _run("python -m pytest tests/stress --run-slow -k file", 1, _figure("file", 3))
    section = report.render(report.merge([passed, stopped]))
    assert "# s3: 2026-12-03T11:09:14+00:00, 7.5 min, STOPPED BEFORE THE END" in section
    assert report.merge([passed, stopped])["exitstatus"] == 2
    assert report.merge([stopped, failed, passed])["exitstatus"] == 1


def test_a_part_runs_one_test_at_a_time_and_names_its_selection(report: ModuleType) -> None:
    command = report.pytest_command(False, "http and not memory")
    assert command[-2:] == ["-k", "http and not memory"]
    # not pytest-xdist's workers: each would write its own figures file over the others'
    assert command[command.index("-n") + 1] == "0"
    assert "--run-slow" in command
    shown = report.shown_command(False, "2", "http and not memory")
    assert shown.startswith("ASSETRY_STRESS_SCALE=2 python -m pytest tests/stress ")
    assert shown.endswith("--run-slow -k 'http and not memory'")
    assert "-k" not in report.pytest_command(True)
