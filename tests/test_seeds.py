"""Every code example of the seeds, run as written with only the import line changed.

The examples come from the talk "Assets: Past, Present, Future" (``seeds/000_...``) and the
Airflow asset-store documentation (``seeds/001_...``). What stands in for what the
examples leave to the reader or to Airflow:

- ``YOUR_DATA_HERE``, ``fetch_orders_since`` and ``upload_to_warehouse`` are small local
  values and functions;
- S3 is the moto server: the bucket ``asset-bucket`` exists on it and the ``aws_default``
  connection points at it; ``mysql://myhost/mydb/mytable`` names a fresh table in the local
  MariaDB (host ``127.0.0.1``, database ``test``);
- ``S3CreateObjectOperator(...)`` is a ``@task`` that writes the object: assetry is not an
  orchestrator, so it has no operators;
- Airflow's scheduler is the test: it calls the producing tasks (with a ``logical_date``
  where the example reads it), ``inst.watch()`` and ``run_ready(...)``; a DAG whose body is
  ``...`` is declared as written and then again with a task, to observe what it would run;
- ``AssetWatcher(...)`` is given a real trigger (``ObjectStorageTrigger``).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from assetry import (
    DAG,
    Asset,
    AssetAlias,
    AssetInactiveError,
    AssetWatcher,
    ConflictError,
    DatabaseClient,
    Instance,
    Metadata,
    ObjectStoragePath,
    ObjectStorageTrigger,
    get_current_context,
    run_ready,
    task,
    use_instance,
)
from assetry.backends.memory import MemoryBackend

MONDAY = dt.datetime(2025, 6, 2, 0, 0, tzinfo=dt.UTC)
TUESDAY = MONDAY + dt.timedelta(days=1)


@pytest.fixture(params=["memory", "sql"])
def open_instance(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Instance]]:
    """Opens an Instance on this test's backend (after the test set up its connections)."""
    opened: list[Instance] = []

    def opener() -> Instance:
        if request.param == "memory":
            instance = Instance(backend=MemoryBackend())
        else:
            instance = Instance(backend="sql", url=f"sqlite:///{tmp_path}/state.db")
            instance.upgrade()
        opened.append(instance)
        return instance

    yield opener
    for instance in opened:
        instance.close()


@pytest.fixture
def inst(open_instance: Callable[[], Instance]) -> Iterator[Instance]:
    instance = open_instance()
    with use_instance(instance):
        yield instance


@pytest.fixture
def s3_inst(
    s3_server, monkeypatch: pytest.MonkeyPatch, open_instance: Callable[[], Instance]
) -> Iterator[Instance]:
    """An instance whose ``aws_default`` connection is the moto server with ``asset-bucket``."""
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    s3_server.make_bucket("asset-bucket")
    instance = open_instance()
    with use_instance(instance):
        yield instance


def _read_s3(s3_server, path: str) -> bytes:
    import s3fs

    return s3fs.S3FileSystem(**s3_server.storage_options).cat(path)


def _write_s3(s3_server, path: str, data: bytes) -> None:
    import s3fs

    s3fs.S3FileSystem(**s3_server.storage_options).pipe(path, data)


# -- seed 000: the talk ----------------------------------------------------------------------


def test_talk_asset(inst: Instance) -> None:
    example = Asset(name="example", uri="s3://asset-bucket/example.csv")

    assert (example.name, example.uri) == ("example", "s3://asset-bucket/example.csv")


