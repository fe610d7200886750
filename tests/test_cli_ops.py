"""The ``assetry`` operations commands: copy, doctor, db, config, backends, iomanagers —
run through click's CliRunner. ``copy`` runs memory -> memory, SQLite -> PostgreSQL and
SQLite -> S3 (moto), including an interrupted copy that resumes and a second run that
changes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from assetry import Asset, Instance, plugins
from assetry.backend import EventQuery, StateBackend
from assetry.backends.memory import MemoryBackend
from assetry.cli import main
from assetry.errors import BackendUnavailableError, PluginError
from click.testing import CliRunner, Result

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No configuration from the surroundings: an empty working directory, no ASSETRY_*."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ASSETRY_") and name != "ASSETRY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def run_ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def run_json(*args: str) -> Any:
    return json.loads(run_ok("--json", *args).stdout)


def memory_url() -> str:
    return f"memory://{uuid.uuid4().hex}"


def require_backend(name: str) -> None:
    try:
        plugins.backends.load(name)
    except PluginError as exc:
        pytest.skip(f"the {name} backend is not importable yet: {exc}")


# -- state to copy, and how to compare it ----------------------------------------------------------


def populate(inst: Instance, events: int = 14) -> None:
    """Two active assets and an inactive one, store entries in several namespaces, events
    with partitions, aliases and sources, and two consumers."""
    orders = Asset("orders", uri="s3://data/orders", group="sales", extra={"owner": "ops"})
    customers = Asset("customers", uri="s3://data/customers")
    retired = Asset("retired", uri="s3://data/retired")
    store = inst.asset_store(orders)
    store.set("watermark", "2024-06-01T00:00:00Z")
    store.set("config", {"columns": ["a", "b"], "limit": 1.5, "on": True})
    store.partition("2024-06-01").set("rows", 10)
    store.partition("2024-06-02").set("rows", 12)
    inst.asset_store(customers).set("high_id", 42)
    inst.asset_store(retired).set("left", "behind")
    for i in range(events):
        inst.record_event(
            orders,
            extra={"i": i, "rows": i * 10},
            partition_key=f"2024-06-0{1 + i % 2}" if i % 3 else None,
            aliases=["sales-out"] if i % 4 == 0 else (),
            source_task_id="load",
            source_run_id=f"run-{i}",
            timestamp=T0 + dt.timedelta(minutes=i),
        )
    inst.record_events(customers, [{"n": 1}, {"n": 2}], timestamp=T0)
    inst.record_event(retired, extra={"last": True}, timestamp=T0)
    inst.deactivate(retired)
    inst.backend.set_cursors("report", {"orders": 5, "customers": 2})
    inst.backend.set_cursors("audit", {"orders": 1})


def _canonical(value_json: str) -> str:
    return json.dumps(json.loads(value_json), sort_keys=True)


def _event_key(event: Any) -> tuple[Any, ...]:
    return (
        event.timestamp,
        event.partition_key,
        event.source_task_id,
        event.source_run_id,
        tuple(event.aliases),
        json.dumps(event.extra, sort_keys=True),
    )


def snapshot(backend: StateBackend) -> dict[str, Any]:
    """Everything a copy carries, in comparable form (event ids apart)."""
    out: dict[str, Any] = {"assets": {}, "cursors": {}}
    for record in backend.list_assets():
        namespaces = [None, *backend.store_partitions(record.name)]
        out["assets"][record.name] = {
            "registry": (record.uri, record.group, record.extra, record.active),
            "store": {
                (p, e.key): _canonical(e.value_json)
                for p in namespaces
                for e in backend.store_entries(record.name, p)
            },
            "events": [
                (e.id, _event_key(e)) for e in backend.query_events(EventQuery(record.name))
            ],
        }
    for consumer in backend.list_consumers():
        out["cursors"][consumer] = backend.get_cursors(consumer)
    return out


def assert_copied(src: StateBackend, dst: StateBackend, *, ids_kept: bool) -> None:
    """The destination holds exactly the source's state (ids aside where renumbered), and
    every cursor points at the copy of the event it pointed at."""
    want, have = snapshot(src), snapshot(dst)
    assert set(have["assets"]) == set(want["assets"])
    for name, asset in want["assets"].items():
        got = have["assets"][name]
        assert got["registry"] == asset["registry"], name
        assert got["store"] == asset["store"], name
        if ids_kept:
            assert got["events"] == asset["events"], name
        else:
            assert [k for _, k in got["events"]] == [k for _, k in asset["events"]], name
    assert set(have["cursors"]) == set(want["cursors"])
    for consumer, cursors in want["cursors"].items():
        for asset, cursor in cursors.items():
            src_events = dict(want["assets"][asset]["events"])
            dst_events = dict(have["assets"][asset]["events"])
            copied = have["cursors"][consumer][asset]
            if cursor == 0:  # nothing seen yet
                assert copied == 0
            else:
                assert dst_events[copied] == src_events[cursor]


def fail_after(
    monkeypatch: pytest.MonkeyPatch, cls: type, method: str, calls: int
) -> Callable[[], int]:
    """Make ``cls.method`` raise BackendUnavailableError after ``calls`` successful calls."""
    original = getattr(cls, method)
    count = {"n": 0}

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if count["n"] >= calls:
            raise BackendUnavailableError("the destination went away (simulated outage)")
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapper)
    return lambda: count["n"]


def check_interrupted_copy_resumes(
    src_url: str,
    dst: str,
    dst_cls: type,
    *,
    ids_kept: bool,
    extra_args: tuple[str, ...] = (),
) -> None:
    """Interrupt a copy in the middle of an asset's events, run it again, then once more."""
    with Instance.from_url(src_url) as src:
        populate(src)
    method = "import_events" if ids_kept else "append_events"
    with pytest.MonkeyPatch.context() as patch:
        # assets go in name order: customers' 2 events take one batch, then orders' 14
        # go in batches of 4, and the outage strikes after orders' second batch
        fail_after(patch, dst_cls, method, calls=3)
        first = run("copy", "--yes", src_url, dst, "--batch-size", "4", *extra_args)
    assert first.exit_code == 1
    assert first.output.strip().splitlines()[-1] == (
        "Error: the destination went away (simulated outage)"
    )
    second = run_json("copy", "--yes", src_url, dst, "--batch-size", "4", *extra_args)
    assert second["ok"] and second["ids_renumbered"] is (not ids_kept)
    orders = next(a for a in second["assets"] if a["asset"] == "orders")
    assert orders["events_copied"] == 14 - 8  # two batches of four made it the first time
    assert orders["source_events"] == orders["events_found"] == 14
    third = run_json("copy", "--yes", src_url, dst, "--batch-size", "4", *extra_args)
    assert third["changed"] == 0 and third["ok"]
    with Instance.from_url(src_url) as source, _open(dst, extra_args) as target:
        assert_copied(source.backend, target.backend, ids_kept=ids_kept)


