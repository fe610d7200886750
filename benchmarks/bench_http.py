"""The HTTP server: store get/set and event append through ``assetry serve`` against a bare
Starlette route making the same backend call, scale-out across uvicorn workers, latency.

    python benchmarks/bench_http.py --quick            # PostgreSQL 127.0.0.1:5432, scratch schema
    python benchmarks/bench_http.py --quick --sqlite   # an SQLite file instead
    python benchmarks/bench_http.py --check            # exit 1 when a target is missed

Every server is a separate process on 127.0.0.1 on a free port: ``assetry serve`` itself
(``--anonymous write``, so no token check) and, as the baseline, uvicorn running a Starlette
app whose routes parse the JSON body, call the same method of the same kind of backend in
the thread pool and answer JSON. The ratio (ours / baseline) is assetry's HTTP overhead
(target >= 0.7x). For reference, a third server runs the same routes on bare FastAPI
(pydantic bodies): assetry's server is a FastAPI application, and that row shows how much
of the overhead is FastAPI's own. The load comes from a pool of client processes (httpx,
one keep-alive connection each), a bounded number of requests per client and a time limit
per block; the servers take turns block by block (order reversed every other round) and
the median block's throughput is reported, latencies p50/p99 over all blocks. Scale-out runs
``create_app`` under uvicorn with 1, 2 and 4 worker processes (``uvicorn_options()``, as
``assetry serve`` does; the command itself runs one process) on PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import Row, report
from pydantic import BaseModel

HERE = Path(__file__).resolve().parent
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ASSET = "bench"
HOST = "127.0.0.1"
_URL_ENV = "ASSETRY_BENCH_HTTP_URL"
#: The servers: assetry's, the bare Starlette baseline, and the same routes on FastAPI.
_KINDS = ("assetry", "bare", "fastapi")
#: Seconds a server has to answer its health route after starting.
START_SECONDS = 60.0

# -- the operations: (assetry path, baseline path, body for request i) ------------------------


def _get_body(i: int) -> dict[str, Any]:
    return {"asset": ASSET, "key": f"k{i % 100}"}


def _set_body(i: int) -> dict[str, Any]:
    return {"asset": ASSET, "key": f"k{i % 100}", "value_json": json.dumps({"n": i})}


def _append_body(i: int) -> dict[str, Any]:
    return {"events": [{"asset": ASSET, "extra_json": json.dumps({"n": i})}]}


OPERATIONS = {
    "store get": ("/api/v1/backend/store_get", "/store_get", _get_body),
    "store set": ("/api/v1/backend/store_set", "/store_set", _set_body),
    "event append": ("/api/v1/backend/append_events", "/append_events", _append_body),
}


# -- the servers (run in their own processes) -------------------------------------------------


def bare_app() -> Any:
    """The baseline a user would write: Starlette routes parsing the JSON body and making
    the backend call assetry's route makes, on the same kind of backend, in the thread pool."""
    from assetry import Instance
    from assetry.backend import NewEvent
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    backend = Instance.from_url(os.environ[_URL_ENV]).backend

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def store_get(request: Request) -> Response:
        body = json.loads(await request.body())
        entry = await run_in_threadpool(backend.store_get, body["asset"], body["key"])
        if entry is None:
            return JSONResponse({"entry": None})
        return JSONResponse({"entry": {"value_json": entry.value_json, "version": entry.version}})

    async def store_set(request: Request) -> Response:
        body = json.loads(await request.body())
        version = await run_in_threadpool(
            backend.store_set, body["asset"], body["key"], body["value_json"]
        )
        return JSONResponse({"version": version})

    async def append_events(request: Request) -> Response:
        body = json.loads(await request.body())
        events = [NewEvent(asset=e["asset"], extra_json=e["extra_json"]) for e in body["events"]]
        appended = await run_in_threadpool(backend.append_events, events)
        return JSONResponse({"events": [e.to_dict() for e in appended]})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/store_get", store_get, methods=["POST"]),
            Route("/store_set", store_set, methods=["POST"]),
            Route("/append_events", append_events, methods=["POST"]),
        ]
    )


class KeyIn(BaseModel):
    """The reference FastAPI routes' bodies (at module level, where FastAPI can resolve
    the annotations)."""

    asset: str
    key: str


class SetIn(KeyIn):
    value_json: str


class EventIn(BaseModel):
    asset: str
    extra_json: str


class EventsIn(BaseModel):
    events: list[EventIn]


