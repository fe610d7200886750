"""Alias targets in their own table, filled from the events already emitted through aliases.

Listing an alias's assets used to read a DISTINCT over every event emitted through the
alias; this table holds one row per (alias, asset), so the listing no longer grows with
the event log.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from assetry.backends.sql.schema import Digest, table_options

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Name columns as this revision created them (revision 0003 makes them compare by code point).
LEGACY_NAME_TEXT = sa.String(1500)


def upgrade() -> None:
    targets = op.create_table(
        "assetry_alias_targets",
        sa.Column("alias_hash", Digest(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("alias", LEGACY_NAME_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("alias_hash", "asset_id", name="pk_assetry_alias_targets"),
        **table_options(),
    )
    emitted = sa.table(
        "assetry_event_aliases",
        sa.column("alias_hash", Digest()),
        sa.column("asset_id", sa.BigInteger()),
        sa.column("alias", LEGACY_NAME_TEXT),
    )
    pairs = sa.select(
        emitted.c.alias_hash, emitted.c.asset_id, sa.func.min(emitted.c.alias)
    ).group_by(emitted.c.alias_hash, emitted.c.asset_id)
    op.execute(targets.insert().from_select(["alias_hash", "asset_id", "alias"], pairs))


def downgrade() -> None:
    op.drop_table("assetry_alias_targets")
