"""Spark through ibis's PySpark backend, in local mode: conformance, lazy ibis expressions
that Spark runs, and tables written by Spark itself read through assetry."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from assetry import Asset, load_settings
from assetry.iomanager import IOManagerDispatcher
from assetry.testing import IOManagerConformance

pytest.importorskip(
    "pyspark", reason="the Spark IO manager needs pyspark: pip install 'ibis-framework[pyspark]'"
)
if shutil.which("java") is None:  # pragma: no cover - the image ships a Java runtime
    pytest.skip(
        "Spark needs a Java runtime: apt-get install openjdk-17-jre-headless",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def spark_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The connection of the process's one local-mode SparkSession (small and quiet)."""
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    conn = {
        "master": "local[1]",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.shuffle.partitions": "1",
        "spark.default.parallelism": "1",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
    }
    from pyspark.sql import SparkSession

    def stop() -> None:  # one session per process: this module's configuration must apply
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()

    stop()
    yield {"ASSETRY_CONN_SPARK_DEFAULT": json.dumps(conn)}
    stop()


def _dispatcher(environ: dict[str, str]) -> IOManagerDispatcher:
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


class TestSparkLocalMode(IOManagerConformance):
    @pytest.fixture
    def io_manager(self, spark_environ):
        dispatcher = _dispatcher(spark_environ)
        yield dispatcher
        dispatcher.close()

    @pytest.fixture
    def asset_factory(self):
        def make(**kwargs: Any) -> Asset:
            return Asset(uri=f"pyspark:///assetry_tests/t_{uuid.uuid4().hex[:12]}", **kwargs)

        return make


def test_to_ibis_is_lazy_and_runs_in_spark(spark_environ: dict[str, str]) -> None:
    asset = Asset(uri=f"pyspark:///t_{uuid.uuid4().hex[:12]}", partition_column="day")
    dispatcher = _dispatcher(spark_environ)
    for day, amounts in (("d1", [1.0, 2.0]), ("d2", [4.0])):
        with dispatcher.connect(asset, day) as handle:
            handle.insert(pa.table({"amount": amounts}))
    with dispatcher.connect(asset) as handle:
        expr = handle.to_ibis()
        assert type(expr.op()).__module__.startswith("ibis")  # an expression, not data
        totals = expr.group_by("day").aggregate(total=expr.amount.sum()).order_by("day")
        assert totals.to_pyarrow().to_pylist() == [
            {"day": "d1", "total": 3.0},
            {"day": "d2", "total": 4.0},
        ]
        assert handle.qualified_name.startswith("`t_")


def test_tables_written_by_spark_are_read_and_written_by_assetry(
    spark_environ: dict[str, str],
) -> None:
    from pyspark.sql import SparkSession

    dispatcher = _dispatcher(spark_environ)
    name = f"t_{uuid.uuid4().hex[:12]}"
    with dispatcher.connect(Asset(uri=f"pyspark:///{name}")) as handle:
        assert handle.exists() is False  # makes the session with the test's configuration
    spark = SparkSession.getActiveSession()
    assert spark is not None
    spark.createDataFrame([(1, "a"), (2, "b")], "id long, name string").write.saveAsTable(name)
    with dispatcher.connect(Asset(uri=f"pyspark:///{name}")) as handle:
        assert sorted(handle.to_pyarrow().column("id").to_pylist()) == [1, 2]
        handle.insert(pa.table({"id": pa.array([3], pa.int64()), "name": ["c"]}))
    assert sorted(r.id for r in spark.table(name).collect()) == [1, 2, 3]


def test_a_uri_naming_no_table_is_rejected(spark_environ: dict[str, str]) -> None:
    from assetry import AssetValueError

    with pytest.raises(AssetValueError, match="must name a table"):
        _dispatcher(spark_environ).open(Asset(uri="pyspark:///a/b/c"))


def test_the_master_in_the_uri_wins(spark_environ: dict[str, str], monkeypatch) -> None:
    from assetry.iomanagers import spark

    seen: list[str] = []
    monkeypatch.setattr(spark, "spark_session", lambda master, conf: seen.append(master))
    manager = spark.SparkIOManager(load_settings(backend="memory", environ=spark_environ))
    manager.session("spark-master:7077", None)
    manager.session("", None)
    assert seen == ["spark://spark-master:7077", "local[1]"]


def test_spark_warehouse_stays_in_the_temporary_folder(spark_environ: dict[str, str]) -> None:
    warehouse = Path(
        json.loads(spark_environ["ASSETRY_CONN_SPARK_DEFAULT"])["spark.sql.warehouse.dir"]
    )
    with _dispatcher(spark_environ).connect(Asset(uri="pyspark:///t_here")) as handle:
        handle.overwrite(pa.table({"x": [1]}))
    assert (warehouse / "t_here").is_dir()