@pytest.mark.services
def test_talk_producer_and_consumer_on_an_asset(
    s3_inst: Instance, s3_server, capsys: pytest.CaptureFixture[str]
) -> None:
    YOUR_DATA_HERE = b"id,amount\n1,9.5\n"

    example = Asset(name="example", uri="s3://asset-bucket/example.csv")

    with DAG(dag_id="output_to_example", schedule="@daily"):
        # S3CreateObjectOperator(task_id="create_object", s3_bucket="asset-bucket",
        #     s3_key="example.csv", data=YOUR_DATA_HERE, replace=True, outlets=[example])
        @task(task_id="create_object", outlets=[example])
        def create_object():
            path = ObjectStoragePath("s3://asset-bucket/example.csv", conn_id="aws_default")
            path.write_bytes(YOUR_DATA_HERE)

    with DAG(dag_id="trigger_on_example_write", schedule=example):

        @task
        def do_something():
            context = get_current_context()
            last_event = context["triggering_asset_events"][example][-1]
            print("Triggered by", last_event.source_dag_run)

    assert not do_something.is_ready()
    produced = create_object.run(logical_date=MONDAY)
    assert _read_s3(s3_server, "asset-bucket/example.csv") == YOUR_DATA_HERE
    assert [r.task_id for r in run_ready(do_something)] == ["trigger_on_example_write.do_something"]
    assert capsys.readouterr().out == f"Triggered by {produced.run_id}\n"
    assert run_ready(do_something) == []


