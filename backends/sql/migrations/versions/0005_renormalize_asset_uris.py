"""Stored asset URIs in this version's normal form (default ports, mysql:// for mariadb://,
``s3://bucket/``), so an asset registered by assetry 0.1.0 is found again by its URI.

Data only: each asset row whose URI :func:`assetry.urls.normalize_uri` now writes otherwise
gets the new URI and its digest. Two assets whose URIs would become one stop the upgrade
with a :class:`~assetry.errors.ConflictError` naming both, before anything is written
(:func:`assetry.backends.sql.migrate.run_migrations` checks it before the first pending
revision runs). The downgrade keeps the new form: the old one is not recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from assetry.backends.sql.uris import renormalise_asset_uris

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    renormalise_asset_uris(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: the URIs stay in the form that 0.1.0 also reads."""
