"""What every part of the sql backend shares: the tables, time and digest conversions,
statement runners, schema checks and the asset-state look-ups behind error messages.

:class:`SQLBase` is the common ancestor of the registry, store, event-log and cursor parts
that :class:`~assetry.backends.sql.backend.SQLBackend` puts together.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from assetry.backend import (
    AssetRecord,
    StateBackend,
    from_us,
    inactive_error,
    not_found_error,
    now_us,
    to_us,
)
from assetry.contracts import AssetContract
from assetry.errors import SchemaVersionError, StateNotFoundError

from . import migrate, schema
from .engine import Database, Held
from .schema import ASSET_LEVEL_HASH, VERSION_TABLE, digest
from .statements import Sql, Statements, statements_for

__all__ = [
    "ALIAS_TARGETS",
    "ASSETS",
    "ASSET_LEVEL_HASH",
    "CURSORS",
    "EVENTS",
    "EVENT_ALIASES",
    "STORE",
    "SQLBase",
    "chunks",
    "core_rowcount",
    "fetchone",
    "from_us",
    "now_us",
    "on_cursor",
    "rowcount",
    "slot",
    "to_us",
]

ASSETS = schema.assets
STORE = schema.store
EVENTS = schema.events
EVENT_ALIASES = schema.event_aliases
ALIAS_TARGETS = schema.alias_targets
CURSORS = schema.cursors

_CHUNK = 500  # names or ids per IN (...) list


def chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    """``items`` in slices of at most ``size``, to keep ``IN (...)`` lists bounded."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def slot(partition: str | None) -> bytes:
    """The indexed form of a store namespace: the digest of its partition key (or of ``''``
    for asset-level entries)."""
    return digest(partition) if partition else ASSET_LEVEL_HASH


def on_cursor(work: Callable[[Any], Any]) -> Callable[[Held], Any]:
    """``work(cursor)`` as work for :meth:`Database.run`, on a cursor closed afterwards."""

    def run(held: Held) -> Any:
        cursor = held.raw.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    return run


def core_rowcount(statement: sa.Executable, held: Held) -> int:
    """Run a Core statement on ``held``; its row count."""
    return int(held.conn.execute(statement).rowcount)


def fetchone(sql: Sql, params: Mapping[str, Any], held: Held) -> Any:
    """Run a prepared statement on a raw cursor of ``held``; its first row (or ``None``)."""
    cursor = held.raw.cursor()
    try:
        cursor.execute(sql.text, sql.args(params))
        return cursor.fetchone()
    finally:
        cursor.close()


def rowcount(sql: Sql, params: Mapping[str, Any], held: Held) -> int:
    """Run a prepared statement on a raw cursor of ``held``; its row count."""
    cursor = held.raw.cursor()
    try:
        cursor.execute(sql.text, sql.args(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


class SQLBase(StateBackend):
    """Connection, schema state and shared look-ups of the sql backend (see ``SQLBackend``)."""

    _db: Database
    _sql: Statements | None
    _schema_lock: threading.Lock
    url: str
    auto_upgrade: bool
    create: bool

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
            self._require_file()
            current = self._db.run(lambda held: migrate.current_revision(held.conn))
            if current is None and not self.create:
                raise StateNotFoundError(
                    f"no assetry state at {self.url}; `assetry db upgrade` creates it"
                )
            if current != migrate.head_revision():
                upgrade = self.auto_upgrade and self.create
                self._db.run(lambda held: self._settle_schema(held.conn, upgrade))
            self._sql = statements_for(self._db.dialect)
            return self._sql

    def upgrade(self) -> None:
        """Create the schema, or migrate it to this version of assetry."""
        with self._schema_lock:
            self._db.run(lambda held: self._settle_schema(held.conn, upgrade_older=True))
            self._sql = statements_for(self._db.dialect)
            getattr(self, "_asset_ids", {}).clear()  # a new database: ids read afresh

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
        if not self.create and self._missing_file():
            return {"current": None, "head": migrate.head_revision()}
        current = self._db.run(lambda held: migrate.current_revision(held.conn))
        return {"current": current, "head": migrate.head_revision()}

    def exists(self) -> bool:
        """Whether the database holds assetry's schema (an SQLite file that does not exist
        is not opened, so not created)."""
        if self._db.memory:
            return True
        if self._missing_file():
            return False
        return self._db.run(lambda held: migrate.current_revision(held.conn)) is not None

    def _missing_file(self) -> bool:
        """An SQLite database file that does not exist (connecting would create it)."""
        if self._db.family != "sqlite" or self._db.memory:
            return False
        database = self._db.url.database or ""
        return not database.startswith("file:") and not Path(database).exists()

    def _require_file(self) -> None:
        if not self.create and self._missing_file():
            raise StateNotFoundError(
                f"no assetry state at {self.url}; `assetry db upgrade` creates it"
            )

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
            row = self._db.run(lambda held: fetchone(sql.asset_active, params, held))
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
            created_at=from_us(row.created_at_us),
            updated_at=from_us(row.updated_at_us),
            contract=AssetContract.from_json(row.contract),
        )
