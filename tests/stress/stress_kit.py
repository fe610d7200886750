"""What the stress suites share: sizes, the backends under test, running workers, and the
figures the reliability report is built from (the fixtures are in :mod:`stress_fixtures`).

Sizes are small by default (the whole suite
runs in a few minutes on two cores); ``--run-slow`` selects the larger sizes, and
``ASSETRY_STRESS_SCALE`` multiplies either. ``ASSETRY_STRESS_FIGURES=<path>`` writes every
figure the tests recorded to ``<path>`` as JSON when the session ends
(``benchmarks/reliability_report.py`` does that and renders ``docs/reliability.md``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FIGURES_ENV = "ASSETRY_STRESS_FIGURES"
SCALE_ENV = "ASSETRY_STRESS_SCALE"

#: Every backend the suites run on: memory (threads), the rest by processes; ``http`` is a
#: real ``assetry serve`` process (on SQLite) that the workers reach through the API.
BACKENDS = ("memory", "sqlite", "postgresql", "mariadb", "s3", "file", "http")
#: Backends that several processes share.
PROCESS_BACKENDS = BACKENDS[1:]
#: Backends with transactions (atomic batches).
TRANSACTIONAL_BACKENDS = ("sqlite", "postgresql", "mariadb")


# -- sizes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The default or the larger (``--run-slow``) size of each knob, times the env scale."""

    slow: bool
    factor: float

    def pick(self, quick: int, large: int) -> int:
        return max(1, round((large if self.slow else quick) * self.factor))


#: The most :func:`patience` stretches a time limit for the machine's load.
MAX_LOAD_STRETCH = 4.0


def patience() -> float:
    """How many times its idle-machine time limit a run may take: the size multiplier
    (``ASSETRY_STRESS_SCALE``, at least 1) times the machine's load per core (1-minute
    load average over the core count, between 1 and :data:`MAX_LOAD_STRETCH`).

    The limits of the larger run were set on an idle 2-core machine; with a load
    average above 20 on it, a scenario that takes 22 s idle (eight S3 writers
    contending for one key) did not finish within its 240 s. A limit catches a hang, so
    it grows with the work asked for and the CPU the run actually gets, but stays
    bounded: a scenario that never finishes still fails.
    """
    try:
        factor = max(1.0, float(os.environ.get(SCALE_ENV, "1")))
    except ValueError:
        factor = 1.0  # the ``sizes`` fixture reports the bad value
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:  # pragma: no cover - no load average on this platform
        load = 1.0
    return factor * min(MAX_LOAD_STRETCH, max(1.0, load))


def time_limit(seconds: float) -> float:
    """``seconds``, the limit on an idle machine at scale 1, stretched by :func:`patience`."""
    return round(seconds * patience())


def examples(sizes: Sizes, quick: int, large: int) -> Any:
    """Hypothesis settings for a hostile-input test at this size."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=sizes.pick(quick, large),
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# -- hostile inputs --------------------------------------------------------------------------

#: Names, keys and values that broke or fooled storage layers before: path traversal,
#: quoting and SQL, NUL, lone surrogates, odd Unicode, reserved names, lengths at the limits.
NASTY = [
    "",
    " ",
    ".",
    "..",
    "/",
    "//",
    "a/b",
    "a_b",
    "a%2Fb",
    "%",
    "%00",
    "../../etc/passwd",
    "../../../../../escaped",
    "a/../../../../escaped/x",
    "..\\..\\windows",
    "'",
    '"',
    "`",
    ";",
    "'; DROP TABLE canary; --",
    '"; DROP TABLE canary; --',
    "`; DROP TABLE canary; --",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\u202eevil",
    "\ufeff",
    "\uffff",
    "😀",
    "Ω≈ç√",
    "e\u0301",
    "\n",
    "\t",
    "\x7f",
    "CON",
    "nul",
    "*",
    "?",
    "#",
    "&",
    "=",
    "~",
    "${HOME}",
    "{{7*7}}",
    "x" * 512,
    "x" * 513,
    "y" * 1500,
    "y" * 1501,
    "é" * 700,
]


# -- figures for the report ---------------------------------------------------------------------


@dataclass
class Figure:
    """One measured run: what load a backend held, the faults it survived, the hostile
    inputs it was given, and what was lost (the goal: nothing)."""

    test: str
    backend: str
    kind: str  # concurrency | faults | hostile | secrets
    writers: int = 0
    operations: int = 0
    faults: int = 0
    hostile_inputs: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


FIGURES: list[Figure] = []


class Recorder:
    """Records this test's figures (see :class:`Figure`)."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.started = time.monotonic()

    def record(self, backend: str, kind: str, **values: Any) -> Figure:
        values.setdefault("seconds", round(time.monotonic() - self.started, 2))
        figure = Figure(test=self.test, backend=backend, kind=kind, **values)
        FIGURES.append(figure)
        return figure


# -- the backends under test ------------------------------------------------------------------


