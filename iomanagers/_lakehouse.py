"""What the table-format IO managers (Delta Lake, Iceberg) share.

Both map an asset's partition key to its ``partition_column``, count the rows of a stream as
it is written, turn a connection's fsspec storage options into their own S3 settings, and
open read-only handles pinned to one table version (``connect(asset, as_of=...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from assetry import AssetHandle, AssetValueError, TableVersionError, ValidationError
from assetry.urls import render_url
from assetry.values import validate_partition_key

if TYPE_CHECKING:
    import pyarrow as pa
    from assetry import Asset

__all__ = [
    "RowCounter",
    "TableFormatHandle",
    "check_partition",
    "delta_storage_options",
    "iceberg_properties",
    "prepare_partition",
]


def check_partition(asset: Asset, partition: str | None) -> None:
    """A partition needs a usable key and an asset that names its partition column."""
    if partition is None:
        return
    validate_partition_key(partition)
    if not asset.partition_column:
        raise AssetValueError(
            f"asset {asset.name!r} has no partition_column, so partition {partition!r} "
            "cannot map to a column; declare Asset(..., partition_column='...')"
        )


def prepare_partition(
    asset: Asset, partition: str | None, data: pa.Table | pa.RecordBatchReader
) -> pa.Table | pa.RecordBatchReader:
    """``data`` with the partition column added (or checked to hold only ``partition``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if partition is None:
        return data
    col = asset.partition_column
    assert col is not None
    table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
    if col not in table.schema.names:
        return table.append_column(col, pa.array([partition] * table.num_rows, pa.string()))
    values = pc.cast(table.column(col), pa.string())
    wrong = pc.sum(pc.fill_null(pc.not_equal(values, partition), True)).as_py()
    if wrong:
        raise ValidationError(
            f"asset {asset.name!r}: writing partition {partition!r} but {wrong} row(s) have "
            f"another value in column {col!r}"
        )
    return table


class RowCounter:
    """Wraps a table or stream as a RecordBatchReader that counts the rows it yields."""

    def __init__(self, data: pa.Table | pa.RecordBatchReader) -> None:
        import pyarrow as pa

        self.rows = 0
        source = data if isinstance(data, pa.RecordBatchReader) else data.to_reader()
        self.reader = pa.RecordBatchReader.from_batches(source.schema, self._count(source))

    def _count(self, source: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in source:
            self.rows += batch.num_rows
            yield batch


def _fsspec_s3(options: dict[str, Any]) -> dict[str, Any]:
    """The credentials, endpoint and region an s3fs ``storage_options`` dict carries."""
    client_kwargs = options.get("client_kwargs") or {}
    return {
        "key": options.get("key") or options.get("aws_access_key_id"),
        "secret": options.get("secret") or options.get("aws_secret_access_key"),
        "token": options.get("token") or options.get("aws_session_token"),
        "endpoint": options.get("endpoint_url") or client_kwargs.get("endpoint_url"),
        "region": options.get("region_name") or client_kwargs.get("region_name"),
    }


def delta_storage_options(options: dict[str, Any]) -> dict[str, str]:
    """deltalake (object_store) settings from a connection's fsspec S3 storage options.

    Keys already spelled for object_store (``AWS_...``) pass through as they are.
    """
    s3 = _fsspec_s3(options)
    out = {k: str(v) for k, v in options.items() if k.isupper() and v is not None}
    names = {
        "key": "AWS_ACCESS_KEY_ID",
        "secret": "AWS_SECRET_ACCESS_KEY",
        "token": "AWS_SESSION_TOKEN",
        "endpoint": "AWS_ENDPOINT_URL",
        "region": "AWS_REGION",
    }
    for field, name in names.items():
        if s3[field] is not None:
            out.setdefault(name, str(s3[field]))
    if str(out.get("AWS_ENDPOINT_URL", "")).startswith("http://"):
        out.setdefault("AWS_ALLOW_HTTP", "true")
    return out


def iceberg_properties(options: dict[str, Any]) -> dict[str, str]:
    """pyiceberg FileIO properties from a connection's fsspec S3 storage options.

    Keys already spelled for pyiceberg (``s3.``...) pass through as they are.
    """
    s3 = _fsspec_s3(options)
    out = {k: str(v) for k, v in options.items() if k.startswith("s3.") and v is not None}
    names = {
        "key": "s3.access-key-id",
        "secret": "s3.secret-access-key",
        "token": "s3.session-token",
        "endpoint": "s3.endpoint",
        "region": "s3.region",
    }
    for field, name in names.items():
        if s3[field] is not None:
            out.setdefault(name, str(s3[field]))
    return out


class TableFormatHandle(AssetHandle):
    """A handle on a table-format asset; read-only when pinned to a version (``as_of``)."""

    def __init__(self, asset: Asset, partition: str | None, as_of: int | None) -> None:
        super().__init__(asset, partition)
        self.as_of = as_of

    def __repr__(self) -> str:
        pinned = f", as_of={self.as_of}" if self.as_of is not None else ""
        uri = render_url(self.asset.uri)
        return f"{type(self).__name__}({uri!r}, partition={self.partition!r}{pinned})"

    def _writable(self) -> None:
        if self.as_of is not None:
            raise TableVersionError(
                f"asset {self.asset.name!r} was opened as of version {self.as_of}, which is "
                "read-only; open it without as_of to write"
            )

    def insert(self, data: Any) -> Any:
        self._writable()
        return super().insert(data)

    def overwrite(self, data: Any) -> Any:
        self._writable()
        return super().overwrite(data)

    def _partition_filter(self, table: pa.Table) -> pa.Table:
        """Only this handle's partition's rows of ``table``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.partition is None:
            return table
        col = self.asset.partition_column
        assert col is not None
        if col not in table.schema.names:
            return table.slice(0, 0)
        return table.filter(pc.equal(pc.cast(table.column(col), pa.string()), self.partition))