def fastapi_app() -> Any:
    """The same routes as :func:`bare_app` on FastAPI, each body a pydantic model: what
    FastAPI itself costs, for reference (assetry's server is a FastAPI application)."""
    from assetry import Instance
    from assetry.backend import NewEvent
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    backend = Instance.from_url(os.environ[_URL_ENV]).backend
    app = FastAPI()

    @app.get("/health")
    def health() -> Any:
        return JSONResponse({"status": "ok"})

    @app.post("/store_get")
    def store_get(body: KeyIn) -> Any:
        entry = backend.store_get(body.asset, body.key)
        if entry is None:
            return JSONResponse({"entry": None})
        return JSONResponse({"entry": {"value_json": entry.value_json, "version": entry.version}})

    @app.post("/store_set")
    def store_set(body: SetIn) -> Any:
        return JSONResponse({"version": backend.store_set(body.asset, body.key, body.value_json)})

    @app.post("/append_events")
    def append_events(body: EventsIn) -> Any:
        events = [NewEvent(asset=e.asset, extra_json=e.extra_json) for e in body.events]
        return JSONResponse({"events": [e.to_dict() for e in backend.append_events(events)]})

    return app


def assetry_app() -> Any:
    """``create_app`` on the instance at the benchmark's URL, anonymous writes allowed."""
    from assetry import Instance
    from assetry.server.app import create_app

    return create_app(Instance.from_url(os.environ[_URL_ENV]), tokens=(), anonymous="write")


