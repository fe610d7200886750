"""Alembic environment of the sql backend: migrates the connection it is handed.

:func:`assetry.backends.sql.migrate.upgrade` opens the transaction, takes the migration
lock and passes the connection as ``config.attributes["connection"]``; Alembic then sees
an external transaction and leaves committing to it.
"""

from __future__ import annotations

from alembic import context
from assetry.backends.sql.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "assetry's schema migrations run online, through Instance(...).upgrade() or "
        "`assetry db upgrade`, which pass the database connection to Alembic"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
