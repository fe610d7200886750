"""A writer killed (SIGKILL) mid-write leaves readers the old content or the new, never a part.

Each case runs the write in a child process that kills itself at one point of the publish
sequence (while the data is being written, just before it is published, just after), then
reads the location back with the IO manager, with ``pyarrow`` and with DuckDB. A second test
kills a looping writer at random moments while a reader keeps reading.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

OLD_ROWS = 2_000
NEW_ROWS = 3_000

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import pyarrow as pa
    from assetry import Asset, load_settings
    from assetry.iomanager import IOManagerDispatcher
    from assetry import localfs

    spec = json.loads(sys.argv[1])
    point = spec["point"]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "during-write":
        real_write_file = localfs.write_file

        def write_file(path, write, *, fsync=True):
            class Dying:
                def __init__(self, fh):
                    self.fh, self.written = fh, 0
                def write(self, data):
                    self.fh.write(bytes(data)[: max(1, len(data) // 2)])
                    self.fh.flush()
                    die()
                def __getattr__(self, name):
                    return getattr(self.fh, name)
            return real_write_file(path, lambda fh: write(Dying(fh)), fsync=fsync)

        localfs.write_file = write_file
    elif point in ("before-publish", "after-publish"):
        real_replace, real_rename, real_swap = os.replace, os.rename, localfs.swap_dir

        def publish(real):
            def wrapper(src, dst, *args, **kwargs):
                if not str(src).endswith(".tmp") or "/new/" in str(src):
                    return real(src, dst, *args, **kwargs)
                if point == "before-publish":
                    die()
                result = real(src, dst, *args, **kwargs)
                die()
            return wrapper

        def swap(staged, target):
            if point == "before-publish":
                die()
            real_swap(staged, target)
            die()

        os.replace = publish(real_replace)
        localfs.swap_dir = swap

    asset = Asset(uri=spec["uri"], partition_column="ds")
    ids = spec["ids"]
    table = pa.table({"id": list(range(ids[0], ids[1])), "gen": [spec["gen"]] * (ids[1] - ids[0])})
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
    with dispatcher.connect(asset, spec.get("partition")) as handle:
        getattr(handle, spec["mode"])(table)
    print("finished")
    """
)


