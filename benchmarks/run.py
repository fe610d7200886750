"""Run the benchmarks, each in its own process.

    python benchmarks/run.py                   # every benchmarks/bench_*.py
    python benchmarks/run.py --quick           # small sizes (passed on to each)
    python benchmarks/run.py --quick --check   # exit 1 when any target is missed
    python benchmarks/run.py memory sql        # only bench_memory.py and bench_sql.py
    python benchmarks/run.py --list

Each ``bench_<name>.py`` module has ``main(argv) -> int``. A fresh interpreter per benchmark
keeps their imports, caches and servers apart. Exits 1 when any benchmark fails; with
``--check`` (passed on to each) a missed target is a failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs in the child: import the benchmark module from HERE and call its main(argv).
_CHILD = (
    "import importlib, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "module = importlib.import_module(sys.argv[2])\n"
    "sys.exit(module.main(sys.argv[3:]))\n"
)


def discover(folder: Path = HERE) -> dict[str, Path]:
    """Benchmark name (``memory`` for ``bench_memory.py``) -> module path, sorted by name."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}


def run_one(path: Path, argv: Sequence[str]) -> int:
    """Run one benchmark module's ``main(argv)`` in a new interpreter; return its exit code."""
    command = [sys.executable, "-c", _CHILD, str(path.parent), path.stem, *argv]
    return subprocess.run(command, cwd=path.parent.parent, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, passed to each")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed (passed to each)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    names = [name.removeprefix("bench_").removesuffix(".py") for name in args.names]
    unknown = [name for name in names if name not in found]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(found)}")
    selected = names or list(found)
    if not selected:
        print(f"no bench_*.py in {HERE}", file=sys.stderr)
        return 1
    passthrough = (["--quick"] if args.quick else []) + (["--check"] if args.check else [])
    results: list[tuple[str, int, float]] = []
    for name in selected:
        print(f"\n=== {name} ({found[name].name} {' '.join(passthrough)})".rstrip() + " ===")
        sys.stdout.flush()
        start = time.perf_counter()
        code = run_one(found[name], passthrough)
        results.append((name, code, time.perf_counter() - start))
    print("\n=== summary ===")
    width = max(len(name) for name, _, _ in results)
    for name, code, seconds in results:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{name.ljust(width)}  {status:<18} {seconds:8.1f}s")
    return 1 if any(code != 0 for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
