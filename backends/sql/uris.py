"""The data step of migration 0005: asset URIs stored by assetry 0.1.0, normalised again.

Kept outside the migration so that :func:`assetry.backends.sql.migrate.run_migrations` can
check for clashes before any pending revision runs (MySQL and MariaDB commit DDL at once, so
a migration failing after another's DDL could not change nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from assetry.uri_upgrade import UriChange, plan_renormalisation

from .schema import Digest, digest

__all__ = ["REVISION", "plan_asset_uris", "renormalise_asset_uris"]

#: The revision that normalises the stored URIs again.
REVISION = "0005"

_assets = sa.table(
    "assetry_assets",
    sa.column("id", sa.BigInteger()),
    sa.column("name", sa.String()),
    sa.column("uri", sa.String()),
    sa.column("name_hash", Digest()),
    sa.column("uri_hash", Digest()),
)


def plan_asset_uris(conn: sa.Connection) -> list[UriChange]:
    """The URI changes the stored assets need; ``ConflictError`` naming the assets whose
    URIs would become one."""
    rows = conn.execute(sa.select(_assets.c.name, _assets.c.uri).order_by(_assets.c.id))
    return plan_renormalisation((str(name), str(uri)) for name, uri in rows)


def renormalise_asset_uris(conn: sa.Connection) -> int:
    """Write the changes of :func:`plan_asset_uris`; return how many assets changed."""
    changes = plan_asset_uris(conn)
    for name, _old, new in changes:
        conn.execute(
            _assets.update()
            .where(_assets.c.name_hash == digest(name))
            .values(uri=new, uri_hash=digest(new))
        )
    return len(changes)
