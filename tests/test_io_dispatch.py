"""Dispatch on the asset URI's scheme, third-party IO managers by entry point, test instances."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from assetry import (
    Asset,
    Instance,
    PluginError,
    UnsupportedSchemeError,
    load_settings,
    plugins,
)
from assetry.iomanager import IOManagerDispatcher
from assetry.iomanagers.objectstorage import ObjectStorageIOManager
from assetry.iomanagers.tables import IbisIOManager
from assetry.urls import parse_asset_uri


def _dispatcher() -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ={}))


@pytest.mark.parametrize(
    ("scheme", "manager"),
    [
        ("s3", ObjectStorageIOManager),
        ("gs", ObjectStorageIOManager),
        ("file", ObjectStorageIOManager),
        ("memory", ObjectStorageIOManager),
        ("sftp", ObjectStorageIOManager),  # any protocol fsspec knows
        ("duckdb", IbisIOManager),
        ("sqlite", IbisIOManager),
        ("postgresql", IbisIOManager),
        ("postgresql+psycopg", IbisIOManager),
        ("mysql", IbisIOManager),
        ("mariadb", IbisIOManager),
        ("trino", IbisIOManager),  # any ibis backend
    ],
)
def test_scheme_picks_its_io_manager(scheme: str, manager: type) -> None:
    assert type(_dispatcher().manager_for(scheme)) is manager


def test_unknown_scheme_error_lists_the_known_ones() -> None:
    with pytest.raises(UnsupportedSchemeError) as info:
        _dispatcher().open(Asset(uri="nosuchscheme://host/thing"))
    message = str(info.value)
    assert "'nosuchscheme'" in message
    for known in ("s3", "file", "memory", "duckdb", "postgresql", "mysql"):
        assert known in message
    assert "install a package" in message


def test_missing_filesystem_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec.core

    def missing(url: str, **options: object) -> None:
        raise ImportError("Please install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    with pytest.raises(PluginError, match=r"gcsfs.*try: pip install gcsfs"):
        _dispatcher().open(Asset(uri="gs://bucket/orders.parquet"))


def test_asset_without_a_scheme_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedSchemeError, match="no scheme"):
        _dispatcher().open(Asset("just-a-name"))


def test_instance_dispatches_and_reports_writes(tmp_path: Path) -> None:
    orders = Asset("orders", uri=f"file://{tmp_path}/orders.parquet")
    with Instance(backend="memory") as inst:
        seen = []
        inst.io_manager.listeners.append(lambda asset, result: seen.append((asset, result.rows)))
        with inst.io_manager.connect(orders) as t:
            t.insert(pd.DataFrame({"id": [1, 2]}))
            assert t.to_pandas()["id"].tolist() == [1, 2]
    assert seen == [(orders, 2)]


# -- third-party IO managers -----------------------------------------------------------------

THIRD_PARTY_MODULE = """
import pyarrow as pa
from assetry import AssetHandle, AssetNotFoundError, IOManager

TABLES = {}


class DictHandle(AssetHandle):
    def _write(self, data, mode):
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        if mode == "insert" and self.asset.uri in TABLES:
            table = pa.concat_tables([TABLES[self.asset.uri], table])
        TABLES[self.asset.uri] = table
        return data.num_rows, None

    def to_pyarrow(self):
        try:
            return TABLES[self.asset.uri]
        except KeyError:
            raise AssetNotFoundError(self.asset.uri) from None

    def exists(self):
        return self.asset.uri in TABLES


class DictIOManager(IOManager):
    name = "dict"
    schemes = ("dictstore",)

    def open(self, asset, partition=None, *, conn_id=None):
        return DictHandle(asset, partition)


class RivalIOManager(DictIOManager):
    name = "rival"
