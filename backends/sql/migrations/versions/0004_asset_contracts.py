"""The asset's contract (extra schema, schema-evolution policy, freshness) beside its record.

A nullable JSON text column on the assets table: existing assets declare no contract.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from assetry.backends.sql.schema import LongText

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("assetry_assets", sa.Column("contract", LongText(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assetry_assets") as batch:
        batch.drop_column("contract")
