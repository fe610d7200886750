"""Name columns compare byte-exactly: binary collations on MySQL/MariaDB, "C" on PostgreSQL.

Names (assets, URIs, groups, aliases, consumers) were looked up through their digests, but
a ``DISTINCT``, ``GROUP BY`` or ``ORDER BY`` on the text itself followed the column's
collation, which on MySQL/MariaDB defaults to a case- and accent-insensitive one that also
ignores trailing spaces: consumers ``report`` and ``Report`` were listed as one, so
retention ignored one of their cursors. SQLite compares code points already.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from assetry.backends.sql.schema import NameText

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The name columns, per table (every one NOT NULL, none indexed: lookups use digests).
NAME_COLUMNS: dict[str, tuple[str, ...]] = {
    "assetry_assets": ("name", "uri", "asset_group"),
    "assetry_event_aliases": ("alias",),
    "assetry_alias_targets": ("alias",),
    "assetry_cursors": ("consumer", "asset"),
}


def _alter(to: sa.types.TypeEngine[str], from_: sa.types.TypeEngine[str]) -> None:
    if op.get_bind().dialect.name not in ("postgresql", "mysql", "mariadb"):
        return  # SQLite: BINARY, code point by code point, is its default
    for table, columns in NAME_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=to, existing_type=from_, existing_nullable=False)


def upgrade() -> None:
    _alter(NameText(), sa.String(1500))


def downgrade() -> None:
    _alter(sa.String(1500), NameText())
