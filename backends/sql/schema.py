"""The tables of the sql backend, as one SQLAlchemy Core ``MetaData``.

The same schema serves SQLite, PostgreSQL and MySQL/MariaDB:

- Names, URIs, aliases and consumers can be 1,500 characters long, more than MySQL
  (3,072 bytes) and PostgreSQL (about 2,700 bytes) can put in an index entry, so each is
  looked up through a SHA-256 digest column (``*_hash``) that carries the unique index.
- Every text column holding a name or key compares code points exactly: ``C`` on
  PostgreSQL, a binary no-pad collation on MySQL/MariaDB (so ``'a'``, ``'A'``, ``'á'`` and
  ``'a '`` are four names or keys), SQLite's default ``BINARY`` elsewhere; ``DISTINCT``,
  ``GROUP BY`` and ``ORDER BY`` on names therefore agree with Python's ``==`` and
  ``sorted``. Store keys and partition keys (up to 512 characters) are indexed as text.
  Asset-level entries use the partition ``''``.
- Timestamps are integer microseconds since the Unix epoch (UTC): exact on every engine,
  with no time-zone or fractional-second differences between drivers.
- Event ids are per-asset sequence numbers; ``assets.last_event_id`` is the last one
  handed out, incremented under the asset row's lock so ids commit in order.

The schema is created and evolved only by the Alembic migrations in ``migrations/``;
this module describes the current head for the queries. The column types below are also
used by the migrations, so they must keep rendering the same DDL.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "ASSET_LEVEL",
    "ASSET_LEVEL_HASH",
    "VERSION_TABLE",
    "AssetId",
    "Digest",
    "KeyText",
    "LongText",
    "NameText",
    "alias_targets",
    "assets",
    "cursors",
    "digest",
    "event_aliases",
    "events",
    "metadata",
    "store",
    "table_options",
]

#: Alembic's version table, prefixed like every table of the backend.
VERSION_TABLE = "assetry_alembic_version"

#: The partition slot of asset-level store entries.
ASSET_LEVEL = ""

_MAX_NAME = 1500  # assetry.models.MAX_NAME_LENGTH, assetry.uri.MAX_URI_LENGTH
_MAX_KEY = 512  # assetry.values.MAX_KEY_LENGTH


@functools.lru_cache(maxsize=8192)
def digest(text: str) -> bytes:
    """The 32-byte SHA-256 of ``text`` (UTF-8): the indexed form of names, URIs and keys."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


#: The digest of the asset-level partition slot.
ASSET_LEVEL_HASH = digest(ASSET_LEVEL)


