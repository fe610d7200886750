"""The event log of the sql backend: append, query, latest per asset and partition,
alias targets, import and deletion.

Event ids are per-asset sequence numbers taken from the asset row under its lock in the
same transaction as the inserted events, so the events of one asset become visible in id
order: a consumer reading "after id N" never misses an event committed later with a
smaller id.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from assetry.backend import EventQuery, NewEvent, not_found_error
from assetry.models import AssetEvent
from assetry.values import canonical_json

from .base import (
    ALIAS_TARGETS,
    ASSETS,
    EVENT_ALIASES,
    EVENTS,
    SQLBase,
    chunks,
    from_us,
    now_us,
    to_us,
)
from .engine import Held
from .schema import Digest, KeyText, digest
from .statements import Sql, Statements

__all__ = ["SQLEvents"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_timedelta = dt.timedelta
# scan_once is an instance attribute set by JSONDecoder.__init__, missing from the stubs
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """``json.loads`` for the compact JSON text the backend writes, by the decoder's scanner
    directly (no whitespace matching around it); anything else goes to ``json.loads``."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError
    return value if end == len(text) else json.loads(text)


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))


def _decode_first(text: str, flat: dict[str, dict[str, Any] | None]) -> Any:
    """Decode the extra ``text`` met for the first time in a batch; remember in ``flat`` a
    copy of it when it is a flat object (scalar values only), else ``None``.

    A batch often repeats one extra text (one producer, one kind of event): a flat object
    is then decoded once and copied for the rest, which equals decoding it again at a
    tenth of the cost; any other value is decoded each time, so no two events share a
    mutable part."""
    value = _loads(text)
    scalars = _SCALAR_TYPES
    is_flat = type(value) is dict and all(type(v) in scalars for v in value.values())
    flat[text] = value.copy() if is_flat else None
    return value


_BIG = sa.BigInteger()


def _fetchall_text(text: str, held: Held) -> list[Any]:
    """Run SQL text without parameters on a raw cursor of ``held``; all its rows."""
    cursor = held.raw.cursor()
    try:
        cursor.execute(text)
        return cursor.fetchall()
    finally:
        cursor.close()


def _fetchall(sql: Sql, params: Mapping[str, Any], held: Held) -> list[Any]:
    """Run a compiled statement on a raw cursor of ``held``; all its rows."""
    cursor = held.raw.cursor()
    try:
        cursor.execute(sql.text, sql.args(params))
        return cursor.fetchall()
    finally:
        cursor.close()


