"""The handle base class shared by single files and datasets on object storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from assetry import AssetHandle, AssetNotFoundError
from assetry.urls import render_url

if TYPE_CHECKING:
    import fsspec
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

    def _not_written(self) -> AssetNotFoundError:
        what = f"partition {self.partition!r} of asset" if self.partition else "asset"
        return AssetNotFoundError(
            f"{what} {self.asset.name!r} has no data at {render_url(self.asset.uri)!r} yet; "
            "write it first (exists() tells)"
        )