def _open(target: str, extra_args: tuple[str, ...]) -> Instance:
    from assetry.cli_copy import open_instance

    options = json.loads(extra_args[1]) if extra_args[:1] == ("--dst-options",) else {}
    return open_instance(target, options)


# -- copy: memory ----------------------------------------------------------------------------------


class RenumberingBackend(MemoryBackend):
    """A memory backend that cannot import events with their ids."""

    name = "renumbering"
    capabilities = dataclasses.replace(MemoryBackend.capabilities, event_import=False)


@pytest.fixture
def renumbering() -> Iterator[str]:
    plugins.backends.register("renumbering", RenumberingBackend)
    try:
        yield "renumbering"
    finally:
        plugins.backends.unregister("renumbering")


def test_copy_carries_assets_store_events_and_cursors() -> None:
    src, dst = memory_url(), memory_url()
    with Instance.from_url(src) as inst:
        populate(inst)
    report = run_json("copy", "--yes", src, dst)
    assert report["ok"] and not report["ids_renumbered"]
    assert {a["asset"]: a["events_copied"] for a in report["assets"]} == {
        "customers": 2,
        "orders": 14,
        "retired": 1,
    }
    assert report["cursors_written"] == 3
    with Instance.from_url(src) as a, Instance.from_url(dst) as b:
        assert_copied(a.backend, b.backend, ids_kept=True)
        assert b.backend.alias_targets("sales-out") == ["orders"]
        assert not b.get_asset("retired").active


def test_copy_run_twice_changes_nothing() -> None:
    src, dst = memory_url(), memory_url()
    with Instance.from_url(src) as inst:
        populate(inst)
    run_ok("copy", "--yes", src, dst)
    with Instance.from_url(dst) as inst:
        before = snapshot(inst.backend)
        records = inst.assets()
    again = run_ok("copy", "--yes", src, dst)
    assert "already up to date; nothing changed" in again.stdout
    with Instance.from_url(dst) as inst:
        assert snapshot(inst.backend) == before
        assert inst.assets() == records  # not even updated_at moved


