"""IOManagerConformance: the behavioural tests every IO manager (and URI scheme) must pass.

A test module subclasses the class and provides one fixture, ``asset_factory``: a callable
returning a fresh :class:`~assetry.Asset` (a new, unwritten location) for the scheme under
test each time it is called, passing its keyword arguments (``checks=``,
``partition_column=``) on to ``Asset``::

    class TestParquetOnLocalDisk(IOManagerConformance):
        @pytest.fixture
        def asset_factory(self, tmp_path):
            def make(**kwargs):
                return Asset(uri=f"file://{tmp_path}/{uuid.uuid4().hex}.parquet", **kwargs)
            return make

The ``io_manager`` fixture (anything with ``connect(asset, partition=None)``) defaults to
an :class:`~assetry.iomanager.IOManagerDispatcher` on the resolved configuration; override
it to pass connections (an S3 endpoint, say). ``supports_partitions = False`` declares that
the locations have no partitions (single files): the partition tests are then strict
expected failures that must raise ``partitions_error`` (the IO manager's refusal, an
:class:`~assetry.errors.AssetValueError`), never silent skips. Likewise
``supports_as_of = True`` declares table versions (Delta, Iceberg): each write reports the
version it committed and ``connect(asset, as_of=version)`` reads it; where it is false the
version tests are strict expected failures that must raise
:class:`~assetry.errors.TableVersionError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from assetry.checks import Check, NotNull, RowCount, Unique
from assetry.config import load_settings
from assetry.errors import (
    AssetNotFoundError,
    AssetValueError,
    TableVersionError,
    ValidationError,
)
from assetry.iomanager import IOManagerDispatcher, WriteResult
from assetry.models import Asset

__all__ = ["IOManagerConformance"]

AssetFactory = Callable[..., Asset]


def _rows(ids: list[int], names: list[str | None] | None = None) -> dict[str, list[Any]]:
    return {
        "id": ids,
        "name": names if names is not None else [f"n{i}" for i in ids],
        "amount": [i * 1.5 for i in ids],
    }


def _frame(ids: list[int], names: list[str | None] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(_rows(ids, names))


def _arrow(ids: list[int], names: list[str | None] | None = None) -> Any:
    import pyarrow as pa

    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.float64())])
    return pa.table(_rows(ids, names), schema=schema)


def _content(handle: Any, columns: tuple[str, ...] = ("id", "name", "amount")) -> list[tuple]:
    """The rows read back through ``handle``, sorted, as plain Python values."""
    table = handle.to_pyarrow()
    data = {c: table.column(c).to_pylist() for c in columns if c in table.column_names}
    rows = list(zip(*(data[c] for c in columns if c in data), strict=True))
    return sorted(rows, key=lambda r: r[0])


def _expected(ids: list[int], names: list[str | None] | None = None) -> list[tuple]:
    rows = _rows(ids, names)
    return sorted(zip(rows["id"], rows["name"], rows["amount"], strict=True), key=lambda r: r[0])


class IOManagerConformance:
    """Behavioural tests shared by every IO manager; subclasses provide ``asset_factory``."""

    #: Whether the locations under test have partitions (a single file has none).
    supports_partitions: bool = True
    #: What writing a partition raises where ``supports_partitions`` is false.
    partitions_error: type[BaseException] = AssetValueError
    #: Whether writes commit table versions that ``connect(asset, as_of=...)`` reads.
    supports_as_of: bool = False
    #: The partition column the partition tests declare on their assets.
    partition_column: str = "ds"

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture
    def asset_factory(self) -> AssetFactory:
        """Fresh assets for the scheme under test: the one fixture a subclass must provide."""
        raise NotImplementedError(
            f"{type(self).__name__} must define an `asset_factory` fixture returning a "
            "callable that makes a fresh Asset for the scheme under test"
        )

    @pytest.fixture
    def io_manager(self) -> Iterator[Any]:
        """What ``connect()`` is called on; override to pass connections or options."""
        dispatcher = IOManagerDispatcher(load_settings(backend="memory"))
        try:
            yield dispatcher
        finally:
            dispatcher.close()

    @pytest.fixture
    def partitioned(self, request: pytest.FixtureRequest, asset_factory: AssetFactory) -> Asset:
        """A fresh partitioned asset; where the locations have none, the test becomes a
        strict expected failure that must raise ``partitions_error``."""
        if not self.supports_partitions:
            request.applymarker(
                pytest.mark.xfail(
                    raises=self.partitions_error,
                    strict=True,
                    reason=f"{type(self).__name__} declares supports_partitions = False: "
                    f"the test must fail with {self.partitions_error.__name__}",
                )
            )
        return asset_factory(partition_column=self.partition_column)

    @pytest.fixture
    def versioned(self, request: pytest.FixtureRequest, asset_factory: AssetFactory) -> Asset:
        """A fresh asset; where the IO manager keeps no table versions, the test becomes a
        strict expected failure that must raise ``TableVersionError``."""
        if not self.supports_as_of:
            request.applymarker(
                pytest.mark.xfail(
                    raises=TableVersionError,
                    strict=True,
                    reason=f"{type(self).__name__} declares supports_as_of = False: "
                    "the test must fail with TableVersionError",
                )
            )
        return asset_factory()

    # -- existence and reading ---------------------------------------------------------------

    def test_exists_is_false_before_the_first_write(self, io_manager, asset_factory) -> None:
        with io_manager.connect(asset_factory()) as handle:
            assert handle.exists() is False

    def test_reading_an_unwritten_asset_raises_asset_not_found(
        self, io_manager, asset_factory
    ) -> None:
        with io_manager.connect(asset_factory()) as handle, pytest.raises(AssetNotFoundError):
            handle.to_pyarrow()

    def test_insert_then_read_returns_the_same_rows(self, io_manager, asset_factory) -> None:
        asset = asset_factory()
        with io_manager.connect(asset) as handle:
            handle.insert(_frame([1, 2, 3], ["a", "b", "é ✓"]))
            assert handle.exists() is True
        with io_manager.connect(asset) as handle:
            assert _content(handle) == _expected([1, 2, 3], ["a", "b", "é ✓"])

    def test_to_pandas_matches_to_pyarrow(self, io_manager, asset_factory) -> None:
        with io_manager.connect(asset_factory()) as handle:
            handle.insert(_arrow([4, 5]))
            frame = handle.to_pandas().sort_values("id")
            assert frame["id"].tolist() == [4, 5]
            assert frame["name"].tolist() == ["n4", "n5"]

    def test_arrow_table_and_record_batch_reader_are_accepted(
        self, io_manager, asset_factory
    ) -> None:
        import pyarrow as pa

        with io_manager.connect(asset_factory()) as handle:
            handle.insert(_arrow([1]))
            table = _arrow([2, 3])
            reader = pa.RecordBatchReader.from_batches(
                table.schema, table.to_batches(max_chunksize=1)
            )
            handle.insert(reader)
            assert _content(handle) == _expected([1, 2, 3])

    def test_unsupported_input_is_a_type_error(self, io_manager, asset_factory) -> None:
        with io_manager.connect(asset_factory()) as handle:
            with pytest.raises(TypeError):
                handle.insert([{"id": 1}])
            assert handle.exists() is False

    # -- writing -----------------------------------------------------------------------------

    def test_insert_appends_to_existing_rows(self, io_manager, asset_factory) -> None:
        asset = asset_factory()
        with io_manager.connect(asset) as handle:
            handle.insert(_frame([1, 2]))
        with io_manager.connect(asset) as handle:
            handle.insert(_frame([3]))
            assert _content(handle) == _expected([1, 2, 3])

    def test_overwrite_replaces_all_rows(self, io_manager, asset_factory) -> None:
        asset = asset_factory()
        with io_manager.connect(asset) as handle:
            handle.insert(_frame([1, 2, 3]))
            handle.overwrite(_frame([7, 8]))
            assert _content(handle) == _expected([7, 8])

    def test_overwrite_of_an_unwritten_asset_creates_it(self, io_manager, asset_factory) -> None:
        with io_manager.connect(asset_factory()) as handle:
            handle.overwrite(_frame([1]))
            assert handle.exists() is True
            assert _content(handle) == _expected([1])

    def test_write_reports_its_figures(self, io_manager, asset_factory) -> None:
        with io_manager.connect(asset_factory()) as handle:
            result = handle.insert(_frame([1, 2, 3]))
            assert isinstance(result, WriteResult)
            assert result.rows == 3
            assert result.mode == "insert"
            assert result.seconds >= 0
            assert result.bytes is None or result.bytes > 0
            assert result.warnings == ()
            again = handle.overwrite(_frame([1]))
            assert (again.rows, again.mode) == (1, "overwrite")
            assert again.to_extra()["rows"] == 1

    # -- partitions --------------------------------------------------------------------------

    def test_partition_read_returns_only_its_rows(self, io_manager, partitioned) -> None:
        with io_manager.connect(partitioned, "2024-06-01") as handle:
            handle.insert(_frame([1, 2]))
        with io_manager.connect(partitioned, "2024-06-02") as handle:
            handle.insert(_frame([3]))
        with io_manager.connect(partitioned, "2024-06-01") as handle:
            assert _content(handle) == _expected([1, 2])
            assert set(handle.to_pyarrow().column(self.partition_column).to_pylist()) == {
                "2024-06-01"
            }
        with io_manager.connect(partitioned) as handle:
            assert _content(handle) == _expected([1, 2, 3])

    def test_partition_overwrite_replaces_only_that_partition(
        self, io_manager, partitioned
    ) -> None:
        for day, ids in (("2024-06-01", [1, 2]), ("2024-06-02", [3, 4])):
            with io_manager.connect(partitioned, day) as handle:
                handle.insert(_frame(ids))
        with io_manager.connect(partitioned, "2024-06-01") as handle:
            result = handle.overwrite(_frame([10]))
            assert (result.rows, result.partition) == (1, "2024-06-01")
            assert _content(handle) == _expected([10])
        with io_manager.connect(partitioned, "2024-06-02") as handle:
            assert _content(handle) == _expected([3, 4])
        with io_manager.connect(partitioned) as handle:
            assert _content(handle) == _expected([3, 4, 10])

    def test_missing_partition_of_a_written_asset_is_empty(self, io_manager, partitioned) -> None:
        with io_manager.connect(partitioned, "2024-06-01") as handle:
            handle.insert(_frame([1]))
        with io_manager.connect(partitioned, "2024-07-01") as handle:
            assert handle.exists() is False
            assert handle.to_pyarrow().num_rows == 0

    def test_partition_column_with_another_value_is_rejected(self, io_manager, partitioned) -> None:
        import pyarrow as pa

        data = _arrow([1, 2]).append_column(
            self.partition_column, pa.array(["2024-06-01", "2024-06-02"])
        )
        with io_manager.connect(partitioned, "2024-06-01") as handle:
            with pytest.raises(ValueError, match="2024-06-0"):
                handle.insert(data)
            assert handle.exists() is False

    # -- validation --------------------------------------------------------------------------

    def test_critical_check_failure_writes_nothing(self, io_manager, asset_factory) -> None:
        asset = asset_factory(checks=[NotNull("name")])
        with io_manager.connect(asset) as handle:
            with pytest.raises(ValidationError) as info:
                handle.insert(_frame([1, 2, 3], ["a", None, "c"]))
            assert handle.exists() is False
        assert info.value.check == "not_null(name)"
        assert info.value.details["columns"] == ["name"]
        assert info.value.details["rows"] == [1]

    def test_critical_check_failure_keeps_the_old_content(self, io_manager, asset_factory) -> None:
        asset = asset_factory(checks=[Unique("id"), RowCount(min=1)])
        with io_manager.connect(asset) as handle:
            handle.insert(_frame([1, 2]))
            with pytest.raises(ValidationError, match="unique"):
                handle.overwrite(_frame([5, 5]))
            with pytest.raises(ValidationError, match="row_count"):
                handle.overwrite(_arrow([]))
            with pytest.raises(ValidationError, match="unique"):
                handle.insert(_frame([3, 3]))
            assert _content(handle) == _expected([1, 2])

    def test_warning_check_travels_with_the_figures(self, io_manager, asset_factory) -> None:
        def few_rows(table: Any) -> bool | str:
            return table.num_rows >= 10 or f"only {table.num_rows} rows"

        asset = asset_factory(checks=[Check(few_rows, severity="warning")])
        with io_manager.connect(asset) as handle:
            result = handle.insert(_frame([1, 2]))
            assert _content(handle) == _expected([1, 2])
        assert len(result.warnings) == 1
        assert "few_rows" in result.warnings[0] and "only 2 rows" in result.warnings[0]
        assert result.to_extra()["warnings"] == list(result.warnings)

    # -- table versions ----------------------------------------------------------------------

    def test_as_of_reads_each_write_as_it_left_it(self, io_manager, versioned) -> None:
        with io_manager.connect(versioned) as handle:
            first = handle.insert(_frame([1, 2])).table_version
            second = handle.insert(_frame([3])).table_version
            handle.overwrite(_frame([7]))
        with io_manager.connect(versioned, as_of=first if first is not None else 0) as handle:
            assert _content(handle) == _expected([1, 2])
        assert isinstance(first, int) and isinstance(second, int) and first != second
        with io_manager.connect(versioned, as_of=second) as handle:
            assert _content(handle) == _expected([1, 2, 3])
        with io_manager.connect(versioned) as handle:
            assert _content(handle) == _expected([7])

    def test_a_handle_pinned_to_a_version_is_read_only(self, io_manager, versioned) -> None:
        with io_manager.connect(versioned) as handle:
            version = handle.insert(_frame([1])).table_version
        with io_manager.connect(versioned, as_of=version if version is not None else 0) as pinned:
            with pytest.raises(TableVersionError, match="read-only"):
                pinned.insert(_frame([2]))
            assert _content(pinned) == _expected([1])
        with io_manager.connect(versioned) as handle:
            assert _content(handle) == _expected([1])
