"""What the table-format tests (Delta, Iceberg) share: a moto S3 server in a child
process, small tables, and two processes appending to one table.

The S3 server runs in a child process because deltalake's native calls hold the GIL while
they wait on the network, so a moto server on a thread of the test process cannot answer
them (the call times out). It listens on loopback and decides conditional PUTs one at a
time, as S3 does (moto alone checks ``If-None-Match`` and writes without a lock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher

_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from moto.server import ThreadedMotoServer
from stress_kit import serialize_moto_object_writes

serialize_moto_object_writes()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()  # until the test process closes the pipe
server.stop()
"""


@pytest.fixture(scope="session")
def s3_process_server() -> Iterator[object]:
    """A moto S3 server in a child process (the ``S3Server`` of conftest, reset per use)."""
    from conftest import S3Server, _free_port, service_missing

    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        service_missing("the S3 test server (moto)", f"{exc}: pip install -e '.[test]'")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port), str(Path(__file__).parent / "stress")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    deadline = time.monotonic() + 60
    line = proc.stdout.readline()
    if line.strip() != "ready" or time.monotonic() > deadline:
        proc.kill()
        service_missing("the S3 test server (moto)", "it did not start")
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dispatcher(**environ: str) -> IOManagerDispatcher:
    """An IO manager dispatcher whose connections come from ``environ`` alone."""
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


def table(ids: list[int], ds: str | None = None) -> pa.Table:
    """Rows ``id``/``name`` (and a ``ds`` partition column when given)."""
    data: dict[str, Any] = {
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"n{i}" for i in ids], pa.string()),
    }
    if ds is not None:
        data["ds"] = pa.array([ds] * len(ids), pa.string())
    return pa.table(data)


def ids(data: pa.Table) -> list[int]:
    return sorted(data.column("id").to_pylist())


def polars() -> Any:
    return pytest.importorskip(
        "polars", reason="the polars read-back tests need polars: pip install -e '.[test]'"
    )


_WRITER = """
import json, sys
import pyarrow as pa
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher

uri, environ, tag, count = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ=environ))
versions = []
for i in range(count):
    with dispatcher.connect(Asset(uri=uri)) as handle:
        result = handle.insert(pa.table({"writer": [tag], "i": pa.array([i], pa.int64())}))
        versions.append(result.table_version)
print(json.dumps(versions))
"""


def race_two_appenders(uri: str, environ: dict[str, str], count: int) -> tuple[list[int], pa.Table]:
    """Seed the table with one row, then two processes (``a``, ``b``) append ``count`` rows
    each, one commit a row; check that no commit is lost and every row is there once.
    Return the versions the writers' commits reported and the table as read back."""
    with dispatcher(**environ).connect(Asset(uri=uri)) as handle:
        handle.insert(pa.table({"writer": ["seed"], "i": pa.array([0], pa.int64())}))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri, json.dumps(environ), tag, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    versions = [v for out, _ in outputs for v in json.loads(out)]
    assert len(set(versions)) == 2 * count  # every commit its own version
    with dispatcher(**environ).connect(Asset(uri=uri)) as handle:
        data = handle.to_pyarrow()
    assert data.num_rows == 2 * count + 1
    for tag in ("a", "b"):
        rows = [
            i
            for w, i in zip(data["writer"].to_pylist(), data["i"].to_pylist(), strict=True)
            if w == tag
        ]
        assert sorted(rows) == list(range(count))
    return versions, data
