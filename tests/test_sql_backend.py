"""The sql backend: the conformance suite on SQLite (file and in-memory), PostgreSQL and
MariaDB, plus what only this backend does (URLs, credentials, SQLite settings, lost
connections, batched sweeps)."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import assetry
import pytest
import sqlalchemy as sa
from assetry.backend import EventQuery, NewEvent
from assetry.backends.sql import SQLBackend
from assetry.backends.sql.testing import clear_database, scratch_database
from assetry.errors import BackendUnavailableError, ConfigurationError, ConflictError
from assetry.testing import StateBackendConformance
from conftest import service_missing


@pytest.fixture(scope="module")
def pg_scratch(pg_url: str) -> Iterator[str]:
    """A PostgreSQL schema of this test module's own, dropped afterwards."""
    try:
        with scratch_database(pg_url) as url:
            yield url
    except sa.exc.OperationalError as exc:
        service_missing("PostgreSQL", str(exc.orig).strip())


@pytest.fixture(scope="module")
def mysql_scratch(mysql_url: str) -> Iterator[str]:
    """A MariaDB database of this test module's own, dropped afterwards."""
    try:
        with scratch_database(mysql_url) as url:
            yield url
    except sa.exc.OperationalError as exc:
        service_missing("MariaDB", str(exc.orig).strip())


class _SQLConformance(StateBackendConformance):
    """The conformance suite on one database; subclasses provide ``backend_url``, a URL
    whose database is empty when the test starts."""

    @pytest.fixture
    def backend(self, backend_url: str) -> Iterator[SQLBackend]:
        with SQLBackend(backend_url) as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self, backend_url: str) -> Callable[[], SQLBackend]:
        return lambda: SQLBackend(backend_url)


class TestSQLiteFileBackend(_SQLConformance):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'state.db'}"


class TestSQLiteMemoryBackend(StateBackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[SQLBackend]:
        with SQLBackend("sqlite:///:memory:") as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self) -> Callable[[], SQLBackend]:
        """The same URL opens a new, empty database: the persistence tests are expected
        failures (``persistent=False``)."""
        return lambda: SQLBackend("sqlite:///:memory:")


class TestPostgreSQLBackend(_SQLConformance):
    @pytest.fixture
    def backend_url(self, pg_scratch: str) -> str:
        clear_database(pg_scratch)
        return pg_scratch


class TestMariaDBBackend(_SQLConformance):
    @pytest.fixture
    def backend_url(self, mysql_scratch: str) -> str:
        clear_database(mysql_scratch)
        return mysql_scratch


class _AtScale:
    """The conformance sizes of the memory backend's large run."""

    threads = 16
    updates_per_thread = 200
    appends_per_thread = 100
    pagination_events = 1000
    page_size = 97


@pytest.mark.slow
class TestSQLiteFileBackendAtScale(_AtScale, TestSQLiteFileBackend):
    pass


@pytest.mark.slow
class TestPostgreSQLBackendAtScale(_AtScale, TestPostgreSQLBackend):
    pass


@pytest.mark.slow
class TestMariaDBBackendAtScale(_AtScale, TestMariaDBBackend):
    pass


# == selection by URL and configuration =================================================


