"""A dataset write whose rows span several partitions is all-or-nothing.

Every partition value is checked before anything is staged (a value a folder name cannot
hold is a typed error, not a raw ``OSError`` after some partitions were published), and a
failure while writing one partition leaves none of the others visible.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from assetry import Asset, AssetryError, AssetValueError, load_settings, localfs
from assetry.iomanager import IOManagerDispatcher


def _dispatcher() -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ={}))


def _visible_files(root: Path) -> list[Path]:
    """Files a dataset reader sees: none under a dot-folder."""
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _rows(values: list[str]) -> pa.Table:
    return pa.table({"day": values, "n": list(range(len(values)))})


def _read(asset: Asset) -> list[tuple[str, int]]:
    with _dispatcher().connect(asset) as handle:
        table = handle.to_pyarrow()
    return sorted(zip(table.column("day").to_pylist(), table.column("n").to_pylist(), strict=True))


BAD_VALUES = {
    "too long for a folder name": "x" * 300,
    "multi-byte, too long once encoded": "é" * 60,
    "NUL": "a\x00b",
    "empty": "",
}


@pytest.mark.parametrize("mode", ["insert", "overwrite"])
@pytest.mark.parametrize("bad", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_a_bad_partition_value_among_good_ones_writes_nothing_on_a_local_disk(
    tmp_path: Path, mode: str, bad: str
) -> None:
    root = tmp_path / "events"
    asset = Asset("events", uri=f"file://{root}", partition_column="day")
    with _dispatcher().connect(asset) as handle:
        handle.overwrite(_rows(["2024-01-01"]))
    before = _visible_files(root)

    with _dispatcher().connect(asset) as handle, pytest.raises(AssetValueError) as err:
        getattr(handle, mode)(_rows(["2024-01-02", bad, "2024-01-03"]))
    assert isinstance(err.value, AssetryError)
    assert "day" in str(err.value)  # names the partition column
    assert _visible_files(root) == before
    assert _read(asset) == [("2024-01-01", 0)]


@pytest.mark.parametrize("mode", ["insert", "overwrite"])
def test_a_bad_partition_value_writes_nothing_on_memory_storage(mode: str) -> None:
    uri = f"memory://partitions-{uuid.uuid4().hex}/events"
    asset = Asset("events", uri=uri, partition_column="day")
    with _dispatcher().connect(asset) as handle:
        handle.overwrite(_rows(["2024-01-01"]))
        with pytest.raises(AssetValueError, match="day"):
            getattr(handle, mode)(_rows(["2024-01-02", "a\x00b"]))
    assert _read(asset) == [("2024-01-01", 0)]


def test_a_failed_partition_leaves_the_others_unpublished_on_a_local_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "events"
    asset = Asset("events", uri=f"file://{root}", partition_column="day")
    real_write_file = localfs.write_file
    calls = [0]

    def failing_second(path: Any, content: Any, *, fsync: bool = True) -> int:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(28, "No space left on device")
        return real_write_file(path, content, fsync=fsync)

    monkeypatch.setattr(localfs, "write_file", failing_second)
    with _dispatcher().connect(asset) as handle, pytest.raises(OSError, match="No space"):
        handle.insert(_rows(["2024-01-01", "2024-01-02", "2024-01-03"]))
    assert calls[0] == 2
    assert _visible_files(root) == []


def test_a_failed_partition_leaves_the_others_unpublished_on_memory_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec

    uri = f"memory://partitions-{uuid.uuid4().hex}/events"
    asset = Asset("events", uri=uri, partition_column="day")
    with _dispatcher().connect(asset) as handle:
        handle.overwrite(_rows(["2024-01-01"]))
    fs = fsspec.filesystem("memory")
    real_pipe = fs.pipe_file
    calls = [0]

    def failing_second(path: str, value: bytes, **kwargs: Any) -> Any:
        if path.endswith((".parquet", ".parquet.tmp")):
            calls[0] += 1
            if calls[0] == 2:
                raise OSError("the store went away")
        return real_pipe(path, value, **kwargs)

    monkeypatch.setattr(fs, "pipe_file", failing_second)
    with _dispatcher().connect(asset) as handle, pytest.raises(OSError, match="went away"):
        handle.insert(_rows(["2024-01-02", "2024-01-03", "2024-01-04"]))
    monkeypatch.undo()
    assert _read(asset) == [("2024-01-01", 0)]


def test_an_insert_spanning_partitions_publishes_every_one(tmp_path: Path) -> None:
    asset = Asset("events", uri=f"file://{tmp_path}/events", partition_column="day")
    with _dispatcher().connect(asset) as handle:
        handle.insert(_rows(["2024-01-01", "2024-01-02"]))
        handle.insert(_rows(["2024-01-02", "2024-01-03"]))
    assert [day for day, _ in _read(asset)] == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-02",
        "2024-01-03",
    ]


def test_a_journal_another_writer_rolled_forward_meanwhile_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer rolls forward the committed journals it finds (a crashed writer's, or a
    live one's): the writer that committed it then finds its staged files gone."""
    from assetry.iomanagers.objectstorage import DatasetHandle

    uri = f"memory://partitions-{uuid.uuid4().hex}/events"
    asset = Asset("events", uri=uri, partition_column="day")
    real_apply = DatasetHandle._apply

    def apply_after_another_writer(self: DatasetHandle, journal: dict[str, Any]) -> None:
        real_apply(self, journal)  # the other writer: copies in, removes the staging
        fs = self.location.fs
        real_exists = fs.exists
        asked: set[str] = set()

        def exists(path: str, **kwargs: Any) -> bool:
            if path.endswith(".parquet") and path not in asked:
                asked.add(path)  # this writer looked just before the other one copied
                return False
            return bool(real_exists(path, **kwargs))

        monkeypatch.setattr(fs, "exists", exists)
        try:
            real_apply(self, journal)
        finally:
            monkeypatch.setattr(fs, "exists", real_exists)

    monkeypatch.setattr(DatasetHandle, "_apply", apply_after_another_writer)
    with _dispatcher().connect(asset) as handle:
        handle.insert(_rows(["2024-01-01", "2024-01-02"]))
    monkeypatch.undo()
    assert [day for day, _ in _read(asset)] == ["2024-01-01", "2024-01-02"]
