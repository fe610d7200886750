"""The asset store of the sql backend: entries, compare-and-set, clearing and the sweep.

Writes are single dialect-native upserts guarded by the asset's row (an inactive or unknown
asset matches nothing, and only then is the reason looked up); compare-and-set compares the
row version.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from assetry.backend import (
    ANY_VERSION,
    StoreEntry,
    StoreWrite,
    inactive_error,
    not_found_error,
    version_conflict,
)

from .base import (
    ASSET_LEVEL_HASH,
    ASSETS,
    STORE,
    SQLBase,
    core_rowcount,
    fetchone,
    from_us,
    now_us,
    on_cursor,
    rowcount,
    slot,
    to_us,
)
from .engine import Held
from .schema import ASSET_LEVEL, digest
from .statements import EntryStatements, Statements

__all__ = ["SQLStore"]


class SQLStore(SQLBase):
    """Per-asset (and per-partition) key/value entries with row versions."""

    # -- asset store ----------------------------------------------------------------------------

    _asset_ids: dict[str, int]
    _MAX_CACHED_IDS = 10_000

    def _cached_asset_id(self, sql: Statements, asset: str) -> int | None:
        """The asset's row id (``None``: not registered), looked up once per name: an
        asset's id never changes (assets are deactivated, never deleted) and reads ignore
        whether it is active, so a cached id needs no invalidation."""
        asset_id = self._asset_ids.get(asset)
        if asset_id is None:
            params = {"name_hash": digest(asset)}
            found = self._db.run(lambda held: fetchone(sql.asset_id, params, held))
            if found is None:  # not registered (yet): not cached
                return None
            if len(self._asset_ids) >= self._MAX_CACHED_IDS:
                self._asset_ids.clear()
            asset_id = self._asset_ids[asset] = int(found[0])
        return asset_id

    def _entry_read(
        self, sql: Statements, asset: str, key: str, partition: str | None
    ) -> tuple[EntryStatements, Any] | None:
        """The asset-level or partition read statements and their parameters, or ``None``
        when the asset is not registered."""
        asset_id = self._asset_ids.get(asset) or self._cached_asset_id(sql, asset)
        if asset_id is None:
            return None
        values: tuple[Any, ...]
        if partition:
            entries, values = sql.partitioned, (asset_id, digest(partition), key)
        else:
            entries, values = sql.asset_level, (asset_id, key)
        bind = entries.bind_read
        return entries, values if bind is None else bind(values)

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        read = self._entry_read(self._sql or self._ready(), asset, key, partition)
        if read is None:
            return None
        entries = read[0]
        row = self._db.first_row(entries.get.text, read[1])
        if row is None:
            return None
        if entries.packed:  # "<version> <updated_at_us> <value>"
            version, updated_at_us, value = row[0].split(" ", 2)
            return StoreEntry(key, value, int(version), partition, from_us(int(updated_at_us)))
        return StoreEntry(key, row[0], row[1], partition, from_us(row[2]))

    def store_value(self, asset: str, key: str, partition: str | None = None) -> str | None:
        """The entry's JSON text alone (no version, no datetime built)."""
        sql = self._sql or self._ready()
        asset_id = self._asset_ids.get(asset)
        if asset_id is None or partition:  # the asset-level read of a known asset, inline
            read = self._entry_read(sql, asset, key, partition)
            row = None if read is None else self._db.first_row(read[0].value.text, read[1])
        else:
            entries = sql.asset_level
            values = (asset_id, key)
            bind = entries.bind_read
            row = self._db.first_row(entries.value.text, values if bind is None else bind(values))
        return None if row is None else row[0]

    def _entry_params(
        self, asset: str, key: str, value_json: str, partition: str | None
    ) -> dict[str, Any]:
        return {
            "name_hash": digest(asset),
            "partition_hash": slot(partition),
            "partition_key": partition or ASSET_LEVEL,
            "key": key,
            "value": value_json,
            "now": now_us(),
        }

    def _upsert(self, sql: Statements, cursor: Any, params: Mapping[str, Any]) -> int | None:
        """Write an entry unconditionally; its new version, or ``None`` when the asset is
        not active (nothing was written)."""
        sql.store_upsert.run(cursor, params)
        return _version_written(sql.returning, cursor)

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
            "partition_hash": slot(partition),
            "key": key,
        }
        row = self._db.run(lambda held: fetchone(sql.store_why, params, held))
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
        if expected_version is ANY_VERSION:
            asset_id = self._asset_ids.get(asset) or self._cached_asset_id(sql, asset)
            if asset_id is None:
                raise not_found_error(asset)
            values: tuple[Any, ...]
            if partition:
                entries = sql.partitioned
                values = (digest(partition), key, partition, value_json, now_us(), asset_id)
            else:
                entries, values = sql.asset_level, (key, value_json, now_us(), asset_id)
            bind = entries.bind_set
            version = self._db.call(
                _SET_BY_ID[sql.family],
                entries.set.text,
                values if bind is None else bind(values),
                repeatable=False,
            )
            if version is None:
                raise self._unwritable(asset)
            return version
        params = self._entry_params(asset, key, value_json, partition)
        if expected_version is None:
            if self._db.run(on_cursor(lambda c: self._create(sql, c, params)), repeatable=False):
                return 1
            raise self._lost_race(asset, key, partition, None)
        params["expected"] = expected_version
        if self._db.run(lambda held: rowcount(sql.store_update_if, params, held), repeatable=False):
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
            "partition_hash": slot(partition),
            "key": key,
        }
        if expected_version is ANY_VERSION:
            if self._db.run(
                lambda held: rowcount(sql.store_delete, params, held), repeatable=False
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
        if self._db.run(lambda held: rowcount(sql.store_delete_if, params, held), repeatable=False):
            return True
        raise self._lost_race(asset, key, partition, expected_version)

    def _entries_of(self, asset: str, partition: str | None) -> Any:
        return sa.and_(
            STORE.c.asset_id
            == sa.select(ASSETS.c.id).where(ASSETS.c.name_hash == digest(asset)).scalar_subquery(),
            STORE.c.partition_hash == slot(partition),
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
            doomed = doomed.where(STORE.c.partition_hash == slot(partition))
        removed = self._write(doomed)
        if removed == 0:
            self._require_writable(asset)
        return removed

    def import_store(self, asset: str, entries: Sequence[StoreEntry]) -> int:
        if not entries:
            return 0
        self._ready()
        now = now_us()
        rows = [
            {
                "partition_hash": slot(e.partition),
                "key": e.key,
                "partition_key": e.partition or ASSET_LEVEL,
                "value": e.value_json,
                "version": e.version,
                "updated_at_us": to_us(e.updated_at) if e.updated_at else now,
            }
            for e in entries
        ]

        def work(held: Any, _cursor: Any) -> int:
            conn = held.conn
            found = conn.execute(
                sa.select(ASSETS.c.id).where(ASSETS.c.name_hash == digest(asset)).with_for_update()
            ).first()
            if found is None:
                raise not_found_error(asset)
            asset_id = int(found.id)
            for row in rows:
                conn.execute(
                    sa.delete(STORE).where(
                        STORE.c.asset_id == asset_id,
                        STORE.c.partition_hash == row["partition_hash"],
                        STORE.c.key == row["key"],
                    )
                )
            conn.execute(sa.insert(STORE), [{"asset_id": asset_id, **row} for row in rows])
            return len(rows)

        return self._db.transaction(work)

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        rows = self._read(
            sa.select(STORE.c.key, STORE.c.value, STORE.c.version, STORE.c.updated_at_us).where(
                self._entries_of(asset, partition)
            )
        )
        return [
            StoreEntry(r.key, r.value, int(r.version), partition, from_us(r.updated_at_us))
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
            .where(STORE.c.asset_id == asset_id, STORE.c.partition_hash != ASSET_LEVEL_HASH)
            .distinct()
        )
        return sorted(r.partition_key for r in rows)

    # -- maintenance ----------------------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        inactive = [r.id for r in self._read(sa.select(ASSETS.c.id).where(~ASSETS.c.active))]
        removed = 0
        for asset_id in inactive:
            batch = self._sweep_batch(asset_id, batch_size)
            while True:  # each batch commits on its own: no long transaction, no big lock
                count = self._db.run(functools.partial(core_rowcount, batch))
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

    # -- compare-and-set inside a batch (SQLBackend.apply) ------------------------------------

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


def _set_captured(text: str, args: Any, held: Held) -> int | None:
    """Run SQLite's upsert of an entry by its asset's row id; the new version, which an
    update reports through :data:`NEW_VERSION_FUNCTION` (an insert leaves it unset:
    version 1), or ``None`` when the asset is not active (nothing was written)."""
    held.new_version = None
    cursor = held.cursor
    cursor.execute(text, args)
    if cursor.rowcount != 1:
        return None
    return held.new_version or 1


def _set_returning(text: str, args: Any, held: Held) -> int | None:
    """Run PostgreSQL's upsert of an entry by its asset's row id; the new version from its
    ``RETURNING`` row, or ``None`` when the asset is not active."""
    cursor = held.cursor
    cursor.execute(text, args)
    return _version_written(True, cursor)


def _set_counted(text: str, args: Any, held: Held) -> int | None:
    """Run MySQL's upsert of an entry by its asset's row id; the new version from the
    affected-row count and ``LAST_INSERT_ID``, or ``None`` when the asset is not active."""
    cursor = held.cursor
    cursor.execute(text, args)
    return _version_written(False, cursor)


#: The upsert of an entry by its asset's row id, per database family.
_SET_BY_ID = {"sqlite": _set_captured, "postgresql": _set_returning, "mysql": _set_counted}


def _version_written(returning: bool, cursor: Any) -> int | None:
    """The version an upsert just wrote, read off its cursor: the ``RETURNING`` row
    (PostgreSQL: ``returning``), or MySQL's affected-row count (1: inserted, so version 1;
    2: updated, and ``LAST_INSERT_ID(version + 1)`` holds the new version); ``None`` when
    nothing was written (the asset is not active)."""
    if returning:
        row = cursor.fetchone()
        return None if row is None else int(row[0])
    affected = cursor.rowcount
    if affected == 1:  # inserted
        return 1
    if affected == 2:  # updated; LAST_INSERT_ID(version + 1) is the new version
        return int(cursor.lastrowid)
    return None