def test_database_urls_select_the_sql_backend(tmp_path: Path) -> None:
    with assetry.Instance.from_url(f"sqlite:///{tmp_path / 'state.db'}") as instance:
        assert isinstance(instance.backend, SQLBackend)
    with assetry.Instance(backend="sql", url=f"sqlite:///{tmp_path / 'other.db'}") as instance:
        assert isinstance(instance.backend, SQLBackend)


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@db.example/state", "postgresql+psycopg"),
        ("postgres://u@db.example/state", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/state", "postgresql+psycopg"),
        ("mysql://u@db.example/state", "mysql+pymysql"),
        ("mariadb://u@db.example/state", "mariadb+pymysql"),
        ("sqlite:///state.db", "sqlite+pysqlite"),
    ],
)
def test_urls_without_a_driver_get_the_default_driver(
    given: str, driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = SQLBackend(given)
    try:
        assert backend.describe().startswith(f"SQLBackend({driver}://")
    finally:
        backend.close()


@pytest.mark.parametrize(
    "url", ["postgresql+asyncpg://u@h/db", "mysql+aiomysql://u@h/db", "oracle://u@h/db"]
)
def test_unsupported_drivers_are_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sql backend"):
        SQLBackend(url)


def test_unknown_option_is_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        assetry.Instance(backend="sql", url=f"sqlite:///{tmp_path / 's.db'}", colour="blue")


def test_default_is_sqlite_in_dot_assetry_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ASSETRY_BACKEND", "ASSETRY_BACKEND_URL", "ASSETRY_BACKEND_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with assetry.Instance() as instance:
        assert isinstance(instance.backend, SQLBackend)
        orders = assetry.Asset("orders", uri="s3://data/orders")
        instance.asset_store(orders).set("watermark", "2024-06-01")
    assert (tmp_path / ".assetry" / "state.db").is_file()
    with assetry.Instance() as again:
        assert again.asset_store(orders).get("watermark") == "2024-06-01"


# == SQLite ==============================================================================


def test_sqlite_file_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "state.db"
    with SQLBackend(f"sqlite:///{path}", busy_timeout=7) as backend:
        backend.register_asset("a", "s3://a")
        settings = backend._db.run(
            lambda held: (
                held.raw.execute("PRAGMA journal_mode").fetchone()[0],
                held.raw.execute("PRAGMA busy_timeout").fetchone()[0],
            )
        )
    assert settings == ("wal", 7000)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_writer_waits_for_a_lock_then_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLBackend(f"sqlite:///{path}", busy_timeout=0.2) as backend:
        backend.register_asset("a", "s3://a")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BackendUnavailableError, match="busy_timeout"):
                backend.append_events([NewEvent("a")])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert [e.id for e in backend.append_events([NewEvent("a")])] == [1]


def test_in_memory_database_is_private_and_not_persistent() -> None:
    first, second = SQLBackend("sqlite:///:memory:"), SQLBackend("sqlite://")
    try:
        first.register_asset("a", "s3://a")
        assert second.get_asset("a") is None
        assert (first.capabilities.persistent, first.capabilities.multi_process) == (False, False)
        assert SQLBackend.capabilities.persistent is True
    finally:
        first.close()
        second.close()


# == credentials and errors ================================================================


def test_password_comes_from_the_default_connection_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_POSTGRES_DEFAULT", '{"login": "ana", "password": "s3cr3t"}')
    backend = SQLBackend(
        "postgresql://127.0.0.1:9/state", connect_timeout=1, retry_timeout=0
    )  # port 9: nothing listens
    try:
        assert backend._db.url.username == "ana"
        assert backend._db.url.password == "s3cr3t"
        assert "s3cr3t" not in repr(backend)
        assert "ana:***@" in backend.describe()
        with pytest.raises(BackendUnavailableError) as caught:
            backend.get_asset("a")
        message = str(caught.value)
        assert "s3cr3t" not in message
        assert "127.0.0.1:9" in message and "running" in message
    finally:
        backend.close()


def test_password_in_the_url_wins_over_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRY_CONN_MYSQL_DEFAULT", '{"login": "ana", "password": "other"}')
    backend = SQLBackend("mysql://bob:mine@db.example/state")
    try:
        assert (backend._db.url.username, backend._db.url.password) == ("bob", "mine")
        assert "mine" not in backend.describe()
    finally:
        backend.close()


def test_named_connection_that_is_missing_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="warehouse_state"):
        SQLBackend("postgresql://db.example/state", conn_id="warehouse_state")


def test_unreachable_server_is_backend_unavailable_naming_the_url() -> None:
    with (
        SQLBackend("mysql://root:pw@127.0.0.1:9/state", connect_timeout=1) as backend,
        pytest.raises(BackendUnavailableError, match=r"mysql\+pymysql://root:\*\*\*@127.0.0.1:9"),
    ):
        backend.store_get("a", "k")


def _server_id(backend: SQLBackend) -> int:
    """The server's id of this thread's connection (PostgreSQL pid, MariaDB thread id)."""
    if backend.dialect_name == "postgresql":
        return int(backend._db.run(lambda held: held.raw.info.backend_pid))
    return int(backend._db.run(lambda held: held.raw.thread_id()))