def _run_child(spec: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _write(uri: str, ids: tuple[int, int], gen: str, partition: str | None = None) -> None:
    table = pa.table({"id": list(range(*ids)), "gen": [gen] * (ids[1] - ids[0])})
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
    with dispatcher.connect(Asset(uri=uri, partition_column="ds"), partition) as handle:
        handle.overwrite(table)


def _read_all_ways(root: Path, uri: str, is_dataset: bool) -> list[pa.Table]:
    """The content as the IO manager, pyarrow and DuckDB see it."""
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
    with dispatcher.connect(Asset(uri=uri, partition_column="ds")) as handle:
        tables = [handle.to_pyarrow().select(["id", "gen"])]
    if is_dataset:
        tables.append(ds.dataset(root, partitioning="hive").to_table().select(["id", "gen"]))
        rel = duckdb.sql(f"SELECT id, gen FROM read_parquet('{root}/**/*.parquet')")
        tables.append(rel.to_arrow_table())
    else:
        tables.append(pq.read_table(root).select(["id", "gen"]))
        tables.append(duckdb.sql(f"SELECT id, gen FROM read_parquet('{root}')").to_arrow_table())
    return tables


def _summary(table: pa.Table) -> dict[str, int]:
    """Rows per generation: a complete state has exactly the rows that generation wrote."""
    counts: dict[str, int] = {}
    for gen in table.column("gen").to_pylist():
        counts[gen] = counts.get(gen, 0) + 1
    return dict(sorted(counts.items()))


CASES = [
    # (layout, mode, partition, the state after the write completed)
    ("file", "overwrite", None, {"new": NEW_ROWS}),
    ("file", "insert", None, {"new": NEW_ROWS, "old": OLD_ROWS}),
    ("dataset", "overwrite", None, {"new": NEW_ROWS}),
    ("dataset", "insert", None, {"new": NEW_ROWS, "old": OLD_ROWS}),
    ("dataset", "overwrite", "p1", {"new": NEW_ROWS}),
]


@pytest.mark.parametrize("point", ["during-write", "before-publish", "after-publish"])
@pytest.mark.parametrize(
    ("layout", "mode", "partition", "after"),
    CASES,
    ids=[f"{c[0]}-{c[1]}{'-partition' if c[2] else ''}" for c in CASES],
)
def test_killed_writer_leaves_the_old_or_the_new_content(
    tmp_path: Path, layout: str, mode: str, partition: str | None, after: dict, point: str
) -> None:
    root = tmp_path / ("orders.parquet" if layout == "file" else "orders")
    uri = f"file://{root}"
    _write(uri, (0, OLD_ROWS), "old", partition)
    spec = {
        "uri": uri,
        "mode": mode,
        "point": point,
        "gen": "new",
        "ids": [OLD_ROWS, OLD_ROWS + NEW_ROWS],
        "partition": partition,
    }
    result = _run_child(spec)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "finished" not in result.stdout

    before = {"old": OLD_ROWS}
    expected = after if point == "after-publish" else before
    for table in _read_all_ways(root, uri, layout == "dataset"):
        assert _summary(table) == expected

    # whatever the dead writer left is hidden: no visible path outside dot-folders
    base = tmp_path
    for path in base.rglob("*"):
        rel = path.relative_to(base).parts
        if path.is_file() and not any(part.startswith(".") for part in rel):
            assert path.suffix == ".parquet", path
    # and the next writer works
    _write(uri, (0, 10), "next", partition)
    with IOManagerDispatcher(load_settings(backend="memory", environ={})).connect(
        Asset(uri=uri, partition_column="ds"), partition
    ) as handle:
        assert _summary(handle.to_pyarrow()) == {"next": 10}


LOOPING_WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from assetry import Asset, load_settings
    from assetry.iomanager import IOManagerDispatcher

    uri, rows, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
    asset = Asset(uri=uri, partition_column="ds")
    gen = start
    while True:
        gen += 1
        table = pa.table({"id": list(range(rows)), "gen": [str(gen)] * rows})
        with dispatcher.connect(asset, "p" if "dataset" in uri else None) as handle:
            handle.overwrite(table)
        print(gen, flush=True)
    """
)


@pytest.mark.parametrize("layout", ["file", "dataset"])
def test_readers_see_whole_generations_while_a_writer_is_killed_at_random(
    tmp_path: Path, layout: str
) -> None:
    rows = 5_000
    root = tmp_path / ("orders.parquet" if layout == "file" else "orders-dataset")
    uri = f"file://{root}"
    _write(uri, (0, rows), "0", "p" if layout == "dataset" else None)
    rng = random.Random(20240601)
    problems: list[str] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        dispatcher = IOManagerDispatcher(load_settings(backend="memory", environ={}))
        asset = Asset(uri=uri, partition_column="ds")
        while not stop.is_set():
            with dispatcher.connect(asset) as handle:
                table = handle.to_pyarrow()
            gens = set(table.column("gen").to_pylist())
            if table.num_rows != rows or len(gens) != 1:
                problems.append(f"{table.num_rows} rows of generations {sorted(gens)}")
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    generation = 0
    try:
        for _ in range(4):
            child = subprocess.Popen(
                [sys.executable, "-c", LOOPING_WRITER, uri, str(rows), str(generation * 1000)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            child.stdout.readline()  # at least one generation written by this child
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
            child.stdout.close()
            generation += 1
    finally:
        stop.set()
        thread.join(timeout=60)
    assert problems == []
    assert reads[0] > 0
    with IOManagerDispatcher(load_settings(backend="memory", environ={})).connect(
        Asset(uri=uri, partition_column="ds")
    ) as handle:
        table = handle.to_pyarrow()
    assert table.num_rows == rows and len(set(table.column("gen").to_pylist())) == 1
