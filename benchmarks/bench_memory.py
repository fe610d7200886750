"""Memory backend throughput beside a plain locked dict and list, measured in the same run.

    python benchmarks/bench_memory.py            # 50k store operations, 50 event batches
    python benchmarks/bench_memory.py --quick    # 5k store operations, 10 event batches

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
from _common import Row, measure, report

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


def run(ops: int, batches: int, repeat: int) -> list[Row]:
    """Measure every operation; return the rows (ours, baseline) in ops/s or events/s."""
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
        ours_s = measure(mine, ops, repeat=repeat)
        base_s = measure(base, ops, repeat=repeat)
        rows.append(Row(operation, 1 / ours_s, 1 / base_s, "ops/s"))
    assert store.get("counter") == plain.get("counter") == ops * repeat

    extras = [{"rows": i, "file": f"part-{i:05d}.parquet"} for i in range(BATCH)]
    log = LockedLog()
    ours_s = measure(lambda: inst.record_events(asset, extras), batches, repeat=repeat)
    base_s = measure(lambda: log.append_batch(asset.name, extras), batches, repeat=repeat)
    rows.append(
        Row(f"event append, batches of {BATCH}", BATCH / ours_s, BATCH / base_s, "events/s")
    )
    assert inst.latest_event(asset).id == batches * repeat * BATCH  # type: ignore[union-attr]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations, for CI")
    parser.add_argument("--ops", type=int, help="store operations per run (default 50000)")
    parser.add_argument("--batches", type=int, help="event batches per run (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    args = parser.parse_args(argv)
    ops = args.ops or (5_000 if args.quick else 50_000)
    batches = args.batches or (10 if args.quick else 50)
    print(
        "memory backend vs plain Python, best of "
        f"{args.repeat} runs ({ops:,} store ops, {batches} x {BATCH} events per run)\n"
        "baseline store: dict + threading.Lock, json.dumps on set, json.loads on get, "
        "both under the lock for update\n"
        "baseline log:   list.append under a threading.Lock, extra copied through JSON, "
        "ids and a timestamp assigned\n",
        flush=True,
    )
    report(run(ops, batches, args.repeat), title="ratio = assetry / baseline (rates: <1 is slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
