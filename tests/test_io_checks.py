"""Data checks declared on an asset: built-ins, plain callables, severities, and blocked writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from assetry import (
    Asset,
    Check,
    Instance,
    NotNull,
    RowCount,
    Schema,
    Unique,
    ValidationError,
    use_instance,
)
from assetry.checks import run_checks


def _asset(*checks: object) -> Asset:
    return Asset("orders", uri="memory://checks/orders", checks=checks)


ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 3, 4], pa.int64()),
        "customer": pa.array(["a", None, "c", "d", None]),
        "amount": pa.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        "at": pa.array([dt.datetime(2024, 6, 1)] * 5, pa.timestamp("us")),
    }
)


# -- built-ins -------------------------------------------------------------------------------


def test_schema_passes_for_matching_columns_and_types() -> None:
    check = Schema({"id": "int64", "customer": "string", "amount": "double", "at": "timestamp[us]"})
    assert run_checks(_asset(check), ORDERS) == ()


def test_schema_names_missing_and_mistyped_columns() -> None:
    check = Schema({"id": "string", "missing": "int64", "amount": pa.float64()})
    with pytest.raises(ValidationError) as info:
        run_checks(_asset(check), ORDERS)
    assert info.value.check == "schema"
    assert info.value.details["columns"] == ["missing", "id"]
    assert "column id is int64, expected string" in str(info.value)


def test_schema_accepts_a_pyarrow_schema_and_equivalent_string_layouts() -> None:
    frame = pd.DataFrame({"id": [1], "customer": ["a"]})  # pandas strings arrive as large_string
    table = pa.Table.from_pandas(frame, preserve_index=False)
    expected = pa.schema([("id", pa.int64()), ("customer", pa.string())])
    assert run_checks(_asset(Schema(expected)), table) == ()


def test_exact_schema_rejects_extra_columns() -> None:
    with pytest.raises(ValidationError, match="unexpected column"):
        run_checks(_asset(Schema({"id": "int64"}, exact=True)), ORDERS)
    assert run_checks(_asset(Schema({"id": "int64"})), ORDERS) == ()


def test_schema_with_an_unknown_type_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown type 'integer'"):
        Schema({"id": "integer"})


def test_not_null_names_the_columns_and_sample_rows() -> None:
    with pytest.raises(ValidationError) as info:
        run_checks(_asset(NotNull("id", "customer")), ORDERS)
    assert info.value.check == "not_null(id, customer)"
    assert info.value.details["columns"] == ["customer"]
    assert info.value.details["rows"] == [1, 4]
    assert info.value.details["count"] == 2


def test_not_null_without_columns_checks_every_column() -> None:
    with pytest.raises(ValidationError, match="customer"):
        run_checks(_asset(NotNull()), ORDERS)


def test_unique_reports_the_duplicated_rows() -> None:
    with pytest.raises(ValidationError) as info:
        run_checks(_asset(Unique("id")), ORDERS)
    assert info.value.check == "unique(id)"
    assert info.value.details["rows"] == [2, 3]
    assert run_checks(_asset(Unique("id", "customer")), ORDERS) == ()


def test_unique_ignores_rows_with_nulls_as_sql_does() -> None:
    table = pa.table({"k": [None, None, 1]})
    assert run_checks(_asset(Unique("k")), table) == ()


def test_sample_rows_are_capped() -> None:
    table = pa.table({"k": [7] * 100})
    with pytest.raises(ValidationError) as info:
        run_checks(_asset(Unique("k")), table)
    assert info.value.details["rows"] == [0, 1, 2, 3, 4]
    assert info.value.details["count"] == 100


def test_row_count_bounds() -> None:
    assert run_checks(_asset(RowCount(min=5, max=5)), ORDERS) == ()
    with pytest.raises(ValidationError, match="at least 6"):
        run_checks(_asset(RowCount(min=6)), ORDERS)
    with pytest.raises(ValidationError, match="at most 4"):
        run_checks(_asset(RowCount(max=4)), ORDERS)
    with pytest.raises(ValueError, match="larger than max"):
        RowCount(min=3, max=2)


def test_checks_on_missing_columns_fail_naming_them() -> None:
    for check in (NotNull("nope"), Unique("nope")):
        with pytest.raises(ValidationError) as info:
            run_checks(_asset(check), ORDERS)
        assert info.value.details["columns"] == ["nope"]


# -- plain callables -------------------------------------------------------------------------


def test_callable_returning_a_message_fails_with_it() -> None:
    def positive_amounts(table: pa.Table) -> bool | str:
        return True if pa.compute.min(table["amount"]).as_py() > 1 else "amount must be > 1"

    with pytest.raises(ValidationError, match="amount must be > 1") as info:
        run_checks(_asset(Check(positive_amounts)), ORDERS)
    assert info.value.check == "positive_amounts"


def test_callable_returning_false_fails_and_true_or_none_pass() -> None:
    assert run_checks(_asset(Check(lambda t: True), Check(lambda t: None)), ORDERS) == ()
    with pytest.raises(ValidationError, match="'small' failed"):
        run_checks(_asset(Check(lambda t: t.num_rows < 3, name="small")), ORDERS)


def test_bare_callables_on_the_asset_are_critical_checks() -> None:
    def never(table: pa.Table) -> bool:
        return False

    with pytest.raises(ValidationError, match="never"):
        run_checks(_asset(never), ORDERS)


def test_a_check_that_raises_fails_instead_of_passing() -> None:
    def broken(table: pa.Table) -> bool:
        raise KeyError("column x")

    with pytest.raises(ValidationError, match="raised KeyError") as info:
        run_checks(_asset(Check(broken)), ORDERS)
    assert isinstance(info.value.__cause__, KeyError)


def test_a_check_returning_something_else_fails() -> None:
    with pytest.raises(ValidationError, match="returned int"):
        run_checks(_asset(Check(lambda t: 1, name="odd")), ORDERS)


def test_invalid_declarations_are_rejected() -> None:
    with pytest.raises(ValueError, match="severity"):
        NotNull("id", severity="fatal")
    with pytest.raises(TypeError, match="callable"):
        Check("not callable")
    with pytest.raises(TypeError, match="at least one column"):
        Unique()
    with pytest.raises(TypeError, match="declares a check"):
        run_checks(_asset(42), ORDERS)


# -- severities ------------------------------------------------------------------------------


def test_warnings_are_returned_and_critical_failures_all_named() -> None:
    asset = _asset(
        Unique("id", severity="warning"),
        NotNull("customer"),
        RowCount(max=1),
        RowCount(min=100, severity="warning"),
    )
    with pytest.raises(ValidationError) as info:
        run_checks(asset, ORDERS)
    assert info.value.check == "not_null(customer)"
    assert "also failed: 'row_count(max=1)'" in str(info.value)
    assert [f["check"] for f in info.value.details["failures"]] == [
        "not_null(customer)",
        "row_count(max=1)",
    ]
    only_warnings = _asset(Unique("id", severity="warning"), RowCount(min=100, severity="warning"))
    warnings = run_checks(only_warnings, ORDERS)
    assert warnings == (
        "check 'unique(id)' failed: 1 duplicated value(s) across 2 rows (rows 2, 3)",
        "check 'row_count(min=100)' failed: 5 rows, expected at least 100",
    )


# -- through the IO manager ------------------------------------------------------------------


def test_critical_failure_blocks_the_write_and_records_no_figures(tmp_path: Path) -> None:
    orders = Asset("orders", uri=f"file://{tmp_path}/orders.parquet", checks=[Unique("id")])
    with Instance(backend="memory") as inst, use_instance(inst):
        seen = []
        inst.io_manager.listeners.append(lambda asset, result: seen.append(result))
        with inst.io_manager.connect(orders) as t:
            with pytest.raises(ValidationError, match="unique"):
                t.insert(ORDERS)
            assert t.exists() is False
        assert seen == []
    assert list(tmp_path.iterdir()) == []


def test_warnings_travel_with_the_write_figures() -> None:
    orders = Asset(
        "orders", uri="duckdb:///:memory:/orders", checks=[NotNull("customer", severity="warning")]
    )
    with Instance(backend="memory") as inst, inst.io_manager.connect(orders) as t:
        result = t.insert(ORDERS)
        assert t.to_pyarrow().num_rows == 5
    assert result.warnings == (
        "check 'not_null(customer)' failed: null values in customer: 2 (rows 1, 4)",
    )
    assert result.to_extra()["warnings"] == list(result.warnings)


def test_checks_see_a_record_batch_reader_as_a_whole_table() -> None:
    orders = Asset("orders", uri="duckdb:///:memory:/orders", checks=[RowCount(min=5)])
    reader = pa.RecordBatchReader.from_batches(ORDERS.schema, ORDERS.to_batches(max_chunksize=2))
    with Instance(backend="memory") as inst, inst.io_manager.connect(orders) as t:
        assert t.insert(reader).rows == 5