def test_talk_alias_emits_to_the_asset_of_the_day(
    inst: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_bucket = AssetAlias(name="s3_bucket")

    per_day_assets = {
        i: Asset(name="first_day", uri=f"s3://asset_bucket/{i}.csv") for i in range(1, 8)
    }

    with DAG(dag_id="output_to_example", schedule="@daily"):

        @task(outlets=[s3_bucket])
        def emit_conditionally():
            context = get_current_context()
            asset = per_day_assets[context["logical_date"].isoweekday()]
            yield Metadata(asset, alias=s3_bucket)

    with DAG(dag_id="prcess_monday", schedule=per_day_assets[1]):
        ...

    with DAG(dag_id="prcess_everything", schedule=s3_bucket):
        ...

    # The same two DAGs with a task, to see what they would run.
    with DAG(dag_id="prcess_monday", schedule=per_day_assets[1]):

        @task
        def monday(triggering_asset_events):
            return [e.asset_uri for e in triggering_asset_events[per_day_assets[1]]]

    with DAG(dag_id="prcess_everything", schedule=s3_bucket):

        @task
        def everything(triggering_asset_events):
            return [e.asset_uri for e in triggering_asset_events[s3_bucket]]

    (event,) = emit_conditionally.run(logical_date=MONDAY).events
    assert (event.asset_name, event.asset_uri, event.aliases) == (
        "first_day",
        "s3://asset_bucket/1.csv",
        ("s3_bucket",),
    )
    assert [r.value for r in run_ready(monday, everything)] == [
        ["s3://asset_bucket/1.csv"],
        ["s3://asset_bucket/1.csv"],
    ]

    # The seven assets share the name "first_day": an asset name is unique, so on Tuesday
    # the second URI under that name is a conflict, and the run records nothing.
    with pytest.raises(ConflictError, match="'first_day' is registered with uri"):
        emit_conditionally(logical_date=TUESDAY)
    assert len(inst.events(s3_bucket)) == 1
    assert run_ready(monday, everything) == []


def test_talk_alias_with_one_name_per_day_runs_every_day(inst: Instance) -> None:
    # What a user does after the conflict above: give each day's asset its own name.
    s3_bucket = AssetAlias(name="s3_bucket")

    per_day_assets = {
        i: Asset(name=f"day_{i}", uri=f"s3://asset_bucket/{i}.csv") for i in range(1, 8)
    }

    with DAG(dag_id="output_to_example", schedule="@daily"):

        @task(outlets=[s3_bucket])
        def emit_conditionally():
            context = get_current_context()
            asset = per_day_assets[context["logical_date"].isoweekday()]
            yield Metadata(asset, alias=s3_bucket)

    with DAG(dag_id="prcess_monday", schedule=per_day_assets[1]):

        @task
        def monday():
            return "monday"

    with DAG(dag_id="prcess_everything", schedule=s3_bucket):

        @task
        def everything(triggering_asset_events):
            return [e.asset_name for e in triggering_asset_events[s3_bucket]]

    for day in range(7):
        emit_conditionally(logical_date=MONDAY + dt.timedelta(days=day))
    runs = run_ready(monday, everything)
    assert [r.value for r in runs] == ["monday", [f"day_{i}" for i in range(1, 8)]]


@pytest.mark.services
def test_talk_watcher_triggers_a_consumer(
    s3_inst: Instance, s3_server, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Asset(
        name="example",
        uri="s3://asset-bucket/example.csv",
        watchers=[
            AssetWatcher("example_file", ObjectStorageTrigger("s3://asset-bucket/example.csv"))
        ],
    )

    with DAG(dag_id="trigger_on_example_write", schedule=example):

        @task
        def do_something():
            context = get_current_context()
            last_event = context["triggering_asset_events"][example][-1]
            if last_event.extra.get("from_trigger"):
                print("Triggered by watcher!")

    s3_inst.register(example)
    assert s3_inst.watch(once=True) == []  # nothing written yet
    _write_s3(s3_server, "asset-bucket/example.csv", b"id\n1\n")  # someone else writes it
    (event,) = s3_inst.watch(once=True)
    assert event.extra["payload"]["uri"] == "s3://asset-bucket/example.csv"
    run_ready(do_something)
    assert capsys.readouterr().out == "Triggered by watcher!\n"
    assert s3_inst.watch(once=True) == []
    assert run_ready(do_something) == []


@pytest.mark.services
def test_talk_reference_from_another_file(s3_inst: Instance) -> None:
    YOUR_DATA_HERE = b"id\n1\n"

    example = Asset(name="example", uri="s3://asset-bucket/example.csv")

    with DAG(dag_id="output_to_example", schedule="@daily"):
        # S3CreateObjectOperator(..., outlets=[example]) as a task:
        @task(task_id="create_object", outlets=[example])
        def create_object():
            ObjectStoragePath(example.uri, conn_id="aws_default").write_bytes(YOUR_DATA_HERE)

    # Different file...

    with DAG(dag_id="trigger_on_example", schedule=Asset.ref("example")):
        ...

    with DAG(dag_id="trigger_on_example", schedule=Asset.ref("example")):

        @task
        def consume(triggering_asset_events):
            return [e.asset_name for e in triggering_asset_events[Asset.ref("example")]]

    assert not consume.is_ready()  # the reference resolves once the asset exists
    create_object()
    assert [r.value for r in run_ready(consume)] == [["example"]]


@pytest.mark.services
def test_talk_object_storage_path(s3_inst: Instance, s3_server) -> None:
    YOUR_DATA_HERE = b"id,amount\n1,9.5\n2,3.0\n"

    example_asset = Asset(
        name="example",
        uri="s3://asset-bucket/example.csv",
    )

    example_path = ObjectStoragePath(
        example_asset.uri,
        conn_id="aws_default",
    )

    @task(outlets=[example_asset])
    def write_data():
        with example_path.open("wb") as f:
            f.write(YOUR_DATA_HERE)

    @task(inlets=[example_asset])
    def read_data():
        with example_path.open("rb") as f:
            data = f.read()
        return data  # added: the example keeps the data to itself

    write_data()
    assert read_data() == YOUR_DATA_HERE
    assert _read_s3(s3_server, "asset-bucket/example.csv") == YOUR_DATA_HERE
    assert [e.source_task_id for e in s3_inst.events(example_asset)] == ["write_data"]


@pytest.fixture
def mysql_table(mysqlclient_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh table name in the MariaDB database ``test``, dropped afterwards;
    ``mysql_default`` connects as root."""
    import pymysql

    monkeypatch.setenv("ASSETRY_CONN_MYSQL_DEFAULT", "mysql://root@127.0.0.1:3306/test")
    name = f"seed_{uuid.uuid4().hex[:10]}"
    yield name
    con = pymysql.connect(host="127.0.0.1", user="root", database="test")
    try:
        with con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        con.commit()
    finally:
        con.close()


@pytest.fixture
def mysql_inst(mysql_table: str, open_instance: Callable[[], Instance]) -> Iterator[Instance]:
    instance = open_instance()
    with use_instance(instance):
        yield instance


@pytest.mark.services
def test_talk_database_client(mysql_inst: Instance, mysql_table: str) -> None:
    YOUR_DATA_HERE = pd.DataFrame({"id": [1, 2, 3], "amount": [9.5, 3.0, 12.25]})

    example_asset = Asset(
        name="example",
        uri="mysql://myhost/example",
    )

    example_client = DatabaseClient(
        example_asset.uri,
        conn_id="mysql_default",
    )
    # declared only: nothing connects (the default port is written out, as Airflow does)
    assert example_client.uri == "mysql://myhost:3306/example"

    example_asset = Asset(
        name="example",
        uri=f"mysql://127.0.0.1/test/{mysql_table}",  # mysql://myhost/mydb/mytable
    )

    example_client = DatabaseClient(
        example_asset.uri,
        conn_id="mysql_default",
    )

    @task(outlets=[example_asset])
    def write_data():
        with example_client.connect() as t:
            t.insert(YOUR_DATA_HERE)

    @task(inlets=[example_asset])
    def read_data():
        with example_client.connect() as t:
            data = t.to_pandas()
        return data  # added: the example keeps the data to itself

    write_data()
    data = read_data()
    pd.testing.assert_frame_equal(
        data.sort_values("id").reset_index(drop=True), YOUR_DATA_HERE, check_dtype=False
    )
    (event,) = mysql_inst.events(example_asset)
    assert event.extra["assetry"]["rows"] == 3  # the client's write is the task's figure


@pytest.mark.services
def test_talk_io_manager(mysql_inst: Instance, mysql_table: str) -> None:
    YOUR_DATA_HERE = pd.DataFrame({"id": [1, 2], "amount": [1.5, 2.5]})

    example_asset = Asset(
        name="example",
        uri=f"mysql://127.0.0.1/test/{mysql_table}",  # mysql://myhost/mydb/mytable
    )

    @task(outlets=[example_asset])
    def write_data(io_manager):
        with io_manager.connect(example_asset) as t:
            t.insert(YOUR_DATA_HERE)

    @task(inlets=[example_asset])
    def read_data(io_manager):
        with io_manager.connect(example_asset) as t:
            data = t.to_pandas()
        return data  # added: the example keeps the data to itself

    write_data()
    write_data()
    assert len(read_data()) == 4
    assert [e.extra["assetry"]["rows"] for e in mysql_inst.events(example_asset)] == [2, 2]


# -- seed 001: the asset store ---------------------------------------------------------------


def test_asset_store_accessed_through_the_context(inst: Instance) -> None:
    my_asset = Asset("my_data", uri="s3://bucket/my_data")

    with DAG("example_asset_store", schedule=None):

        @task(inlets=[my_asset], outlets=[my_asset])
        def process(**context):
            asset_store = context["asset_store"][my_asset]
            watermark = asset_store.get("watermark")
            asset_store.set("watermark", "2024-06-01")
            return watermark  # added: to see what the run read

    assert process() is None
    assert process() == "2024-06-01"
    assert inst.asset_store(my_asset).get("watermark") == "2024-06-01"


def test_asset_store_single_inlet_shorthand(inst: Instance) -> None:
    my_asset = Asset("my_data", uri="s3://bucket/my_data")

    @task(inlets=[my_asset], outlets=[my_asset])
    def process_single(**context):
        asset_store = context["asset_store"]
        watermark = asset_store.get("watermark")
        asset_store.set("watermark", "2024-06-01")
        return watermark  # added: to see what the run read

    assert process_single() is None
    assert process_single() == "2024-06-01"


def test_asset_store_api_reference(inst: Instance) -> None:
    my_asset = Asset("my_data", uri="s3://bucket/my_data")
    steps: dict = {}

    @task(inlets=[my_asset])
    def api(**context):
        # Using context
        watermark = context["asset_store"][my_asset].get("watermark", default="initial_watermark")
        steps["get"] = watermark
        # Using context
        context["asset_store"][my_asset].set("watermark", "2024-06-01T00:00:00Z")
        steps["set"] = context["asset_store"].get("watermark")
        # Using context
        context["asset_store"][my_asset].delete("watermark")
        steps["delete"] = context["asset_store"].get("watermark")
        context["asset_store"][my_asset].delete("watermark")  # no-op when missing
        context["asset_store"][my_asset].set("a", 1)
        context["asset_store"][my_asset].set("b", [1, 2])
        # Using context
        context["asset_store"][my_asset].clear()
        steps["clear"] = context["asset_store"][my_asset].keys()

    api()
    assert steps == {
        "get": "initial_watermark",
        "set": "2024-06-01T00:00:00Z",
        "delete": None,
        "clear": [],
    }


def test_asset_store_watermark_pattern(inst: Instance) -> None:
    source: list[dict] = [
        {"id": 1, "created_at": "2024-06-01T08:00:00Z"},
        {"id": 2, "created_at": "2024-06-01T09:30:00Z"},
    ]
    warehouse: list[dict] = []
    fetched_since: list[str] = []

    def fetch_orders_since(watermark: str) -> list[dict]:
        fetched_since.append(watermark)
        return [r for r in source if r["created_at"] > watermark]

    def upload_to_warehouse(rows: list[dict]) -> None:
        warehouse.extend(rows)

    orders = Asset("orders", uri="s3://data/orders/")

    with DAG("incremental_orders", schedule="@daily"):

        @task(inlets=[orders], outlets=[orders])
        def load_new_orders(**context):
            asset_store = context["asset_store"]  # single-inlet shorthand
            # Read the last watermark, default to epoch if first run.
            watermark = asset_store.get("watermark", default="1970-01-01T00:00:00Z")
            # Fetch only rows created after the watermark.
            rows = fetch_orders_since(watermark)
            if not rows:
                return
            upload_to_warehouse(rows)
            # Advance the watermark to the latest row seen.
            new_watermark = max(r["created_at"] for r in rows)
            asset_store.set("watermark", new_watermark)

    load_new_orders()
    load_new_orders()  # nothing new: the watermark stays
    source.append({"id": 3, "created_at": "2024-06-02T07:00:00Z"})
    load_new_orders()

    assert fetched_since == [
        "1970-01-01T00:00:00Z",
        "2024-06-01T09:30:00Z",
        "2024-06-01T09:30:00Z",
    ]
    assert [r["id"] for r in warehouse] == [1, 2, 3]
    assert inst.asset_store(orders).get("watermark") == "2024-06-02T07:00:00Z"
    assert [e.source_task_id for e in inst.events(orders)] == [
        "incremental_orders.load_new_orders"
    ] * 3


def test_asset_store_lifetime_and_orphan_sweep(inst: Instance) -> None:
    # "Values persist until explicitly deleted or until the asset is deactivated ... removed
    # during the next garbage-collection pass. Until that sweep runs, stale rows may exist
    # but cannot be written to."
    orders = Asset("orders", uri="s3://data/orders/")

    @task(inlets=[orders], outlets=[orders])
    def load(asset_store):
        asset_store.set("watermark", "2024-06-01")
        return asset_store.get("watermark")

    load()
    inst.deactivate(orders)
    assert inst.asset_store(orders).get("watermark") == "2024-06-01"
    with pytest.raises(AssetInactiveError):
        load()
    assert inst.sweep() == 1
    assert inst.asset_store(orders).get("watermark") is None
