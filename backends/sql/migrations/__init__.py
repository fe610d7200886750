"""Alembic migrations of the sql backend's schema, shipped in the package.

They run programmatically through :func:`assetry.backends.sql.migrate.upgrade` (which
passes the connection in the Alembic ``Config``); no ``alembic.ini`` is needed.
"""
