"""Run the stress suite at its larger sizes and write the figures into docs/reliability.md.

    python benchmarks/reliability_report.py            # pytest tests/stress --run-slow
    python benchmarks/reliability_report.py --quick    # the default (CI) sizes instead
    python benchmarks/reliability_report.py --scale 2  # ASSETRY_STRESS_SCALE=2 on top
    python benchmarks/reliability_report.py --from figures.json   # render a saved run
    python benchmarks/reliability_report.py --from a.json b.json  # render runs of parts
    python benchmarks/reliability_report.py -k http --save http.json --no-write  # one part

The suite records, per test, the load a backend held (writers x operations), the faults it
survived, the hostile inputs it was given, the texts searched for a secret, and what was
lost or duplicated. This script runs it with ``ASSETRY_STRESS_FIGURES`` set, adds the
figures up per backend, prints them, and replaces the part of docs/reliability.md between
its figure markers (the prose around them is kept). Exits 1 when a test failed: the
figures are still written, marked as from a failing run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
START = "<!-- figures:start (written by benchmarks/reliability_report.py) -->"
END = "<!-- figures:end -->"

#: State backends first, in this order; everything else after, by name.
BACKEND_ORDER = ("memory", "sqlite", "postgresql", "mariadb", "s3", "file", "http")


def pytest_command(quick: bool, select: str | None = None) -> list[str]:
    """The command the figures come from (``select``: a ``-k`` expression, for a part)."""
    command = [sys.executable, "-m", "pytest", "tests/stress", "-q", "-p", "no:cacheprovider"]
    # one test at a time (not pytest-xdist's parallel workers): the tests start their own
    # writer processes, and each process of a session would write its own figures file
    command += ["-n", "0"]
    if not quick:
        command.append("--run-slow")
    return [*command, "-k", select] if select else command


def shown_command(quick: bool, scale: str | None, select: str | None = None) -> str:
    """The command as a reader would type it."""
    prefix = f"ASSETRY_STRESS_SCALE={scale} " if scale else ""
    words = ["python", *pytest_command(quick, select)[1:]]
    if select:
        words[-1] = shlex.quote(select)
    return prefix + " ".join(words)


def run_suite(quick: bool, scale: str | None, select: str | None = None) -> dict[str, Any]:
    """Run the stress suite (or the part ``select`` picks); return its recorded figures."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        env = {**os.environ, "ASSETRY_STRESS_FIGURES": str(out)}
        if scale:
            env["ASSETRY_STRESS_SCALE"] = scale
        print(f"$ {shown_command(quick, scale, select)}", flush=True)
        started = dt.datetime.now(dt.UTC)
        code = subprocess.run(
            pytest_command(quick, select), cwd=ROOT, env=env, check=False
        ).returncode
        if not out.exists():
            raise SystemExit(f"the stress suite wrote no figures (pytest exit code {code})")
        data = json.loads(out.read_text(encoding="utf-8"))
    data["started"] = started.isoformat(timespec="seconds")
    data["minutes"] = round((dt.datetime.now(dt.UTC) - started).total_seconds() / 60, 1)
    data["command"] = shown_command(quick, scale, select)
    return data


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _order(name: str) -> tuple[int, str]:
    return (BACKEND_ORDER.index(name), "") if name in BACKEND_ORDER else (len(BACKEND_ORDER), name)


