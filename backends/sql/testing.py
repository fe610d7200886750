"""Throwaway databases for tests that run the sql backend against a real server.

:func:`scratch_database` yields the URL of a namespace nobody else uses (a new schema in a
PostgreSQL database, reached through ``search_path``; a new MySQL/MariaDB database) and
drops it afterwards, so test runs on one server never see each other's state.
:func:`clear_database` empties the backend's tables, to reuse one scratch namespace for
many tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from .engine import resolve_url
from .schema import metadata

__all__ = ["clear_database", "scratch_database"]


@contextmanager
def scratch_database(server_url: str, *, prefix: str = "assetry_test") -> Iterator[str]:
    """A new, empty PostgreSQL schema or MySQL/MariaDB database on the server of
    ``server_url`` (whose user may create one); its URL is yielded, and it is dropped on
    exit."""
    url = resolve_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    family = url.get_backend_name()
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        if family == "postgresql":
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            scratch = url.update_query_dict({"options": f"-csearch_path={name}"})
            drop = f'DROP SCHEMA "{name}" CASCADE'
        elif family in ("mysql", "mariadb"):
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            scratch = url.set(database=name)
            drop = f"DROP DATABASE IF EXISTS `{name}`"
        else:
            raise ValueError(f"scratch databases are for PostgreSQL and MySQL, not {family}")
        try:
            yield scratch.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(drop)
    finally:
        admin.dispose()


def clear_database(url: str) -> None:
    """Delete every row of the backend's tables (the schema and its version stay)."""
    engine = sa.create_engine(resolve_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            for table in reversed(metadata.sorted_tables):
                if table.name in existing:
                    conn.execute(table.delete())
    finally:
        engine.dispose()
