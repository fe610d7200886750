"""Work done by the stress suites' worker processes (and threads, for the memory backend).

Kept apart from the test modules so a forkserver child imports only this and assetry. Each
worker builds its own instance from a :class:`stress_kit.BackendCase`; workers that are
killed on purpose log every operation to an append-only file before (``B``) and after
(``A``) it, so the test knows which operations were acknowledged and which were in flight
when the process died.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import assetry
from assetry import Asset
from assetry.errors import AssetInactiveError, BackendUnavailableError

COUNTER = Asset("counter", uri="s3://data/counter")
ORDERS = Asset("orders", uri="s3://data/orders")
SHIPMENTS = Asset("shipments", uri="s3://data/shipments")
RACED = Asset("raced", uri="s3://data/raced")
LEDGER = Asset("ledger", uri="s3://data/ledger")


class AckLog:
    """An append-only operation log that survives SIGKILL (each line is one write(2))."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, *parts: object) -> None:
        os.write(self.fd, (" ".join(str(p) for p in parts) + "\n").encode())


def read_ack_logs(paths: list[str]) -> dict[str, dict[str, set[str]]]:
    """``{kind: {"acked": ops, "inflight": ops, "unknown": ops}}`` from the logs; an op is
    acknowledged (``A``), in flight when its process died (``B`` only), or of unknown
    outcome (``U``: the backend said so)."""
    out: dict[str, dict[str, set[str]]] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        begun: dict[tuple[str, str], bool] = {}
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                parts = raw.split()
                if len(parts) != 3:
                    continue  # "R" (ready) lines
                mark, kind, op = parts
                slot = out.setdefault(kind, {"acked": set(), "inflight": set(), "unknown": set()})
                if mark == "B":
                    begun[(kind, op)] = True
                elif mark == "A":
                    begun.pop((kind, op), None)
                    slot["acked"].add(op)
                elif mark == "U":
                    begun.pop((kind, op), None)
                    slot["unknown"].add(op)
        for kind, op in begun:
            out.setdefault(kind, {"acked": set(), "inflight": set(), "unknown": set()})
            out[kind]["inflight"].add(op)
    return out


def _plus_one(n: int) -> int:
    return n + 1


# -- concurrency ---------------------------------------------------------------------------------


def update_worker(start: Any, case: Any, writer: int, ops: int) -> int:
    """``ops`` increments of the shared key and of this writer's own key."""
    with case.instance() as inst:
        store = inst.asset_store(COUNTER)
        start.wait()
        for _ in range(ops):
            store.update("shared", _plus_one, default=0)
            store.update(f"own-{writer}", _plus_one, default=0)
    return ops


def append_worker(start: Any, case: Any, writer: int, ops: int) -> list[tuple[str, int, int]]:
    """``ops`` events, alternating between two assets; returns (asset, id, seq) of each."""
    out: list[tuple[str, int, int]] = []
    with case.instance() as inst:
        assets = (ORDERS, SHIPMENTS)
        for asset in assets:
            inst.ensure(asset)
        start.wait()
        for seq in range(ops):
            asset = assets[seq % 2]
            event = inst.record_event(asset, extra={"w": writer, "s": seq})
            out.append((asset.name, event.id, seq))
    return out


def consumer_worker(
    start: Any, case: Any, consumer: int, expected: dict[str, int], timeout: float
) -> list[tuple[str, int]]:
    """A consumer task scheduled on either asset, run with ``run_ready`` until it has been
    handed ``expected`` events per asset; returns every (asset, id) it was handed."""
    handed: list[tuple[str, int]] = []

    @assetry.task(task_id=f"consumer-{consumer}", schedule=ORDERS | SHIPMENTS)
    def consume(triggering_asset_events: Any) -> None:
        for name, events in triggering_asset_events.by_name().items():
            handed.extend((name, e.id) for e in events)

    with case.instance() as inst:
        for asset in (ORDERS, SHIPMENTS):
            inst.ensure(asset)
        start.wait()
        deadline = time.monotonic() + timeout
        while True:
            counts = {name: sum(1 for n, _ in handed if n == name) for name in expected}
            if all(counts[n] >= expected[n] for n in expected):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"consumer {consumer} saw only {counts} of {expected}")
            if not assetry.run_ready(consume, instance=inst):
                time.sleep(random.uniform(0.005, 0.02))
        # nothing more is handed once everything was seen
        assetry.run_ready(consume, instance=inst)
    return handed