class SQLEvents(SQLBase):
    """Events in per-asset id order, with their aliases and alias targets."""

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
        now = now_us()
        now_moment = from_us(now)
        next_id = {name: first for name, (_, _, first) in taken.items()}
        # Rows as tuples in the INSERT's parameter order (EVENT_ROW), events by position: a
        # batch of thousands spends more in Python than in the database otherwise.
        rows: list[tuple[Any, ...]] = []
        alias_rows: list[dict[str, Any]] = []
        targets: dict[tuple[bytes, int], dict[str, Any]] = {}
        out: list[AssetEvent] = []
        add_row, add_event = rows.append, out.append
        flat: dict[str, dict[str, Any] | None] = {}  # see _decode_first
        for event in new:
            name = event.asset
            asset_id, uri, _ = taken[name]
            event_id = next_id[name]
            next_id[name] = event_id + 1
            if event.timestamp is None:
                stamp, moment = now, now_moment
            else:
                stamp = to_us(event.timestamp)
                moment = from_us(stamp)
            extra_json, aliases = event.extra_json, event.aliases
            if extra_json == "{}":
                extra: Any = {}
            elif extra_json in flat:
                known = flat[extra_json]
                extra = _loads(extra_json) if known is None else known.copy()
            else:
                extra = _decode_first(extra_json, flat)
            add_row(
                (
                    asset_id,
                    event_id,
                    stamp,
                    extra_json,
                    event.partition_key,
                    event.source_task_id,
                    event.source_run_id,
                    canonical_json(list(aliases)) if aliases else "[]",
                )
            )
            for alias in dict.fromkeys(aliases) if aliases else ():
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
            add_event(
                AssetEvent(
                    event_id,
                    name,
                    uri,
                    moment,
                    extra,
                    event.partition_key,
                    event.source_task_id,
                    event.source_run_id,
                    aliases,
                )
            )
        sql.insert_event.run_rows(cursor, rows)
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
        much cheaper than by name for pages of many rows; arguments by position too)."""
        aliases = row[6]
        return AssetEvent(
            int(row[0]),
            name,
            row[7],
            _EPOCH + _timedelta(microseconds=row[1]),
            _loads(row[2]),
            row[3],
            row[4],
            row[5],
            () if aliases == "[]" else tuple(_loads(aliases)),
        )

    def query_events(self, query: EventQuery) -> list[AssetEvent]:
        """The page of events ``query`` asks for, through a statement compiled once per
        shape of query (which filters it has) and run on the raw cursor."""
        sql = self._sql or self._ready()
        shape = (
            query.alias is not None,
            query.after is not None,
            query.before is not None,
            query.since is not None,
            query.until is not None,
            query.partition_key is not None,
            bool(query.descending),
            query.limit is not None,
        )
        key = (self._db.dialect.name, shape)
        page = sql.event_pages.get(key)
        if page is None:
            page = sql.event_pages.setdefault(
                key, Sql.compile(self._page_statement(*shape), self._db.dialect)
            )
        params: dict[str, Any] = {"name_hash": digest(query.asset)}
        if query.alias is not None:
            params["alias_hash"] = digest(query.alias)
        if query.after is not None:
            params["after"] = query.after
        if query.before is not None:
            params["before"] = query.before
        if query.since is not None:
            params["since"] = to_us(query.since)
        if query.until is not None:
            params["until"] = to_us(query.until)
        if query.partition_key is not None:
            params["partition_key"] = query.partition_key
        if query.limit is not None:
            params["limit"] = query.limit
            params["offset"] = 0
        rows = self._db.run(lambda held: _fetchall(page, params, held))
        event, name = self._event, query.asset
        return [event(row, name) for row in rows]

    def _page_statement(
        self,
        alias: bool,
        after: bool,
        before: bool,
        since: bool,
        until: bool,
        partition: bool,
        descending: bool,
        limit: bool,
    ) -> sa.Select[Any]:
        """The SELECT of :meth:`query_events` for one shape of query, with bound parameters
        in place of its values (``name_hash``, ``after``, ``limit`` ...)."""
        e, a = EVENTS, ASSETS
        statement = (
            sa.select(*self._EVENT_COLUMNS, a.c.uri)
            .select_from(e.join(a, a.c.id == e.c.asset_id))
            .where(a.c.name_hash == sa.bindparam("name_hash", type_=Digest()))
        )
        if alias:
            ea = EVENT_ALIASES
            statement = statement.join(
                ea,
                sa.and_(
                    ea.c.asset_id == e.c.asset_id,
                    ea.c.event_id == e.c.id,
                    ea.c.alias_hash == sa.bindparam("alias_hash", type_=Digest()),
                ),
            )
        for wanted, name, compare in (
            (after, "after", operator.gt),
            (before, "before", operator.lt),
        ):
            if wanted:
                statement = statement.where(compare(e.c.id, sa.bindparam(name, type_=_BIG)))
        if since:
            statement = statement.where(e.c.timestamp_us >= sa.bindparam("since", type_=_BIG))
        if until:
            statement = statement.where(e.c.timestamp_us < sa.bindparam("until", type_=_BIG))
        if partition:
            statement = statement.where(
                e.c.partition_key == sa.bindparam("partition_key", type_=KeyText())
            )
        statement = statement.order_by(e.c.id.desc() if descending else e.c.id)
        if limit:
            # An explicit OFFSET: SQLite's compiler would otherwise add an unnamed one.
            statement = statement.limit(sa.bindparam("limit", type_=_BIG)).offset(
                sa.bindparam("offset", type_=_BIG)
            )
        return statement

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
            statement = statement.where(e.c.timestamp_us >= to_us(query.since))
        if query.until is not None:
            statement = statement.where(e.c.timestamp_us < to_us(query.until))
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
            self._ready()
            text = self._latest_events_text
            rows = self._db.run(lambda held: _fetchall_text(text, held))
        else:
            hashes = sorted({digest(name) for name in assets})
            rows = [
                r
                for chunk in chunks(hashes)
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

    @functools.cached_property
    def _latest_events_text(self) -> str:
        """:meth:`latest_events_query` compiled once for this database, its constants
        inlined (it takes no parameters), to run on the raw cursor."""
        compiled = self._latest_events_query.compile(
            dialect=self._db.dialect, compile_kwargs={"literal_binds": True}
        )
        return str(compiled)

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
                            "timestamp_us": to_us(event.timestamp),
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
            for chunk in chunks(doomed):
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