def test_copy_brings_later_changes_over(isolated: Path) -> None:
    src, dst = memory_url(), memory_url()
    with Instance.from_url(src) as inst:
        populate(inst)
        run_ok("copy", "--yes", src, dst)
        inst.asset_store("orders").set("watermark", "2024-06-02T00:00:00Z")
        inst.record_event("orders", extra={"later": True})
        inst.backend.set_cursors("report", {"orders": 15})
        inst.deactivate("customers")
        report = run_json("copy", "--yes", src, dst)
        assert report["changed"] == 4  # an entry, an event, a cursor, a deactivation
        with Instance.from_url(dst) as copy:
            assert_copied(inst.backend, copy.backend, ids_kept=True)


def test_interrupted_copy_resumes_without_duplicates() -> None:
    check_interrupted_copy_resumes(memory_url(), memory_url(), MemoryBackend, ids_kept=True)


def test_copy_to_a_backend_without_import_renumbers_and_translates_cursors(
    renumbering: str,
) -> None:
    src, dst = memory_url(), f"{renumbering}:{memory_url()}"
    with Instance.from_url(src) as inst:
        populate(inst)
    with open_target(dst) as target:  # the destination already has an event of its own
        target.backend.register_asset("orders", "s3://data/orders", group="sales")
        target.record_event("orders", extra={"mine": True})
    result = run_ok("copy", "--yes", src, dst)
    assert "ids were renumbered" in result.stdout
    assert "cannot keep event ids" in result.stderr
    with Instance.from_url(src) as a, open_target(dst) as b:
        events = b.events("orders")
        assert [e.id for e in events] == list(range(1, 16))
        assert events[0].extra == {"mine": True}
        assert [e.extra for e in events[1:]] == [e.extra for e in a.events("orders")]
        assert b.backend.get_cursors("report") == {"orders": 6, "customers": 2}
        assert b.backend.get_cursors("audit") == {"orders": 2}
    assert run_json("copy", "--yes", src, dst)["changed"] == 0


def test_interrupted_renumbering_copy_resumes_without_duplicates(renumbering: str) -> None:
    check_interrupted_copy_resumes(
        memory_url(), f"{renumbering}:{memory_url()}", RenumberingBackend, ids_kept=False
    )


def open_target(text: str) -> Instance:
    from assetry.cli_copy import open_instance

    return open_instance(text, {})


def test_copy_fails_when_the_destination_has_the_name_under_another_uri() -> None:
    src, dst = memory_url(), memory_url()
    with Instance.from_url(src) as inst:
        populate(inst)
    with Instance.from_url(dst) as inst:
        inst.register(Asset("orders", uri="s3://elsewhere/orders"))
    result = run("copy", "--yes", src, dst)
    assert result.exit_code == 1
    assert (
        "asset 'orders' is registered in the destination with uri 's3://elsewhere/orders', "
        "in the source with 's3://data/orders'" in result.output
    )
    assert "nothing was copied" in result.output and "Traceback" not in result.output