def race_writer(start: Any, case: Any, writer: int, ops: int) -> dict[str, Any]:
    """Writes to an asset that is being deactivated, swept and reactivated: each write
    succeeds or is refused as inactive. Returns the acknowledged events."""
    acked: list[tuple[int, int]] = []
    refused = 0
    with case.instance() as inst:
        store = inst.asset_store(RACED)
        start.wait()
        for seq in range(ops):
            try:
                store.set(f"k-{writer}-{seq % 5}", seq)
            except AssetInactiveError:
                refused += 1
            try:
                event = inst.record_event(RACED, extra={"w": writer, "s": seq})
                acked.append((event.id, seq))
            except AssetInactiveError:
                refused += 1
    return {"acked": acked, "refused": refused}


def atomic_runner(start: Any, case: Any, writer: int, ops: int) -> int:
    """``ops`` atomic task runs, each incrementing a shared counter, writing its own key and
    recording one event; a run refused for a concurrent change is run again. Returns how
    many runs were refused."""
    from assetry.errors import ConflictError

    @assetry.task(task_id=f"atomic-{writer}", outlets=[LEDGER], atomic=True)
    def run_once(asset_store: Any, outlet_events: Any, n: int) -> None:
        asset_store.update("runs", _plus_one, default=0)
        asset_store.set(f"run-{writer}-{n}", n)
        outlet_events[LEDGER].extra["run"] = [writer, n]

    refused = 0
    with case.instance() as inst, assetry.use_instance(inst):
        inst.ensure(LEDGER)
        start.wait()
        for n in range(ops):
            while True:
                try:
                    run_once(n=n)
                    break
                except ConflictError:
                    refused += 1
    return refused


# -- faults: processes killed at random points ----------------------------------------------------


def churn_worker(case: Any, log_path: str, writer: str) -> None:
    """Until killed: increment a counter, and append an event, logging each."""
    log = AckLog(log_path)
    inst = case.instance()
    store = inst.asset_store(COUNTER)
    inst.ensure(ORDERS)
    log.line("R")
    seq = 0
    while True:
        op = f"{writer}/{seq}"
        log.line("B", "update", op)
        store.update("n", _plus_one, default=0)
        log.line("A", "update", op)
        log.line("B", "event", op)
        inst.record_event(ORDERS, extra={"w": writer, "s": seq, "pad": "x" * (seq % 7) * 100})
        log.line("A", "event", op)
        seq += 1


def atomic_worker(case: Any, log_path: str, writer: str, die_before_commit: float) -> None:
    """Until killed: atomic task runs, each writing two store keys and one event. With
    probability ``die_before_commit`` a run kills its own process inside the commit (after
    the store writes were sent, before COMMIT)."""
    from assetry.backends.sql import SQLBackend
    from assetry.errors import ConflictError

    log = AckLog(log_path)
    inst = case.instance()
    inst.ensure(LEDGER)

    if die_before_commit:
        insert_events = SQLBackend._insert_events

        def then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> Any:
            inserted = insert_events(self, *args, **kwargs)
            if random.random() < die_before_commit:
                os.kill(os.getpid(), 9)  # store writes and events sent, COMMIT not yet
            return inserted

        SQLBackend._insert_events = then_maybe_die  # type: ignore[method-assign]

    @assetry.task(task_id=f"atomic-{writer}", outlets=[LEDGER], atomic=True)
    def run_once(asset_store: Any, outlet_events: Any, n: int) -> None:
        asset_store.set(f"run-{writer}-{n}", n)
        asset_store.update("runs", _plus_one, default=0)
        outlet_events[LEDGER].extra["run"] = f"{writer}-{n}"

    log.line("R")
    n = 0
    with assetry.use_instance(inst):
        while True:
            op = f"{writer}-{n}"
            log.line("B", "run", op)
            while True:
                try:
                    run_once(n=n)
                    break
                except ConflictError:  # a concurrent run changed "runs": nothing committed
                    continue
            log.line("A", "run", op)
            n += 1


def frame_worker(log_path: str, spec: dict[str, Any]) -> None:
    """Until killed: dataframe writes through the IO manager: overwrites of one asset with
    generation ``g`` (``rows(g)`` rows, all tagged ``g``) and inserts of batches into
    another (each batch ``rows`` rows tagged with its id)."""
    import pyarrow as pa
    from assetry.iomanager import IOManagerDispatcher

    log = AckLog(log_path)
    settings = assetry.load_settings(backend="memory", environ=spec.get("environ", {}))
    dispatcher = IOManagerDispatcher(settings)
    whole = Asset("whole", uri=spec["overwrite_uri"])
    parts = Asset("parts", uri=spec["insert_uri"])
    writer = spec["writer"]
    log.line("R")
    n = 0
    while True:
        gen = f"{writer}-{n}"
        rows = 50 + (n * 37) % 400
        table = pa.table({"id": list(range(rows)), "gen": [gen] * rows, "rows": [rows] * rows})
        log.line("B", "overwrite", gen)
        with dispatcher.connect(whole) as handle:
            handle.overwrite(table)
        log.line("A", "overwrite", gen)
        log.line("B", "insert", gen)
        with dispatcher.connect(parts) as handle:
            handle.insert(table)
        log.line("A", "insert", gen)
        n += 1


