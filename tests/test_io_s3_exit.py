"""Processes that read S3 parquet through the IO manager exit cleanly.

Read through ``pyarrow.fs.PyFileSystem(FSSpecHandler(s3fs))``, Arrow's I/O threads call
back into Python; one still doing so when the interpreter finalises is ended with
``pthread_exit``, whose unwinding through Arrow's C++ frames aborts the process
("terminate called without an active exception", SIGABRT) after it returned correct data.
S3 is therefore read through pyarrow's native ``S3FileSystem``, built from the same
connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher

READERS = 30
AT_ONCE = 3

READER = textwrap.dedent(
    """
    import sys
    from assetry import Asset, load_settings
    from assetry.iomanager import IOManagerDispatcher
    import os

    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ=dict(os.environ)))
    for uri in sys.argv[1:]:
        with dispatcher.connect(Asset(uri=uri, partition_column="day")) as handle:
            table = handle.to_pyarrow()
        assert table.num_rows == 20_000, table.num_rows
    print("read")
    """
)


def _environ(s3_server: Any) -> dict[str, str]:
    return {"ASSETRY_CONN_AWS_DEFAULT": json.dumps(s3_server.storage_options)}


def _write(s3_server: Any, uris: list[str]) -> None:
    table = pa.table(
        {"day": [f"2024-01-{1 + i % 8:02d}" for i in range(20_000)], "n": list(range(20_000))}
    )
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ=_environ(s3_server)))
    for uri in uris:
        with dispatcher.connect(Asset(uri=uri, partition_column="day")) as handle:
            handle.overwrite(table)


@pytest.mark.services
def test_s3_parquet_is_read_through_the_native_arrow_filesystem(s3_server: Any) -> None:
    bucket = s3_server.make_bucket()
    uris = [f"s3://{bucket}/orders.parquet", f"s3://{bucket}/events"]
    _write(s3_server, uris)
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ=_environ(s3_server)))
    for uri in uris:
        with dispatcher.connect(Asset(uri=uri, partition_column="day")) as handle:
            assert isinstance(handle.location.arrow_filesystem(), pafs.S3FileSystem)
            assert handle.to_pyarrow().num_rows == 20_000


@pytest.mark.services
def test_processes_reading_s3_parquet_exit_cleanly(s3_server: Any) -> None:
    bucket = s3_server.make_bucket()
    uris = [f"s3://{bucket}/orders.parquet", f"s3://{bucket}/events"]
    _write(s3_server, uris)
    env = {**os.environ, **_environ(s3_server), "AWS_EC2_METADATA_DISABLED": "true"}
    outcomes: list[tuple[int, str]] = []
    for start in range(0, READERS, AT_ONCE):
        batch = [
            subprocess.Popen(
                [sys.executable, "-c", READER, *uris],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(min(AT_ONCE, READERS - start))
        ]
        for proc in batch:
            out, err = proc.communicate(timeout=300)
            outcomes.append((proc.returncode, err[-500:] if proc.returncode else out.strip()))
    failed = [o for o in outcomes if o[0] != 0]
    assert not failed, f"{len(failed)} of {READERS} readers did not exit cleanly: {failed[:3]}"
    assert [o[1] for o in outcomes] == ["read"] * READERS
