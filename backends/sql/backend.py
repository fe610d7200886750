"""The ``sql`` backend: assetry's state in SQLite, PostgreSQL or MySQL/MariaDB.

One implementation on SQLAlchemy 2 Core for the three databases. Store writes are single
dialect-native upserts guarded by the asset's row (an inactive or unknown asset matches
nothing, and only then is the reason looked up); compare-and-set compares the row version.
Event ids are per-asset sequence numbers taken from the asset row under its lock in the
same transaction as the inserted events, so the events of one asset become visible in id
order: a consumer reading "after id N" never misses an event committed later with a
smaller id. The schema is versioned by the Alembic migrations shipped in the package.

The class is put together from one part per responsibility: ``base`` (connection, schema
state, shared look-ups), ``registry`` (assets), ``store`` (entries, compare-and-set, sweep),
``events`` (event log, aliases), ``cursors`` (consumer cursors); this module adds the
constructor and the atomic batch (:meth:`SQLBackend.apply`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assetry.backend import ANY_VERSION, Capabilities, NewEvent, StoreWrite
from assetry.config import DEFAULT_STATE_PATH
from assetry.errors import ConfigurationError
from assetry.models import AssetEvent

from .cursors import SQLCursors
from .engine import Database, Held
from .events import SQLEvents
from .registry import SQLRegistry
from .schema import ASSET_LEVEL
from .statements import Statements
from .store import SQLStore

__all__ = ["SQLBackend"]


class SQLBackend(SQLRegistry, SQLStore, SQLEvents, SQLCursors):
    """State in a SQL database through SQLAlchemy 2 Core.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/state.db`` (WAL, busy timeout; the
    parent folder is created), ``sqlite:///:memory:``, ``postgresql://user@host/db``
    (psycopg 3) or ``mysql://user@host/db`` / ``mariadb://...`` (PyMySQL). Without a URL it
    is SQLite in ``.assetry/state.db`` under the working directory. A URL without a
    password takes the login and password of the named connection (``conn_id``, by default
    ``postgres_default`` / ``mysql_default``) when one is configured.

    A new, empty database is created at the current schema; an older one raises
    :class:`SchemaVersionError` until :meth:`upgrade` runs (or ``auto_upgrade=True``), a
    newer one always does. Options: ``busy_timeout`` (SQLite, seconds), ``pool_size``,
    ``max_overflow``, ``connect_timeout``, ``retry_timeout`` (how long a lost server is
    waited for), ``echo``, ``create`` (``False``: open existing state only, creating no file,
    folder or table and migrating nothing; missing state raises
    :class:`~assetry.errors.StateNotFoundError`).
    """

    name = "sql"
    url_schemes = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
    capabilities = Capabilities(
        persistent=True,
        multi_process=True,
        atomic_batches=True,
        event_import=True,
        event_deletion=True,
        state_import=True,
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        conn_id: str | None = None,
        auto_upgrade: bool = False,
        busy_timeout: float = 30.0,
        pool_size: int = 5,
        max_overflow: int = 20,
        connect_timeout: float = 10.0,
        retry_timeout: float = 10.0,
        echo: bool = False,
        create: bool = True,
    ) -> None:
        if url is None:
            url = f"sqlite:///{Path.cwd() / DEFAULT_STATE_PATH}"
        if not isinstance(url, str) or not url:
            raise ConfigurationError("the sql backend needs a database URL string")
        for option, value in (
            ("busy_timeout", busy_timeout),
            ("connect_timeout", connect_timeout),
            ("retry_timeout", retry_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{option} must be a number of seconds, got {value!r}")
        for option, count in (("pool_size", pool_size), ("max_overflow", max_overflow)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigurationError(f"{option} must be a whole number, got {count!r}")
        self._db = Database(
            url,
            conn_id=conn_id,
            busy_timeout=float(busy_timeout),
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_timeout=float(connect_timeout),
            retry_timeout=float(retry_timeout),
            echo=bool(echo),
            create=bool(create),
        )
        #: The database URL with any password masked.
        self.url = self._db.masked_url
        self.auto_upgrade = bool(auto_upgrade)
        #: ``False``: open existing state only (no file, folder, table or migration).
        self.create = bool(create) or self._db.memory
        if self._db.memory:
            self.capabilities = Capabilities(
                persistent=False,
                multi_process=False,
                atomic_batches=True,
                event_import=True,
                event_deletion=True,
                state_import=True,
            )
        self._sql: Statements | None = None
        self._schema_lock = threading.Lock()
        self._asset_ids: dict[str, int] = {}
        self._upsert_cursors: Any = None

    # -- batches --------------------------------------------------------------------------------

    def apply(self, writes: Sequence[StoreWrite], events: Sequence[NewEvent]) -> list[AssetEvent]:
        if not writes and not events:
            return []
        sql = self._sql or self._ready()
        # One order for every writer: rows are locked in the same sequence, so concurrent
        # batches cannot deadlock; the sort is stable, so writes to one key keep their order.
        ordered = sorted(writes, key=lambda w: (w.asset, w.partition or ASSET_LEVEL, w.key))

        def work(_held: Held, cursor: Any) -> list[AssetEvent]:
            # Events' assets first: their rows are locked and their ids taken, which also
            # proves them writable; then every other asset written to must be writable.
            taken = self._take_ids(sql, cursor, self._counts(events)) if events else {}
            for name in sorted({w.asset for w in ordered} - set(taken)):
                self._require_writable(name, cursor)
            for write in ordered:
                params = self._entry_params(
                    write.asset, write.key, write.value_json or "", write.partition
                )
                if write.expected_version is not ANY_VERSION:
                    self._apply_if(sql, cursor, write, params)
                elif write.value_json is None:
                    sql.store_delete.run(cursor, params)
                elif self._upsert(sql, cursor, params) is None:
                    raise self._unwritable(write.asset, cursor)
            return self._insert_events(sql, cursor, events, taken) if events else []

        return self._db.transaction(work)