"""


@pytest.fixture
def third_party(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str]], str]]:
    """Install a distribution (a dist-info with entry points) on sys.path for one test."""
    module = f"assetry_thirdparty_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(THIRD_PARTY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(entry_points: dict[str, str]) -> str:
        dist = tmp_path / f"{module}-1.0.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        lines = [
            f"{name} = {target.replace('MOD', module)}" for name, target in entry_points.items()
        ]
        (dist / "entry_points.txt").write_text("[assetry.iomanagers]\n" + "\n".join(lines) + "\n")
        importlib.invalidate_caches()
        plugins.iomanagers.refresh()
        return module

    yield install
    monkeypatch.undo()
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    plugins.iomanagers.refresh()


def test_third_party_io_manager_plugs_in_by_entry_point_alone(third_party) -> None:
    third_party({"dict": "MOD:DictIOManager"})
    asset = Asset(uri="dictstore://anything/orders")
    dispatcher = _dispatcher()
    with dispatcher.connect(asset) as t:
        result = t.insert(pd.DataFrame({"id": [1, 2]}))
        assert result.rows == 2
        assert t.to_pandas()["id"].tolist() == [1, 2]
    assert "dict" in plugins.iomanagers.names()


def test_two_io_managers_claiming_one_scheme_is_an_error_naming_both(third_party) -> None:
    third_party({"dict": "MOD:DictIOManager", "rival": "MOD:RivalIOManager"})
    with pytest.raises(PluginError, match="dict and rival"):
        _dispatcher().open(Asset(uri="dictstore://anything/orders"))


def test_a_broken_io_manager_does_not_break_the_others(third_party, tmp_path: Path) -> None:
    third_party({"broken": "assetry_no_such_module_xyz:Manager"})
    with _dispatcher().connect(Asset(uri=f"file://{tmp_path}/a.parquet")) as t:
        t.insert(pd.DataFrame({"id": [1]}))
    with pytest.raises(UnsupportedSchemeError, match="broken"):
        _dispatcher().open(Asset(uri="nosuchscheme://x/y"))


# -- the pytest plugin's instance ------------------------------------------------------------


def test_assetry_instance_keeps_object_storage_in_memory(assetry_instance: Instance) -> None:
    orders = Asset("orders", uri="s3://no-such-bucket-anywhere/orders")
    with assetry_instance.io_manager.connect(orders) as t:
        t.insert(pd.DataFrame({"id": [1, 2]}))
        assert t.location.kind == "memory"
    with assetry_instance.io_manager.connect(orders) as t:
        assert t.to_pandas()["id"].tolist() == [1, 2]


def test_assetry_instance_keeps_tables_in_an_in_memory_duckdb(assetry_instance: Instance) -> None:
    mytable = Asset("example", uri="mysql://myhost/mydb/mytable")
    with assetry_instance.io_manager.connect(mytable) as t:
        t.insert(pd.DataFrame({"id": [1]}))
        assert (t.location.backend, t.location.database) == ("duckdb", ":memory:")
    with assetry_instance.io_manager.connect(mytable) as t:
        assert t.to_pandas()["id"].tolist() == [1]


def test_test_instances_do_not_share_io(tmp_path: Path) -> None:
    from assetry.testing.pytest_plugin import make_test_instance

    orders = Asset("orders", uri="s3://bucket/orders.parquet")
    with make_test_instance() as first, make_test_instance() as second:
        with first.io_manager.connect(orders) as t:
            t.insert(pd.DataFrame({"id": [1]}))
        with second.io_manager.connect(orders) as t:
            assert t.exists() is False


class _ParquetOnMemory(ObjectStorageIOManager):
    """A test plugin serving the ``parquet+memory`` pair: parquet files on ``memory://``
    under a ``via-plugin`` folder, so a read through the plain scheme shows who wrote."""

    name = "parquetmem"
    schemes = ()
    format_schemes = ("parquet+memory",)

    def open(self, asset, partition=None, *, conn_id=None):  # type: ignore[no-untyped-def]
        where = parse_asset_uri(asset.uri).storage_uri
        moved = Asset(asset.name, uri=f"memory://via-plugin/{where.authority}{where.path}.parquet")
        return super().open(moved, partition, conn_id=conn_id)


def test_format_scheme_pair_picks_the_plugin_claiming_it() -> None:
    plugins.iomanagers.register("parquetmem", _ParquetOnMemory)
    try:
        dispatcher = _dispatcher()
        assert type(dispatcher.manager_for("parquet+memory")) is _ParquetOnMemory
        assert type(dispatcher.manager_for("memory")) is ObjectStorageIOManager
        table = pd.DataFrame({"n": [uuid.uuid4().hex]})
        with dispatcher.connect(Asset(uri="PARQUET+Memory://x/y")) as handle:
            handle.overwrite(table)
        with dispatcher.connect(Asset(uri="memory://via-plugin/x/y.parquet")) as handle:
            assert handle.to_pandas()["n"].tolist() == table["n"].tolist()
        with dispatcher.connect(Asset(uri="memory://x/y")) as handle:
            assert type(handle).__module__.startswith("assetry.iomanagers")
            assert not handle.exists()
    finally:
        plugins.iomanagers.unregister("parquetmem")


def test_format_wildcard_serves_the_format_on_any_storage_scheme() -> None:
    class AnyParquet(_ParquetOnMemory):
        format_schemes = ("parquet+*",)

    plugins.iomanagers.register("anyparquet", AnyParquet)
    try:
        assert type(_dispatcher().manager_for("parquet+s3")) is AnyParquet
        assert type(_dispatcher().manager_for("s3")) is ObjectStorageIOManager
    finally:
        plugins.iomanagers.unregister("anyparquet")


def test_unserved_format_scheme_error_names_the_installed_pairs() -> None:
    plugins.iomanagers.register("parquetmem", _ParquetOnMemory)
    try:
        with pytest.raises(UnsupportedSchemeError) as info:
            _dispatcher().open(Asset(uri="hudi+s3://bucket/table"))
        message = str(info.value)
        assert "format+scheme 'hudi+s3'" in message
        assert "parquet+memory" in message
    finally:
        plugins.iomanagers.unregister("parquetmem")


def test_two_plugins_claiming_one_pair_is_an_error_naming_both() -> None:
    class Other(_ParquetOnMemory):
        pass

    plugins.iomanagers.register("parquetmem", _ParquetOnMemory)
    plugins.iomanagers.register("otherparquet", Other)
    try:
        with pytest.raises(PluginError, match="otherparquet and parquetmem"):
            _dispatcher().manager_for("parquet+memory")
    finally:
        plugins.iomanagers.unregister("parquetmem")
        plugins.iomanagers.unregister("otherparquet")
