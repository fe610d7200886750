"""A moto S3 server in a child process, for the table-format IO managers.

deltalake's native calls hold the GIL while they wait on the network, so a moto server on a
thread of the test process cannot answer them (the call times out). This one runs in its
own process on loopback and decides conditional PUTs one at a time, as S3 does (moto alone
checks ``If-None-Match`` and writes without a lock).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