def _serve(kind: str, port: int, workers: int) -> None:
    """Run uvicorn (in this process, with ``workers`` worker processes) for ``kind``."""
    import uvicorn

    options: dict[str, Any] = {"log_level": "warning"}
    if kind == "assetry":
        from assetry.server.transport import uvicorn_options

        options.update(uvicorn_options())
    uvicorn.run(
        f"bench_http:{kind}_app",
        factory=True,
        host=HOST,
        port=port,
        workers=workers,
        app_dir=str(HERE),
        **options,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(kind: str, url: str, *, workers: int = 1) -> Iterator[str]:
    """Start a server process (``assetry``: the ``assetry serve`` command when ``workers``
    is 1; ``bare``: the baseline; ``fastapi``: the reference) on a free loopback port;
    yield its base URL; stop it and every worker process it started (its own process
    group), even on failure."""
    port = _free_port()
    env = {**os.environ, _URL_ENV: url, "PYTHONPATH": str(HERE)}
    if kind == "assetry" and workers == 1:
        command = [str(Path(sys.executable).with_name("assetry")), "--url", url, "serve"]
        command += ["--host", HOST, "--port", str(port), "--anonymous", "write"]
        command += ["--log-level", "warning"]
        health = "/api/v1/health"
    else:
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
        command += ["--workers", str(workers)]
        health = "/api/v1/health" if kind == "assetry" else "/health"
    with tempfile.TemporaryDirectory() as cwd:  # no pyproject.toml configuration around
        proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
        try:
            base = f"http://{HOST}:{port}"
            _wait_ready(proc, base + health)
            yield base
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    import httpx

    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {START_SECONDS:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the load (client processes) --------------------------------------------------------------


def _client(task: tuple[str, str, int, int, float]) -> tuple[float, float, list[float]]:
    """One client: ``count`` POSTs of ``op`` to ``url`` on one connection, stopping at
    ``limit`` seconds; (start, end, latencies in seconds)."""
    import httpx

    url, op, count, offset, limit = task
    make = OPERATIONS[op][2]
    bodies = [json.dumps(make(offset + i)).encode() for i in range(count)]
    headers = {"content-type": "application/json"}
    latencies: list[float] = []

    def post(client: httpx.Client, body: bytes) -> None:
        answer = client.post(url, content=body, headers=headers)
        if answer.status_code != 200:  # an error the pool can hand back (httpx's cannot)
            raise RuntimeError(f"POST {url} answered {answer.status_code}: {answer.text[:300]}")

    with httpx.Client(timeout=30.0) as client:
        post(client, bodies[0])  # connect
        start = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter()
            post(client, body)
            latencies.append(time.perf_counter() - sent)
            if sent - start > limit:
                break
        return start, time.perf_counter(), latencies


class Load:
    """A pool of client processes putting a bounded load on a server."""

    def __init__(self, clients: int, requests: int, limit: float) -> None:
        self.clients, self.requests, self.limit = clients, requests, limit
        self._pool = multiprocessing.get_context("spawn").Pool(clients)
        self._offset = 0

    def run(self, url: str, op: str) -> tuple[float, list[float]]:
        """Requests per second over the block, and every request's latency."""
        tasks = [
            (url, op, self.requests, self._offset + c * self.requests, self.limit)
            for c in range(self.clients)
        ]
        self._offset += self.clients * self.requests
        results = self._pool.map(_client, tasks)
        start = min(r[0] for r in results)
        end = max(r[1] for r in results)
        latencies = [lat for r in results for lat in r[2]]
        return len(latencies) / (end - start), latencies

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def compare(
    load: Load, bases: dict[str, str], rounds: int
) -> tuple[list[Row], list[Row], list[Row]]:
    """Each operation on each server, interleaved: throughput rows against the bare
    Starlette routes (the targets), latency rows, and throughput rows against the bare
    FastAPI routes (reference)."""
    rate_rows: list[Row] = []
    latency_rows: list[Row] = []
    reference_rows: list[Row] = []
    sides = list(bases)
    for op, (ours_path, bare_path, _) in OPERATIONS.items():
        paths = {"assetry": ours_path, "bare": bare_path, "fastapi": bare_path}
        rates: dict[str, list[float]] = {side: [] for side in sides}
        lats: dict[str, list[float]] = {side: [] for side in sides}
        for round_ in range(rounds):
            for side in sides if round_ % 2 == 0 else reversed(sides):
                rate, latencies = load.run(bases[side] + paths[side], op)
                rates[side].append(rate)
                lats[side].extend(latencies)
        ours, bare, fastapi = (statistics.median(rates[s]) for s in ("assetry", "bare", "fastapi"))
        rate_rows.append(Row(op, ours, bare, "req/s", target=0.7))
        reference_rows.append(Row(op, ours, fastapi, "req/s"))
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            latency_rows.append(
                Row(
                    f"{op} {label}",
                    1000 * _percentile(lats["assetry"], q),
                    1000 * _percentile(lats["bare"], q),
                    "ms",
                )
            )
    return rate_rows, latency_rows, reference_rows


def scale_out(load: Load, url: str, rounds: int) -> list[Row]:
    """store get and set on assetry with 2 and 4 workers against 1 worker (ratio: speed-up)."""
    rates: dict[tuple[str, int], list[float]] = {}
    with contextlib.ExitStack() as stack:
        bases = {n: stack.enter_context(server("assetry", url, workers=n)) for n in (1, 2, 4)}
        for op in ("store get", "store set"):
            path = OPERATIONS[op][0]
            order = list(bases)
            for round_ in range(rounds):
                for n in order if round_ % 2 == 0 else reversed(order):
                    rates.setdefault((op, n), []).append(load.run(bases[n] + path, op)[0])
    rows = []
    for op in ("store get", "store set"):
        one = statistics.median(rates[(op, 1)])
        for n in (2, 4):
            rows.append(
                Row(f"{op}, {n} workers vs 1", statistics.median(rates[(op, n)]), one, "req/s")
            )
    return rows


def _prepare(url: str) -> None:
    """Create the schema, the benchmark asset and the keys the get requests read."""
    from assetry import Instance

    instance = Instance.from_url(url)
    try:
        backend = instance.backend
        backend.register_asset(ASSET, f"bench://{ASSET}")
        for i in range(100):
            backend.store_set(ASSET, f"k{i}", json.dumps({"n": i}))
    finally:
        instance.close()


def run(url: str, args: argparse.Namespace, what: str) -> list[Row]:
    _prepare(url)
    clients, requests, rounds = (2, 150, 5) if args.quick else (4, 1000, 7)
    load = Load(clients, requests, limit=10.0 if args.quick else 30.0)
    try:
        with contextlib.ExitStack() as stack:
            bases = {kind: stack.enter_context(server(kind, url)) for kind in _KINDS}
            rate_rows, latency_rows, reference_rows = compare(load, bases, rounds)
        title = (
            f"{what}: assetry serve vs bare Starlette route, {clients} client processes x "
            f"{requests} requests, median of {rounds} interleaved rounds"
        )
        report(rate_rows, title=title)
        print()
        report(latency_rows, title=f"{what}: latency under that load (ms; ratio > 1 is slower)")
        print()
        report(
            reference_rows,
            title=f"{what}: assetry serve vs the same routes on bare FastAPI (reference)",
        )
        rows = rate_rows
        if not args.no_scale and url.startswith("postgresql"):
            print()
            scale = scale_out(load, url, rounds)
            report(scale, title=f"{what}: uvicorn worker processes (baseline: 1 worker)")
            rows = rows + scale
    finally:
        load.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--sqlite", action="store_true", help="an SQLite file, not PostgreSQL")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--no-scale", action="store_true", help="skip the worker scale-out")
    parser.add_argument("--serve", choices=_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:  # a server process started by server()
        _serve(args.serve, args.port, args.workers)
        return 0
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.sqlite:
        with tempfile.TemporaryDirectory() as folder:
            rows = run(f"sqlite:///{folder}/state.db", args, "SQLite")
    else:
        from assetry.backends.sql.testing import scratch_database

        with scratch_database(args.postgres, prefix="assetry_bench") as url:
            rows = run(url, args, "PostgreSQL")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return 1 if args.check and any(row.missed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
