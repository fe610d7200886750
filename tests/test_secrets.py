"""No secret reaches text: random secrets in every URL form and connection field, on every
backend and IO manager, succeeding and failing, are found in no repr, str, exception,
traceback, log record (DEBUG included), CLI output (``--json`` too) or HTTP response.

The forms: a password in the user-info (raw, with the ``/``, ``#`` and ``?`` SQLAlchemy
accepts there, and URL-encoded), each secret-like query parameter, and the secret fields of
a JSON connection. Sizes are small by default; ``--run-slow`` runs many more examples.
"""

from __future__ import annotations

import json
import logging
import string
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pandas as pd
import pytest
from assetry import Asset, Connection, Instance, load_settings
from assetry.cli import main
from assetry.iomanager import IOManagerDispatcher
from assetry.storage_clients import DatabaseClient, ObjectStoragePath
from assetry.urls import (
    is_secret_name,
    parse_asset_uri,
    parse_database_url,
    redact,
    render_url,
    scrub_text,
    secrets_of,
)
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: Query parameters and connection fields that hold secrets, one of each kind.
SECRET_PARAMS = (
    "password",
    "sslpassword",
    "secret",
    "token",
    "api_key",
    "api_token",
    "aws_secret_access_key",
    "access_key",
    "sas_token",
    "sig",
    "Password",
    "API-TOKEN",
)
#: What a user-info password may hold unencoded (SQLAlchemy reads up to the ``@``).
_ALPHABET = string.ascii_letters + string.digits + "/#?!-_.~:;,+$"
secret_values = st.text(_ALPHABET, min_size=14, max_size=20).map(lambda s: f"Zq{s}")
DEAD = "127.0.0.1:1"  # nothing listens on port 1
NO_RETRY = {"retries": {"max_attempts": 1}, "connect_timeout": 2}

FAST = settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def forms_of(secret: str) -> set[str]:
    """The secret as written and in every encoding a renderer might produce."""
    return {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}


def assert_hidden(secret: str, *texts: object) -> None:
    for text in texts:
        shown = text if isinstance(text, str) else repr(text)
        for form in forms_of(secret):
            assert form not in shown, f"a secret leaked: {shown[:400]!r}"


def url_forms(base: str, secret: str) -> list[str]:
    """``base`` (``scheme://user@host/db``) with ``secret`` in every place a URL holds one."""
    scheme, _, rest = base.partition("://")
    user, at, hostpath = rest.partition("@")
    encoded = quote(secret, safe="")
    forms = []
    if at:
        forms.append(f"{scheme}://{user}:{secret}@{hostpath}")
        forms.append(f"{scheme}://{user}:{encoded}@{hostpath}")
    sep = "&" if "?" in base else "?"
    forms.extend(f"{base}{sep}{param}={encoded}" for param in SECRET_PARAMS)
    return forms


def connection_json(secret: str, **fields: Any) -> str:
    """A JSON connection whose secret fields all hold ``secret``."""
    data = {param: secret for param in ("password", "sslpassword", "api_token")}
    data.update(fields)
    return json.dumps(data)


@dataclass
class Seen:
    """Every text a scenario produced, checked at the end."""

    texts: list[object] = field(default_factory=list)

    def exc(self, exc: BaseException) -> None:
        self.texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]

    outcomes: list[str] = field(default_factory=list)

    def attempt(self, action: Callable[[], object]) -> None:
        try:
            result = action()
        except Exception as exc:
            self.exc(exc)
            self.outcomes.append(type(exc).__name__)
        else:
            self.texts.append(repr(result))
            self.outcomes.append("ok")


