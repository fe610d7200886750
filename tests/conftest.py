"""Shared fixtures: the real services the tests talk to.

PostgreSQL and MariaDB are reached on loopback; S3 is moto's ThreadedMotoServer, started
once per session on a free loopback port and reset before each test that uses it. Where a
service is missing the test skips with the reason, unless ``ASSETRY_REQUIRE_SERVICES`` is
set (CI sets it), in which case it fails.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# botocore must never probe an instance-metadata address when no credentials are set
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

REQUIRE_SERVICES = os.environ.get("ASSETRY_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}

PG_URL = os.environ.get("ASSETRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("ASSETRY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the larger stress sizes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="larger size: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def service_missing(what: str, why: str) -> None:
    """Skip (on a laptop) or fail (on CI) because a service is missing."""
    message = f"{what} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; ASSETRY_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"{message}; start it to run this test")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the PostgreSQL test database."""
    if not _port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL on 127.0.0.1:5432", "connection refused")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        service_missing("PostgreSQL", "psycopg is not installed: pip install -e '.[test]'")
    return PG_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """SQLAlchemy URL of the MariaDB/MySQL test database."""
    if not _port_open("127.0.0.1", 3306):
        service_missing("MariaDB on 127.0.0.1:3306", "connection refused")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        service_missing("MariaDB", "PyMySQL is not installed: pip install -e '.[test]'")
    return MYSQL_URL


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, of this test's own: a SQLite file, a PostgreSQL
    schema, a MariaDB database (the last two dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    import sqlalchemy as sa
    from assetry.backends.sql.testing import scratch_database

    server = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    try:
        with scratch_database(server) as url:
            yield url
    except sa.exc.OperationalError as exc:
        service_missing(request.param, str(exc.orig).strip())


@dataclass
class S3Server:
    """A moto S3 server on loopback."""

    endpoint_url: str

    @property
    def storage_options(self) -> dict[str, object]:
        return {
            "endpoint_url": self.endpoint_url,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def reset(self) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def make_bucket(self, name: str | None = None) -> str:
        import boto3

        name = name or f"assetry-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[S3Server]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_missing("the S3 test server (moto)", f"{exc}: pip install -e '.[test]'")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_server: S3Server) -> S3Server:
    """The moto S3 server, reset to empty for this test."""
    _moto_server.reset()
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:  # pragma: no cover - s3fs is a dependency
        pass
    return _moto_server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the moto server."""
    return s3_server.make_bucket()


@pytest.fixture(scope="session")
def mysqlclient_url(mysql_url: str) -> str:
    """The MariaDB URL, for tests that go through mysqlclient (ibis's MySQL driver)."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        service_missing(
            "mysqlclient (ibis's MySQL driver)",
            "not installed: apt-get install libmariadb-dev pkg-config && pip install -e '.[mysql]'",
        )
    return mysql_url
