"""The ``sql`` state backend: SQLite, PostgreSQL and MySQL/MariaDB on SQLAlchemy 2 Core."""

from .backend import SQLBackend

__all__ = ["SQLBackend"]