def _kill(server_id: int, dialect: str, admin_url: str) -> None:
    """End a connection from the server side, as a restart would, and wait until it is gone."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({server_id}, 10000)")
                return
            conn.exec_driver_sql(f"KILL CONNECTION {server_id}")
            for _ in range(200):
                alive = conn.exec_driver_sql(
                    f"SELECT 1 FROM information_schema.processlist WHERE id = {server_id}"
                ).first()
                if alive is None:
                    return
                time.sleep(0.01)
    finally:
        admin.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_backend(request: pytest.FixtureRequest) -> Iterator[tuple[SQLBackend, str]]:
    """A backend on an emptied scratch database of each server, and that database's URL."""
    url = request.getfixturevalue(
        "pg_scratch" if request.param == "postgresql" else "mysql_scratch"
    )
    clear_database(url)
    with SQLBackend(url) as backend:
        backend.register_asset("a", "s3://a")
        yield backend, url


def test_connection_lost_while_idle_is_replaced_transparently(
    server_backend: tuple[SQLBackend, str],
) -> None:
    backend, url = server_backend
    backend.store_set("a", "k", '"before"')
    for operation in (
        lambda: backend.store_get("a", "k"),
        lambda: backend.store_set("a", "k", '"after"'),
        lambda: backend.store_set("a", "k", '"cas"', expected_version=2),
        lambda: backend.append_events([NewEvent("a")]),
        lambda: backend.query_events(EventQuery("a")),
    ):
        _kill(_server_id(backend), backend.dialect_name, url)
        operation()
    entry = backend.store_get("a", "k")
    assert entry is not None and (entry.value, entry.version) == ("cas", 3)
    assert [e.id for e in backend.query_events(EventQuery("a"))] == [1]


def _blocked_then_killed(
    backend: SQLBackend, url: str, lock_sql: str, work: Callable[[], object]
) -> object:
    """Run ``work`` in a thread while another connection holds a row lock it needs, kill
    ``work``'s connection while it waits, release the lock; return its result or error."""
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    outcome: list[object] = []
    try:
        with admin.connect() as holder:
            holder.exec_driver_sql(lock_sql)
            server_ids: list[int] = []
            ready = threading.Event()

            def run() -> None:
                server_ids.append(_server_id(backend))  # the connection this thread keeps
                ready.set()
                try:
                    outcome.append(work())
                except Exception as exc:
                    outcome.append(exc)

            worker = threading.Thread(target=run)
            worker.start()
            ready.wait()
            time.sleep(0.3)  # the worker's statement is now waiting for the lock
            assert not outcome
            server_id = server_ids[0]
            _kill(server_id, backend.dialect_name, url)
            holder.rollback()
            worker.join(timeout=30)
    finally:
        admin.dispose()
    return outcome[0]


def test_write_lost_in_flight_is_unavailable_with_unknown_outcome(
    server_backend: tuple[SQLBackend, str],
) -> None:
    backend, url = server_backend
    backend.store_set("a", "k", '"before"')
    row_lock = "SELECT value FROM assetry_store FOR UPDATE"
    result = _blocked_then_killed(
        backend, url, row_lock, lambda: backend.store_set("a", "k", '"after"')
    )
    assert isinstance(result, BackendUnavailableError)
    assert "may or may not have been applied" in str(result)
    entry = backend.store_get("a", "k")
    assert entry is not None and (entry.value, entry.version) == ("before", 1)


def test_transaction_lost_before_commit_is_retried_whole(
    server_backend: tuple[SQLBackend, str],
) -> None:
    backend, url = server_backend
    row_lock = "SELECT last_event_id FROM assetry_assets FOR UPDATE"
    result = _blocked_then_killed(
        backend, url, row_lock, lambda: backend.append_events([NewEvent("a"), NewEvent("a")])
    )
    assert [e.id for e in result] == [1, 2]  # type: ignore[attr-defined]
    assert [e.id for e in backend.query_events(EventQuery("a"))] == [1, 2]


