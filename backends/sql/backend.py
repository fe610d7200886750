"""The ``sql`` backend: assetry's state in SQLite, PostgreSQL or MySQL/MariaDB.

One implementation on SQLAlchemy 2 Core for the three databases. Store writes are single
dialect-native upserts guarded by the asset's row (an inactive or unknown asset matches
nothing, and only then is the reason looked up); compare-and-set compares the row version.
Event ids are per-asset sequence numbers taken from the asset row under its lock in the
same transaction as the inserted events, so the events of one asset become visible in id
order: a consumer reading "after id N" never misses an event committed later with a
smaller id. The schema is versioned by the Alembic migrations shipped in the package.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from assetry.backend import (
    ANY_VERSION,
    AssetRecord,
    Capabilities,
    EventQuery,
    NewEvent,
    StateBackend,
    StoreEntry,
    StoreWrite,
    conflict_for_registration,
    inactive_error,
    not_found_error,
    version_conflict,
)
from assetry.config import DEFAULT_STATE_PATH
from assetry.errors import ConfigurationError, ConflictError, SchemaVersionError
from assetry.models import AssetEvent
from assetry.retry import Backoff, retry_call
from assetry.values import canonical_json

from . import migrate, schema
from .engine import Database, Held
from .schema import ASSET_LEVEL, VERSION_TABLE, digest
from .statements import Sql, Statements, statements_for

__all__ = ["SQLBackend"]

ASSETS = schema.assets
STORE = schema.store
EVENTS = schema.events
EVENT_ALIASES = schema.event_aliases
ALIAS_TARGETS = schema.alias_targets
CURSORS = schema.cursors

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_ASSET_LEVEL_HASH = digest(ASSET_LEVEL)
_CHUNK = 500  # names or ids per IN (...) list
_REGISTER_BACKOFF = Backoff(base=0.001, cap=0.02, max_attempts=5)


def _now_us() -> int:
    return time.time_ns() // 1000


def _to_us(moment: dt.datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"an event timestamp must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _slot(partition: str | None) -> bytes:
    """The indexed form of a store namespace: the digest of its partition key (or of ``''``
    for asset-level entries)."""
    return digest(partition) if partition else _ASSET_LEVEL_HASH


def _on_cursor(work: Callable[[Any], Any]) -> Callable[[Held], Any]:
    """``work(cursor)`` as work for :meth:`Database.run`, on a cursor closed afterwards."""

    def run(held: Held) -> Any:
        cursor = held.raw.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    return run


def _core_rowcount(statement: sa.Executable, held: Held) -> int:
    return int(held.conn.execute(statement).rowcount)


def _fetchone(sql: Sql, params: Mapping[str, Any], held: Held) -> Any:
    cursor = held.raw.cursor()
    try:
        cursor.execute(sql.text, sql.args(params))
        return cursor.fetchone()
    finally:
        cursor.close()


def _rowcount(sql: Sql, params: Mapping[str, Any], held: Held) -> int:
    cursor = held.raw.cursor()
    try:
        cursor.execute(sql.text, sql.args(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


class SQLBackend(StateBackend):
    """State in a SQL database through SQLAlchemy 2 Core.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/state.db`` (WAL, busy timeout; the
    parent folder is created), ``sqlite:///:memory:``, ``postgresql://user@host/db``
    (psycopg 3) or ``mysql://user@host/db`` / ``mariadb://...`` (PyMySQL). Without a URL it
    is SQLite in ``.assetry/state.db`` under the working directory. A URL without a
    password takes the login and password of the named connection (``conn_id``, by default
    ``postgres_default`` / ``mysql_default``) when one is configured.

    A new, empty database is created at the current schema; an older one raises
    :class:`SchemaVersionError` until :meth:`upgrade` runs (or ``auto_upgrade=True``), a
    newer one always does. Options: ``busy_timeout`` (SQLite, seconds), ``pool_size``,
    ``max_overflow``, ``connect_timeout``, ``retry_timeout`` (how long a lost server is
    waited for), ``echo``.
    """

    name = "sql"
    url_schemes = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
    capabilities = Capabilities(
        persistent=True,
        multi_process=True,
        atomic_batches=True,
        event_import=True,
        event_deletion=True,
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        conn_id: str | None = None,
        auto_upgrade: bool = False,
        busy_timeout: float = 30.0,
        pool_size: int = 5,
        max_overflow: int = 20,
        connect_timeout: float = 10.0,
        retry_timeout: float = 10.0,
        echo: bool = False,
    ) -> None:
        if url is None:
            url = f"sqlite:///{Path.cwd() / DEFAULT_STATE_PATH}"
        if not isinstance(url, str) or not url:
            raise ConfigurationError("the sql backend needs a database URL string")
        for option, value in (
            ("busy_timeout", busy_timeout),
            ("connect_timeout", connect_timeout),
            ("retry_timeout", retry_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{option} must be a number of seconds, got {value!r}")
        for option, count in (("pool_size", pool_size), ("max_overflow", max_overflow)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigurationError(f"{option} must be a whole number, got {count!r}")
        self._db = Database(
            url,
            conn_id=conn_id,
            busy_timeout=float(busy_timeout),
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_timeout=float(connect_timeout),
            retry_timeout=float(retry_timeout),
            echo=bool(echo),
        )
        #: The database URL with any password masked.
        self.url = self._db.masked_url
        self.auto_upgrade = bool(auto_upgrade)
        if self._db.memory:
            self.capabilities = Capabilities(
                persistent=False,
                multi_process=False,
                atomic_batches=True,
                event_import=True,
                event_deletion=True,
            )
        self._sql: Statements | None = None
        self._schema_lock = threading.Lock()
        self._upsert_cursors: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    def describe(self) -> str:
        return f"SQLBackend({self.url})"

    def close(self) -> None:
        self._db.close()

    @property
    def dialect_name(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included)."""
        return self._db.family

    def _ready(self) -> Statements:
        """The compiled statements, once the schema is known to be at head."""
        sql = self._sql
        return sql if sql is not None else self._check_schema()

    def _check_schema(self) -> Statements:
        with self._schema_lock:
            if self._sql is not None:
                return self._sql
            current = self._db.run(lambda held: migrate.current_revision(held.conn))
            if current != migrate.head_revision():
                self._db.run(lambda held: self._settle_schema(held.conn, self.auto_upgrade))
            self._sql = statements_for(self._db.dialect)
            return self._sql

    def upgrade(self) -> None:
        """Create the schema, or migrate it to this version of assetry."""
        with self._schema_lock:
            self._db.run(lambda held: self._settle_schema(held.conn, upgrade_older=True))
            self._sql = statements_for(self._db.dialect)

    def _settle_schema(self, conn: sa.Connection, upgrade_older: bool) -> None:
        """Under the migration lock (another process may be migrating right now): create a
        new database, upgrade an older one if allowed, refuse anything else."""
        head = migrate.head_revision()
        with migrate.migration_lock(conn):
            current = migrate.current_revision(conn)
            if current == head:
                return
            if current is None and migrate.has_assetry_tables(conn):
                raise SchemaVersionError(
                    f"the state database {self.url} has assetry tables but no schema "
                    f"version ({VERSION_TABLE}); it was not created by assetry's "
                    "migrations: point assetry at another database or schema"
                )
            if current is not None and not migrate.is_known_revision(current):
                raise SchemaVersionError(
                    f"the state database {self.url} is at schema revision {current}, newer "
                    f"than this assetry knows (its newest is {head}): upgrade assetry "
                    "(pip install -U assetry)"
                )
            if current is not None and not upgrade_older:
                raise SchemaVersionError(
                    f"the state database {self.url} is at schema revision {current}, "
                    f"older than this assetry's {head}: run Instance(...).upgrade() or "
                    "`assetry db upgrade` (or set auto_upgrade = true)"
                )
            migrate.run_migrations(conn)

    def schema_status(self) -> dict[str, str | None]:
        current = self._db.run(lambda held: migrate.current_revision(held.conn))
        return {"current": current, "head": migrate.head_revision()}

    # -- helpers ----------------------------------------------------------------------------

    def _read(self, statement: sa.Executable) -> list[Any]:
        """Rows of a Core query (retried on a lost connection)."""
        self._ready()
        return self._db.run(lambda held: list(held.conn.execute(statement)))

    def _write(self, statement: sa.Executable) -> int:
        """Run one Core write statement in autocommit; return its row count."""
        self._ready()
        return self._db.run(lambda held: held.conn.execute(statement).rowcount, repeatable=False)

    def _asset_state(self, asset: str, cursor: Any = None) -> bool | None:
        """Whether the asset is active; ``None`` when it is not registered."""
        sql = self._ready()
        params = {"name_hash": digest(asset)}
        if cursor is not None:
            row = sql.asset_active.run(cursor, params).fetchone()
        else:
            row = self._db.run(lambda held: _fetchone(sql.asset_active, params, held))
        return None if row is None else bool(row[0])

    def _unwritable(self, asset: str, cursor: Any = None) -> Exception:
        """The error for a write that matched no active asset row."""
        if self._asset_state(asset, cursor) is None:
            return not_found_error(asset)
        return inactive_error(asset)

    def _require_writable(self, asset: str, cursor: Any = None) -> None:
        state = self._asset_state(asset, cursor)
        if state is None:
            raise not_found_error(asset)
        if not state:
            raise inactive_error(asset)

    @staticmethod
    def _record(row: Any) -> AssetRecord:
        return AssetRecord(
            name=row.name,
            uri=row.uri,
            group=row.asset_group,
            extra=json.loads(row.extra),
            active=bool(row.active),
            created_at=_from_us(row.created_at_us),
            updated_at=_from_us(row.updated_at_us),
        )

    # -- asset registry -------------------------------------------------------------------------

    def register_asset(
        self, name: str, uri: str, *, group: str = "asset", extra_json: str = "{}"
    ) -> AssetRecord:
        self._ready()
        name_hash, uri_hash = digest(name), digest(uri)
        extra = json.loads(extra_json)

        def register(held: Held, _cursor: Any) -> AssetRecord:
            conn = held.conn
            rows = conn.execute(
                sa.select(ASSETS).where(
                    sa.or_(ASSETS.c.name_hash == name_hash, ASSETS.c.uri_hash == uri_hash)
                )
            ).all()
            same_name = next((r for r in rows if r.name == name), None)
            if same_name is not None and same_name.uri != uri:
                raise conflict_for_registration(name, uri, self._record(same_name))
            same_uri = next((r for r in rows if r.uri == uri and r.name != name), None)
            if same_uri is not None:
                raise conflict_for_registration(name, uri, self._record(same_uri))
            now = _now_us()
            values = {"active": True, "asset_group": group, "extra": extra_json}
            if same_name is not None:
                conn.execute(
                    sa.update(ASSETS)
                    .where(ASSETS.c.id == same_name.id)
                    .values(**values, updated_at_us=now)
                )
                created = same_name.created_at_us
            else:
                conn.execute(
                    sa.insert(ASSETS).values(
                        **values,
                        name=name,
                        name_hash=name_hash,
                        uri=uri,
                        uri_hash=uri_hash,
                        last_event_id=0,
                        created_at_us=now,
                        updated_at_us=now,
                    )
                )
                created = now
            return AssetRecord(name, uri, group, extra, True, _from_us(created), _from_us(now))

        try:
            # Registered concurrently by another writer: read it again and decide.
            return retry_call(
                lambda: self._db.transaction(register),
                retry_on=sa.exc.IntegrityError,
                backoff=_REGISTER_BACKOFF,
            )
        except sa.exc.IntegrityError:
            raise ConflictError(
                f"asset {name!r} ({uri!r}) was being registered concurrently and "
                "did not settle; try again"
            ) from None

    def deactivate_asset(self, name: str) -> bool:
        changed = self._write(
            sa.update(ASSETS)
            .where(ASSETS.c.name_hash == digest(name), ASSETS.c.active)
            .values(active=False, updated_at_us=_now_us())
        )
        return changed > 0

    def get_asset(self, name: str) -> AssetRecord | None:
        rows = self._read(sa.select(ASSETS).where(ASSETS.c.name_hash == digest(name)))
        return self._record(rows[0]) if rows else None

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        rows = self._read(sa.select(ASSETS).where(ASSETS.c.uri_hash == digest(uri)))
        return self._record(rows[0]) if rows else None

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        query = sa.select(ASSETS)
        if active is not None:
            query = query.where(ASSETS.c.active == active)
        return sorted((self._record(r) for r in self._read(query)), key=lambda r: r.name)

    # -- asset store ----------------------------------------------------------------------------

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        sql = self._sql or self._ready()
        params = {
            "name_hash": digest(asset),
            "partition_hash": _slot(partition),
            "key": key,
        }
        row = self._db.run(lambda held: _fetchone(sql.store_get, params, held))
        if row is None:
            return None
        return StoreEntry(key, row[0], row[1], partition, _from_us(row[2]))

    def _entry_params(
        self, asset: str, key: str, value_json: str, partition: str | None
    ) -> dict[str, Any]:
        return {
            "name_hash": digest(asset),
            "partition_hash": _slot(partition),
            "partition_key": partition or ASSET_LEVEL,
            "key": key,
            "value": value_json,
            "now": _now_us(),
        }

    def _upsert(self, sql: Statements, cursor: Any, params: Mapping[str, Any]) -> int | None:
        """Write an entry unconditionally; its new version, or ``None`` when the asset is
        not active (nothing was written)."""
        sql.store_upsert.run(cursor, params)
        if sql.returning:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        affected = cursor.rowcount
        if affected == 1:  # inserted
            return 1
        if affected == 2:  # updated; LAST_INSERT_ID(version + 1) is the new version
            return int(cursor.lastrowid)
        return None

    def _create(self, sql: Statements, cursor: Any, params: Mapping[str, Any]) -> bool:
        """Create an entry that must not exist yet; whether it was created."""
        if sql.returning:
            return sql.store_create.run(cursor, params).fetchone() is not None
        try:
            sql.store_create.run(cursor, params)
        except self._db.dialect.loaded_dbapi.IntegrityError as exc:
            if exc.args and exc.args[0] == 1062:  # duplicate key: it exists
                return False
            raise
        return bool(cursor.rowcount == 1)

    def _entry_state(
        self, asset: str, key: str, partition: str | None
    ) -> tuple[bool | None, int | None]:
        """Whether the asset is active (``None``: not registered) and the entry's version."""
        sql = self._ready()
        params = {
            "name_hash": digest(asset),
            "partition_hash": _slot(partition),
            "key": key,
        }
        row = self._db.run(lambda held: _fetchone(sql.store_why, params, held))
        if row is None:
            return None, None
        return bool(row[0]), None if row[1] is None else int(row[1])

    def _lost_race(self, asset: str, key: str, partition: str | None, expected: Any) -> Exception:
        """The error for a conditional write that matched nothing: the asset's state, or a
        version conflict naming the entry's actual version."""
        active, version = self._entry_state(asset, key, partition)
        if active is None:
            return not_found_error(asset)
        if not active:
            return inactive_error(asset)
        return version_conflict(asset, key, expected, version)

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> int:
        sql = self._sql or self._ready()
        params = self._entry_params(asset, key, value_json, partition)
        if expected_version is ANY_VERSION:
            version = self._db.run(
                _on_cursor(lambda c: self._upsert(sql, c, params)), repeatable=False
            )
            if version is None:
                raise self._unwritable(asset)
            return version
        if expected_version is None:
            if self._db.run(_on_cursor(lambda c: self._create(sql, c, params)), repeatable=False):
                return 1
            raise self._lost_race(asset, key, partition, None)
        params["expected"] = expected_version
        if self._db.run(
            lambda held: _rowcount(sql.store_update_if, params, held), repeatable=False
        ):
            return int(expected_version) + 1
        raise self._lost_race(asset, key, partition, expected_version)

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> bool:
        sql = self._sql or self._ready()
        params: dict[str, Any] = {
            "name_hash": digest(asset),
            "partition_hash": _slot(partition),
            "key": key,
        }
        if expected_version is ANY_VERSION:
            if self._db.run(
                lambda held: _rowcount(sql.store_delete, params, held), repeatable=False
            ):
                return True
            self._require_writable(asset)
            return False
        if expected_version is None:  # delete only if absent: nothing to delete, or a conflict
            active, version = self._entry_state(asset, key, partition)
            if active is None:
                raise not_found_error(asset)
            if not active:
                raise inactive_error(asset)
            if version is not None:
                raise version_conflict(asset, key, None, version)
            return False
        params["expected"] = expected_version
        if self._db.run(
            lambda held: _rowcount(sql.store_delete_if, params, held), repeatable=False
        ):
            return True
        raise self._lost_race(asset, key, partition, expected_version)

    def _entries_of(self, asset: str, partition: str | None) -> Any:
        return sa.and_(
            STORE.c.asset_id
            == sa.select(ASSETS.c.id).where(ASSETS.c.name_hash == digest(asset)).scalar_subquery(),
            STORE.c.partition_hash == _slot(partition),
        )

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        active_id = (
            sa.select(ASSETS.c.id)
            .where(ASSETS.c.name_hash == digest(asset), ASSETS.c.active)
            .scalar_subquery()
        )
        doomed = sa.delete(STORE).where(STORE.c.asset_id == active_id)
        if not all_partitions:
            doomed = doomed.where(STORE.c.partition_hash == _slot(partition))
        removed = self._write(doomed)
        if removed == 0:
            self._require_writable(asset)
        return removed

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        rows = self._read(
            sa.select(STORE.c.key, STORE.c.value, STORE.c.version, STORE.c.updated_at_us).where(
                self._entries_of(asset, partition)
            )
        )
        return [
            StoreEntry(r.key, r.value, int(r.version), partition, _from_us(r.updated_at_us))
            for r in sorted(rows, key=lambda r: r.key)
        ]

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        rows = self._read(sa.select(STORE.c.key).where(self._entries_of(asset, partition)))
        return sorted(r.key for r in rows)

    def store_partitions(self, asset: str) -> list[str]:
        asset_id = (
            sa.select(ASSETS.c.id).where(ASSETS.c.name_hash == digest(asset)).scalar_subquery()
        )
        rows = self._read(
            sa.select(STORE.c.partition_key)
            .where(STORE.c.asset_id == asset_id, STORE.c.partition_hash != _ASSET_LEVEL_HASH)
            .distinct()
        )
        return sorted(r.partition_key for r in rows)

    # -- event log ------------------------------------------------------------------------------

    def _take_ids(
        self, sql: Statements, cursor: Any, counts: Mapping[str, int]
    ) -> dict[str, tuple[int, str, int]]:
        """Reserve ``counts[asset]`` ids per asset under the asset rows' locks (taken in name
        order, so concurrent batches cannot deadlock); ``asset -> (row id, uri, first id)``."""
        taken: dict[str, tuple[int, str, int]] = {}
        for name in sorted(counts):
            count = counts[name]
            params = {"name_hash": digest(name), "count": count}
            if sql.returning:
                row = sql.take_ids.run(cursor, params).fetchone()
                if row is None:
                    raise self._unwritable(name, cursor)
                asset_id, uri, last = row
            else:
                row = sql.lock_asset.run(cursor, params).fetchone()
                if row is None:
                    raise self._unwritable(name, cursor)
                asset_id, uri, last = row[0], row[1], row[2] + count
                sql.set_last_id.run(cursor, {"asset_id": asset_id, "last_event_id": last})
            taken[name] = (int(asset_id), uri, int(last) - count + 1)
        return taken

    @staticmethod
    def _counts(new: Sequence[NewEvent]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in new:
            counts[event.asset] = counts.get(event.asset, 0) + 1
        return counts

    def _insert_events(
        self,
        sql: Statements,
        cursor: Any,
        new: Sequence[NewEvent],
        taken: dict[str, tuple[int, str, int]] | None = None,
    ) -> list[AssetEvent]:
        """Insert ``new`` with ids taken from their assets (or already ``taken``)."""
        if taken is None:
            taken = self._take_ids(sql, cursor, self._counts(new))
        now = _now_us()
        now_moment = _from_us(now)
        next_id = {name: first for name, (_, _, first) in taken.items()}
        rows: list[dict[str, Any]] = []
        alias_rows: list[dict[str, Any]] = []
        targets: dict[tuple[bytes, int], dict[str, Any]] = {}
        out: list[AssetEvent] = []
        for event in new:
            asset_id, uri, _ = taken[event.asset]
            event_id = next_id[event.asset]
            next_id[event.asset] = event_id + 1
            if event.timestamp is None:
                stamp, moment = now, now_moment
            else:
                stamp = _to_us(event.timestamp)
                moment = _from_us(stamp)
            rows.append(
                {
                    "asset_id": asset_id,
                    "id": event_id,
                    "timestamp_us": stamp,
                    "extra": event.extra_json,
                    "partition_key": event.partition_key,
                    "source_task_id": event.source_task_id,
                    "source_run_id": event.source_run_id,
                    "aliases": canonical_json(list(event.aliases)) if event.aliases else "[]",
                }
            )
            for alias in dict.fromkeys(event.aliases):
                alias_hash = digest(alias)
                alias_rows.append(
                    {"asset_id": asset_id, "event_id": event_id, "alias_hash": alias_hash}
                    | {"alias": alias}
                )
                targets[(alias_hash, asset_id)] = {
                    "alias_hash": alias_hash,
                    "asset_id": asset_id,
                    "alias": alias,
                }
            out.append(
                AssetEvent(
                    id=event_id,
                    asset_name=event.asset,
                    asset_uri=uri,
                    timestamp=moment,
                    extra={} if event.extra_json == "{}" else json.loads(event.extra_json),
                    partition_key=event.partition_key,
                    source_task_id=event.source_task_id,
                    source_run_id=event.source_run_id,
                    aliases=tuple(event.aliases),
                )
            )
        sql.insert_event.run_many(cursor, rows)
        if alias_rows:
            sql.insert_event_alias.run_many(cursor, alias_rows)
            sql.add_alias_target.run_many(cursor, list(targets.values()))
        return out

    def append_events(self, events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not events:
            return []
        sql = self._sql or self._ready()
        return self._db.transaction(lambda _held, cursor: self._insert_events(sql, cursor, events))

    #: The columns of an event row, in the order :meth:`_event` reads them; every event
    #: query adds the asset's URI after them.
    _EVENT_COLUMNS = (
        EVENTS.c.id,
        EVENTS.c.timestamp_us,
        EVENTS.c.extra,
        EVENTS.c.partition_key,
        EVENTS.c.source_task_id,
        EVENTS.c.source_run_id,
        EVENTS.c.aliases,
    )

    @staticmethod
    def _event(row: Any, name: str) -> AssetEvent:
        """An event from a row of ``_EVENT_COLUMNS`` and the asset URI (read by position:
        much cheaper than by name for pages of many rows)."""
        aliases = row[6]
        return AssetEvent(
            id=int(row[0]),
            asset_name=name,
            asset_uri=row[7],
            timestamp=_from_us(row[1]),
            extra=json.loads(row[2]),
            partition_key=row[3],
            source_task_id=row[4],
            source_run_id=row[5],
            aliases=() if aliases == "[]" else tuple(json.loads(aliases)),
        )

    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        return [self._event(row, query.asset) for row in self._read(self.events_query(query))]

    def events_query(self, query: EventQuery) -> sa.Select[Any]:
        """The SELECT behind :meth:`query_events` (its rows carry the asset's URI)."""
        e, a = EVENTS, ASSETS
        statement = (
            sa.select(*self._EVENT_COLUMNS, a.c.uri)
            .select_from(e.join(a, a.c.id == e.c.asset_id))
            .where(a.c.name_hash == digest(query.asset))
        )
        if query.alias is not None:
            ea = EVENT_ALIASES
            statement = statement.join(
                ea,
                sa.and_(
                    ea.c.asset_id == e.c.asset_id,
                    ea.c.event_id == e.c.id,
                    ea.c.alias_hash == digest(query.alias),
                ),
            )
        if query.after is not None:
            statement = statement.where(e.c.id > query.after)
        if query.before is not None:
            statement = statement.where(e.c.id < query.before)
        if query.since is not None:
            statement = statement.where(e.c.timestamp_us >= _to_us(query.since))
        if query.until is not None:
            statement = statement.where(e.c.timestamp_us < _to_us(query.until))
        if query.partition_key is not None:
            statement = statement.where(e.c.partition_key == query.partition_key)
        statement = statement.order_by(e.c.id.desc() if query.descending else e.c.id)
        if query.limit is not None:
            statement = statement.limit(query.limit)
        return statement

    def latest_events(self, assets: Sequence[str] | None = None) -> dict[str, AssetEvent]:
        a, e = ASSETS, EVENTS
        if assets is not None and not assets:
            return {}
        base = self._latest_events_query  # built once: it has no parameters
        if assets is None:
            rows = self._read(base)
        else:
            hashes = sorted({digest(name) for name in assets})
            rows = [
                r
                for chunk in _chunks(hashes)
                for r in self._read(base.where(a.c.name_hash.in_(chunk)))
            ]
        latest: dict[str, AssetEvent] = {}
        for row in rows:
            name = row[9]
            if row[0] is not None:
                latest[name] = self._event(row, name)
                continue
            if self._db.family == "postgresql":
                continue  # its query already stepped back: no event remains
            # That event was deleted: the newest remaining one, if any.
            newest = self._read(
                sa.select(*self._EVENT_COLUMNS, sa.literal(row[7]).label("uri"))
                .where(e.c.asset_id == row[8])
                .order_by(e.c.id.desc())
                .limit(1)
            )
            if newest:
                latest[name] = self._event(newest[0], name)
        return latest

    @functools.cached_property
    def _latest_events_query(self) -> sa.Select[Any]:
        return self.latest_events_query()

    def latest_events_query(self) -> sa.Select[Any]:
        """The SELECT behind :meth:`latest_events`: for each asset with events, the newest
        one, found from the asset's last id by primary key. On PostgreSQL a LATERAL
        ``ORDER BY id DESC LIMIT 1`` keeps that a per-asset index lookup whatever the
        planner's statistics say (and steps back over a deleted last event)."""
        a, e = ASSETS, EVENTS
        if self._db.family == "postgresql":
            newest = (
                sa.select(*self._EVENT_COLUMNS)
                .where(e.c.asset_id == a.c.id, e.c.id <= a.c.last_event_id)
                .order_by(e.c.id.desc())
                .limit(1)
                .lateral("newest")
            )
            return (
                sa.select(*newest.c, a.c.uri, a.c.id.label("asset_id"), a.c.name)
                .select_from(a.outerjoin(newest, sa.true()))
                .where(a.c.last_event_id > 0)
            )
        return (
            sa.select(*self._EVENT_COLUMNS, a.c.uri, a.c.id.label("asset_id"), a.c.name)
            .select_from(
                a.outerjoin(e, sa.and_(e.c.asset_id == a.c.id, e.c.id == a.c.last_event_id))
            )
            .where(a.c.last_event_id > 0)
        )

    def latest_partition_events(self, asset: str) -> dict[str, AssetEvent]:
        a, e = ASSETS, EVENTS
        found = self._read(sa.select(a.c.id, a.c.uri).where(a.c.name_hash == digest(asset)))
        if not found:
            return {}
        asset_id, uri = found[0]
        newest = (
            sa.select(e.c.partition_key, sa.func.max(e.c.id).label("newest_id"))
            .where(e.c.asset_id == asset_id, e.c.partition_key.is_not(None))
            .group_by(e.c.partition_key)
            .subquery()
        )
        rows = self._read(
            sa.select(*self._EVENT_COLUMNS, sa.literal(uri).label("uri")).select_from(
                e.join(newest, sa.and_(e.c.asset_id == asset_id, e.c.id == newest.c.newest_id))
            )
        )
        return {row[3]: self._event(row, asset) for row in rows}

    def alias_targets(self, alias: str) -> list[str]:
        t, a = ALIAS_TARGETS, ASSETS
        rows = self._read(
            sa.select(a.c.name)
            .select_from(t.join(a, a.c.id == t.c.asset_id))
            .where(t.c.alias_hash == digest(alias))
        )
        return sorted(r.name for r in rows)

    def import_events(self, events: Sequence[AssetEvent]) -> int:
        if not events:
            return 0
        self._ready()
        groups: dict[str, list[AssetEvent]] = {}
        for event in events:
            groups.setdefault(event.asset_name, []).append(event)

        def work(held: Held, _cursor: Any) -> int:
            conn = held.conn
            a, e = ASSETS, EVENTS
            rows: list[dict[str, Any]] = []
            alias_rows: list[dict[str, Any]] = []
            targets: dict[tuple[bytes, int], dict[str, Any]] = {}
            for name in sorted(groups):
                found = conn.execute(
                    sa.select(a.c.id, a.c.last_event_id)
                    .where(a.c.name_hash == digest(name))
                    .with_for_update()
                ).first()
                if found is None:
                    raise not_found_error(name)
                asset_id, floor = int(found.id), int(found.last_event_id)
                for event in groups[name]:
                    if event.id <= floor:
                        raise ValueError(
                            f"cannot import event {event.id} of asset {name!r}: ids must be "
                            f"ascending and greater than the last id {floor}"
                        )
                    floor = event.id
                    rows.append(
                        {
                            "asset_id": asset_id,
                            "id": event.id,
                            "timestamp_us": _to_us(event.timestamp),
                            "extra": canonical_json(event.extra),
                            "partition_key": event.partition_key,
                            "source_task_id": event.source_task_id,
                            "source_run_id": event.source_run_id,
                            "aliases": canonical_json(list(event.aliases)),
                        }
                    )
                    for alias in dict.fromkeys(event.aliases):
                        alias_hash = digest(alias)
                        alias_rows.append(
                            {
                                "asset_id": asset_id,
                                "event_id": event.id,
                                "alias_hash": alias_hash,
                                "alias": alias,
                            }
                        )
                        targets[(alias_hash, asset_id)] = {
                            "alias_hash": alias_hash,
                            "asset_id": asset_id,
                            "alias": alias,
                        }
                conn.execute(sa.update(a).where(a.c.id == asset_id).values(last_event_id=floor))
            conn.execute(sa.insert(e), rows)
            if alias_rows:
                conn.execute(sa.insert(EVENT_ALIASES), alias_rows)
                conn.execute(self._targets_upsert(), list(targets.values()))
            return len(rows)

        return self._db.transaction(work)

    def _targets_upsert(self) -> Any:
        return self._ready().upsert(ALIAS_TARGETS, ["alias_hash", "asset_id"])

    def delete_events(self, asset: str, ids: Sequence[int]) -> int:
        doomed = sorted({int(i) for i in ids})
        if not doomed:
            return 0
        self._ready()

        def work(held: Held, _cursor: Any) -> int:
            conn = held.conn
            asset_id = conn.execute(
                sa.select(ASSETS.c.id).where(ASSETS.c.name_hash == digest(asset))
            ).scalar()
            if asset_id is None:
                return 0
            removed = 0
            for chunk in _chunks(doomed):
                removed += conn.execute(
                    sa.delete(EVENTS).where(EVENTS.c.asset_id == asset_id, EVENTS.c.id.in_(chunk))
                ).rowcount
                conn.execute(
                    sa.delete(EVENT_ALIASES).where(
                        EVENT_ALIASES.c.asset_id == asset_id, EVENT_ALIASES.c.event_id.in_(chunk)
                    )
                )
            return removed

        return self._db.transaction(work)

    # -- consumer cursors -----------------------------------------------------------------------

    def get_cursors(self, consumer: str) -> dict[str, int]:
        rows = self._read(
            sa.select(CURSORS.c.asset, CURSORS.c.event_id).where(
                CURSORS.c.consumer_hash == digest(consumer)
            )
        )
        return {r.asset: int(r.event_id) for r in rows}

    def set_cursors(self, consumer: str, cursors_: Mapping[str, int]) -> None:
        if not cursors_:
            return
        sql = self._ready()
        consumer_hash = digest(consumer)
        rows = [
            {
                "consumer_hash": consumer_hash,
                "asset_hash": digest(asset),
                "consumer": consumer,
                "asset": asset,
                "event_id": int(event_id),
            }
            for asset, event_id in sorted(cursors_.items())
        ]
        upsert = sql.upsert(CURSORS, ["consumer_hash", "asset_hash"])
        self._db.transaction(lambda held, _cursor: held.conn.execute(upsert, rows))

    def list_consumers(self) -> list[str]:
        rows = self._read(sa.select(CURSORS.c.consumer).distinct())
        return sorted(r.consumer for r in rows)

    # -- maintenance ----------------------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        inactive = [r.id for r in self._read(sa.select(ASSETS.c.id).where(~ASSETS.c.active))]
        removed = 0
        for asset_id in inactive:
            batch = self._sweep_batch(asset_id, batch_size)
            while True:  # each batch commits on its own: no long transaction, no big lock
                count = self._db.run(functools.partial(_core_rowcount, batch))
                removed += count
                if count < batch_size:
                    break
        return removed

    def _sweep_batch(self, asset_id: int, batch_size: int) -> sa.Delete:
        """Delete at most ``batch_size`` entries of an asset, while it is still inactive."""
        s, a = STORE, ASSETS
        still_inactive = sa.exists().where(a.c.id == asset_id, ~a.c.active)
        if self._db.family == "mysql":
            return (
                sa.delete(s)
                .where(s.c.asset_id == asset_id, still_inactive)
                .with_dialect_options(mysql_limit=batch_size)
            )
        batch = (
            sa.select(s.c.asset_id, s.c.partition_hash, s.c.key)
            .where(s.c.asset_id == asset_id, still_inactive)
            .limit(batch_size)
        )
        return sa.delete(s).where(sa.tuple_(s.c.asset_id, s.c.partition_hash, s.c.key).in_(batch))

    # -- batches --------------------------------------------------------------------------------

    def _apply_if(
        self, sql: Statements, cursor: Any, write: StoreWrite, params: dict[str, Any]
    ) -> None:
        """A compare-and-set write inside :meth:`apply`'s transaction; a lost race raises
        (and the transaction rolls back)."""
        expected = write.expected_version
        deleting = write.value_json is None
        if expected is None:
            done = not deleting and self._create(sql, cursor, params)
        else:
            params["expected"] = expected
            statement = sql.store_delete_if if deleting else sql.store_update_if
            done = statement.run(cursor, params).rowcount == 1
        if done:
            return
        row = sql.store_why.run(cursor, params).fetchone()
        if row is None:
            raise not_found_error(write.asset)
        if not row[0]:
            raise inactive_error(write.asset)
        actual = None if row[1] is None else int(row[1])
        if expected is None and deleting and actual is None:
            return  # deleting a key that must be absent: it is, nothing to do
        raise version_conflict(write.asset, write.key, expected, actual)

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not writes and not events:
            return []
        sql = self._sql or self._ready()
        # One order for every writer: rows are locked in the same sequence, so concurrent
        # batches cannot deadlock; the sort is stable, so writes to one key keep their order.
        ordered = sorted(writes, key=lambda w: (w.asset, w.partition or ASSET_LEVEL, w.key))

        def work(_held: Held, cursor: Any) -> list[AssetEvent]:
            # Events' assets first: their rows are locked and their ids taken, which also
            # proves them writable; then every other asset written to must be writable.
            taken = self._take_ids(sql, cursor, self._counts(events)) if events else {}
            for name in sorted({w.asset for w in ordered} - set(taken)):
                self._require_writable(name, cursor)
            for write in ordered:
                params = self._entry_params(
                    write.asset, write.key, write.value_json or "", write.partition
                )
                if write.expected_version is not ANY_VERSION:
                    self._apply_if(sql, cursor, write, params)
                elif write.value_json is None:
                    sql.store_delete.run(cursor, params)
                elif self._upsert(sql, cursor, params) is None:
                    raise self._unwritable(write.asset, cursor)
            return self._insert_events(sql, cursor, events, taken) if events else []

        return self._db.transaction(work)
