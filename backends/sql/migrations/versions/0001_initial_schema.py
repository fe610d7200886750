"""The initial schema: assets, asset store, event log with aliases, consumer cursors.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from assetry.backends.sql.schema import AssetId, Digest, KeyText, LongText, table_options

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Name columns as this revision created them (revision 0003 makes them compare by code point).
LEGACY_NAME_TEXT = sa.String(1500)


def upgrade() -> None:
    op.create_table(
        "assetry_assets",
        sa.Column("id", AssetId, primary_key=True, autoincrement=True),
        sa.Column("name", LEGACY_NAME_TEXT, nullable=False),
        sa.Column("name_hash", Digest(), nullable=False),
        sa.Column("uri", LEGACY_NAME_TEXT, nullable=False),
        sa.Column("uri_hash", Digest(), nullable=False),
        sa.Column("asset_group", LEGACY_NAME_TEXT, nullable=False),
        sa.Column("extra", LongText(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("name_hash", name="uq_assetry_assets_name_hash"),
        sa.UniqueConstraint("uri_hash", name="uq_assetry_assets_uri_hash"),
        **table_options(),
    )
    op.create_table(
        "assetry_store",
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
    op.create_table(
        "assetry_events",
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("timestamp_us", sa.BigInteger(), nullable=False),
        sa.Column("extra", LongText(), nullable=False),
        sa.Column("partition_key", KeyText(), nullable=True),
        sa.Column("source_task_id", sa.Text(), nullable=True),
        sa.Column("source_run_id", sa.Text(), nullable=True),
        sa.Column("aliases", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "id", name="pk_assetry_events"),
        **table_options(),
    )
    op.create_index(
        "ix_assetry_events_partition", "assetry_events", ["asset_id", "partition_key", "id"]
    )
    op.create_table(
        "assetry_event_aliases",
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("alias_hash", Digest(), nullable=False),
        sa.Column("alias", LEGACY_NAME_TEXT, nullable=False),
        sa.PrimaryKeyConstraint(
            "asset_id", "event_id", "alias_hash", name="pk_assetry_event_aliases"
        ),
        **table_options(),
    )
    op.create_index(
        "ix_assetry_event_aliases_alias",
        "assetry_event_aliases",
        ["alias_hash", "asset_id", "event_id"],
    )
    op.create_table(
        "assetry_cursors",
        sa.Column("consumer_hash", Digest(), nullable=False),
        sa.Column("asset_hash", Digest(), nullable=False),
        sa.Column("consumer", LEGACY_NAME_TEXT, nullable=False),
        sa.Column("asset", LEGACY_NAME_TEXT, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer_hash", "asset_hash", name="pk_assetry_cursors"),
        **table_options(),
    )


def downgrade() -> None:
    for table in (
        "assetry_cursors",
        "assetry_event_aliases",
        "assetry_events",
        "assetry_store",
        "assetry_assets",
    ):
        op.drop_table(table)
