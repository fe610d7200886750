"""Data checks declared on an asset and run by the IO manager before anything is written.

``Asset("orders", uri=..., checks=[NotNull("id"), Unique("id"), RowCount(min=1)])``: each
check is *critical* (a failure raises :class:`~assetry.ValidationError` and nothing is
written) or a *warning* (the message travels with the write's figures). Checks see the
data as a :class:`pyarrow.Table`; a plain callable becomes a check with ``Check(fn)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from .models import Asset

__all__ = [
    "Check",
    "CheckFailure",
    "NotNull",
    "RowCount",
    "Schema",
    "Severity",
    "Unique",
    "run_checks",
]

Severity = Literal["critical", "warning"]
#: ``stored(columns, keys)``: the stored rows' values in ``columns`` that are among ``keys``
#: (distinct), as the IO manager's handle answers it for ``Unique(..., against="table")``.
StoredKeys = Callable[[list[str], "pa.Table"], "pa.Table"]
SEVERITIES: tuple[str, ...] = ("critical", "warning")

#: How many offending row indices a failure reports.
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class CheckFailure:
    """What a failed check found: a message, the offending columns and sample row indices."""

    message: str
    columns: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "columns": list(self.columns)}
        if self.rows:
            out["rows"] = list(self.rows)
        if self.count is not None:
            out["count"] = self.count
        return out


class Check:
    """A data check: ``Check(fn, name=..., severity=...)`` wraps a plain callable.

    ``fn(table)`` receives the data as a pyarrow Table and returns ``True`` (or ``None``)
    when the data passes, ``False`` or a message (str) when it fails. Subclasses override
    :meth:`evaluate` instead.
    """

    default_name = "check"

    def __init__(
        self,
        fn: Callable[[pa.Table], bool | str | None] | None = None,
        *,
        name: str | None = None,
        severity: Severity = "critical",
    ) -> None:
        if severity not in SEVERITIES:
            raise ValueError(
                f"a check's severity must be 'critical' or 'warning', not {severity!r}"
            )
        if fn is not None and not callable(fn):
            raise TypeError(f"Check() needs a callable, not {type(fn).__name__}")
        if fn is None and type(self) is Check:
            raise TypeError("Check() needs a callable: Check(fn, name=..., severity=...)")
        self.fn = fn
        self.severity: Severity = severity
        if name is None:
            name = getattr(fn, "__name__", None) if fn is not None else None
            if not name or name == "<lambda>":
                name = self.default_name
        self.name = name

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def evaluate(self, table: pa.Table) -> CheckFailure | None:
        """``None`` when ``table`` passes, else what is wrong with it."""
        assert self.fn is not None
        outcome = self.fn(table)
        if outcome is None or outcome is True:
            return None
        if outcome is False:
            return CheckFailure("the check returned False")
        if isinstance(outcome, str):
            return CheckFailure(outcome)
        raise TypeError(
            f"check {self.name!r} returned {type(outcome).__name__}; a check returns "
            "True/None (pass), False or a message (fail)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, severity={self.severity!r})"


def _columns(cols: Sequence[str], what: str) -> tuple[str, ...]:
    for col in cols:
        if not isinstance(col, str) or not col:
            raise TypeError(f"{what} takes column names, got {col!r}")
    return tuple(cols)


def _missing(table: pa.Table, cols: Iterable[str]) -> list[str]:
    names = set(table.column_names)
    return [c for c in cols if c not in names]


def _sample(indices: pa.Array | pa.ChunkedArray) -> tuple[int, ...]:
    return tuple(int(i) for i in indices[:SAMPLE_ROWS].to_pylist())


# Arrow types that hold the same values with a different physical layout.
_TYPE_FAMILIES: dict[str, str] = {
    "large_string": "string",
    "string_view": "string",
    "large_binary": "binary",
    "binary_view": "binary",
}


def _type_key(dtype: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):
        return _type_key(dtype.value_type)
    if pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return f"list<{_type_key(dtype.value_type)}>"
    if pa.types.is_list(dtype):
        return f"list<{_type_key(dtype.value_type)}>"
    text = str(dtype)
    return _TYPE_FAMILIES.get(text, text)


def _as_type(spec: Any, column: str) -> pa.DataType:
    import pyarrow as pa

    if isinstance(spec, pa.DataType):
        return spec
    if isinstance(spec, str):
        try:
            return pa.type_for_alias(spec)
        except ValueError:
            raise ValueError(
                f"Schema: unknown type {spec!r} for column {column!r}; use a pyarrow type or "
                "a name such as 'int64', 'double', 'string', 'bool', 'timestamp[us]', 'date32'"
            ) from None
    raise TypeError(f"Schema: the type of column {column!r} must be a str or a pyarrow type")


class Schema(Check):
    """The data has these columns with these types (``exact=True``: and no others).

    Types are pyarrow types or their names (``"int64"``, ``"string"``, ``"timestamp[us]"``);
    ``string``/``large_string`` and other layouts of the same values count as equal.
    """

    default_name = "schema"

    def __init__(
        self,
        columns: Mapping[str, Any] | pa.Schema,
        *,
        exact: bool = False,
        name: str | None = None,
        severity: Severity = "critical",
    ) -> None:
        import pyarrow as pa

        if isinstance(columns, pa.Schema):
            expected = {f.name: f.type for f in columns}
        elif isinstance(columns, Mapping):
            expected = {str(col): _as_type(spec, str(col)) for col, spec in columns.items()}
        else:
            raise TypeError("Schema() takes a {column: type} mapping or a pyarrow schema")
        self.columns: dict[str, pa.DataType] = expected
        self.exact = exact
        super().__init__(None, name=name, severity=severity)

    def evaluate(self, table: pa.Table) -> CheckFailure | None:
        problems: list[str] = []
        bad: list[str] = []
        missing = _missing(table, self.columns)
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
            bad.extend(missing)
        for col, expected in self.columns.items():
            if col in missing:
                continue
            actual = table.schema.field(col).type
            if _type_key(actual) != _type_key(expected):
                problems.append(f"column {col} is {actual}, expected {expected}")
                bad.append(col)
        if self.exact:
            extra = [c for c in table.column_names if c not in self.columns]
            if extra:
                problems.append(f"unexpected column(s) {', '.join(extra)}")
                bad.extend(extra)
        if not problems:
            return None
        return CheckFailure("; ".join(problems), columns=tuple(bad))


class NotNull(Check):
    """The columns (all columns when none are named) hold no nulls."""

    def __init__(
        self, *columns: str, name: str | None = None, severity: Severity = "critical"
    ) -> None:
        self.columns = _columns(columns, "NotNull()")
        label = f"not_null({', '.join(self.columns)})" if self.columns else "not_null"
        super().__init__(None, name=name or label, severity=severity)

    def evaluate(self, table: pa.Table) -> CheckFailure | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        missing = _missing(table, self.columns)
        if missing:
            return CheckFailure(f"missing column(s) {', '.join(missing)}", columns=tuple(missing))
        cols = self.columns or tuple(table.column_names)
        offending = [c for c in cols if table.column(c).null_count]
        if not offending:
            return None
        any_null = None
        for col in offending:
            is_null = pc.is_null(table.column(col))
            any_null = is_null if any_null is None else pc.or_(any_null, is_null)
        rows = pc.indices_nonzero(pa.chunked_array(any_null) if any_null is not None else [])
        counts = ", ".join(f"{c}: {table.column(c).null_count}" for c in offending)
        return CheckFailure(
            f"null values in {counts}",
            columns=tuple(offending),
            rows=_sample(rows),
            count=len(rows),
        )


class Unique(Check):
    """No two rows share the same values in these columns (rows with a null in them are
    ignored, as SQL's UNIQUE does).

    ``against="batch"`` (the default) looks at the data being written; ``against="table"``
    also at the rows already stored (the engine's own query on a table, a key scan of a
    dataset's files), leaving out what an overwrite replaces.
    """

    def __init__(
        self,
        *columns: str,
        name: str | None = None,
        severity: Severity = "critical",
        against: Literal["batch", "table"] = "batch",
    ) -> None:
        if not columns:
            raise TypeError("Unique() needs at least one column name")
        if against not in ("batch", "table"):
            raise ValueError(f"Unique(against=...) takes 'batch' or 'table', not {against!r}")
        self.columns = _columns(columns, "Unique()")
        self.against = against
        default = (
            f"unique({', '.join(self.columns)}{', against table' if against == 'table' else ''})"
        )
        super().__init__(None, name=name or default, severity=severity)

    def evaluate_stored(self, table: pa.Table, stored: StoredKeys) -> CheckFailure | None:
        """The batch's rows whose values are already stored (``stored(columns, keys)``
        answers the stored rows' values among ``keys``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        cols = list(self.columns)
        if _missing(table, self.columns) or table.num_rows == 0:
            return None
        keys = table.select(cols).drop_null().group_by(cols, use_threads=False).aggregate([])
        if keys.num_rows == 0:
            return None
        found = stored(cols, keys)
        if found.num_rows == 0:
            return None
        index = "__assetry_row__"
        keyed = table.select(cols).append_column(index, pa.array(range(table.num_rows), pa.int64()))
        found = found.select(cols).cast(keyed.select(cols).schema)
        offending = keyed.join(found, keys=cols, join_type="left semi").column(index)
        ordered = offending.take(pc.sort_indices(offending)[:SAMPLE_ROWS])
        return CheckFailure(
            f"{found.num_rows} value(s) already stored, in {len(offending)} row(s) of the data",
            columns=self.columns,
            rows=_sample(ordered),
            count=len(offending),
        )

    def evaluate(self, table: pa.Table) -> CheckFailure | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        missing = _missing(table, self.columns)
        if missing:
            return CheckFailure(f"missing column(s) {', '.join(missing)}", columns=tuple(missing))
        cols = list(self.columns)
        index = "__assetry_row__"
        keyed = table.select(cols).append_column(index, pa.array(range(table.num_rows), pa.int64()))
        keyed = keyed.drop_null() if any(keyed.column(c).null_count for c in cols) else keyed
        groups = keyed.group_by(cols, use_threads=False).aggregate([(index, "count")])
        dups = groups.filter(pc.greater(groups.column(f"{index}_count"), 1))
        if dups.num_rows == 0:
            return None
        offending = keyed.join(dups.select(cols), keys=cols, join_type="left semi").column(index)
        ordered = offending.take(pc.sort_indices(offending)[:SAMPLE_ROWS])
        return CheckFailure(
            f"{dups.num_rows} duplicated value(s) across {len(offending)} rows",
            columns=self.columns,
            rows=_sample(ordered),
            count=len(offending),
        )


class RowCount(Check):
    """The number of rows written is within ``[min, max]`` (either bound optional)."""

    def __init__(
        self,
        min: int | None = None,
        max: int | None = None,
        *,
        name: str | None = None,
        severity: Severity = "critical",
    ) -> None:
        for bound in (min, max):
            if bound is not None and (not isinstance(bound, int) or bound < 0):
                raise ValueError(f"RowCount bounds must be non-negative ints, got {bound!r}")
        if min is not None and max is not None and min > max:
            raise ValueError(f"RowCount(min={min}, max={max}): min is larger than max")
        self.min = min
        self.max = max
        bounds = ", ".join(f"{k}={v}" for k, v in (("min", min), ("max", max)) if v is not None)
        super().__init__(None, name=name or f"row_count({bounds})", severity=severity)

    def evaluate(self, table: pa.Table) -> CheckFailure | None:
        n = table.num_rows
        if self.min is not None and n < self.min:
            return CheckFailure(f"{n} rows, expected at least {self.min}", count=n)
        if self.max is not None and n > self.max:
            return CheckFailure(f"{n} rows, expected at most {self.max}", count=n)
        return None


@dataclass(frozen=True)
class _Outcome:
    check: Check
    failure: CheckFailure
    error: BaseException | None = field(default=None)


def _as_check(obj: Any, asset: Asset) -> Check:
    if isinstance(obj, Check):
        return obj
    if callable(obj):
        return Check(obj)
    raise TypeError(
        f"asset {asset.name!r} declares a check of type {type(obj).__name__}; checks are "
        "assetry.Check objects (Schema, NotNull, Unique, RowCount) or plain callables"
    )


def run_checks(asset: Asset, table: pa.Table, stored: StoredKeys | None = None) -> tuple[str, ...]:
    """Run ``asset``'s checks on ``table``; return the warnings' messages. ``stored``
    answers which key values are already stored, for ``Unique(..., against="table")``.

    Every check runs; if any critical one fails, :class:`ValidationError` is raised naming
    it (``.check``) with its offending columns and sample rows (``.details``), and the
    caller writes nothing.
    """
    failed: list[_Outcome] = []
    for obj in asset.checks:
        check = _as_check(obj, asset)
        try:
            failure = check.evaluate(table)
            if failure is None and stored is not None and getattr(check, "against", "") == "table":
                failure = check.evaluate_stored(table, stored)  # type: ignore[attr-defined]
        except Exception as exc:  # a broken check fails, it does not pass silently
            failed.append(_Outcome(check, CheckFailure(f"the check raised {exc!r}"), exc))
            continue
        if failure is not None:
            failed.append(_Outcome(check, failure))
    critical = [o for o in failed if o.check.critical]
    warnings = tuple(
        f"check {o.check.name!r} failed: {o.failure.message}"
        + (f" (rows {', '.join(map(str, o.failure.rows))})" if o.failure.rows else "")
        for o in failed
        if not o.check.critical
    )
    if critical:
        first = critical[0]
        where = []
        if first.failure.columns:
            where.append(f"columns {', '.join(first.failure.columns)}")
        if first.failure.rows:
            where.append(f"rows {', '.join(map(str, first.failure.rows))}")
        message = (
            f"asset {asset.name!r}: check {first.check.name!r} failed: {first.failure.message}"
            + (f" ({'; '.join(where)})" if where else "")
        )
        if len(critical) > 1:
            message += "; also failed: " + ", ".join(repr(o.check.name) for o in critical[1:])
        message += "; nothing was written"
        details = {
            "asset": asset.name,
            **first.failure.to_dict(),
            "failures": [{"check": o.check.name, **o.failure.to_dict()} for o in critical],
        }
        raise ValidationError(message, check=first.check.name, details=details) from first.error
    return warnings