def test_copy_reports_events_the_destination_holds_differently() -> None:
    src, dst = memory_url(), memory_url()
    with Instance.from_url(src) as inst:
        inst.record_events(Asset("a", uri="s3://x/a"), [{"n": 1}, {"n": 2}])
    with Instance.from_url(dst) as inst:
        inst.record_events(Asset("a", uri="s3://x/a"), [{"other": 1}, {"other": 2}])
    result = run("copy", "--yes", src, dst)
    assert result.exit_code == 1
    assert "2 of 2 events are missing or different" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("memory://same", "memory://same"), "SRC and DST are the same"),
        (("not-a-url", "memory://x"), "is not a state URL"),
        (("memory://a", "memory://b", "--dst-options", "[1]"), "must be a JSON object"),
        (("memory://a", "memory://b", "--batch-size", "0"), "0 is not in the range"),
        (("memory://a",), "Missing argument 'DST'"),
    ],
)
def test_copy_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run("copy", "--yes", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_copy_rejects_options_the_backend_does_not_take() -> None:
    result = run("copy", "--yes", memory_url(), memory_url(), "--dst-options", '{"bogus": 1}')
    assert result.exit_code == 1
    assert "rejected its options" in result.output


@pytest.mark.slow
def test_copy_at_scale_resumes_and_verifies(tmp_path: Path) -> None:
    require_backend("sql")
    from assetry.backends.sql import SQLBackend

    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    with Instance.from_url(src) as inst:
        for a in range(20):
            asset = Asset(f"asset-{a:02d}", uri=f"s3://bucket/asset-{a:02d}")
            store = inst.asset_store(asset)
            for k in range(5):
                store.partition(f"p{k}").set("rows", k)
            for part in range(3):
                inst.record_events(asset, [{"i": i} for i in range(100)], partition_key=f"p{part}")
        inst.backend.set_cursors("report", {f"asset-{a:02d}": 10 * a for a in range(20)})
    with pytest.MonkeyPatch.context() as patch:
        done = fail_after(patch, SQLBackend, "import_events", calls=25)
        assert run("copy", "--yes", src, dst, "--batch-size", "100").exit_code == 1
        assert done() == 25
    report = run_json("copy", "--yes", src, dst, "--batch-size", "100")
    assert report["ok"] and sum(a["events_copied"] for a in report["assets"]) == 6000 - 2500
    assert run_json("copy", "--yes", src, dst)["changed"] == 0
    with Instance.from_url(src) as a, Instance.from_url(dst) as b:
        assert_copied(a.backend, b.backend, ids_kept=True)


# -- copy: SQLite -> PostgreSQL, SQLite -> S3 ------------------------------------------------------


@pytest.fixture
def sqlite_src(tmp_path: Path) -> str:
    require_backend("sql")
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with Instance.from_url(url) as inst:
        inst.upgrade()
    return url


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test (dropped afterwards)."""
    require_backend("sql")
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg_url)
    name = f"assetry_cli_{uuid.uuid4().hex[:12]}"
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.services
def test_copy_sqlite_to_postgresql(sqlite_src: str, fresh_pg_url: str) -> None:
    with Instance.from_url(sqlite_src) as inst:
        populate(inst)
    with Instance.from_url(fresh_pg_url) as inst:
        inst.upgrade()
    report = run_json("copy", "--yes", sqlite_src, fresh_pg_url)
    assert report["ok"]
    with Instance.from_url(sqlite_src) as a, Instance.from_url(fresh_pg_url) as b:
        assert_copied(a.backend, b.backend, ids_kept=not report["ids_renumbered"])
    assert run_json("copy", "--yes", sqlite_src, fresh_pg_url)["changed"] == 0


@pytest.mark.services
def test_interrupted_copy_sqlite_to_postgresql_resumes(sqlite_src: str, fresh_pg_url: str) -> None:
    from assetry.backends.sql import SQLBackend

    with Instance.from_url(fresh_pg_url) as inst:
        inst.upgrade()
        ids_kept = inst.backend.capabilities.event_import
    check_interrupted_copy_resumes(sqlite_src, fresh_pg_url, SQLBackend, ids_kept=ids_kept)


@pytest.fixture
def s3_target(s3_server: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An S3 state URL on moto; the endpoint and keys come from the aws_default connection."""
    require_backend("objectstore")
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    return f"s3://{s3_bucket}/state"


@pytest.mark.services
def test_copy_sqlite_to_s3(sqlite_src: str, s3_target: str) -> None:
    with Instance.from_url(sqlite_src) as inst:
        populate(inst)
    report = run_json("copy", "--yes", sqlite_src, s3_target)
    assert report["ok"]
    with Instance.from_url(sqlite_src) as a, Instance.from_url(s3_target) as b:
        assert_copied(a.backend, b.backend, ids_kept=not report["ids_renumbered"])
    assert run_json("copy", "--yes", sqlite_src, s3_target)["changed"] == 0


@pytest.mark.services
def test_interrupted_copy_sqlite_to_s3_resumes(sqlite_src: str, s3_target: str) -> None:
    from assetry.backends.objectstore import ObjectStoreBackend

    with Instance.from_url(s3_target) as inst:
        ids_kept = inst.backend.capabilities.event_import
    check_interrupted_copy_resumes(sqlite_src, s3_target, ObjectStoreBackend, ids_kept=ids_kept)


# -- doctor ----------------------------------------------------------------------------------------


def _checks(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}


def test_doctor_on_a_healthy_setup_passes() -> None:
    result = run("--url", memory_url(), "--json", "doctor")
    report = json.loads(result.stdout)
    checks = _checks(report)
    assert checks["configuration"][0] == "ok"
    assert checks["state backend plugin"] == ("ok", "memory (assetry.backends.memory)")
    assert checks["state backend"][0] == "ok"
    assert (result.exit_code, report["ok"]) == (0, True)
    assert all(c["status"] != "fail" for c in report["checks"])


def test_doctor_on_a_new_sqlite_database_creates_nothing(tmp_path: Path) -> None:
    require_backend("sql")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = run("--json", "--url", url, "doctor")
    assert result.exit_code == 1
    status, detail = _checks(json.loads(result.stdout))["state backend"]
    assert status == "fail"
    assert detail == f"no assetry state at {url}; `assetry db upgrade` creates it"
    assert not (tmp_path / "new.db").exists()
    run_ok("--url", url, "db", "upgrade")
    upgraded = run_json("--url", url, "doctor")
    assert _checks(upgraded)["schema"][0] == "ok"
    assert "new.db" in _checks(upgraded)["state backend"][1]


def test_doctor_names_a_broken_configuration(isolated: Path) -> None:
    (isolated / "assetry.toml").write_text("backend_url = 5\n")
    result = run("doctor")
    assert result.exit_code == 1
    assert "configuration" in result.stdout and "backend_url must be a string" in result.stdout
    assert result.output.strip().splitlines()[-1].startswith("Error: 1 check(s) failed")


def test_doctor_names_a_missing_backend_plugin() -> None:
    report = json.loads(run("--backend", "nope", "--json", "doctor").stdout)
    status, detail = _checks(report)["state backend plugin"]
    assert status == "fail" and "no state backend called 'nope'" in detail


def test_doctor_fails_an_unreachable_database_connection_without_leaking_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ASSETRY_CONN_POSTGRES_DEFAULT",
        json.dumps({"host": "127.0.0.1", "port": 1, "login": "etl", "password": "hunter2"}),
    )
    result = run("--url", memory_url(), "doctor")
    assert result.exit_code == 1
    assert "connection postgres_default" in result.output
    assert "hunter2" not in result.output
    assert "ASSETRY_CONN_POSTGRES_DEFAULT" in result.output  # where to fix it