@dataclass(frozen=True)
class BackendCase:
    """A fresh, empty state of one backend: its URL and options (picklable, so a worker
    process builds its own backend from it)."""

    kind: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    #: Whether workers are processes (threads for the in-process memory backend).
    processes: bool = True
    #: For killing the test's own server connections: the PostgreSQL application_name or
    #: the MariaDB database name.
    server_tag: str | None = None

    def instance(self, **extra: Any) -> Any:
        import assetry

        return assetry.Instance(url=self.url, **{**self.options, **extra})

    def backend(self, **extra: Any) -> Any:
        return self.instance(**extra).backend


def _scratch(request: pytest.FixtureRequest, fixture: str, what: str) -> Iterator[str]:
    import sqlalchemy as sa
    from assetry.backends.sql.testing import scratch_database
    from conftest import service_missing

    server = request.getfixturevalue(fixture)
    try:
        with scratch_database(server, prefix="assetry_stress") as url:
            yield url
    except sa.exc.OperationalError as exc:
        service_missing(what, str(exc.orig).strip())


_MOTO_WRITES = threading.Lock()


def serialize_moto_object_writes() -> None:
    """Make moto decide conditional PUTs and DELETEs atomically, as S3 does.

    moto checks ``If-Match`` / ``If-None-Match`` and then writes, without a lock, on the
    server's request threads, so two concurrent conditional writes can both pass the
    check: the larger concurrency run lost one update in 480 that way, with no fault
    injected. Real S3 decides each conditional write atomically; the suite tests
    assetry, not moto, so it runs moto's object write handlers one at a time (the
    server runs in this process).
    """
    from moto.s3.responses import S3Response

    for name in ("put_object", "delete_object"):
        handler = getattr(S3Response, name)
        if getattr(handler, "_serialized", False):
            continue

        def serialized(self: Any, *args: Any, _handler: Any = handler, **kwargs: Any) -> Any:
            with _MOTO_WRITES:
                return _handler(self, *args, **kwargs)

        serialized._serialized = True  # type: ignore[attr-defined]
        setattr(S3Response, name, serialized)


#: The running ``assetry serve`` of each http case, by its URL (for tests that kill it).
SERVERS: dict[str, ServerProcess] = {}


class ServerProcess:
    """``assetry serve`` in a child process on a fixed loopback port, over a state URL,
    with one read-write token: started, SIGKILLed and restarted on the same port."""

    def __init__(self, state_url: str, log_path: Path, port: int | None = None) -> None:
        import secrets
        import socket

        self.state_url = state_url
        self.log_path = log_path
        self.token = secrets.token_urlsafe(24)
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: Any = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the server and return once it answers ``/api/v1/ready``."""
        import json
        import os
        import subprocess
        import sys

        import httpx

        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")}
        env["ASSETRY_SERVER_TOKENS"] = json.dumps(
            [{"name": "stress", "token": self.token, "access": "write"}]
        )
        command = [sys.executable, "-m", "assetry", "--url", self.state_url, "serve"]
        command += ["--port", str(self.port), "--log-level", "warning"]
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"assetry serve on {self.url} did not start: {self.log_path.read_text()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except Exception:
                self.process.kill()
                self.process.wait(15)


def make_case(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """Yield a fresh state of backend ``kind`` and clean it up afterwards."""
    tag = f"stress_{uuid.uuid4().hex[:10]}"
    if kind == "memory":
        from assetry.backends.memory import MemoryBackend

        yield BackendCase(kind, f"memory://{tag}", processes=False)
        with MemoryBackend._shared_lock:
            MemoryBackend._shared.pop(tag, None)
    elif kind == "sqlite":
        yield BackendCase(kind, f"sqlite:///{tmp_path / 'state.db'}")
    elif kind == "postgresql":
        import sqlalchemy as sa

        for url in _scratch(request, "pg_url", "PostgreSQL"):
            tagged = sa.engine.make_url(url).update_query_dict({"application_name": tag})
            yield BackendCase(kind, tagged.render_as_string(hide_password=False), server_tag=tag)
    elif kind == "mariadb":
        import sqlalchemy as sa

        for url in _scratch(request, "mysql_url", "MariaDB"):
            yield BackendCase(kind, url, server_tag=sa.engine.make_url(url).database)
    elif kind == "s3":
        server = request.getfixturevalue("s3_server")
        serialize_moto_object_writes()
        bucket = server.make_bucket()
        yield BackendCase(kind, f"s3://{bucket}/state", {"storage_options": server.storage_options})
    elif kind == "file":
        yield BackendCase(kind, f"file://{tmp_path / 'state'}")
    elif kind == "http":
        server = ServerProcess(f"sqlite:///{tmp_path / 'served.db'}", tmp_path / "server.log")
        server.start()
        SERVERS[server.url] = server
        try:
            yield BackendCase(kind, server.url, {"token": server.token})
        finally:
            SERVERS.pop(server.url, None)
            server.stop()
    else:  # pragma: no cover - a typo in a parametrisation
        raise ValueError(f"unknown backend kind {kind!r}")


# -- running workers -----------------------------------------------------------------------------


def mp_context() -> Any:
    """Processes start from a clean forkserver with assetry preloaded (nothing inherited)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sqlalchemy", "assetry", "assetry.runtime", "stress_workers"])
    return context