def _is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def _mysql_binary_collation(dialect: Dialect) -> str:
    """A utf8mb4 collation comparing code points with trailing spaces significant."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info or (0,)
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


def _exact_string(length: int, dialect: Dialect) -> TypeEngine[Any]:
    """A ``VARCHAR(length)`` whose comparisons are code point by code point on ``dialect``."""
    if dialect.name == "postgresql":
        return dialect.type_descriptor(sa.String(length, collation="C"))
    if _is_mysql(dialect):
        return dialect.type_descriptor(
            mysql.VARCHAR(length, charset="utf8mb4", collation=_mysql_binary_collation(dialect))
        )
    return dialect.type_descriptor(sa.String(length))


class KeyText(TypeDecorator[str]):
    """A store key or partition key: up to 512 characters, compared by code point."""

    impl = sa.String(_MAX_KEY)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _exact_string(_MAX_KEY, dialect)


class NameText(TypeDecorator[str]):
    """An asset name, URI, group, alias or consumer: up to 1,500 characters, compared by
    code point (since revision 0003), not indexed (looked up through its digest)."""

    impl = sa.String(_MAX_NAME)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _exact_string(_MAX_NAME, dialect)


class Digest(TypeDecorator[bytes]):
    """A SHA-256 digest (32 bytes): ``BYTEA`` / ``BINARY(32)`` / ``BLOB``."""

    impl = sa.LargeBinary(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_mysql(dialect):
            return dialect.type_descriptor(mysql.BINARY(32))
        return dialect.type_descriptor(sa.LargeBinary(32))


class LongText(TypeDecorator[str]):
    """JSON text of a store value or event extra (``LONGTEXT`` on MySQL, whose ``TEXT``
    stops at 64 KiB)."""

    impl = sa.Text()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_mysql(dialect):
            return dialect.type_descriptor(mysql.LONGTEXT(charset="utf8mb4"))
        return sa.Text()  # not adapted: psycopg's String adaptation would render VARCHAR


#: The assets' surrogate key: BIGINT, but INTEGER on SQLite so it aliases the rowid.
AssetId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def table_options() -> dict[str, Any]:
    """Options of every table: InnoDB and utf8mb4 on MySQL/MariaDB (ignored elsewhere)."""
    return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


metadata = sa.MetaData()

assets = sa.Table(
    "assetry_assets",
    metadata,
    sa.Column("id", AssetId, primary_key=True, autoincrement=True),
    sa.Column("name", NameText(), nullable=False),
    sa.Column("name_hash", Digest(), nullable=False),
    sa.Column("uri", NameText(), nullable=False),
    sa.Column("uri_hash", Digest(), nullable=False),
    sa.Column("asset_group", NameText(), nullable=False),
    sa.Column("extra", LongText(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("last_event_id", sa.BigInteger(), nullable=False),
    sa.Column("created_at_us", sa.BigInteger(), nullable=False),
    sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
    # the asset's contract (assetry.contracts) as JSON; NULL: none declared
    sa.Column("contract", LongText(), nullable=True),
    sa.UniqueConstraint("name_hash", name="uq_assetry_assets_name_hash"),
    sa.UniqueConstraint("uri_hash", name="uq_assetry_assets_uri_hash"),
    **table_options(),
)

store = sa.Table(
    "assetry_store",
    metadata,
    sa.Column("asset_id", sa.BigInteger(), nullable=False),
    sa.Column("partition_hash", Digest(), nullable=False),
    sa.Column("key", KeyText(), nullable=False),
    sa.Column("partition_key", KeyText(), nullable=False),
    sa.Column("value", LongText(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("asset_id", "partition_hash", "key", name="pk_assetry_store"),
    **table_options(),
)

events = sa.Table(
    "assetry_events",
    metadata,
    sa.Column("asset_id", sa.BigInteger(), nullable=False),
    sa.Column("id", sa.BigInteger(), nullable=False, autoincrement=False),
    sa.Column("timestamp_us", sa.BigInteger(), nullable=False),
    sa.Column("extra", LongText(), nullable=False),
    sa.Column("partition_key", KeyText(), nullable=True),
    sa.Column("source_task_id", sa.Text(), nullable=True),
    sa.Column("source_run_id", sa.Text(), nullable=True),
    sa.Column("aliases", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("asset_id", "id", name="pk_assetry_events"),
    sa.Index("ix_assetry_events_partition", "asset_id", "partition_key", "id"),
    **table_options(),
)

event_aliases = sa.Table(
    "assetry_event_aliases",
    metadata,
    sa.Column("asset_id", sa.BigInteger(), nullable=False),
    sa.Column("event_id", sa.BigInteger(), nullable=False),
    sa.Column("alias_hash", Digest(), nullable=False),
    sa.Column("alias", NameText(), nullable=False),
    sa.PrimaryKeyConstraint("asset_id", "event_id", "alias_hash", name="pk_assetry_event_aliases"),
    sa.Index("ix_assetry_event_aliases_alias", "alias_hash", "asset_id", "event_id"),
    **table_options(),
)

alias_targets = sa.Table(
    "assetry_alias_targets",
    metadata,
    sa.Column("alias_hash", Digest(), nullable=False),
    sa.Column("asset_id", sa.BigInteger(), nullable=False),
    sa.Column("alias", NameText(), nullable=False),
    sa.PrimaryKeyConstraint("alias_hash", "asset_id", name="pk_assetry_alias_targets"),
    **table_options(),
)

cursors = sa.Table(
    "assetry_cursors",
    metadata,
    sa.Column("consumer_hash", Digest(), nullable=False),
    sa.Column("asset_hash", Digest(), nullable=False),
    sa.Column("consumer", NameText(), nullable=False),
    sa.Column("asset", NameText(), nullable=False),
    sa.Column("event_id", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("consumer_hash", "asset_hash", name="pk_assetry_cursors"),
    **table_options(),
)
