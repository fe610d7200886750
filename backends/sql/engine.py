"""Database URLs, engines, connections, transactions and retries of the sql backend.

Every connection is in driver autocommit: a single statement (a read, an upsert) is one
round trip and commits on its own, and a multi-statement write is an explicit
``BEGIN`` ... ``COMMIT`` (``BEGIN IMMEDIATE`` on SQLite, so writers queue on the busy
timeout instead of failing on a lock upgrade). Each thread keeps one pooled connection
for the life of the backend, so the pool's pre-ping runs when a connection is checked out,
not on every operation; a kept connection whose server hung up while it was idle (a
restart) is noticed before anything is sent on it, by a non-blocking look at its socket.

Failures are retried only when that cannot apply a change twice: reads, transactions that
failed before ``COMMIT``, and deadlocks or serialisation failures the server rolled back.
A connection lost while a change was being committed is a :class:`BackendUnavailableError`
that says the outcome is unknown; a server that stays unreachable is one that names the
(masked) URL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from assetry.config import resolve_connection
from assetry.errors import BackendUnavailableError, ConfigurationError
from assetry.plugins import INSTALL_HINTS
from assetry.retry import Backoff
from assetry.urls import parse_database_url, render_url, scrub_text, secrets_of
from sqlalchemy.pool import StaticPool

__all__ = ["NEW_VERSION_FUNCTION", "Database", "Held", "resolve_url"]

T = TypeVar("T")

#: The driver used for a URL that names none, per database.
DEFAULT_DRIVERS = {
    "sqlite": "pysqlite",
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}
#: The drivers the backend is written for.
SUPPORTED_DRIVERS = {
    "sqlite": ("pysqlite",),
    "postgresql": ("psycopg",),
    "mysql": ("pymysql", "mysqldb"),
    "mariadb": ("pymysql", "mysqldb"),
}
_FAMILIES = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN", "mysql": "BEGIN"}
# Errors after which the server has rolled the statement or transaction back.
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_MYSQL_RETRYABLE = {1213, 1205}  # deadlock, lock wait timeout
#: Retries of a transaction the server rolled back (deadlock, serialization failure).
_CONFLICT_BACKOFF = Backoff(base=0.004, cap=0.2, max_attempts=31)
#: Pauses while waiting for a lost server to come back (bounded by ``retry_timeout``).
_RECONNECT_BACKOFF = Backoff(base=0.05, cap=1.0, jitter=False)


def resolve_url(url: str, conn_id: str | None = None) -> sa.URL:
    """Parse a database URL, pick the driver (``postgresql://`` -> psycopg, ``mysql://`` /
    ``mariadb://`` -> PyMySQL) and fill missing credentials from the named connection
    (``postgres_default`` / ``mysql_default`` unless ``conn_id`` names another)."""
    parsed = parse_database_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in DEFAULT_DRIVERS:
        raise ConfigurationError(
            f"the sql backend serves sqlite, postgresql and mysql/mariadb URLs, not "
            f"{parsed.drivername!r} ({render_url(parsed)})"
        )
    driver = driver or DEFAULT_DRIVERS[backend]
    if driver not in SUPPORTED_DRIVERS[backend]:
        choices = ", ".join(f"{backend}+{d}://" for d in SUPPORTED_DRIVERS[backend])
        raise ConfigurationError(
            f"the sql backend talks to {backend} through {choices}, not {backend}+{driver}://"
        )
    parsed = parsed.set(drivername=f"{backend}+{driver}")
    if backend != "sqlite":
        parsed = _with_connection_credentials(parsed, backend, conn_id)
    return parsed


def _with_connection_credentials(url: sa.URL, backend: str, conn_id: str | None) -> sa.URL:
    if url.password is not None and conn_id is None:
        return url
    connection = resolve_connection(backend, conn_id)
    return connection.to_sqlalchemy_url(url) if connection is not None else url


#: The SQLite function that hands an upsert's new row version back to Python (as MySQL's
#: ``LAST_INSERT_ID(expr)`` does), so the upsert needs no ``RETURNING``, which costs SQLite
#: more than the rest of the statement.
NEW_VERSION_FUNCTION = "assetry_new_version"


@dataclass(slots=True)
class Held:
    """A connection kept by one thread: the SQLAlchemy connection, its DBAPI connection, a
    poller on its socket (servers only), a DBAPI cursor kept for single statements
    (:meth:`Database.first_row`, the store's upserts) and, on SQLite, the last version that
    :data:`NEW_VERSION_FUNCTION` saw on it."""

    conn: sa.Connection
    raw: Any
    poller: Any = None
    cursor: Any = None
    new_version: int | None = None

    def capture_version(self, version: int) -> int:
        """:data:`NEW_VERSION_FUNCTION`: keep ``version`` and return it unchanged."""
        self.new_version = version
        return version


class _OutcomeUnknown(Exception):
    """The connection broke while a COMMIT was in flight."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Database:
    """One engine and the connections the backend's threads keep on it."""

    def __init__(
        self,
        url: str,
        *,
        conn_id: str | None = None,
        busy_timeout: float = 30.0,
        pool_size: int = 5,
        max_overflow: int = 20,
        connect_timeout: float = 10.0,
        retry_timeout: float = 10.0,
        echo: bool = False,
        create: bool = True,
    ) -> None:
        self.url = resolve_url(url, conn_id)
        #: Whether opening may create (SQLite: the file's folder, WAL mode); ``False`` opens
        #: existing state only.
        self.create = create
        backend = self.url.get_backend_name()
        self.family = _FAMILIES[backend]
        self.memory = self.family == "sqlite" and self.url.database in (None, "", ":memory:")
        self.masked_url = render_url(self.url)
        self.retry_timeout = retry_timeout
        self.busy_timeout = busy_timeout
        self._secrets = secrets_of(self.url)
        self._begin = _BEGIN[self.family]
        self.engine = self._create_engine(
            busy_timeout=busy_timeout,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_timeout=connect_timeout,
            echo=echo,
        )
        self.dialect = self.engine.dialect
        self._dbapi_error: type[BaseException] = self.dialect.loaded_dbapi.Error
        self._local = threading.local()
        self._held: dict[int, tuple[threading.Thread, Held]] = {}
        self._lock = threading.Lock()
        self._connected_once = False
        self._closed = False
        # An in-memory SQLite database is one connection: its users take turns.
        self._memory_lock = threading.RLock()
        self._shared: Held | None = None
        _open_databases.add(self)

    # -- engine --------------------------------------------------------------------------

    def _create_engine(
        self,
        *,
        busy_timeout: float,
        pool_size: int,
        max_overflow: int,
        connect_timeout: float,
        echo: bool,
    ) -> sa.Engine:
        options: dict[str, Any] = {
            "isolation_level": "AUTOCOMMIT",
            "pool_pre_ping": True,
            "echo": echo,
        }
        connect_args: dict[str, Any] = {}
        query = self.url.query
        if self.family == "sqlite":
            connect_args["check_same_thread"] = False
            if self.memory:
                options["poolclass"] = StaticPool
            else:
                options.update(pool_size=pool_size, max_overflow=max_overflow)
                if self.create:
                    self._make_parent_folder()
        else:
            options.update(pool_size=pool_size, max_overflow=max_overflow)
            if "connect_timeout" not in query:
                connect_args["connect_timeout"] = max(1, round(connect_timeout))
            if self.family == "postgresql" and "application_name" not in query:
                connect_args["application_name"] = "assetry"
            if self.family == "mysql" and "charset" not in query:
                connect_args["charset"] = "utf8mb4"
        options["connect_args"] = connect_args
        try:
            engine = sa.create_engine(self.url, **options)
        except ImportError as exc:
            hint = INSTALL_HINTS.get(self.url.get_backend_name(), f"pip install {exc.name}")
            raise ConfigurationError(
                f"the driver for {self.masked_url} is not installed ({exc}); try: {hint}"
            ) from None
        sa.event.listen(engine, "connect", self._on_connect(busy_timeout))
        return engine

    def _make_parent_folder(self) -> None:
        path = Path(self.url.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the folder of the state database {path}: {exc.strerror}"
            ) from None

    def _on_connect(self, busy_timeout: float) -> Callable[[Any, Any], None]:
        family, memory, create = self.family, self.memory, self.create

        def prepare(dbapi_connection: Any, _record: Any) -> None:
            if family == "sqlite":
                dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                if not memory and create:
                    cursor.execute("PRAGMA journal_mode = WAL")
                    cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.close()
            elif family == "mysql":
                cursor = dbapi_connection.cursor()
                # Consistent reads in INSERT ... SELECT, no gap locks between upserts.
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cursor.close()

        return prepare

    # -- connections -----------------------------------------------------------------------

    def _kept(self) -> Held:
        """This thread's connection, (re)opened when missing or hung up on. (A connection
        that breaks in use is dropped where the error is handled.)"""
        held = self._shared if self.memory else getattr(self._local, "held", None)
        if held is None:
            return self._open()
        if held.poller is not None and _peer_hung_up(held.poller):
            held.conn.invalidate()
            self._drop(held)
            return self._open()
        return held

    def _open(self) -> Held:
        if self._closed:
            raise BackendUnavailableError(f"the state backend on {self.masked_url} was closed")
        self._reap()
        conn = self.engine.connect()
        raw: Any = conn.connection.dbapi_connection
        held = Held(conn, raw, _poller(raw) if self.family != "sqlite" else None, raw.cursor())
        if self.family == "sqlite":
            raw.create_function(NEW_VERSION_FUNCTION, 1, held.capture_version)
        if self.memory:
            self._shared = held
        else:
            self._local.held = held
            thread = threading.current_thread()
            with self._lock:
                self._held[thread.ident or 0] = (thread, held)
        self._connected_once = True
        return held

    def _drop(self, held: Held) -> None:
        with contextlib.suppress(Exception):
            held.conn.close()
        if self.memory:
            self._shared = None
        elif getattr(self._local, "held", None) is held:
            self._local.held = None
            with self._lock:
                self._held.pop(threading.get_ident(), None)

    def _reap(self) -> None:
        """Give back the connections of threads that have ended."""
        with self._lock:
            dead = [k for k, (thread, _) in self._held.items() if not thread.is_alive()]
            gone = [self._held.pop(k)[1] for k in dead]
        for held in gone:
            with contextlib.suppress(Exception):
                held.conn.close()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them."""
        self.engine.dispose(close=False)
        self._local = threading.local()
        self._held = {}
        self._lock = threading.Lock()
        self._shared = None

    def close(self) -> None:
        """Close every kept connection and the engine."""
        self._closed = True
        with self._lock:
            kept = [held for _, held in self._held.values()]
            self._held.clear()
        if self._shared is not None:
            kept.append(self._shared)
            self._shared = None
        for held in kept:
            with contextlib.suppress(Exception):
                held.conn.close()
        self._local = threading.local()
        self.engine.dispose()

    # -- running work ------------------------------------------------------------------------

    def run(self, work: Callable[[Held], T], *, repeatable: bool = True) -> T:
        """Run ``work`` on this thread's connection, retrying what is safe to retry.

        ``repeatable`` says whether ``work`` may run again after its connection broke in
        the middle of it (reads; not a single-statement write that may have committed).
        """
        if self.memory:
            with self._memory_lock:
                return self._run(work, repeatable)
        held = getattr(self._local, "held", None)
        if held is None or held.poller is not None:
            return self._run(work, repeatable)
        # A kept SQLite connection: nothing to look at before it is used.
        try:
            return work(held)
        except Exception as exc:
            kind = self._classify(exc, held)
            if kind is None:
                raise
            self._recover(exc, kind, held, repeatable)
        return self._run(work, repeatable)

    def _run(self, work: Callable[[Held], T], repeatable: bool) -> T:
        started = 0.0
        attempt = 0
        while True:
            try:
                held = self._kept()
            except sa.exc.TimeoutError:
                raise BackendUnavailableError(
                    f"every pooled connection to {self.masked_url} is in use by another "
                    "thread; raise the backend's pool_size or max_overflow option"
                ) from None
            except sa.exc.DBAPIError as exc:
                error: BaseException = exc
                if not self._connected_once:
                    raise self.unavailable(exc) from None
            else:
                try:
                    return work(held)
                except Exception as exc:
                    kind = self._classify(exc, held)
                    if kind is None:
                        raise
                    self._recover(exc, kind, held, repeatable)
                    error = exc
                    if kind == "conflict":
                        attempt += 1
                        if _CONFLICT_BACKOFF.exhausted(attempt):
                            raise
                        _CONFLICT_BACKOFF.sleep(attempt)
                        continue
            attempt += 1
            started = started or time.monotonic()
            if time.monotonic() - started > self.retry_timeout:
                raise self.unavailable(error) from None
            _RECONNECT_BACKOFF.sleep(attempt)

    def _recover(self, exc: Exception, kind: str, held: Held, repeatable: bool) -> None:
        """After ``work`` failed with an error of ``kind``: drop a broken connection, and
        raise unless running the work again is safe."""
        if kind in ("disconnect", "unknown"):
            with contextlib.suppress(Exception):
                held.conn.invalidate()
            self._drop(held)
        if kind == "unknown" or (kind == "disconnect" and not repeatable):
            cause = exc.cause if isinstance(exc, _OutcomeUnknown) else exc
            raise self.unavailable(cause, outcome_unknown=True) from None
        if kind == "locked":
            raise self.locked(exc) from None

    def first_row(self, text: str, args: Any) -> Any:
        """The first row (or ``None``) of a read statement, in the DBAPI's text and
        parameters, run on this thread's kept cursor (retried like any read).

        A server's connection is not polled for a hang-up first (as :meth:`run` does): a
        read may run again, so one that finds the connection gone reconnects and retries."""
        return self.call(_first_row, text, args)

    def call(
        self, work: Callable[[str, Any, Held], T], text: str, args: Any, *, repeatable: bool = True
    ) -> T:
        """``work(text, args, held)`` as :meth:`run` runs ``work(held)``, for the hot single
        statements: no closure is built per call, and a kept connection goes straight to the
        work when nothing need be checked first (SQLite's, or a server's for a repeatable
        read: one that finds the connection gone reconnects and runs again)."""
        held = None if self.memory else getattr(self._local, "held", None)
        if held is not None and (repeatable or held.poller is None):
            try:
                return work(text, args, held)
            except Exception as exc:
                kind = self._classify(exc, held)
                if kind is None:
                    raise
                self._recover(exc, kind, held, repeatable)
        return self.run(functools.partial(work, text, args), repeatable=repeatable)

    def transaction(self, work: Callable[[Held, Any], T]) -> T:
        """Run ``work(held, cursor)`` between BEGIN and COMMIT; retried as a whole when the
        server rolled it back (deadlock) or the connection broke before COMMIT."""

        def attempt(held: Held) -> T:
            cursor = held.raw.cursor()
            try:
                cursor.execute(self._begin)
                try:
                    result = work(held, cursor)
                except BaseException:
                    self._rollback(held, cursor)
                    raise
                try:
                    cursor.execute("COMMIT")
                except Exception as exc:
                    if self._classify(exc, held) in ("disconnect", "unknown"):
                        raise _OutcomeUnknown(exc) from exc
                    self._rollback(held, cursor)
                    raise
                return result
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

        return self.run(attempt)

    def _rollback(self, held: Held, cursor: Any) -> None:
        try:
            cursor.execute("ROLLBACK")
        except Exception:
            held.conn.invalidate()
            self._drop(held)

    def _classify(self, exc: BaseException, held: Held) -> str | None:
        """``disconnect``, ``conflict`` (rolled back by the server), ``locked`` (SQLite's
        busy timeout ran out), ``unknown`` (lost during COMMIT), or ``None``: not ours to
        handle."""
        if isinstance(exc, _OutcomeUnknown):
            return "unknown"
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        if not isinstance(orig, self._dbapi_error):
            return None
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return "disconnect"
        if self.family == "sqlite":
            return "locked" if "locked" in str(orig) else None
        if self.dialect.is_disconnect(orig, held.raw, None):  # type: ignore[arg-type]
            return "disconnect"
        if self.family == "postgresql":
            return "conflict" if getattr(orig, "sqlstate", None) in _PG_RETRYABLE else None
        code = orig.args[0] if orig.args else None
        return "conflict" if code in _MYSQL_RETRYABLE else None

    # -- errors ------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        line = text.strip().splitlines()[0] if text.strip() else text
        return scrub_text(line, self._secrets)

    def unavailable(
        self, exc: BaseException, *, outcome_unknown: bool = False
    ) -> BackendUnavailableError:
        """The error for a server that cannot be reached (or was lost mid-write)."""
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        detail = self._scrub(str(orig)) or type(orig).__name__
        if outcome_unknown:
            return BackendUnavailableError(
                f"the connection to the state database {self.masked_url} was lost while a "
                f"change was being committed ({detail}); it may or may not have been "
                "applied: read the state again before retrying"
            )
        return BackendUnavailableError(
            f"cannot reach the state database {self.masked_url} ({detail}); check that the "
            f"server is running and that the URL and credentials are right"
        )

    def locked(self, exc: BaseException) -> BackendUnavailableError:
        """The error for a SQLite database another writer kept locked too long."""
        return BackendUnavailableError(
            f"the state database {self.masked_url} stayed locked by another writer for more "
            f"than busy_timeout={self.busy_timeout:g} s; retry later or raise busy_timeout"
        )


def _first_row(text: str, args: Any, held: Held) -> Any:
    cursor = held.cursor
    cursor.execute(text, args)
    return cursor.fetchone()


def _poller(raw: Any) -> Any:
    """Something to ask whether the socket of a DBAPI connection (psycopg's ``fileno()``,
    PyMySQL's socket) has anything to read; ``None`` where it cannot be had."""
    for get in (lambda: raw.fileno(), lambda: raw._sock.fileno()):
        try:
            fd = get()
        except Exception:
            continue
        if isinstance(fd, int) and fd >= 0:
            if not hasattr(select, "poll"):
                return fd
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return poller
    return None


def _peer_hung_up(poller: Any) -> bool:
    """Whether an idle connection's socket is readable: the server closed it or sent a
    farewell (PostgreSQL's "terminating connection"), as after a restart."""
    try:
        if isinstance(poller, int):
            return bool(select.select([poller], [], [], 0)[0])
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


#: Every Database of the process, so a forked child can drop its parent's connections.
_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for database in list(_open_databases):
        database._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections_after_fork)