class WorkerFailed(AssertionError):
    """A worker raised; its traceback is the message."""


def _process_main(target: Callable[..., Any], queue: Any, index: int, args: tuple) -> None:
    try:
        queue.put((index, True, target(*args)))
    except BaseException:
        queue.put((index, False, traceback.format_exc()))


#: Seconds, on an idle machine, for all of a scenario's workers to start and be ready.
START_LIMIT = 120.0


def run_workers(
    case: BackendCase,
    target: Callable[..., Any],
    arg_sets: Sequence[tuple[Any, ...]],
    *,
    timeout: float = 240.0,
) -> list[Any]:
    """Run ``target(start, *args)`` once per args tuple, in processes (or threads for the
    memory backend), released together by the barrier ``start``; return their results in
    order. A worker that raises fails the test with its traceback; workers that are not all
    ready at the barrier within :data:`START_LIMIT` seconds, or have not all finished
    within ``timeout``, fail it too (both limits are an idle machine's, stretched by
    :func:`patience`)."""
    stretch = patience()
    timeout = round(timeout * stretch)
    # how long the first worker waits at the barrier for the last one to be ready
    ready = round(START_LIMIT * stretch)
    count = len(arg_sets)
    results: dict[int, Any] = {}
    if not case.processes:
        barrier = threading.Barrier(count, timeout=ready)
        errors: list[str] = []

        def run(index: int, args: tuple[Any, ...]) -> None:
            try:
                results[index] = target(barrier, *args)
            except BaseException:
                errors.append(traceback.format_exc())
                barrier.abort()

        threads = [
            threading.Thread(target=run, args=(i, a), daemon=True) for i, a in enumerate(arg_sets)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        if errors:
            raise WorkerFailed(errors[0])
        if len(results) < count:
            raise WorkerFailed(f"{count - len(results)} worker thread(s) did not finish")
        return [results[i] for i in range(count)]

    context = mp_context()
    barrier = context.Barrier(count, timeout=ready)
    queue = context.Queue()
    processes = [
        context.Process(target=_process_main, args=(target, queue, i, (barrier, *a)), daemon=True)
        for i, a in enumerate(arg_sets)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    try:
        while len(results) < count:
            import queue as queue_module

            try:
                index, ok, value = queue.get(timeout=max(0.5, deadline - time.monotonic()))
            except queue_module.Empty:
                codes = [p.exitcode for p in processes]
                raise WorkerFailed(
                    f"workers did not finish in {timeout:.0f}s (the limit stretched "
                    f"{stretch:.1f}x for size and load): exit codes {codes}"
                ) from None
            if not ok:
                raise WorkerFailed(f"worker {index} failed:\n{value}")
            results[index] = value
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return [results[i] for i in range(count)]


# -- looking at storage directly -------------------------------------------------------------------


def all_object_keys(case: BackendCase) -> list[str]:
    """Every object key in the bucket (s3) or every file path under the state folder's
    parent (file), to prove nothing was written outside the backend's prefix."""
    if case.kind == "s3":
        import boto3

        options = case.options["storage_options"]
        client = boto3.client(
            "s3",
            endpoint_url=options["endpoint_url"],
            aws_access_key_id=options["key"],
            aws_secret_access_key=options["secret"],
            region_name="us-east-1",
        )
        bucket = case.url.split("://", 1)[1].split("/", 1)[0]
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys
    if case.kind == "file":
        root = Path(case.url.split("://", 1)[1])
        return [str(p) for p in root.parent.rglob("*") if p.is_file()]
    raise ValueError(f"{case.kind} has no objects to list")


def prefix_of(case: BackendCase) -> str:
    """The key prefix (s3) or folder (file) everything of the backend must stay under."""
    if case.kind == "s3":
        return case.url.split("://", 1)[1].split("/", 1)[1] + "/"
    return case.url.split("://", 1)[1] + "/"


def kill_server_connections(case: BackendCase) -> int:
    """End the server-side sessions of this test's connections, as a server restart would
    (only this test's: the servers are shared). Return how many were ended."""
    import sqlalchemy as sa
    from assetry.backends.sql.engine import resolve_url

    url = resolve_url(case.url)
    if case.kind == "postgresql":
        url = url.set(query={})
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %(tag)s AND pid <> pg_backend_pid()",
                    {"tag": case.server_tag},
                ).fetchall()
        finally:
            engine.dispose()
        return sum(1 for (ended,) in rows if ended)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    killed = 0
    try:
        with engine.connect() as conn:
            ids = conn.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID() AND command <> 'Killed'",
                (case.server_tag,),
            ).fetchall()
            for (thread_id,) in ids:
                try:
                    conn.exec_driver_sql(f"KILL {int(thread_id)}")
                    killed += 1
                except sa.exc.DBAPIError:
                    pass  # ended on its own meanwhile
    finally:
        engine.dispose()
    return killed