class _Outage:
    """A TCP relay in front of a database server that can go down and come back, as the
    server would across a restart: going down cuts every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            doomed, self._open = self._open, []
            if self._listener is not None:
                doomed.append(self._listener)
                self._listener = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def outage(server_backend: tuple[SQLBackend, str]) -> Iterator[tuple[_Outage, str]]:
    """A relay to the scratch database's server, and the database's URL through it."""
    _, url = server_backend
    parsed = sa.engine.make_url(url)
    relay = _Outage(parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else 3306))
    relay.up()
    try:
        yield relay, parsed.set(port=relay.port).render_as_string(hide_password=False)
    finally:
        relay.down()


def test_server_restart_is_waited_for_and_nothing_is_lost(
    outage: tuple[_Outage, str],
) -> None:
    relay, url = outage
    with SQLBackend(url, retry_timeout=20) as backend:
        backend.store_set("a", "k", '"before"')
        backend.append_events([NewEvent("a")])
        for operation in (
            lambda: backend.store_get("a", "k"),
            lambda: backend.store_set("a", "k", '"after"'),
            lambda: backend.append_events([NewEvent("a"), NewEvent("a")]),
        ):
            relay.down()
            threading.Timer(0.5, relay.up).start()  # back half a second later
            operation()
        entry = backend.store_get("a", "k")
        assert entry is not None and (entry.value, entry.version) == ("after", 2)
        assert [e.id for e in backend.query_events(EventQuery("a"))] == [1, 2, 3]


def test_server_down_longer_than_the_retry_timeout_is_unavailable(
    outage: tuple[_Outage, str],
) -> None:
    relay, url = outage
    with SQLBackend(url, retry_timeout=0.5) as backend:
        backend.store_set("a", "k", '"kept"')
        relay.down()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{relay.port}"):
            backend.store_get("a", "k")
        assert time.monotonic() - started < 10
        relay.up()
        entry = backend.store_get("a", "k")
        assert entry is not None and entry.value == "kept"


def test_mysqlclient_driver_works_too(mysql_scratch: str, mysqlclient_url: str) -> None:
    clear_database(mysql_scratch)
    url = sa.engine.make_url(mysql_scratch).set(drivername="mysql+mysqldb")
    with SQLBackend(url.render_as_string(hide_password=False)) as backend:
        backend.register_asset("a", "s3://a")
        assert [backend.store_set("a", "k", str(i)) for i in range(3)] == [1, 2, 3]
        with pytest.raises(ConflictError):
            backend.store_set("a", "k", "9", expected_version=None)
        assert backend.store_set("a", "new", "1", expected_version=None) == 1
        assert [e.id for e in backend.append_events([NewEvent("a"), NewEvent("a")])] == [1, 2]
        assert [e.id for e in backend.query_events(EventQuery("a", after=1))] == [2]


# == maintenance ==========================================================================


def test_sweep_deletes_in_batches_of_batch_size(tmp_path: Path) -> None:
    with SQLBackend(f"sqlite:///{tmp_path / 'state.db'}") as backend:
        backend.register_asset("gone", "s3://gone")
        backend.register_asset("kept", "s3://kept")
        for i in range(7):
            backend.store_set("gone", f"k{i}", str(i))
        backend.store_set("kept", "k", "1")
        backend.deactivate_asset("gone")
        deletes: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if statement.lstrip().upper().startswith("DELETE"):
                deletes.append(statement)

        sa.event.listen(backend._db.engine, "before_cursor_execute", count)
        assert backend.sweep(batch_size=3) == 7
        assert len(deletes) == 3  # 3 + 3 + 1
        assert all("LIMIT" in statement for statement in deletes)
        assert backend.store_keys("kept") == ["k"]


def test_store_reads_by_cached_asset_id_follow_registration_and_deactivation(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with SQLBackend(url) as reader, SQLBackend(url) as writer:
        assert reader.store_get("late", "k") is None  # not registered: nothing is cached
        assert reader.store_value("late", "k") is None
        writer.register_asset("late", "s3://b/late")
        writer.register_asset("other", "s3://b/other")
        writer.store_set("late", "k", '{"a":1}')
        writer.store_set("other", "k", '{"b":2}')
        assert reader.store_value("late", "k") == '{"a":1}'
        assert reader.store_value("other", "k") == '{"b":2}'
        entry = reader.store_get("late", "k")
        assert entry is not None and (entry.value_json, entry.version) == ('{"a":1}', 1)
        writer.store_set("late", "k", '{"a":3}')  # written by another backend object
        assert reader.store_value("late", "k") == '{"a":3}'
        writer.deactivate_asset("late")
        assert reader.store_value("late", "k") == '{"a":3}'  # inactive stores stay readable
        assert writer.sweep() == 1
        assert reader.store_value("late", "k") is None  # swept
        assert reader.store_get("late", "k") is None
        assert reader.store_value("other", "k") == '{"b":2}'
        assert reader.store_value("other", "missing") is None
