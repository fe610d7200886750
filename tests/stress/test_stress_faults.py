"""Faults: writers SIGKILLed at random points, database connections cut mid-run (as a
server restart does), an S3 endpoint that fails and drops requests, and the http backend's
``assetry serve`` process SIGKILLed and restarted on the same port.

After each, the state is consistent: every acknowledged write is there once, a write in
flight when its process died is there at most once, nothing partial is visible, and a
failure the client sees is a clear, bounded :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import stress_workers as w
from assetry.errors import BackendUnavailableError
from fault_proxy import FaultProxy
from stress_kit import (
    SERVERS,
    START_LIMIT,
    BackendCase,
    Recorder,
    ServerProcess,
    Sizes,
    kill_server_connections,
    make_case,
    mp_context,
    run_workers,
    time_limit,
)

pytest_plugins = ["stress_fixtures"]
pytestmark = [
    pytest.mark.timeout(time_limit(900)),
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]


# -- SIGKILL at random points ---------------------------------------------------------------------


def _kill_rounds(
    tmp_path: Path,
    target: Any,
    make_args: Any,
    *,
    rounds: int,
    writers: int,
    max_delay: float,
    seed: int,
    tag: str = "",
) -> tuple[list[str], int]:
    """``rounds`` times: start ``writers`` processes running ``target(*make_args(log, name))``,
    let them work for a random moment once they are ready, SIGKILL them all. Returns the
    operation logs and how many processes were killed."""
    rng = random.Random(seed)
    context = mp_context()
    logs: list[str] = []
    killed = 0
    for r in range(rounds):
        procs = []
        for i in range(writers):
            log = str(tmp_path / f"ops{tag}-{r}-{i}.log")
            logs.append(log)
            name = f"{tag}{r}.{i}"
            proc = context.Process(target=target, args=make_args(log, name), daemon=True)
            proc.start()
            procs.append((proc, log))
        limit = time_limit(START_LIMIT)
        deadline = time.monotonic() + limit
        while not all(_ready(log) or not p.is_alive() for p, log in procs):
            assert time.monotonic() < deadline, f"writers did not start within {limit}s"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, max_delay))
        for proc, _ in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
        for proc, _ in procs:
            proc.join(30)
            # killed by us, or by itself at a chosen point (atomic_worker)
            assert proc.exitcode == -signal.SIGKILL, f"a writer ended with {proc.exitcode}"
            killed += 1
    return logs, killed


def _ready(log: str) -> bool:
    try:
        with open(log, encoding="utf-8") as fh:
            return fh.readline().strip() == "R"
    except FileNotFoundError:
        return False


KILL_SIZES = {"s3": ((2, 2), (10, 3)), "file": ((3, 3), (12, 4))}
DEFAULT_KILL_SIZES = ((2, 3), (15, 4))


def test_writers_killed_at_random_points_leave_every_acknowledged_write_once(
    process_case: BackendCase, sizes: Sizes, figures: Recorder, tmp_path: Path
) -> None:
    case = process_case
    (q_rounds, q_writers), (l_rounds, l_writers) = KILL_SIZES.get(case.kind, DEFAULT_KILL_SIZES)
    rounds, writers = sizes.pick(q_rounds, l_rounds), sizes.pick(q_writers, l_writers)
    with case.instance() as inst:
        inst.register(w.COUNTER)
        inst.register(w.ORDERS)
    logs, killed = _kill_rounds(
        tmp_path,
        w.churn_worker,
        lambda log, name: (case, log, name),
        rounds=rounds,
        writers=writers,
        max_delay=1.0 if case.kind == "s3" else 0.6,
        seed=hash(case.kind) & 0xFFFF,
    )
    ops = w.read_ack_logs(logs)
    with case.instance() as inst:
        entry = inst.asset_store(w.COUNTER).get_entry("n")
        events = inst.events(w.ORDERS)
        entries = inst.backend.store_entries(w.COUNTER.name)  # every document parses
    updates, appended = ops.get("update", {}), ops.get("event", {})
    acked_updates = len(updates.get("acked", ()))
    inflight_updates = len(updates.get("inflight", ()))
    value = entry.value if entry else 0
    stored = Counter(f"{e.extra['w']}/{e.extra['s']}" for e in events)
    acked, inflight = appended.get("acked", set()), appended.get("inflight", set())
    lost = len(acked - set(stored)) + max(0, acked_updates - value)
    duplicated = sum(c - 1 for c in stored.values()) + max(
        0, value - acked_updates - inflight_updates
    )
    figures.record(
        case.kind,
        "faults",
        writers=writers,
        operations=acked_updates + len(acked),
        faults=killed,
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "SIGKILL during store updates and event appends",
            "in_flight_at_kill": inflight_updates + len(inflight),
        },
    )
    assert [e.key for e in entries] == ["n"]
    assert entry is not None and entry.version == value  # one write per increment
    assert acked_updates <= value <= acked_updates + inflight_updates
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert set(stored) - acked <= inflight  # nothing that was never written
    for event in events:  # complete documents only
        assert event.extra["pad"] == "x" * (event.extra["s"] % 7) * 100
    assert lost == 0
    assert duplicated == 0


def test_atomic_runs_killed_inside_their_commit_are_all_or_nothing(
    transactional_case: BackendCase, sizes: Sizes, figures: Recorder, tmp_path: Path
) -> None:
    case = transactional_case
    rounds, writers = sizes.pick(2, 15), sizes.pick(3, 4)
    with case.instance() as inst:
        inst.register(w.LEDGER)
    logs, killed = _kill_rounds(
        tmp_path,
        w.atomic_worker,
        lambda log, name: (case, log, name, 0.05),
        rounds=rounds,
        writers=writers,
        max_delay=0.8,
        seed=7,
    )
    runs = w.read_ack_logs(logs).get("run", {})
    acked, inflight = runs.get("acked", set()), runs.get("inflight", set())
    with case.instance() as inst:
        store = inst.asset_store(w.LEDGER)
        items = store.items()
        events = inst.events(w.LEDGER)
    with_keys = {k.removeprefix("run-") for k in items if k.startswith("run-")}
    with_events = Counter(e.extra["run"] for e in events)
    lost = len(acked - set(with_events))
    duplicated = sum(c - 1 for c in with_events.values())
    figures.record(
        case.kind,
        "faults",
        writers=writers,
        operations=len(acked),
        faults=killed,
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "SIGKILL inside atomic task commits",
            "in_flight_at_kill": len(inflight),
        },
    )
    assert with_keys == set(with_events)  # store writes and events together or not at all
    assert items.get("runs", 0) == len(with_events)
    assert set(with_events) - acked <= inflight
    assert lost == 0
    assert duplicated == 0


# -- dataframe writers killed ---------------------------------------------------------------------


def _frame_targets(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """URIs (and connection environment) of one overwritten and one appended asset."""
    if kind == "local-dataset":
        return {
            "overwrite_uri": f"file://{tmp_path}/whole",
            "insert_uri": f"file://{tmp_path}/parts",
        }
    if kind == "local-files":
        return {
            "overwrite_uri": f"file://{tmp_path}/whole.parquet",
            "insert_uri": f"file://{tmp_path}/parts.jsonl",
        }
    if kind == "s3-dataset":
        server = request.getfixturevalue("s3_server")
        bucket = server.make_bucket()
        conn = json.dumps(server.storage_options)
        return {
            "overwrite_uri": f"s3://{bucket}/whole",
            "insert_uri": f"s3://{bucket}/parts",
            "environ": {"ASSETRY_CONN_AWS_DEFAULT": conn},
        }
    if kind == "duckdb":
        db = f"duckdb:///{tmp_path}/warehouse.duckdb"
        return {"overwrite_uri": f"{db}/whole", "insert_uri": f"{db}/parts"}
    if kind == "sqlite":
        db = f"sqlite:///{tmp_path}/warehouse.db"
        return {"overwrite_uri": f"{db}/whole", "insert_uri": f"{db}/parts"}
    if kind == "postgresql":
        schema = request.getfixturevalue("pg_schema")
        base = f"postgresql://postgres@127.0.0.1:5432/test/{schema}"
        return {"overwrite_uri": f"{base}/whole", "insert_uri": f"{base}/parts"}
    raise ValueError(kind)


@pytest.fixture
def pg_schema(pg_url: str) -> Any:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    import sqlalchemy as sa
    from assetry.backends.sql.testing import scratch_database

    with scratch_database(pg_url, prefix="assetry_stress_io") as url:
        options = sa.engine.make_url(url).query["options"]
        yield str(options).split("=", 1)[1]


def _read(uri: str, environ: dict[str, str]) -> pa.Table | None:
    import assetry
    from assetry import Asset
    from assetry.errors import AssetNotFoundError
    from assetry.iomanager import IOManagerDispatcher

    dispatcher = IOManagerDispatcher(assetry.load_settings(backend="memory", environ=environ))
    try:
        with dispatcher.connect(Asset("read", uri=uri)) as handle:
            return handle.to_pyarrow()
    except AssetNotFoundError:
        return None
    finally:
        dispatcher.close()


@pytest.mark.parametrize(
    "target", ["local-dataset", "local-files", "s3-dataset", "duckdb", "sqlite", "postgresql"]
)
def test_dataframe_writers_killed_leave_readers_whole_tables(
    target: str, request: pytest.FixtureRequest, sizes: Sizes, figures: Recorder, tmp_path: Path
) -> None:
    spec = _frame_targets(target, request, tmp_path)
    environ = spec.get("environ", {})
    rounds = sizes.pick(5 if target != "s3-dataset" else 3, 20)
    logs: list[str] = []
    killed = 0
    problems: list[str] = []
    for r in range(rounds):
        round_logs, n = _kill_rounds(
            tmp_path,
            w.frame_worker,
            lambda log, name: (log, {**spec, "writer": name}),
            rounds=1,
            tag=f"r{r}-",
            writers=1,
            max_delay=1.5 if target == "s3-dataset" else 0.8,
            seed=r,
        )
        logs += round_logs
        killed += n
        whole = _read(spec["overwrite_uri"], environ)  # after each kill: old or new, whole
        if whole is not None and whole.num_rows:
            gens = set(whole.column("gen").to_pylist())
            rows = set(whole.column("rows").to_pylist())
            if len(gens) != 1 or rows != {whole.num_rows}:
                problems.append(
                    f"round {r}: overwritten table mixes {gens} ({whole.num_rows} rows)"
                )
            elif sorted(whole.column("id").to_pylist()) != list(range(whole.num_rows)):
                problems.append(f"round {r}: overwritten table {gens} lacks rows")
    ops = w.read_ack_logs(logs)
    parts = _read(spec["insert_uri"], environ)
    batches: Counter[str] = Counter()
    if parts is not None:
        table = parts.to_pydict()
        per_gen: dict[str, list[int]] = {}
        for gen, row_id, rows in zip(table["gen"], table["id"], table["rows"], strict=True):
            per_gen.setdefault(gen, []).append(row_id)
            batches[gen] = rows
        for gen, ids in per_gen.items():
            if sorted(ids) != list(range(batches[gen])):
                problems.append(
                    f"insert {gen}: {len(ids)} rows of {batches[gen]} (partial or twice)"
                )
    inserts = ops.get("insert", {})
    acked, inflight = inserts.get("acked", set()), inserts.get("inflight", set())
    lost = len(acked - set(batches))
    overwrites = len(ops.get("overwrite", {}).get("acked", ()))
    figures.record(
        f"io:{target}",
        "faults",
        writers=1,
        operations=overwrites + len(acked),
        faults=killed,
        lost=lost,
        duplicated=len(problems),
        notes={"scenario": "SIGKILL during dataframe overwrites and inserts"},
    )
    assert not problems, problems
    assert set(batches) - acked <= inflight
    assert lost == 0


# -- database connections cut mid-run -----------------------------------------------------------


def test_cut_server_connections_surface_as_clear_bounded_errors_and_lose_nothing(
    server_case: BackendCase, sizes: Sizes, figures: Recorder, tmp_path: Path
) -> None:
    case = server_case
    writers, ops = sizes.pick(3, 6), sizes.pick(60, 400)
    bound = 5.0 + 10.0  # the workers' retry_timeout, plus room for a loaded machine
    with case.instance() as inst:
        inst.register(w.COUNTER)
        inst.register(w.ORDERS)
        stop = threading.Event()
        cuts: list[int] = []

        def cut() -> None:
            rng = random.Random(3)
            while not stop.wait(rng.uniform(0.1, 0.4)):
                cuts.append(kill_server_connections(case))

        cutter = threading.Thread(target=cut, daemon=True)
        logs = [str(tmp_path / f"ops-{i}.log") for i in range(writers)]
        cutter.start()
        try:
            results = run_workers(
                case,
                w.flaky_server_worker,
                [(case, logs[i], i, ops, bound) for i in range(writers)],
                timeout=600,
            )
        finally:
            stop.set()
            cutter.join(30)
        entry = inst.asset_store(w.COUNTER).get_entry("n")
        events = inst.events(w.ORDERS)
    state = w.read_ack_logs(logs)
    updates, appended = state.get("update", {}), state.get("event", {})
    acked_u, unknown_u = len(updates.get("acked", ())), len(updates.get("unknown", ()))
    value = entry.value if entry else 0
    stored = Counter(f"{e.extra['w']}/{e.extra['s']}" for e in events)
    acked_e, unknown_e = appended.get("acked", set()), appended.get("unknown", set())
    errors = [e for r in results for e in r["errors"]]
    lost = len(acked_e - set(stored)) + max(0, acked_u - value)
    duplicated = sum(c - 1 for c in stored.values()) + max(0, value - acked_u - unknown_u)
    figures.record(
        case.kind,
        "faults",
        writers=writers,
        operations=2 * writers * ops,
        faults=sum(cuts),
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "server connections killed every 0.1-0.4 s",
            "errors_seen": len(errors),
            "slowest_operation_s": round(max(r["slowest"] for r in results), 2),
        },
    )
    assert sum(cuts) > 0, "no connection was cut"
    for message in errors:  # clear: what happened, where, and what to do
        assert "state database" in message and ("retry" in message or "check" in message)
    assert entry is not None and entry.version == value
    assert acked_u <= value <= acked_u + unknown_u
    assert set(stored) - acked_e <= unknown_e
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert lost == 0
    assert duplicated == 0


# -- an S3 endpoint that fails --------------------------------------------------------------------

ALL_FAULTS = {
    "error_500": 0.03,
    "error_503": 0.03,
    "drop_before": 0.03,
    "error_after": 0.03,
    "drop_after": 0.03,
}


def _proxied_case(case: BackendCase, proxy: FaultProxy, **options: Any) -> BackendCase:
    storage = {**case.options["storage_options"], "endpoint_url": proxy.endpoint_url}
    return BackendCase(case.kind, case.url, {"storage_options": storage, **options})


@pytest.fixture
def s3_case(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    yield from make_case("s3", request, tmp_path)


def test_s3_writes_whose_responses_are_lost_are_applied_once(
    s3_case: BackendCase, figures: Recorder
) -> None:
    # every third request lands but its answer is lost: a resend must not apply it again
    with (
        FaultProxy(
            s3_case.options["storage_options"]["endpoint_url"], {"drop_after": 0.3}
        ) as proxy,
        _proxied_case(s3_case, proxy).instance() as inst,
    ):
        store = inst.asset_store(w.COUNTER)
        for i in range(20):
            store.update("n", lambda n: n + 1, default=0)
            inst.record_event(w.ORDERS, extra={"i": i})
        entry = store.get_entry("n")
        events = inst.events(w.ORDERS)
    value = entry.value if entry is not None else 0
    figures.record(
        "s3",
        "faults",
        writers=1,
        operations=40,
        faults=proxy.faults,
        lost=max(0, 20 - value) + max(0, 20 - len(events)),
        duplicated=max(0, value - 20) + max(0, len(events) - 20),
        notes={"scenario": "answers lost after S3 applied the write"},
    )
    assert proxy.counts["drop_after"] > 5
    assert entry is not None and (entry.value, entry.version) == (20, 20)
    assert [(e.id, e.extra["i"]) for e in events] == [(i + 1, i) for i in range(20)]


def test_s3_faults_under_concurrent_writers_are_retried_and_lose_nothing(
    s3_case: BackendCase, sizes: Sizes, figures: Recorder
) -> None:
    writers, ops = sizes.pick(3, 6), sizes.pick(12, 60)
    upstream = s3_case.options["storage_options"]["endpoint_url"]
    with FaultProxy(upstream, ALL_FAULTS, seed=11) as proxy:
        case = _proxied_case(s3_case, proxy)
        with s3_case.instance() as direct:
            direct.register(w.COUNTER)
            direct.register(w.ORDERS)
        results = run_workers(case, w.s3_fault_worker, [(case, i, ops) for i in range(writers)])
    with s3_case.instance() as inst:
        entry = inst.asset_store(w.COUNTER).get_entry("n")
        events = inst.events(w.ORDERS)
    errors = [e for r in results for e in r["errors"]]
    unknown = [e for r in results for e in r["unknown"]]
    acked = Counter((i, s) for i, r in enumerate(results) for _, s in r["acked"])
    stored = Counter((e.extra["w"], e.extra["s"]) for e in events)
    updates = sum(r["updates"] for r in results)
    value = entry.value if entry else 0
    lost = sum((acked - stored).values()) + max(0, updates - value)
    duplicated = sum(c - 1 for c in stored.values()) + max(0, value - updates - len(unknown))
    figures.record(
        "s3",
        "faults",
        writers=writers,
        operations=2 * writers * ops,
        faults=proxy.faults,
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "fault proxy: 500, 503, dropped connections before and after moto",
            "requests": proxy.counts["requests"],
            "updates_of_unknown_outcome": len(unknown),
        },
    )
    assert proxy.faults > 0
    assert errors == []  # each fault was retried away (at most 8 attempts per request)
    # an update whose answer was lost while others wrote on is reported, never guessed
    assert entry is not None and entry.version == value
    assert updates <= value <= updates + len(unknown)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert lost == 0
    assert duplicated == 0


def test_s3_endpoint_that_always_fails_gives_a_clear_error_after_bounded_retries(
    s3_case: BackendCase, figures: Recorder
) -> None:
    upstream = s3_case.options["storage_options"]["endpoint_url"]
    injected = 0
    for fault in ("error_503", "drop_before"):
        with FaultProxy(upstream, {fault: 1.0}) as proxy:
            case = _proxied_case(s3_case, proxy, max_attempts=4, retry_base_delay=0.01)
            with case.instance() as inst:
                began = time.monotonic()
                with pytest.raises(BackendUnavailableError) as caught:
                    inst.register(w.COUNTER)
                took = time.monotonic() - began
        message = str(caught.value)
        assert "after 4 attempts" in message and "s3://" in message and "retry" in message
        assert proxy.counts["requests"] == 4  # one request, four attempts, nothing more
        assert took < 30
        injected += proxy.faults
    figures.record(
        "s3",
        "faults",
        faults=injected,
        notes={"scenario": "endpoint always failing: a clear error after 4 attempts"},
    )


# -- the http backend's server killed and restarted on the same port --------------------------------


@pytest.fixture
def http_case(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    yield from make_case("http", request, tmp_path)


def test_http_server_killed_and_restarted_loses_no_acknowledged_write(
    http_case: BackendCase, sizes: Sizes, figures: Recorder, tmp_path: Path
) -> None:
    """Writers keep going through the http backend while its ``assetry serve`` process is
    SIGKILLed and restarted on the same port: every acknowledged increment and event is
    there once, unconfirmed ones at most once, and the clients recover on their own."""
    case = http_case
    server: ServerProcess = SERVERS[case.url]
    writers, ops, kills = sizes.pick(3, 6), sizes.pick(40, 300), sizes.pick(2, 8)
    with case.instance() as inst:
        inst.register(w.COUNTER)
        inst.register(w.ORDERS)
    logs = [str(tmp_path / f"outage-{i}.log") for i in range(writers)]
    rng = random.Random(7)
    done = threading.Event()
    killed = 0

    def outages() -> None:
        nonlocal killed
        deadline = time.monotonic() + time_limit(START_LIMIT)
        while not all(_ready(log) for log in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        while killed < kills and not done.is_set():
            server.kill()
            killed += 1
            time.sleep(rng.uniform(0.05, 0.5))  # clients fail while it is down
            server.start()
            time.sleep(rng.uniform(0.3, 1.0))
        Path(stop_path).touch()

    stop_path = str(tmp_path / "stop")
    chaos = threading.Thread(target=outages, daemon=True)
    chaos.start()
    try:
        results = run_workers(
            case,
            w.outage_worker,
            [(case, log, f"w{i}", ops, stop_path) for i, log in enumerate(logs)],
        )
    finally:
        done.set()
        Path(stop_path).touch()
        chaos.join(120)
    tried = sum(n for n, _ in results)
    unconfirmed = sum(u for _, u in results)
    if server.process.poll() is not None:
        server.start()
    found = w.read_ack_logs(logs)
    with case.instance() as inst:
        entry = inst.asset_store(w.COUNTER).get_entry("n")
        events = inst.events(w.ORDERS)
    updates, appended = found.get("update", {}), found.get("event", {})
    acked_updates = len(updates.get("acked", ()))
    unknown_updates = len(updates.get("unknown", ()))
    value = entry.value if entry else 0
    stored = Counter(f"{e.extra['w']}/{e.extra['s']}" for e in events)
    acked, unknown = appended.get("acked", set()), appended.get("unknown", set())
    lost = len(acked - set(stored)) + max(0, acked_updates - value)
    duplicated = sum(c - 1 for c in stored.values()) + max(
        0, value - acked_updates - unknown_updates
    )
    figures.record(
        case.kind,
        "faults",
        writers=writers,
        operations=acked_updates + len(acked),
        faults=killed,
        lost=lost,
        duplicated=duplicated,
        notes={
            "scenario": "assetry serve SIGKILLed and restarted on the same port under writers",
            "unconfirmed": unconfirmed,
        },
    )
    assert killed == kills and server.starts == killed + 1
    assert unconfirmed > 0  # the outages did hit the writers
    assert acked_updates <= value <= acked_updates + unknown_updates
    assert entry is not None and entry.version == value
    assert set(stored) - acked <= unknown  # nothing that was never written
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert lost == 0 and duplicated == 0
    # every operation was answered one way or the other: no worker hung
    assert acked_updates + unknown_updates == tried
