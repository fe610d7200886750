"""Schema versions of the sql backend: creation at head, upgrades that keep the data, and
clear errors for databases older or newer than the code, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import assetry
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from assetry.backend import EventQuery, NewEvent
from assetry.backends.sql import SQLBackend, migrate, schema
from assetry.backends.sql.engine import resolve_url
from assetry.errors import SchemaVersionError

FIRST = "0001"


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(resolve_url(url), poolclass=sa.pool.NullPool)


def _migrate_to(url: str, revision: str) -> None:
    """Create or migrate the database to ``revision`` the way the backend does."""
    engine = sa.create_engine(
        resolve_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            migrate.upgrade(conn, revision)
    finally:
        engine.dispose()


def _set_revision(url: str, revision: str) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = :r"), {"r": revision}
            )
    finally:
        engine.dispose()


def _fill_at_first_revision(url: str) -> None:
    """Rows as the code of the first schema revision wrote them (its tables are unchanged
    since, but for the alias-target table the second revision adds)."""
    digest, now = schema.digest, 1_717_200_000_000_000
    asset_rows = [
        (1, "orders", "s3://data/orders", True, 3),
        (2, "old", "s3://data/old", False, 1),
    ]
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                schema.assets.insert(),
                [
                    {
                        "id": i,
                        "name": name,
                        "name_hash": digest(name),
                        "uri": uri,
                        "uri_hash": digest(uri),
                        "asset_group": "sales",
                        "extra": json.dumps({"owner": name}),
                        "active": active,
                        "last_event_id": last,
                        "created_at_us": now,
                        "updated_at_us": now,
                    }
                    for i, name, uri, active, last in asset_rows
                ],
            )
            conn.execute(
                schema.store.insert(),
                [
                    {
                        "asset_id": 1,
                        "partition_hash": digest(partition),
                        "key": key,
                        "partition_key": partition,
                        "value": value,
                        "version": version,
                        "updated_at_us": now,
                    }
                    for partition, key, value, version in (
                        ("", "watermark", '"2024-06-01"', 4),
                        ("2024-06-01", "rows", "10", 1),
                    )
                ]
                + [
                    {
                        "asset_id": 2,
                        "partition_hash": digest(""),
                        "key": "left",
                        "partition_key": "",
                        "value": "true",
                        "version": 1,
                        "updated_at_us": now,
                    }
                ],
            )
            events = [(1, 1, None, ["daily"]), (1, 2, "p1", []), (1, 3, "p1", ["daily"])]
            events.append((2, 1, None, ["daily", "legacy"]))
            conn.execute(
                schema.events.insert(),
                [
                    {
                        "asset_id": asset_id,
                        "id": event_id,
                        "timestamp_us": now + event_id,
                        "extra": json.dumps({"n": event_id}),
                        "partition_key": partition,
                        "source_task_id": "load",
                        "source_run_id": "run-1",
                        "aliases": json.dumps(aliases),
                    }
                    for asset_id, event_id, partition, aliases in events
                ],
            )
            conn.execute(
                schema.event_aliases.insert(),
                [
                    {
                        "asset_id": asset_id,
                        "event_id": event_id,
                        "alias_hash": digest(alias),
                        "alias": alias,
                    }
                    for asset_id, event_id, _, aliases in events
                    for alias in aliases
                ],
            )
            conn.execute(
                schema.cursors.insert(),
                [
                    {
                        "consumer_hash": digest("scheduler"),
                        "asset_hash": digest("orders"),
                        "consumer": "scheduler",
                        "asset": "orders",
                        "event_id": 2,
                    }
                ],
            )
    finally:
        engine.dispose()


def test_new_database_is_created_at_head(database_url: str) -> None:
    with SQLBackend(database_url) as backend:
        assert backend.schema_status() == {"current": None, "head": migrate.head_revision()}
        backend.register_asset("a", "s3://a")
        assert backend.schema_status() == {
            "current": migrate.head_revision(),
            "head": migrate.head_revision(),
        }


def test_migrated_schema_matches_the_code_schema(database_url: str) -> None:
    _migrate_to(database_url, "head")
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": schema.VERSION_TABLE, "compare_type": True}
            )
            differences = compare_metadata(context, schema.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_first_revision_upgrades_to_head_with_data_intact(database_url: str) -> None:
    _migrate_to(database_url, FIRST)
    _fill_at_first_revision(database_url)
    instance = assetry.Instance(backend="sql", url=database_url)
    try:
        with pytest.raises(SchemaVersionError, match=r"Instance\(\.\.\.\)\.upgrade\(\)"):
            instance.backend.get_asset("orders")
        instance.upgrade()
        backend = instance.backend
        assert backend.schema_status()["current"] == migrate.head_revision()

        orders, old = backend.get_asset("orders"), backend.get_asset_by_uri("s3://data/old")
        assert orders is not None and old is not None
        assert (orders.uri, orders.group, orders.extra, orders.active) == (
            "s3://data/orders",
            "sales",
            {"owner": "orders"},
            True,
        )
        assert (old.name, old.active) == ("old", False)
        entry = backend.store_get("orders", "watermark")
        assert entry is not None and (entry.value, entry.version) == ("2024-06-01", 4)
        assert backend.store_partitions("orders") == ["2024-06-01"]
        assert backend.store_keys("old") == ["left"]

        history = backend.query_events(EventQuery("orders"))
        assert [(e.id, e.extra, e.partition_key, e.aliases) for e in history] == [
            (1, {"n": 1}, None, ("daily",)),
            (2, {"n": 2}, "p1", ()),
            (3, {"n": 3}, "p1", ("daily",)),
        ]
        assert [e.id for e in backend.query_events(EventQuery("orders", alias="daily"))] == [1, 3]
        # The second revision's table was filled from the events already emitted.
        assert backend.alias_targets("daily") == ["old", "orders"]
        assert backend.alias_targets("legacy") == ["old"]
        assert backend.get_cursors("scheduler") == {"orders": 2}
        assert backend.latest_events()["orders"].id == 3

        assert [e.id for e in backend.append_events([NewEvent("orders")])] == [4]
        assert backend.store_set("orders", "watermark", '"2024-06-02"', expected_version=4) == 5
        assert backend.sweep() == 1
    finally:
        instance.close()


def test_older_database_is_upgraded_on_open_with_auto_upgrade(database_url: str) -> None:
    _migrate_to(database_url, FIRST)
    with SQLBackend(database_url, auto_upgrade=True) as backend:
        backend.register_asset("a", "s3://a")
        assert backend.schema_status()["current"] == migrate.head_revision()


def test_instance_upgrades_an_older_database_when_configured(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrate_to(database_url, FIRST)
    monkeypatch.setenv("ASSETRY_AUTO_UPGRADE", "true")
    with assetry.Instance(backend="sql", url=database_url) as instance:
        assert instance.backend.schema_status()["current"] == migrate.head_revision()
        instance.backend.register_asset("a", "s3://a")
        assert instance.backend.get_asset("a") is not None


def test_newer_database_is_refused_with_advice_to_upgrade_assetry(database_url: str) -> None:
    _migrate_to(database_url, "head")
    _set_revision(database_url, "9999_from_a_newer_assetry")
    with SQLBackend(database_url, auto_upgrade=True) as backend:
        for attempt in (lambda: backend.get_asset("a"), backend.upgrade):
            with pytest.raises(SchemaVersionError, match=r"newer.*upgrade assetry"):
                attempt()
        assert backend.schema_status()["current"] == "9999_from_a_newer_assetry"


def test_tables_created_outside_migrations_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = _engine(url)
    with engine.begin() as conn:
        schema.assets.create(conn)
    engine.dispose()
    with SQLBackend(url) as backend, pytest.raises(SchemaVersionError, match="no schema version"):
        backend.list_assets()


def test_processes_opening_a_new_database_at_once_create_it_once(database_url: str) -> None:
    backends = [SQLBackend(database_url) for _ in range(4)]
    start = threading.Barrier(len(backends))
    errors: list[BaseException] = []

    def open_(backend: SQLBackend, i: int) -> None:
        start.wait(timeout=30)
        try:
            backend.register_asset(f"a{i}", f"s3://a{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_, args=(b, i)) for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []
        assert [r.name for r in backends[0].list_assets()] == ["a0", "a1", "a2", "a3"]
        assert backends[0].schema_status()["current"] == migrate.head_revision()
    finally:
        for backend in backends:
            backend.close()


def test_migrations_ship_in_the_package_as_one_line_of_revisions() -> None:
    scripts = migrate._scripts()
    chain = [script.revision for script in scripts.walk_revisions("base", "heads")]
    assert chain[::-1][0] == FIRST
    assert chain[0] == migrate.head_revision()
    assert len(scripts.get_heads()) == 1
    assert Path(scripts.dir).joinpath("env.py").is_file()