def summarise(figures: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend: the largest concurrent load (writers x operations), total operations,
    faults survived, hostile inputs, texts searched for secrets, and losses."""
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "writers": 0,
            "operations": 0,
            "faults": 0,
            "hostile": 0,
            "secrets": 0,
            "lost": 0,
            "duplicated": 0,
            "tests": 0,
        }
    )
    for fig in figures:
        row = rows[fig["backend"]]
        row["tests"] += 1
        row["writers"] = max(row["writers"], fig["writers"])
        row["operations"] += fig["operations"]
        row["faults"] += fig["faults"]
        if fig["kind"] == "secrets":
            row["secrets"] += fig["hostile_inputs"]
        else:
            row["hostile"] += fig["hostile_inputs"]
        row["lost"] += fig["lost"]
        row["duplicated"] += fig["duplicated"]
    return [{"backend": name, **rows[name]} for name in sorted(rows, key=_order)]


def _n(value: int) -> str:
    return f"{value:,}" if value else "-"


def merge(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from runs of parts of the suite (e.g. ``-k sqlite``, ``-k http``).

    Each run keeps its own command, time and status under ``runs``, so the section can
    say which command produced which figures; the report fails if any run failed.
    """
    failed = [run["exitstatus"] for run in runs if run["exitstatus"] not in (0, INTERRUPTED)]
    parts = [
        {
            "command": run.get("command", shown_command(not run["run_slow"], None)),
            "started": run.get("started", "unknown time"),
            "minutes": run.get("minutes", "?"),
            "exitstatus": run["exitstatus"],
            "backends": sorted({fig["backend"] for fig in run["figures"]}, key=_order),
        }
        for run in runs
    ]
    return {
        "run_slow": all(run["run_slow"] for run in runs),
        "exitstatus": max(run["exitstatus"] for run in runs) if not failed else failed[0],
        "figures": [fig for run in runs for fig in run["figures"]],
        "runs": parts,
        **({"commit": runs[0]["commit"]} if "commit" in runs[0] else {}),
    }


#: pytest's exit code when the run was stopped (Ctrl-C, SIGINT) before it finished.
INTERRUPTED = 2


def _status(exitstatus: int) -> str:
    if exitstatus == 0:
        return "all tests passed"
    if exitstatus == INTERRUPTED:
        return "STOPPED BEFORE THE END: only the tests that finished have rows"
    return "SOME TESTS FAILED"


def _provenance(data: dict[str, Any]) -> list[str]:
    """The lines saying which command produced the figures, and when."""
    commit = data.get("commit", _commit())
    if "runs" not in data:
        return [
            "Produced by this command (at commit "
            f"`{commit}`, {data.get('started', 'unknown time')}, "
            f"{data.get('minutes', '?')} min on the project's 2-core machine, "
            f"{_status(data['exitstatus'])}):",
            "",
            "```bash",
            data.get("command", shown_command(not data["run_slow"], None)),
            "python benchmarks/reliability_report.py   # runs the line above and writes this "
            "section",
            "```",
        ]
    count = len(data["runs"])
    lines = [
        f"Produced by {'these' if count > 1 else 'this'} {count} "
        f"command{'s' if count > 1 else ''}, one part of the suite each (at commit "
        f"`{commit}`, on the project's 2-core machine while it was shared with other work, "
        f"{_status(data['exitstatus'])}); each comment names the rows that command produced:",
        "",
        "```bash",
    ]
    for run in data["runs"]:
        lines += [
            f"# {', '.join(run['backends'])}: {run['started']}, {run['minutes']} min, "
            f"{_status(run['exitstatus'])}",
            run["command"],
        ]
    return [*lines, "```"]


def render(data: dict[str, Any]) -> str:
    """The figures section of docs/reliability.md."""
    figures = data["figures"]
    lines = [
        START,
        "",
        *_provenance(data),
        "",
        "Per backend: the most writers that ran at once and the operations they completed, the "
        "faults survived, the hostile inputs tried, the texts searched for a secret, and what "
        "was lost or duplicated.",
        "",
        "| backend | tests | writers at once | operations | faults survived | hostile inputs "
        "| secret checks | lost | duplicated |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in summarise(figures):
        lines.append(
            f"| {row['backend']} | {row['tests']} | {_n(row['writers'])} | "
            f"{_n(row['operations'])} | {_n(row['faults'])} | {_n(row['hostile'])} | "
            f"{_n(row['secrets'])} | {row['lost']} | {row['duplicated']} |"
        )
    lines += [
        "",
        "<details><summary>Every run (test, load, faults, inputs, losses, seconds)</summary>",
        "",
        "| backend | kind | scenario | writers x operations | faults | hostile inputs | lost "
        "| duplicated | s |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for fig in sorted(figures, key=lambda f: (_order(f["backend"]), f["kind"], f["test"])):
        load = f"{fig['writers']} x {fig['operations']:,}" if fig["operations"] else "-"
        scenario = fig["notes"].get("scenario", "")
        extra = {k: v for k, v in fig["notes"].items() if k != "scenario"}
        if extra:
            scenario += " (" + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items())
            scenario += ")"
        lines.append(
            f"| {fig['backend']} | {fig['kind']} | {scenario} | {load} | {_n(fig['faults'])} | "
            f"{_n(fig['hostile_inputs'])} | {fig['lost']} | {fig['duplicated']} | "
            f"{fig['seconds']} |"
        )
    lines += ["", "</details>", "", END]
    return "\n".join(lines)


def write_doc(section: str, doc: Path = DOC) -> None:
    """Replace the figures section of ``doc`` (the prose around it stays)."""
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no figure markers ({START} ... {END}); add them first")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(head + section + tail, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="default sizes, not --run-slow")
    parser.add_argument("--scale", help="ASSETRY_STRESS_SCALE for the run (a multiplier)")
    parser.add_argument(
        "-k", dest="select", help="run only this part of the suite (a pytest -k expression)"
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        nargs="+",
        help="render saved figures files (several: runs of parts of the suite, merged)",
    )
    parser.add_argument("--save", type=Path, help="also save the raw figures as JSON here")
    parser.add_argument("--no-write", action="store_true", help="print only, leave the doc")
    args = parser.parse_args(argv)
    if args.source:
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.source]
        data = runs[0] if len(runs) == 1 else merge(runs)
    else:
        data = run_suite(args.quick, args.scale, args.select)
        data["commit"] = _commit()
    if args.save:
        args.save.write_text(json.dumps(data, indent=1), encoding="utf-8")
    section = render(data)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"\nwrote the figures into {DOC.relative_to(ROOT)}")
    return 0 if data["exitstatus"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