# -- faults: lost server connections -----------------------------------------------------------


def flaky_server_worker(
    start: Any, case: Any, log_path: str, writer: int, ops: int, bound: float
) -> dict[str, Any]:
    """Updates and appends while the test kills this process's server connections. A lost
    connection must surface, if at all, as a clear :class:`BackendUnavailableError` within
    ``bound`` seconds; the worker then logs the operation's outcome as unknown (``U``) and
    goes on."""
    log = AckLog(log_path)
    errors: list[str] = []
    slowest = 0.0
    with case.instance(retry_timeout=5.0) as inst:
        for _ in range(20):  # connecting may meet a cut too: it must fail clearly, then work
            try:
                store = inst.asset_store(COUNTER)
                inst.ensure(ORDERS)
                break
            except BackendUnavailableError as exc:
                errors.append(str(exc))
        else:
            raise AssertionError(f"writer {writer} could not connect in 20 attempts: {errors}")
        start.wait()
        for seq in range(ops):
            for kind in ("update", "event"):
                op = f"{writer}/{seq}"
                log.line("B", kind, op)
                began = time.monotonic()
                try:
                    if kind == "update":
                        store.update("n", _plus_one, default=0)
                    else:
                        inst.record_event(ORDERS, extra={"w": writer, "s": seq})
                except BackendUnavailableError as exc:
                    errors.append(str(exc))
                    log.line("U", kind, op)
                else:
                    log.line("A", kind, op)
                took = time.monotonic() - began
                slowest = max(slowest, took)
                if took > bound:
                    raise AssertionError(f"{kind} {op} took {took:.1f}s, over {bound}s")
    return {"errors": errors, "slowest": slowest}


def s3_fault_worker(start: Any, case: Any, writer: int, ops: int) -> dict[str, Any]:
    """Updates and appends against an S3 endpoint that fails and drops requests; returns
    the acknowledged events, the updates whose outcome the backend could not tell, and any
    other errors (each request is retried by the backend)."""
    acked: list[tuple[int, int]] = []
    errors: list[str] = []
    unknown: list[str] = []
    updates = 0
    with case.instance() as inst:
        store = inst.asset_store(COUNTER)
        inst.ensure(ORDERS)
        start.wait()
        for seq in range(ops):
            try:
                store.update("n", _plus_one, default=0)
                updates += 1
            except BackendUnavailableError as exc:
                # an answer lost while others wrote on: the backend says it cannot tell
                which = unknown if "whether it was applied" in str(exc) else errors
                which.append(f"update: {exc}")
            try:
                event = inst.record_event(ORDERS, extra={"w": writer, "s": seq})
                acked.append((event.id, seq))
            except BackendUnavailableError as exc:
                errors.append(f"event: {exc}")
    return {"acked": acked, "updates": updates, "errors": errors, "unknown": unknown}


def call(start: Any, fn: Any, args: tuple[Any, ...]) -> Any:
    """Run ``fn(start, *args)``: lets one batch of workers mix kinds of work."""
    return fn(start, *args)


# -- faults: the server of the http backend killed and restarted ------------------------------------


def outage_worker(
    barrier: Any, case: Any, log_path: str, writer: str, ops: int, stop_path: str
) -> tuple[int, int]:
    """Increments and events through the http backend while its server is killed and
    restarted, at least ``ops`` of each and until ``stop_path`` exists: an operation the
    backend could not confirm is logged ``U`` (unknown outcome) and the next one starts.
    Returns how many of each kind were tried, and how many were unconfirmed."""
    log = AckLog(log_path)
    inst = case.instance()
    store = inst.asset_store(COUNTER)
    log.line("R")
    barrier.wait()
    unconfirmed = 0
    seq = 0
    while seq < ops or not os.path.exists(stop_path):
        for kind in ("update", "event"):
            op = f"{writer}/{seq}"
            log.line("B", kind, op)
            try:
                if kind == "update":
                    store.update("n", _plus_one, default=0)
                else:
                    inst.record_event(ORDERS, extra={"w": writer, "s": seq})
            except BackendUnavailableError:
                log.line("U", kind, op)
                unconfirmed += 1
                time.sleep(0.05)
                continue
            log.line("A", kind, op)
        seq += 1
    inst.close()
    return seq, unconfirmed
