"""The handle base class shared by single files and datasets on object storage."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from assetry import AssetHandle, AssetNotFoundError
from assetry.urls import render_url

from .faults import check_bucket, guarded

if TYPE_CHECKING:
    import fsspec
    import pyarrow as pa
    from assetry import Asset
    from upath import UPath

    from .location import Location
    from .manager import ObjectStorageIOManager


class ObjectStorageHandle(AssetHandle):
    """A handle on a file or dataset on object storage; ``path`` is its universal path."""

    kind: ClassVar[str] = ""

    def __init__(
        self, manager: ObjectStorageIOManager, asset: Asset, partition: str | None, loc: Location
    ) -> None:
        super().__init__(asset, partition)
        self.manager = manager
        self.location = loc

    @property
    def path(self) -> UPath:
        """The asset's location as a universal-pathlib path (with the connection's options)."""
        from upath import UPath

        return UPath(self.location.uri, **self.location.storage_options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self.location.fs

    def __repr__(self) -> str:
        part = f", partition={self.partition!r}" if self.partition is not None else ""
        return f"{type(self).__name__}({render_url(self.asset.uri)!r}{part})"

    # -- the contract, with storage faults as assetry errors ------------------------------------

    def exists(self) -> bool:
        def found() -> bool:
            if self._exists():
                return True
            check_bucket(self.location, self.asset)
            return False

        return guarded(self.location, self.asset, "checking for data", found, retry=True)

    def to_pyarrow(self) -> pa.Table:
        return guarded(self.location, self.asset, "reading", self._read_table, retry=True)

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> tuple[int, int | None]:
        def write() -> tuple[int, int | None]:
            try:
                return self._write_data(data, mode)
            except FileNotFoundError:
                check_bucket(self.location, self.asset)
                raise

        return guarded(self.location, self.asset, f"{mode} of data", write, retry=False)

    @abc.abstractmethod
    def _exists(self) -> bool:
        """Whether the data is there (the store reachable, its bucket existing)."""

    @abc.abstractmethod
    def _read_table(self) -> pa.Table:
        """The data as a pyarrow Table, or :meth:`_not_written`'s error."""

    @abc.abstractmethod
    def _write_data(
        self, data: pa.Table | pa.RecordBatchReader, mode: str
    ) -> tuple[int, int | None]:
        """Write ``data`` (``insert`` or ``overwrite``); return rows and bytes written."""

    def _not_written(self) -> AssetNotFoundError:
        check_bucket(self.location, self.asset)
        what = f"partition {self.partition!r} of asset" if self.partition else "asset"
        return AssetNotFoundError(
            f"{what} {self.asset.name!r} has no data at {render_url(self.asset.uri)!r} yet; "
            "write it first (exists() tells)"
        )
