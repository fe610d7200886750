"""Secrets: a password or secret key given through a connection (``ASSETRY_CONN_...``) or a
backend URL never appears in a repr, a log line (captured at DEBUG), an error message (or
its traceback), an event, or the output of the command line.

Each test puts one distinctive secret where credentials go, drives the public API through
success and failure (wrong port, refused login), and searches everything it can see.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import assetry
import pyarrow as pa
import pytest
from assetry import Asset, AssetryError, task, use_instance
from click.testing import CliRunner
from stress_kit import Recorder, time_limit

pytest_plugins = ["stress_fixtures"]
pytestmark = pytest.mark.timeout(time_limit(600))

SECRET = "Zq9-Sup3r-s3cr3t-7Hw"
#: The secret as it may be spelled inside a URL.
SPELLINGS = (SECRET, quote(SECRET, safe=""), SECRET.encode().hex())


class Exposure:
    """Everything a test has seen, searched for the secret."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def see(self, where: str, obj: Any) -> None:
        if isinstance(obj, BaseException):
            text = "".join(traceback.format_exception(obj))
            self.texts.append((where, text))
            return
        self.texts.append((where, obj if isinstance(obj, str) else repr(obj)))
        if not isinstance(obj, str):
            self.texts.append((f"str({where})", str(obj)))

    def fail(self, where: str, fn: Any) -> BaseException:
        """Run ``fn``, which must fail with an AssetryError; see the error and return it."""
        try:
            fn()
        except AssetryError as exc:
            self.see(where, exc)
            return exc
        raise AssertionError(f"{where}: expected an AssetryError")

    def leaks(self, caplog: pytest.LogCaptureFixture | None = None) -> list[str]:
        texts = list(self.texts)
        if caplog is not None:
            texts.append(("logs", caplog.text))
            texts += [("log record", repr(r.__dict__)) for r in caplog.records]
        return [where for where, text in texts if any(s in text for s in SPELLINGS)]


@pytest.fixture
def exposure(caplog: pytest.LogCaptureFixture) -> Iterator[Exposure]:
    caplog.set_level(logging.DEBUG)
    yield Exposure()


def _everything(exposure: Exposure, where: str, inst: assetry.Instance) -> None:
    """repr/str of an instance and what hangs off it."""
    exposure.see(f"{where} instance", inst)
    exposure.see(f"{where} backend", inst.backend)
    exposure.see(f"{where} describe", inst.backend.describe())
    exposure.see(f"{where} settings", inst.settings)
    exposure.see(f"{where} settings rows", inst.settings.describe())
    for cid, conn in inst.settings.connections.items():
        exposure.see(f"{where} connection {cid}", conn)
    exposure.see(f"{where} io manager", inst.io_manager)


def test_database_passwords_stay_out_of_reprs_logs_errors_and_events(
    pg_url: str,
    mysql_url: str,
    exposure: Exposure,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    figures: Recorder,
) -> None:
    import sqlalchemy as sa
    from assetry.backends.sql.testing import scratch_database

    # a connection the sql backend and the table IO manager take the password from
    monkeypatch.setenv(
        "ASSETRY_CONN_POSTGRES_DEFAULT",
        json.dumps({"login": "postgres", "password": SECRET, "host": "127.0.0.1"}),
    )
    monkeypatch.setenv("ASSETRY_CONN_REPORTING", f"postgresql://postgres:{SECRET}@127.0.0.1/test")
    monkeypatch.setenv("ASSETRY_CONN_VAULT", json.dumps({"token": SECRET, "api_key": SECRET}))
    with scratch_database(pg_url, prefix="assetry_stress_secrets") as url:
        plain = sa.engine.make_url(url).set(password=None).render_as_string(hide_password=False)
        orders = Asset("orders", uri="postgresql://127.0.0.1:5432/test/public/stress_secrets")
        inst = assetry.Instance(url=plain, echo=True)  # the password: postgres_default
        with inst, use_instance(inst):
            _everything(exposure, "pg", inst)

            @task(outlets=[orders])
            def load(io_manager: Any) -> None:
                with io_manager.connect(orders) as handle:
                    exposure.see("table handle", handle)
                    handle.overwrite(pa.table({"id": [1, 2]}))

            exposure.see("task run", load.run())
            store = inst.asset_store(orders)
            store.set("watermark", "2024-06-01")
            exposure.see("store", store)
            for event in inst.events(orders):
                exposure.see("event", event)
                exposure.see("event extra", json.dumps(event.extra))
            client = assetry.DatabaseClient(orders.uri, conn_id="reporting")
            exposure.see("database client", client)
            with client.connect() as handle:
                exposure.see("client handle", handle)
                exposure.see("rows", handle.to_pyarrow().num_rows)
            client.close()
            with inst.io_manager.connect(orders) as handle:
                handle.con.drop_table("stress_secrets", database="public", force=True)

    # failures: a port nobody listens on, a login the server refuses, a bad URL
    exposure.fail(
        "pg wrong port",
        lambda: assetry.Instance(
            url=f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:9/test",
            connect_timeout=1,
            retry_timeout=0.5,
        ).assets(),
    )
    exposure.fail(
        "pg refused login",
        lambda: assetry.Instance(
            url=f"postgresql+psycopg://nobody_stress:{SECRET}@127.0.0.1:5432/test"
        ).assets(),
    )
    mysql = sa.engine.make_url(mysql_url)
    exposure.fail(
        "mariadb refused password",
        lambda: assetry.Instance(
            url=mysql.set(username="nobody_stress", password=SECRET).render_as_string(
                hide_password=False
            )
        ).assets(),
    )
    exposure.fail(
        "unknown driver",
        lambda: assetry.Instance(url=f"postgresql+nodriver://u:{SECRET}@h/db"),
    )
    monkeypatch.setenv(
        "ASSETRY_CONN_REPORTING_BAD", f"postgresql://nobody_stress:{SECRET}@127.0.0.1:5432/test"
    )
    exposure.fail(
        "table io refused login",
        lambda: _write_table("postgresql://127.0.0.1:5432/test/public/t", "reporting_bad"),
    )
    leaks = exposure.leaks(caplog)
    figures.record(
        "postgresql, mariadb",
        "secrets",
        hostile_inputs=len(exposure.texts) + len(caplog.records),
        lost=len(leaks),
        notes={"scenario": "database passwords", "texts_searched": len(exposure.texts)},
    )
    assert leaks == []