@pytest.mark.services
def test_doctor_connects_to_a_database_connection(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_POSTGRES_DEFAULT", pg_url.replace("+psycopg", ""))
    report = run_json("--url", memory_url(), "doctor")
    assert _checks(report)["connection postgres_default"][0] == "ok"


@pytest.mark.services
def test_doctor_reaches_object_storage_connections(
    monkeypatch: pytest.MonkeyPatch, s3_server: Any, s3_bucket: str
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    bad = {**s3_server.storage_options, "endpoint_url": "http://127.0.0.1:1"}
    monkeypatch.setenv("ASSETRY_CONN_BROKEN", json.dumps({"uri": "s3://nowhere", **bad}))
    result = run("--url", memory_url(), "--json", "doctor")
    checks = _checks(json.loads(result.stdout))
    assert checks["connection aws_default"][0] == "ok"
    assert checks["connection broken"][0] == "fail"
    assert "testing" not in checks["connection broken"][1]  # the secret key
    assert result.exit_code == 1


def test_doctor_flags_retention_the_backend_cannot_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDeletion(MemoryBackend):
        capabilities = dataclasses.replace(MemoryBackend.capabilities, event_deletion=False)

    plugins.backends.register("nodeletion", NoDeletion)
    try:
        monkeypatch.setenv("ASSETRY_RETENTION", '{"keep_last": 10}')
        report = json.loads(run("--backend", "nodeletion", "--json", "doctor").stdout)
    finally:
        plugins.backends.unregister("nodeletion")
    assert _checks(report)["retention"][0] == "fail"


def test_doctor_warns_about_plugins_that_fail_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint("broken", "assetry_no_such_module:Backend", "assetry.backends")
    scanned = dict(plugins.backends._scan())
    monkeypatch.setattr(plugins.backends, "_entry_points", {**scanned, "broken": [broken]})
    try:
        report = run_json("--url", memory_url(), "doctor")
        listed = {r["name"]: r for r in run_json("backends")}
    finally:
        plugins.backends.refresh()
    status, detail = _checks(report)["state backend broken"]
    assert status == "warn" and "assetry_no_such_module" in detail
    assert "assetry_no_such_module" in listed["broken"]["error"]
    assert listed["memory"]["error"] is None


# -- db --------------------------------------------------------------------------------------------


class VersionedBackend(MemoryBackend):
    """A memory backend with a pretend schema revision, to drive ``assetry db``."""

    name = "versioned"
    revision: str | None = None

    def schema_status(self) -> dict[str, str | None]:
        return {"current": VersionedBackend.revision, "head": "0002"}

    def upgrade(self) -> None:
        VersionedBackend.revision = "0002"


@pytest.fixture
def versioned() -> Iterator[type[VersionedBackend]]:
    plugins.backends.register("versioned", VersionedBackend)
    VersionedBackend.revision = None
    try:
        yield VersionedBackend
    finally:
        plugins.backends.unregister("versioned")


def test_db_current_and_upgrade(versioned: type[VersionedBackend]) -> None:
    current = run_json("--backend", "versioned", "db", "current")
    assert (current["current"], current["head"]) == (None, "0002")
    assert "assetry db upgrade" in current["status"]
    check = run("--backend", "versioned", "db", "current", "--check")
    assert check.exit_code == 1 and "assetry db upgrade" in check.output
    upgraded = run_ok("--backend", "versioned", "db", "upgrade")
    assert "from (empty) to 0002" in upgraded.stdout
    assert run_ok("--backend", "versioned", "db", "current", "--check").stdout.endswith(
        "up to date\n"
    )
    assert "nothing to do" in run_ok("--backend", "versioned", "db", "upgrade").stdout


def test_db_on_a_backend_without_a_schema() -> None:
    assert "no versioned schema" in run_ok("--url", memory_url(), "db", "current", "--check").stdout
    assert "nothing to upgrade" in run_ok("--url", memory_url(), "db", "upgrade").stdout


def test_db_upgrade_and_current_on_sqlite(tmp_path: Path) -> None:
    require_backend("sql")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_ok("--url", url, "db", "upgrade")
    status = run_json("--url", url, "db", "current", "--check")
    assert status["current"] == status["head"] and status["head"]


# -- config, backends, iomanagers ------------------------------------------------------------------


def test_config_show_says_where_each_setting_came_from_and_masks_secrets(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "pyproject.toml").write_text(
        "[tool.assetry]\nmax_value_bytes = 1000\nretention = {keep_last = 5}\n"
    )
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "postgresql+psycopg://etl:hunter2@db/x")
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", '{"key": "AKIA", "secret": "sshh"}')
    shown = run_json("config", "show")
    rows = {r["name"]: (r["value"], r["source"]) for r in shown["settings"]}
    assert rows["backend_url"] == (
        "postgresql+psycopg://etl:***@db/x",
        "environment ASSETRY_BACKEND_URL",
    )
    assert rows["max_value_bytes"] == ("1000", str(isolated / "pyproject.toml"))
    assert rows["retention"] == ('{"keep_last": 5}', str(isolated / "pyproject.toml"))
    assert rows["auto_upgrade"] == ("false", "default")
    assert "environment ASSETRY_CONN_AWS_DEFAULT" in rows["connection aws_default"][1]
    text = run_ok("config", "show").stdout
    for secret in ("hunter2", "sshh", "AKIA"):
        assert secret not in text and secret not in json.dumps(shown)


def test_config_show_prefers_the_url_option(isolated: Path) -> None:
    rows = {r["name"]: r for r in run_json("--url", "memory://x", "config", "show")["settings"]}
    assert (rows["backend_url"]["value"], rows["backend_url"]["source"]) == (
        "memory://x",
        "argument",
    )


def test_backends_lists_entry_points_schemes_and_capabilities() -> None:
    rows = {r["name"]: r for r in run_json("backends")}
    assert {"memory", "sql", "objectstore"} <= set(rows)
    memory = rows["memory"]
    assert memory["target"] == "assetry.backends.memory:MemoryBackend"
    assert memory["schemes"] == ["memory"]
    assert {"event_import", "event_deletion"} <= set(memory["capabilities"])
    assert "assetry.backends.memory:MemoryBackend" in run_ok("backends").stdout


def test_iomanagers_lists_entry_points() -> None:
    rows = {r["name"]: r for r in run_json("iomanagers")}
    assert {"objectstorage", "ibis"} <= set(rows)
    for row in rows.values():
        assert (row["error"] is None) or row["name"] in row["error"]
    run_ok("iomanagers")
