"""Schema versions of the sql backend: which revision a database is at, and upgrading it.

Alembic runs programmatically: the ``Config`` points ``script_location`` into the
installed package and carries the connection, so no ``alembic.ini`` is needed. Every
upgrade runs in one transaction under a lock that serialises concurrent upgraders (an
advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, the write lock on SQLite), and
re-reads the revision once the lock is held, so two processes opening a new database at
once create it once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from . import uris
from .schema import VERSION_TABLE, metadata

__all__ = [
    "current_revision",
    "has_assetry_tables",
    "head_revision",
    "is_known_revision",
    "migration_lock",
    "pending_revisions",
    "run_migrations",
    "upgrade",
]

SCRIPT_LOCATION = "assetry.backends.sql:migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this version of assetry expects."""
    head = _scripts().get_current_head()
    assert head is not None, "the sql backend ships at least one migration"
    return head


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of the migrations shipped with this code."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(connection: sa.Connection) -> str | None:
    """The revision stored in the database, or ``None`` when it has no version table."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String()))
    rows = connection.execute(sa.select(version.c.version_num)).scalars().all()
    if len(rows) > 1:
        return ",".join(sorted(rows))
    return rows[0] if rows else None


def has_assetry_tables(connection: sa.Connection) -> bool:
    """Whether any table of the backend exists (a database touched outside migrations)."""
    existing = set(sa.inspect(connection).get_table_names())
    return bool(existing & set(metadata.tables))


_MYSQL_LOCK = "CONCAT('assetry.migrate.', MD5(DATABASE()))"


@contextmanager
def migration_lock(connection: sa.Connection) -> Iterator[None]:
    """One transaction holding the migration lock: decide and migrate inside it. The
    connection is in driver autocommit, so the transaction is begun explicitly and ends
    through the DBAPI's commit/rollback."""
    dialect = connection.dialect.name
    mysql = dialect in ("mysql", "mariadb")
    if connection.in_transaction():  # only SQLAlchemy's autobegin: the driver autocommits
        connection.rollback()
    if mysql:  # a session lock, taken before and released after the transaction
        got = connection.exec_driver_sql(f"SELECT GET_LOCK({_MYSQL_LOCK}, 120)").scalar()
        connection.rollback()
        if got != 1:
            raise TimeoutError("another process held the schema migration lock for 120 s")
    try:
        transaction = connection.begin()
        try:
            if dialect == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.exec_driver_sql("BEGIN")
            if dialect == "postgresql":
                connection.exec_driver_sql(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.assetry.migrate'))"
                )
            yield
        except BaseException:
            transaction.rollback()
            raise
        transaction.commit()
    finally:
        if mysql:
            connection.exec_driver_sql(f"SELECT RELEASE_LOCK({_MYSQL_LOCK})")
            connection.rollback()


def pending_revisions(connection: sa.Connection, target: str = "head") -> list[str]:
    """The revisions an upgrade to ``target`` would run, oldest first (none for a database
    without assetry's schema or at a revision this code does not know)."""
    current = current_revision(connection)
    if current is None or not is_known_revision(current):
        return []
    scripts = _scripts()
    return [s.revision for s in scripts.iterate_revisions(target, current)][::-1]


def run_migrations(connection: sa.Connection, target: str = "head") -> None:
    """Run Alembic up to ``target`` on ``connection``, inside :func:`migration_lock`.

    The data checks of the pending revisions run first, so a database they refuse is left
    as it was (MySQL and MariaDB commit DDL at once: a later revision failing could not)."""
    if uris.REVISION in pending_revisions(connection, target):
        uris.plan_asset_uris(connection)
    command.upgrade(_config(connection), target)


def upgrade(connection: sa.Connection, target: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database on ``connection`` to ``target`` under the migration lock;
    return the revisions before and after."""
    with migration_lock(connection):
        before = current_revision(connection)
        run_migrations(connection, target)
        after = current_revision(connection)
    return before, after