def _write_table(uri: str, conn_id: str) -> None:
    with assetry.DatabaseClient(uri, conn_id=conn_id) as client, client.connect() as handle:
        handle.insert(pa.table({"id": [1]}))


def test_object_store_secret_keys_stay_out_of_reprs_logs_errors_and_events(
    s3_server: Any,
    exposure: Exposure,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    figures: Recorder,
) -> None:
    bucket = s3_server.make_bucket()
    # moto accepts any key pair: the secret is what the client signs with
    options = {**s3_server.storage_options, "secret": SECRET}
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(options))
    monkeypatch.setenv(
        "ASSETRY_CONN_ARCHIVE",
        f"s3://testing:{SECRET}@archive?endpoint_url={quote(s3_server.endpoint_url, safe='')}",
    )
    orders = Asset("orders", uri=f"s3://{bucket}/orders.parquet")
    with assetry.Instance(url=f"s3://{bucket}/state") as inst, use_instance(inst):
        _everything(exposure, "s3", inst)

        @task(outlets=[orders])
        def load(io_manager: Any) -> None:
            with io_manager.connect(orders) as handle:
                exposure.see("file handle", handle)
                handle.overwrite(pa.table({"id": [1, 2]}))

        exposure.see("task run", load.run())
        for event in inst.events(orders):
            exposure.see("event", event)
        path = assetry.ObjectStoragePath(f"s3://{bucket}/orders.parquet")
        exposure.see("object storage path", path)
        exposure.see("path storage options", repr(path))

    # failures: a missing bucket, an endpoint that refuses connections, a bad named connection
    exposure.fail(
        "missing bucket",
        lambda: assetry.Instance(url="s3://no-such-bucket-stress/state").assets(),
    )
    monkeypatch.setenv(
        "ASSETRY_CONN_AWS_DEFAULT",
        json.dumps({**options, "endpoint_url": "http://127.0.0.1:9"}),
    )
    exposure.fail(
        "refused endpoint",
        lambda: assetry.Instance(
            url=f"s3://{bucket}/state", max_attempts=2, retry_base_delay=0.01
        ).assets(),
    )
    exposure.fail(
        "credentials in the state URL",
        lambda: assetry.Instance(url=f"s3://key:{SECRET}@{bucket}/state"),
    )
    monkeypatch.setenv("ASSETRY_CONN_BROKEN", "{" + f'"secret": "{SECRET}", oops')
    exposure.fail("malformed connection", lambda: assetry.load_settings())
    leaks = exposure.leaks(caplog)
    figures.record(
        "s3",
        "secrets",
        hostile_inputs=len(exposure.texts) + len(caplog.records),
        lost=len(leaks),
        notes={"scenario": "S3 secret keys", "texts_searched": len(exposure.texts)},
    )
    assert leaks == []


def test_command_line_output_never_shows_a_secret(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    figures: Recorder,
) -> None:
    from assetry.cli import main

    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "ASSETRY_CONN_POSTGRES_DEFAULT", json.dumps({"login": "postgres", "password": SECRET})
    )
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps({"key": "k", "secret": SECRET}))
    monkeypatch.setenv("ASSETRY_CONN_SHOP", f"mysql://shop:{SECRET}@db.example/shop?token={SECRET}")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    wrong_port = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:9/test"
    runs = [
        ["--url", state, "store", "set", "orders", "watermark", '"2024-06-01"'],
        ["--url", state, "assets", "list"],
        ["--url", state, "events", "list", "orders"],
        ["--url", state, "config", "show"],
        ["--url", state, "--json", "config", "show"],
        ["--url", state, "doctor"],
        ["--url", wrong_port, "assets", "list"],
        ["--url", wrong_port, "doctor"],
        ["--url", wrong_port, "db", "current"],
        ["--url", f"s3://k:{SECRET}@bucket/state", "assets", "list"],
        ["--url", f"postgresql+nodriver://u:{SECRET}@h/db", "assets", "list"],
        ["--backend", "sql", "--url", wrong_port, "config", "show"],
    ]
    runner = CliRunner()
    seen: list[tuple[str, str]] = []
    for args in runs:
        monkeypatch.setenv("ASSETRY_BACKEND_URL", wrong_port)
        result = runner.invoke(main, args, catch_exceptions=True)
        seen.append((" ".join(args[2:]), result.output))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            seen.append(("exception", "".join(traceback.format_exception(result.exception))))
    seen.append(("logs", caplog.text))
    leaks = [where for where, text in seen if any(s in text for s in SPELLINGS)]
    figures.record(
        "cli",
        "secrets",
        hostile_inputs=len(runs),
        lost=len(leaks),
        notes={"scenario": "command line output"},
    )
    assert any("***" in text for _, text in seen)  # masked, not dropped
    assert leaks == []
