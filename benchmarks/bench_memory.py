"""Memory backend throughput beside a plain locked dict and list, measured in the same run.

    python benchmarks/bench_memory.py            # 9 blocks of 20k store ops, 20 event batches
    python benchmarks/bench_memory.py --quick    # 9 blocks of 2k store ops, 4 event batches
    python benchmarks/bench_memory.py --check    # exit 1 when a target is missed

Ours goes through the public API, ``Instance(backend="memory").asset_store(asset)`` and
``Instance.record_events``. The baselines do the same essential work with nothing else: a
dict guarded by a ``threading.Lock`` that JSON-encodes on set and decodes on get, and a list
appended under a lock with each event's extra copied through JSON. The difference is the
cost of validation, versions, per-asset ids and timestamps that assetry adds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import assetry
from _common import Row, interleaved, report

VALUE = {"watermark": "2024-06-01T00:00:00Z", "rows": 1234, "files": ["a.parquet", "b.parquet"]}
BATCH = 1000


class LockedDict:
    """The baseline store: JSON text in a dict behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._data[key] = text

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            text = self._data.get(key)
        return default if text is None else json.loads(text)

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        with self._lock:
            text = self._data.get(key)
            new = fn(default if text is None else json.loads(text))
            self._data[key] = json.dumps(new, separators=(",", ":"), allow_nan=False)
        return new


class LockedLog:
    """The baseline event log: a list appended under one lock, ids and timestamps assigned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[int, str, dt.datetime, Any]] = []

    def append_batch(self, asset: str, extras: Sequence[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        copies = [json.loads(json.dumps(extra, allow_nan=False)) for extra in extras]
        with self._lock:
            next_id = len(self._events) + 1
            for offset, extra in enumerate(copies):
                self._events.append((next_id + offset, asset, now, extra))


#: The least acceptable ratio of our rate to the baseline's, per operation.
TARGETS = {"store set": 0.5}


def run(ops: int, batches: int, blocks: int) -> list[Row]:
    """Measure every operation in interleaved blocks (median block); return the rows (ours,
    baseline) in ops/s or events/s."""
    inst = assetry.Instance(backend="memory")
    asset = assetry.Asset("bench", uri="memory://bench/state")
    store = inst.asset_store(asset)
    plain = LockedDict()
    store.set("state", VALUE)
    plain.set("state", VALUE)

    def ours_update() -> None:
        store.update("counter", lambda n: n + 1, default=0)

    def plain_update() -> None:
        plain.update("counter", lambda n: n + 1, default=0)

    rows = []
    for operation, mine, base in [
        ("store get", lambda: store.get("state"), lambda: plain.get("state")),
        ("store set", lambda: store.set("state", VALUE), lambda: plain.set("state", VALUE)),
        ("store update", ours_update, plain_update),
    ]:
        spent = interleaved({"ours": mine, "base": base}, ops, blocks=blocks)
        rows.append(
            Row(operation, 1 / spent["ours"], 1 / spent["base"], "ops/s", TARGETS.get(operation))
        )
    assert store.get("counter") == plain.get("counter") == ops * blocks + 1

    extras = [{"rows": i, "file": f"part-{i:05d}.parquet"} for i in range(BATCH)]
    log = LockedLog()
    spent = interleaved(
        {
            "ours": lambda: inst.record_events(asset, extras),
            "base": lambda: log.append_batch(asset.name, extras),
        },
        batches,
        blocks=blocks,
    )
    rows.append(
        Row(
            f"event append, batches of {BATCH}",
            BATCH / spent["ours"],
            BATCH / spent["base"],
            "events/s",
        )
    )
    assert inst.latest_event(asset).id == (batches * blocks + 1) * BATCH  # type: ignore[union-attr]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations, for CI")
    parser.add_argument("--ops", type=int, help="store operations per run (default 50000)")
    parser.add_argument("--batches", type=int, help="event batches per run (default 50)")
    parser.add_argument(
        "--blocks", type=int, default=9, help="interleaved blocks per side (median kept)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    ops = args.ops or (2_000 if args.quick else 20_000)
    batches = args.batches or (4 if args.quick else 20)
    print(
        f"memory backend vs plain Python, median of {args.blocks} interleaved blocks "
        f"({ops:,} store ops, {batches} x {BATCH} events per block)\n"
        "baseline store: dict + threading.Lock, json.dumps on set, json.loads on get, "
        "both under the lock for update\n"
        "baseline log:   list.append under a threading.Lock, extra copied through JSON, "
        "ids and a timestamp assigned\n",
        flush=True,
    )
    rows = run(ops, batches, args.blocks)
    report(rows, title="ratio = assetry / baseline (rates: <1 is slower)")
    missed = [row.operation for row in rows if row.missed]
    print("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
