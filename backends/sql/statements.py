"""The statements on the backend's hot paths, built with SQLAlchemy Core and compiled once.

Store reads and writes and event appends are a few fixed statements run very often. They
are written here as Core constructs, compiled once per engine by its dialect (upserts are
the dialect's native ``ON CONFLICT`` / ``ON DUPLICATE KEY UPDATE``), and run on the DBAPI
cursor with their parameters in the compiled order. That skips the per-call execution
machinery, which would otherwise cost more than the statement itself on SQLite and a
large share of a loopback round trip on the servers. Every other query goes through
``Connection.execute`` as usual.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from .engine import NEW_VERSION_FUNCTION
from .schema import (
    ASSET_LEVEL_HASH,
    Digest,
    KeyText,
    LongText,
    NameText,
    alias_targets,
    assets,
    event_aliases,
)
from .schema import events as events_table
from .schema import store as store_table

__all__ = ["EVENT_ROW", "EntryStatements", "Sql", "Statements", "statements_for"]


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement compiled for one dialect: its text and the order of its parameters."""

    text: str
    names: tuple[str, ...]
    positional: bool
    _pick: Any = field(repr=False, compare=False)

    @classmethod
    def compile(cls, statement: sa.Executable, dialect: Dialect) -> Sql:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.positional:
            names = tuple(compiled.positiontup or ())
        else:
            names = tuple(dict.fromkeys(compiled.bind_names.values()))
        pick = operator.itemgetter(*names) if len(names) > 1 else None
        return cls(compiled.string, names, bool(compiled.positional), pick)

    def args(self, params: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for ``params`` (a tuple or a dict, as the driver expects)."""
        if not self.positional:
            return {name: params[name] for name in self.names}
        if self._pick is not None:
            return self._pick(params)
        return tuple([params[name] for name in self.names])

    def binder(self, *order: str) -> Callable[[tuple[Any, ...]], Any] | None:
        """What turns values given in ``order`` into the driver's parameters; ``None`` when
        the values already are (positional, in the compiled order), so a hot path passes
        its tuple straight to ``cursor.execute``."""
        if set(order) != set(self.names):
            raise ValueError(f"{order} do not name the parameters {self.names}")
        if not self.positional:
            return lambda values: dict(zip(order, values, strict=True))
        if order == self.names:
            return None
        where = [order.index(name) for name in self.names]
        pick = operator.itemgetter(*where)
        return (lambda values: (pick(values),)) if len(where) == 1 else pick

    def positional_form(self) -> Sql:
        """The statement with ``%s`` marks in place of PyMySQL's ``%(name)s``, a name
        repeated as often as it is used: its parameters are a tuple, cheaper for the driver
        to escape than a dict and for a hot path to build."""
        if self.positional:
            return self
        names = tuple(_NAMED_MARK.findall(self.text))
        pick = operator.itemgetter(*names) if len(names) > 1 else None
        return Sql(_NAMED_MARK.sub("%s", self.text), names, True, pick)

    def run(self, cursor: Any, params: Mapping[str, Any]) -> Any:
        """Execute on ``cursor``; return the cursor for fetching or ``rowcount``."""
        cursor.execute(self.text, self.args(params))
        return cursor

    def run_rows(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        """Execute once for many rows given as tuples in the order of ``names``."""
        if self.positional:
            cursor.executemany(self.text, rows)
        else:
            names = self.names
            cursor.executemany(self.text, [dict(zip(names, row, strict=True)) for row in rows])

    def run_many(self, cursor: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        """Execute once for many parameter sets (one batch for the driver)."""
        cursor.executemany(self.text, [self.args(row) for row in rows])


_NAMED_MARK = re.compile(r"%\((\w+)\)s")


def _p(name: str, type_: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


def _insert(dialect: Dialect) -> Any:
    """The dialect's INSERT construct (the one with its native upsert clause)."""
    if dialect.name == "postgresql":
        return postgresql.insert
    if dialect.name == "sqlite":
        return sqlite.insert
    return mysql.insert


ONE: sa.ColumnClause[Any] = sa.literal_column("1")

#: The parameters of ``insert_event`` in order: the tuple the event log builds per row.
EVENT_ROW = (
    "asset_id",
    "id",
    "timestamp_us",
    "extra",
    "partition_key",
    "source_task_id",
    "source_run_id",
    "aliases",
)

_compiled: dict[tuple[Any, ...], Statements] = {}


def statements_for(dialect: Dialect) -> Statements:
    """The statements compiled for ``dialect`` (shared by every engine of the same dialect,
    driver and server version: compiling them takes longer than opening a backend)."""
    key = (
        dialect.name,
        dialect.driver,
        dialect.paramstyle,
        getattr(dialect, "is_mariadb", False),
        dialect.server_version_info,
    )
    found = _compiled.get(key)
    if found is None:
        found = _compiled.setdefault(key, Statements(dialect))
    return found


def _digest_literal(value: bytes, family: str) -> Any:
    """A digest written into the SQL text (``X'..'``; ``'\\x..'::bytea`` on PostgreSQL)."""
    text = f"'\\x{value.hex()}'::bytea" if family == "postgresql" else f"X'{value.hex()}'"
    return sa.literal_column(text, Digest())


@dataclass(frozen=True, slots=True)
class EntryStatements:
    """A store entry's read and upsert by its asset's row id, for one shape of namespace:
    a partition (its digest and key bound) or the asset level (both written in the text).

    Each comes with what turns its values into the driver's parameters (``None``: the
    tuple as it is): ``(asset_id, [partition_hash,] key)`` for the reads and ``([partition_hash,]
    key, [partition_key,] value, now, asset_id)`` for the upsert.
    """

    value: Sql  # the entry's JSON text
    get: Sql  # its JSON text, version and updated_at_us (packed: see ``packed``)
    set: Sql  # an upsert, only while the asset is active
    bind_read: Callable[[tuple[Any, ...]], Any] | None
    bind_set: Callable[[tuple[Any, ...]], Any] | None
    #: Whether ``get`` answers one column, ``"<version> <updated_at_us> <value>"`` (MySQL
    #: and MariaDB: PyMySQL parses every column's description in Python, and two fewer
    #: columns save more than splitting the text costs).
    packed: bool = False

    @classmethod
    def build(cls, dialect: Dialect, captures_version: bool, part_hash: Any) -> EntryStatements:
        """``part_hash`` is a bound parameter (a partition's namespace) or a literal (the
        asset level, whose partition key is ``''``)."""
        a, s = assets, store_table
        asset_id = _p("asset_id", sa.BigInteger())
        bound = isinstance(part_hash, sa.BindParameter)
        part_key = _p("partition_key", KeyText()) if bound else sa.literal_column("''", KeyText())
        entry = (s.c.asset_id == asset_id, s.c.partition_hash == part_hash)
        key = _p("key", KeyText())
        value = sa.select(s.c.value).where(*entry, s.c.key == key)
        packed = dialect.name in ("mysql", "mariadb")
        if packed:
            space: Any = sa.literal_column("' '")
            columns: tuple[Any, ...] = (
                sa.func.concat_ws(space, s.c.version, s.c.updated_at_us, s.c.value),
            )
        else:
            columns = (s.c.value, s.c.version, s.c.updated_at_us)
        get = sa.select(*columns).where(*entry, s.c.key == key)
        now = _p("now", sa.BigInteger())
        new_row = sa.select(
            a.c.id, part_hash, key, part_key, _p("value", LongText()), ONE, now
        ).where(a.c.id == asset_id, a.c.active)
        upsert = _insert(dialect)(s).from_select(list(_STORE_COLUMNS), new_row)
        if dialect.name in ("mysql", "mariadb"):
            # LAST_INSERT_ID(expr) hands the new version back in the OK packet (lastrowid).
            upsert = upsert.on_duplicate_key_update(
                value=_p("value", LongText()),
                version=sa.func.last_insert_id(s.c.version + ONE),
                updated_at_us=now,
            )
        else:
            # SQLite hands it back through NEW_VERSION_FUNCTION (the connection's
            # Held.new_version, left unset when the row was inserted), PostgreSQL by RETURNING.
            version: Any = s.c.version + ONE
            if captures_version:
                version = getattr(sa.func, NEW_VERSION_FUNCTION)(version)
            upsert = upsert.on_conflict_do_update(
                index_elements=[s.c.asset_id, s.c.partition_hash, s.c.key],
                set_={
                    "value": upsert.excluded.value,
                    "version": version,
                    "updated_at_us": upsert.excluded.updated_at_us,
                },
            )
            if not captures_version:
                upsert = upsert.returning(s.c.version)
        value_sql, get_sql, set_sql = (Sql.compile(x, dialect) for x in (value, get, upsert))
        if packed:  # PyMySQL: %s marks and tuples
            value_sql, get_sql, set_sql = (
                x.positional_form() for x in (value_sql, get_sql, set_sql)
            )
        namespace = ("partition_hash",) if bound else ()
        read_order = ("asset_id", *namespace, "key")
        set_order = (*namespace, "key", *("partition_key",) * bound, "value", "now", "asset_id")
        if get_sql.names != value_sql.names:  # one binder serves both reads
            raise AssertionError(f"{get_sql.names} != {value_sql.names}")
        return cls(
            value_sql,
            get_sql,
            set_sql,
            value_sql.binder(*read_order),
            set_sql.binder(*set_order),
            packed,
        )


_STORE_COLUMNS = (
    "asset_id",
    "partition_hash",
    "key",
    "partition_key",
    "value",
    "version",
    "updated_at_us",
)


class Statements:
    """The compiled hot-path statements of one engine."""

    def __init__(self, dialect: Dialect) -> None:
        self.family = "mysql" if dialect.name in ("mysql", "mariadb") else dialect.name
        #: Event-page SELECTs compiled on first use, by (dialect, shape of the query).
        self.event_pages: dict[tuple[Any, ...], Sql] = {}
        #: Whether INSERT/UPDATE ... RETURNING is available (not on MySQL/MariaDB here).
        self.returning = self.family != "mysql"
        a, s, e = assets, store_table, events_table
        insert = _insert(dialect)
        name_hash = _p("name_hash", Digest())
        part_hash = _p("partition_hash", Digest())
        key = _p("key", KeyText())
        active_asset_id = (
            sa.select(a.c.id).where(a.c.name_hash == name_hash, a.c.active).scalar_subquery()
        )
        entry = (s.c.asset_id == active_asset_id, s.c.partition_hash == part_hash, s.c.key == key)

        def compile_(statement: sa.Executable) -> Sql:
            return Sql.compile(statement, dialect)

        # -- store --------------------------------------------------------------------------
        self.store_get = compile_(
            sa.select(s.c.value, s.c.version, s.c.updated_at_us).where(
                s.c.asset_id
                == sa.select(a.c.id).where(a.c.name_hash == name_hash).scalar_subquery(),
                s.c.partition_hash == part_hash,
                s.c.key == key,
            )
        )
        self.asset_id = compile_(sa.select(a.c.id).where(a.c.name_hash == name_hash))
        # A new entry: one row from the asset's row, only while the asset is active.
        new_row = sa.select(
            a.c.id,
            part_hash,
            key,
            _p("partition_key", KeyText()),
            _p("value", LongText()),
            ONE,
            _p("now", sa.BigInteger()),
        ).where(a.c.name_hash == name_hash, a.c.active)
        columns = ["asset_id", "partition_hash", "key", "partition_key", "value", "version"]
        columns.append("updated_at_us")
        pk = [s.c.asset_id, s.c.partition_hash, s.c.key]
        create = insert(s).from_select(columns, new_row)
        if self.family == "mysql":
            # LAST_INSERT_ID(expr) hands the new version back in the OK packet (lastrowid).
            upsert = create.on_duplicate_key_update(
                value=_p("value", LongText()),
                version=sa.func.last_insert_id(s.c.version + ONE),
                updated_at_us=_p("now", sa.BigInteger()),
            )
            self.store_create = compile_(create)
        else:
            upsert = create.on_conflict_do_update(
                index_elements=pk,
                set_={
                    "value": create.excluded.value,
                    "version": s.c.version + ONE,
                    "updated_at_us": create.excluded.updated_at_us,
                },
            ).returning(s.c.version)
            self.store_create = compile_(
                create.on_conflict_do_nothing(index_elements=pk).returning(s.c.version)
            )
        self.store_upsert = compile_(upsert)
        #: Whether an upsert by id reports its version through NEW_VERSION_FUNCTION.
        self.captures_version = self.family == "sqlite"
        #: The hot reads and writes by the asset's row id (ids are permanent: assets are
        #: never deleted): of a partition, and of the asset level with its namespace's
        #: digest written into the text (binding a digest costs SQLite more than the lookup).
        self.partitioned = EntryStatements.build(dialect, self.captures_version, part_hash)
        self.asset_level = EntryStatements.build(
            dialect, self.captures_version, _digest_literal(ASSET_LEVEL_HASH, self.family)
        )
        self.store_update_if = compile_(
            sa.update(s)
            .where(*entry, s.c.version == _p("expected", sa.BigInteger()))
            .values(
                value=_p("value", LongText()),
                version=s.c.version + ONE,
                updated_at_us=_p("now", sa.BigInteger()),
            )
        )
        self.store_delete = compile_(sa.delete(s).where(*entry))
        self.store_delete_if = compile_(
            sa.delete(s).where(*entry, s.c.version == _p("expected", sa.BigInteger()))
        )
        # Why a write matched nothing: the asset's state and the entry's current version.
        self.store_why = compile_(
            sa.select(a.c.active, s.c.version)
            .select_from(
                a.outerjoin(
                    s,
                    sa.and_(
                        s.c.asset_id == a.c.id, s.c.partition_hash == part_hash, s.c.key == key
                    ),
                )
            )
            .where(a.c.name_hash == name_hash)
        )
        self.asset_active = compile_(sa.select(a.c.active).where(a.c.name_hash == name_hash))

        # -- events ---------------------------------------------------------------------------
        count = _p("count", sa.BigInteger())
        if self.returning:
            # Taking the next ids locks the asset row until COMMIT: appends to one asset
            # commit in id order.
            self.take_ids = compile_(
                sa.update(a)
                .where(a.c.name_hash == name_hash, a.c.active)
                .values(last_event_id=a.c.last_event_id + count)
                .returning(a.c.id, a.c.uri, a.c.last_event_id)
            )
        else:
            self.lock_asset = compile_(
                sa.select(a.c.id, a.c.uri, a.c.last_event_id)
                .where(a.c.name_hash == name_hash, a.c.active)
                .with_for_update()
            )
            self.set_last_id = compile_(
                sa.update(a)
                .where(a.c.id == _p("asset_id", sa.BigInteger()))
                .values(last_event_id=_p("last_event_id", sa.BigInteger()))
            )
        self.insert_event = compile_(
            sa.insert(e).values(
                asset_id=_p("asset_id", sa.BigInteger()),
                id=_p("id", sa.BigInteger()),
                timestamp_us=_p("timestamp_us", sa.BigInteger()),
                extra=_p("extra", LongText()),
                partition_key=_p("partition_key", KeyText()),
                source_task_id=_p("source_task_id", sa.Text()),
                source_run_id=_p("source_run_id", sa.Text()),
                aliases=_p("aliases", sa.Text()),
            )
        )
        if self.insert_event.names != EVENT_ROW:  # the order the event log builds rows in
            raise AssertionError(f"insert_event takes {self.insert_event.names}")
        self.insert_event_alias = compile_(
            sa.insert(event_aliases).values(
                asset_id=_p("asset_id", sa.BigInteger()),
                event_id=_p("event_id", sa.BigInteger()),
                alias_hash=_p("alias_hash", Digest()),
                alias=_p("alias", NameText()),
            )
        )
        target = insert(alias_targets).values(
            alias_hash=_p("alias_hash", Digest()),
            asset_id=_p("asset_id", sa.BigInteger()),
            alias=_p("alias", NameText()),
        )
        if self.family == "mysql":
            target = target.on_duplicate_key_update(asset_id=alias_targets.c.asset_id)
        else:
            target = target.on_conflict_do_nothing()
        self.add_alias_target = compile_(target)

    def upsert(self, table: sa.Table, keys: list[str]) -> Any:
        """An INSERT of ``table`` that overwrites the row with the same ``keys`` (a Core
        construct for ``Connection.execute``, single or executemany)."""
        statement: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(
            self.family, mysql.insert
        )(table)
        others = [c.name for c in table.columns if c.name not in keys]
        if self.family == "mysql":
            return statement.on_duplicate_key_update(
                {name: statement.inserted[name] for name in others}
            )
        return statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in others}
        )
