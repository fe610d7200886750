"""Names that differ only in case, accents, trailing spaces or emoji stay apart on every
SQL engine: listing, retention and copy see each of them (binary collations, revision 0003)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from assetry.backend import EventQuery, NewEvent
from assetry.backends.memory import MemoryBackend
from assetry.backends.sql import SQLBackend, migrate, schema
from assetry.backends.sql.engine import resolve_url
from assetry.cli_copy import copy_state
from assetry.retention import RetentionPolicy, prune_events

#: Each group holds names equal under a case-, accent- or pad-insensitive collation.
VARIANTS = [
    ["report", "Report", "REPORT"],
    ["resume", "résumé", "résume"],
    ["a", "a ", "a  "],
    ["🙂", "🙃", "😀"],
]
NAMES = [name for group in VARIANTS for name in group]


@pytest.fixture
def backend(database_url: str) -> Iterator[SQLBackend]:
    with SQLBackend(database_url) as opened:
        yield opened


def _register_all(backend: SQLBackend) -> None:
    for i, name in enumerate(NAMES):
        backend.register_asset(name, f"s3://data/{i}", group=name)


def test_assets_differing_only_in_case_accents_spaces_or_emoji_are_distinct(
    backend: SQLBackend,
) -> None:
    _register_all(backend)
    assert [r.name for r in backend.list_assets()] == sorted(NAMES)
    for i, name in enumerate(NAMES):
        record = backend.get_asset(name)
        assert record is not None and (record.name, record.group) == (name, name)
        assert record.uri == f"s3://data/{i}"


def test_store_keys_and_partitions_differing_only_in_case_are_distinct(
    backend: SQLBackend,
) -> None:
    backend.register_asset("orders", "s3://data/orders")
    for i, name in enumerate(NAMES):
        backend.store_set("orders", name, str(i))
        backend.store_set("orders", "k", str(i), partition=name)
    assert backend.store_keys("orders") == sorted(NAMES)
    assert backend.store_partitions("orders") == sorted(NAMES)
    for i, name in enumerate(NAMES):
        entry = backend.store_get("orders", name)
        assert entry is not None and entry.value_json == str(i)


def test_aliases_differing_only_in_case_keep_their_own_targets(backend: SQLBackend) -> None:
    _register_all(backend)
    backend.append_events([NewEvent(name, aliases=(name,)) for name in NAMES])
    for name in NAMES:
        assert backend.alias_targets(name) == [name]
        assert [e.asset_name for e in backend.query_events(EventQuery(name, alias=name))] == [name]


def test_consumers_differing_only_in_case_are_each_listed_with_their_cursors(
    backend: SQLBackend,
) -> None:
    backend.register_asset("orders", "s3://data/orders")
    for i, consumer in enumerate(NAMES, start=1):
        backend.set_cursors(consumer, {"orders": i})
    assert backend.list_consumers() == sorted(NAMES)
    for i, consumer in enumerate(NAMES, start=1):
        assert backend.get_cursors(consumer) == {"orders": i}


def test_prune_keeps_events_a_case_variant_consumer_has_not_read(backend: SQLBackend) -> None:
    backend.register_asset("orders", "s3://data/orders")
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    backend.append_events([NewEvent("orders", timestamp=old) for _ in range(10)])
    backend.set_cursors("report", {"orders": 10})  # has read everything
    backend.set_cursors("Report", {"orders": 3})  # has read only the first three
    results = prune_events(backend, RetentionPolicy(keep_last=1))
    assert [(r.deleted, r.kept_for_consumers) for r in results] == [(3, 6)]
    assert [e.id for e in backend.query_events(EventQuery("orders"))] == list(range(4, 11))


def test_copy_keeps_the_cursor_of_every_case_variant_consumer(backend: SQLBackend) -> None:
    backend.register_asset("orders", "s3://data/orders")
    backend.append_events([NewEvent("orders") for _ in range(len(NAMES))])
    for i, consumer in enumerate(NAMES, start=1):
        backend.set_cursors(consumer, {"orders": i})
    copy = MemoryBackend()
    report = copy_state(backend, copy)
    assert report.problems == []
    assert copy.list_consumers() == sorted(NAMES)
    for i, consumer in enumerate(NAMES, start=1):
        assert copy.get_cursors(consumer) == {"orders": i}


def test_upgrade_separates_names_a_legacy_collation_merged(database_url: str) -> None:
    """A database at revision 0002 (default collations) with case-variant consumers: after
    the upgrade every consumer is listed, and every name column compares code points."""
    engine = sa.create_engine(
        resolve_url(database_url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            migrate.upgrade(conn, "0002")
            conn.execute(
                schema.cursors.insert(),
                [
                    {
                        "consumer_hash": schema.digest(name),
                        "asset_hash": schema.digest("orders"),
                        "consumer": name,
                        "asset": "orders",
                        "event_id": i,
                    }
                    for i, name in enumerate(NAMES, start=1)
                ],
            )
            migrate.upgrade(conn)
            assert migrate.current_revision(conn) == migrate.head_revision()
            collations = _name_collations(conn)
    finally:
        engine.dispose()
    family = resolve_url(database_url).get_backend_name()
    if family == "postgresql":
        assert set(collations.values()) == {"C"}
    elif family in ("mysql", "mariadb"):
        assert all(c is not None and c.endswith("_bin") for c in collations.values())
    with SQLBackend(database_url) as backend:
        assert backend.list_consumers() == sorted(NAMES)
        assert backend.get_cursors("Report") == {"orders": NAMES.index("Report") + 1}


def _name_collations(conn: sa.Connection) -> dict[tuple[str, str], str | None]:
    """The collation of every name column, as the server reports it (empty on SQLite)."""
    family = conn.dialect.name
    wanted = {
        (table.name, column.name)
        for table in schema.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, schema.NameText)
    }
    if family == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        )
    elif family in ("mysql", "mariadb"):
        rows = conn.exec_driver_sql(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE()"
        )
    else:
        return {}
    found = {(t, c): coll for t, c, coll in rows if (t, c) in wanted}
    assert set(found) == wanted
    return found