def cli_outputs(seen: Seen, env: dict[str, str], *prefix: str) -> None:
    """``config show`` and ``doctor``, plain and ``--json``, and a command that opens the
    backend."""
    runner = CliRunner()
    for args in (
        ("config", "show"),
        ("--json", "config", "show"),
        ("doctor",),
        ("--json", "doctor"),
        ("--json", "assets", "list"),
    ):
        result = runner.invoke(main, [*prefix, *args], env=env)
        seen.texts.append(result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            seen.exc(result.exception)


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ASSETRY_") and name != "ASSETRY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


# -- the renderer and the scrubber, alone ---------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    secret=secret_values,
    base=st.sampled_from(
        [
            "postgresql+psycopg://etl@db.internal:5432/warehouse",
            "mysql://root@127.0.0.1:3306/test",
            "https://etl@assetry.internal:8000",
            "s3://key@bucket/prefix",
            "az://container/blob",
            "sqlite:///state.db",
        ]
    ),
    which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1),
)
def test_every_url_form_renders_and_scrubs_its_secret_away(
    secret: str, base: str, which: int
) -> None:
    forms = url_forms(base, secret)
    url = forms[which % len(forms)]
    assert secrets_of(url) & forms_of(secret) or unquote(secret) in secrets_of(url)
    texts: list[object] = [
        render_url(url),
        scrub_text(f"driver said: cannot use {url} (FATAL)"),
        scrub_text(f"password={secret} failed", secrets_of(url)),
        redact({"url": url, "options": {"sslpassword": secret}, "items": [url]}),
        repr(Connection.parse("c", url)),
        str(Connection.parse("c", connection_json(secret, uri=url))),
    ]
    try:
        db = parse_database_url(url)
    except Exception as exc:
        texts.append(str(exc))
    else:
        texts += [render_url(db), scrub_text(db.render_as_string(hide_password=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an asset URI's password is dropped
        try:
            texts += [repr(parse_asset_uri(url)), repr(Asset("a", uri=url))]
        except ValueError as exc:
            texts.append(str(exc))
    assert_hidden(secret, *texts)


@settings(max_examples=60, deadline=None)
@given(secret=secret_values, name=st.sampled_from(SECRET_PARAMS))
def test_free_text_pairs_and_known_secrets_are_scrubbed(secret: str, name: str) -> None:
    assert is_secret_name(name)
    texts = [
        scrub_text(f'connect({{"{name}": "{secret}", "host": "h"}}) failed'),
        scrub_text(f"invalid {name}='{secret}' given"),
        scrub_text(f"the password {secret} was refused", {secret}),
        scrub_text(f"refused: {quote(secret, safe='')}", {secret}),
    ]
    assert_hidden(secret, *texts)


def test_ordinary_words_and_values_are_left_alone() -> None:
    text = "partition key: '2024-06-01'; store key='watermark' of s3://b/k?region=eu"
    assert scrub_text(text) == text
    assert render_url("postgresql://etl@db/wh?sslmode=require") == (
        "postgresql://etl@db/wh?sslmode=require"
    )


# -- every backend, succeeding and failing ------------------------------------------------


@pytest.fixture(scope="module")
def pg_scratch(pg_url: str) -> Iterator[str]:
    from assetry.backends.sql.testing import scratch_database

    with scratch_database(pg_url, prefix="assetry_secrets") as url:
        yield url


@pytest.fixture(scope="module")
def mysql_scratch(mysql_url: str) -> Iterator[str]:
    from assetry.backends.sql.testing import scratch_database

    with scratch_database(mysql_url, prefix="assetry_secrets") as url:
        yield url


def _with_user(url: str, user: str) -> str:
    """``url`` with ``user`` in its user-info (the forms put the password after it)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}@{rest.split('@', 1)[-1]}"


def _exercise_backend(
    seen: Seen, url: str, env: dict[str, str], *, cli: bool, **options: Any
) -> None:
    """Resolve settings, open an instance, write and read, and run the CLI on ``url``."""

    def run() -> None:
        cfg = load_settings(url=url, options=options or None, environ=env)
        seen.texts += [repr(cfg), str(cfg), cfg.describe()]
        with Instance(settings=cfg) as inst:
            seen.texts.append(repr(inst))
            seen.texts.append(repr(inst.backend))
            orders = Asset("orders", uri="memory://secrets/orders")
            inst.asset_store(orders).set("k", 1)
            seen.texts.append(repr(inst.asset_store(orders).get("k")))

    seen.attempt(run)
    if cli:
        cli_outputs(seen, {**env, "ASSETRY_BACKEND_URL": url})


BACKENDS = [
    "sqlite",
    "postgresql-up",
    "postgresql-down",
    "mariadb",
    "memory",
    "http-up",
    "http-down",
    "objectstore-file",
    "objectstore-s3",
]


@dataclass
class Target:
    """A backend under test: its base URL, backend options and the S3 endpoint to use."""

    base: str
    options: dict[str, Any] = field(default_factory=dict)
    endpoint: str = f"http://{DEAD}"
    up: bool = True  # whether the plain base URL works (its secrets only in connections)
    accept: Callable[[str], None] | None = None  # makes the service accept the secret


@pytest.fixture(scope="module")
def live_http() -> Iterator[Any]:
    """A live server on a memory instance; each example makes it accept its secret."""
    pytest.importorskip("uvicorn")
    from assetry.backends.memory import MemoryBackend
    from assetry.server.app import create_app
    from assetry.server.live import LiveServer

    app = create_app(Instance(backend=MemoryBackend()), tokens=[])
    with LiveServer(app) as live:
        yield live


def _accept(live: Any, secret: str) -> None:
    """Make the live server accept ``secret`` as a write token (the http backend sends the
    password of the ``assetry_default`` connection)."""
    from assetry.server.auth import ApiToken

    live.app.state.auth.tokens = (ApiToken("admin", secret, "write"),)


@pytest.fixture
def backend_base(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    kind = request.param
    if kind == "sqlite":
        return Target(f"sqlite:///{tmp_path}/state.db")
    if kind == "postgresql-up":
        return Target(_with_user(request.getfixturevalue("pg_scratch"), "postgres"))
    if kind == "postgresql-down":
        return Target(f"postgresql+psycopg://etl@{DEAD}/x", {"connect_timeout": 2}, up=False)
    if kind == "mariadb":
        return Target(_with_user(request.getfixturevalue("mysql_scratch"), "root"))
    if kind == "memory":
        return Target(f"memory://secrets-{uuid.uuid4().hex}")
    if kind == "http-up":
        live = request.getfixturevalue("live_http")
        return Target(live.url, {"timeout": 5}, accept=lambda secret: _accept(live, secret))
    if kind == "http-down":
        return Target(f"http://{DEAD}", {"timeout": 2}, up=False)
    if kind == "objectstore-file":
        return Target(f"file://{tmp_path}/store")
    s3 = request.getfixturevalue("s3_server")
    options = {"conn_id": "store", "max_attempts": 1}
    return Target(f"s3://{s3.make_bucket()}/state", options, s3.endpoint_url)


@pytest.mark.services
@pytest.mark.parametrize("backend_base", BACKENDS, indirect=True)
@FAST
@given(secret=secret_values, which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1))
def test_backend_urls_and_connections_never_show_their_secret(
    backend_base: Target,
    secret: str,
    which: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clean_env(monkeypatch)
    base, options = backend_base.base, backend_base.options
    forms = url_forms(base, secret)
    url = forms[which % len(forms)]
    # S3 reachable for even examples (success), a dead endpoint for odd ones (failure)
    endpoint = f"http://{DEAD}" if which % 2 else backend_base.endpoint
    env = {
        # connections of every kind, their secret fields holding the secret
        "ASSETRY_CONN_POSTGRES_DEFAULT": connection_json(secret, login="etl"),
        "ASSETRY_CONN_MYSQL_DEFAULT": connection_json(secret, login="nobody"),
        "ASSETRY_CONN_ASSETRY_DEFAULT": connection_json(secret),
        "ASSETRY_CONN_AZURE_DEFAULT": json.dumps(
            {
                "account_name": "acct",
                "account_key": secret,
                "sas_token": secret,
                "connection_string": f"AccountName=acct;AccountKey={quote(secret, safe='')}",
            }
        ),
        "ASSETRY_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"token": secret, "project": "p"}),
        "ASSETRY_CONN_AWS_DEFAULT": connection_json(
            secret, key="testing", endpoint_url=f"http://{DEAD}", config_kwargs=NO_RETRY
        ),
        "ASSETRY_CONN_STORE": json.dumps(
            {
                "endpoint_url": endpoint,
                "key": "testing",
                "secret": secret,
                "client_kwargs": {"region_name": "us-east-1"},
                "config_kwargs": NO_RETRY,
            }
        ),
        "ASSETRY_BACKEND_OPTIONS": json.dumps(options),
    }
    if backend_base.accept is not None:
        backend_base.accept(secret)
    seen = Seen()
    with caplog.at_level(logging.DEBUG):
        # the URL with the secret in it, then the plain URL with the secret in connections
        _exercise_backend(seen, url, env, cli=True, **options)
        _exercise_backend(seen, base, env, cli=False, **options)
    seen.texts += [r.getMessage() for r in caplog.records]
    seen.texts += [r.exc_text for r in caplog.records if r.exc_text]
    assert_hidden(secret, *seen.texts)
    # the plain URL, its secrets in connections only, worked where the service is up
    up = backend_base.up and (endpoint == backend_base.endpoint or "s3" not in base)
    assert (seen.outcomes[-1] == "ok") is up, seen.outcomes


# -- every IO manager ---------------------------------------------------------------------


IO_TARGETS = ["duckdb", "postgresql-up", "postgresql-down", "mariadb", "s3", "s3-down", "file"]


@dataclass
class IOTarget:
    """An IO manager under test: the asset URI, its connection and which of the secret
    kinds (indexes into the test's ``kinds``) it accepts; none when the service is down."""

    uri: str
    conn_id: str = ""
    endpoint: str = ""
    accepts: tuple[int, ...] = (0, 1, 2, 3)


@pytest.fixture
def io_target(request: pytest.FixtureRequest, tmp_path: Path) -> IOTarget:
    kind = request.param
    if kind == "duckdb":
        return IOTarget(f"duckdb:///{tmp_path}/t.duckdb/orders")
    if kind == "postgresql-up":
        scratch = request.getfixturevalue("pg_scratch")
        schema = unquote(scratch).rsplit("search_path=", 1)[-1].split("&")[0]
        uri = f"postgresql://postgres@127.0.0.1:5432/test/{schema}/orders"
        return IOTarget(uri, "postgres_default", accepts=(0, 2))  # libpq knows sslpassword
    if kind == "postgresql-down":
        return IOTarget(f"postgresql://{DEAD}/x/public/orders", "postgres_default", accepts=())
    if kind == "mariadb":
        database = parse_database_url(request.getfixturevalue("mysql_scratch")).database
        return IOTarget(
            f"mysql://root@127.0.0.1:3306/{database}/orders", "mysql_default", accepts=(0,)
        )
    if kind == "file":
        return IOTarget(f"file://{tmp_path}/orders.parquet", "aws_default")
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        uri = f"s3://{s3.make_bucket()}/orders.parquet"
        return IOTarget(uri, "aws_default", s3.endpoint_url)
    return IOTarget("s3://nowhere/orders.parquet", "aws_default", f"http://{DEAD}", accepts=())


@pytest.mark.services
@pytest.mark.parametrize("io_target", IO_TARGETS, indirect=True)
@FAST
@given(secret=secret_values, which=st.integers(min_value=0, max_value=3))
def test_io_managers_never_show_a_connections_secret(
    io_target: IOTarget,
    secret: str,
    which: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clean_env(monkeypatch)
    uri, conn_id, endpoint = io_target.uri, io_target.conn_id, io_target.endpoint
    kinds = [
        # the secret as the password only (a trusting server lets it in: success)
        {"password": secret},
        # as the password and driver options (the driver refuses unknown ones: failure)
        json.loads(connection_json(secret)),
        {"password": secret, "sslpassword": secret},
        {"token": secret, "api_key": secret, "password": secret},
    ]
    fields: dict[str, Any] = dict(kinds[which])
    if uri.startswith("mysql"):
        fields["login"] = "nobody"  # not the URI's user, so its password is not sent
    if uri.startswith("s3") or uri.startswith("file"):
        fields = {
            "endpoint_url": endpoint or f"http://{DEAD}",
            "key": "testing",
            "secret": secret,
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": NO_RETRY,
        }
    environ = {f"ASSETRY_CONN_{conn_id.upper()}": json.dumps(fields)} if conn_id else {}
    cfg = load_settings(backend="memory", environ=environ)
    seen = Seen()
    asset = Asset("orders", uri=uri)
    dispatcher = IOManagerDispatcher(cfg)
    with caplog.at_level(logging.DEBUG):

        def write_and_read() -> object:
            with dispatcher.connect(asset) as handle:
                seen.texts.append(repr(handle))
                handle.overwrite(pd.DataFrame({"n": [1, 2]}))
                return handle.to_pandas()

        seen.attempt(write_and_read)
        seen.attempt(lambda: repr(DatabaseClient(uri, conn_id=conn_id or None)))
        if not uri.startswith(("postgresql", "mysql", "duckdb")):
            seen.attempt(lambda: ObjectStoragePath(uri, conn_id=conn_id or None).exists())
        dispatcher.close()
        seen.texts += [repr(cfg), cfg.describe()]
    seen.texts += [r.getMessage() for r in caplog.records]
    assert_hidden(secret, *seen.texts)
    # a trusting server lets the user in, a driver refuses options it does not know
    assert (seen.outcomes[0] == "ok") is (which in io_target.accepts), seen.outcomes


# -- the HTTP server ----------------------------------------------------------------------


@given(secret=secret_values, which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1))
@FAST
def test_server_error_bodies_pages_and_logs_never_show_the_backends_secret(
    secret: str, which: int, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("fastapi")
    from assetry.server.app import create_app
    from assetry.server.auth import ApiToken
    from fastapi.testclient import TestClient

    forms = url_forms(f"postgresql+psycopg://etl@{DEAD}/x", secret)
    url = forms[which % len(forms)]
    reader = uuid.uuid4().hex
    seen = Seen()
    with caplog.at_level(logging.DEBUG), Instance(url=url, connect_timeout=2) as inst:
        app = create_app(inst, tokens=[ApiToken("reader", reader, "read")])
        client = TestClient(app, raise_server_exceptions=False)
        auth = {"authorization": f"Bearer {reader}"}
        for path in ("/api/v1/assets", "/api/v1/ready", "/api/v1/assets/orders/events"):
            response = client.get(path, headers=auth)
            seen.texts += [response.status_code, response.text]
        assert any(text == 503 for text in seen.texts)
        client.post("/ui/login", data={"token": reader, "next": "/ui/"})
        page = client.get("/ui/")
        seen.texts += [page.text]
    seen.texts += [r.getMessage() for r in caplog.records]
    assert_hidden(secret, *seen.texts)


@given(secret=secret_values, which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1))
@FAST
def test_serve_start_up_line_never_shows_the_backends_secret(
    secret: str, which: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("uvicorn")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **config: None)
    forms = url_forms(f"postgresql+psycopg://etl@{DEAD}/x", secret)
    url = forms[which % len(forms)]
    result = CliRunner().invoke(
        main, ["serve", "--anonymous", "read"], env={"ASSETRY_BACKEND_URL": url}
    )
    assert "assetry serving" in result.output
    assert_hidden(secret, result.output)


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("backend_base", BACKENDS, indirect=True)
@SLOW
@given(secret=secret_values, which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1))
def test_backend_secrets_stay_hidden_at_a_larger_size(
    backend_base: Target,
    secret: str,
    which: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    test_backend_urls_and_connections_never_show_their_secret.hypothesis.inner_test(  # type: ignore[attr-defined]
        backend_base, secret, which, caplog, monkeypatch
    )


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("io_target", IO_TARGETS, indirect=True)
@SLOW
@given(secret=secret_values, which=st.integers(min_value=0, max_value=3))
def test_io_manager_secrets_stay_hidden_at_a_larger_size(
    io_target: IOTarget,
    secret: str,
    which: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    test_io_managers_never_show_a_connections_secret.hypothesis.inner_test(  # type: ignore[attr-defined]
        io_target, secret, which, caplog, monkeypatch
    )


@pytest.mark.slow
@SLOW
@given(secret=secret_values, which=st.integers(min_value=0, max_value=len(SECRET_PARAMS) + 1))
def test_server_secrets_stay_hidden_at_a_larger_size(
    secret: str, which: int, caplog: pytest.LogCaptureFixture
) -> None:
    test_server_error_bodies_pages_and_logs_never_show_the_backends_secret.hypothesis.inner_test(  # type: ignore[attr-defined]
        secret, which, caplog
    )
