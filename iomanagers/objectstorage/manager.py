"""The object-storage IO manager: resolves an asset URI to a location and opens a handle."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from assetry import AssetValueError, IOManager, PluginError
from assetry.config import storage_options_for
from assetry.plugins import INSTALL_HINTS
from assetry.uri import uri_scheme
from assetry.urls import render_url
from assetry.values import validate_partition_key

from .dataset import DatasetHandle
from .faults import guarded
from .file import FileHandle
from .formats import FORMATS
from .location import ATOMIC_PUT_PROTOCOLS, Location
from .publish import check_local_name

if TYPE_CHECKING:
    from assetry import Asset, Settings

    from .handle import ObjectStorageHandle


class ObjectStorageIOManager(IOManager):
    """Reads and writes dataframes as files on any fsspec filesystem.

    Options (``io_manager_options={"objectstorage": {...}}``): ``redirect_to`` maps every
    asset URI under one root (``memory://tests`` -> ``s3://b/k`` lands at
    ``memory://tests/s3/b/k``), for tests (a ``memory://`` root is removed by
    :meth:`close`); ``fsync`` (default True) flushes local files to
    disk before publishing them; ``parquet_options`` are passed to ``pyarrow.parquet``'s
    writer (``compression``, ``row_group_size``, ...).
    """

    name = "objectstorage"
    schemes = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file", "memory")

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        redirect_to: str | None = None,
        fsync: bool = True,
        parquet_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(settings=settings, **options)
        if redirect_to is not None and not uri_scheme(redirect_to):
            raise ValueError(
                f"redirect_to must be a URI such as memory://tests, not {redirect_to!r}"
            )
        self.redirect_to = redirect_to.rstrip("/") if redirect_to else None
        self.fsync = fsync
        self.parquet_options = dict(parquet_options or {})

    def close(self) -> None:
        """Drop a ``memory://`` redirect root: it holds this manager's test data only."""
        if self.redirect_to and uri_scheme(self.redirect_to) == "memory":
            import fsspec

            fs = fsspec.filesystem("memory")
            with contextlib.suppress(FileNotFoundError):
                fs.rm(self.redirect_to, recursive=True)

    @classmethod
    def serves(cls, scheme: str) -> bool:
        if scheme in cls.schemes:
            return True
        import fsspec

        return scheme in fsspec.available_protocols()

    def location(self, uri: str, conn_id: str | None = None) -> Location:
        """Where ``uri``'s data lives: the filesystem (with the connection's options) and path."""
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        target = uri.split("?", 1)[0].split("#", 1)[0]
        if self.redirect_to is not None:
            scheme, _, rest = target.partition("://")
            if any(segment in (".", "..") for segment in rest.split("/")):
                raise AssetValueError(
                    f"asset URI {render_url(uri)!r} has a '.' or '..' segment, which would lead "
                    f"out of the redirect root {self.redirect_to!r}; remove it"
                )
            target = f"{self.redirect_to}/{scheme}/{rest.lstrip('/')}"
            options: dict[str, Any] = {}
        else:
            options = storage_options_for(uri, conn_id, self.settings)
        try:
            fs, path = fsspec.core.url_to_fs(target, **options)
        except ImportError as exc:
            scheme = uri_scheme(target)
            hint = INSTALL_HINTS.get(scheme)
            raise PluginError(
                f"cannot open {render_url(uri)!r}: {exc}" + (f"; try: {hint}" if hint else "")
            ) from None
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        kind = (
            "local"
            if isinstance(fs, LocalFileSystem)
            else "memory"
            if protocol == "memory"
            else "atomic-put"
            if protocol in ATOMIC_PUT_PROTOCOLS
            else "other"
        )
        path = path.rstrip("/") or path
        return Location(fs=fs, path=path, kind=kind, uri=target, storage_options=options)

    def open(
        self, asset: Asset, partition: str | None = None, *, conn_id: str | None = None
    ) -> ObjectStorageHandle:
        if partition is not None:
            validate_partition_key(partition)
        loc = self.location(asset.uri, conn_id)
        if loc.kind == "local":
            for component in loc.path.split("/"):
                check_local_name(asset, component)
        name = loc.path.rstrip("/").rsplit("/", 1)[-1]
        suffix = os.path.splitext(name)[1].lower()

        def is_folder() -> bool:
            return guarded(
                loc, asset, "looking up", lambda: bool(loc.fs.isdir(loc.path)), retry=True
            )

        if suffix and suffix not in FORMATS and not is_folder():
            known = ", ".join(sorted(FORMATS))
            raise AssetValueError(
                f"asset {asset.name!r}: cannot tell the format of {render_url(asset.uri)!r} from its "
                f"suffix {suffix!r}; use one of {known}, or no suffix for a parquet dataset folder"
            )
        is_dataset = not suffix or (FORMATS.get(suffix) == "parquet" and is_folder())
        if is_dataset:
            return DatasetHandle(self, asset, partition, loc)
        if partition is not None:
            raise AssetValueError(
                f"asset {asset.name!r} is the single file {render_url(asset.uri)!r}, which has no "
                "partitions; give the asset a folder URI (no suffix) to write partitions"
            )
        return FileHandle(self, asset, partition, loc, FORMATS[suffix])
