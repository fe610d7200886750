"""Fixtures for the Airflow integration tests (run in their own virtualenv, see .ci/run).

Airflow 3.3.2 runs in this process on a SQLite metadata database under a temporary
AIRFLOW_HOME (or the one the caller exported); nothing else of Airflow is started. Task-side
calls go through Airflow's own accessor and the execution API's route functions: a stand-in
for the supervisor's channel hands each message to the route the API server would run.

Every test that takes ``instance`` runs on three assetry backends: SQLite, PostgreSQL
(a scratch schema on 127.0.0.1:5432) and S3 (moto on 127.0.0.1).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ:
    _home = tempfile.mkdtemp(prefix="assetry-airflow-")
    os.environ["AIRFLOW_HOME"] = _home
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
    _MIGRATE = True
else:
    _MIGRATE = os.environ.get("ASSETRY_AIRFLOW_MIGRATE", "") == "1"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__STATE_STORE__BACKEND"] = "assetry.airflow.AssetryStoreBackend"
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_name, "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import pytest  # noqa: E402

PG_URL = os.environ.get("ASSETRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("ASSETRY_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Bring the metadata database to Airflow's schema (skipped when the caller did it)."""
    if _MIGRATE:
        from airflow.utils.db import upgradedb

        upgradedb()


# -- the Airflow metadata database ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_airflow_tables() -> Iterator[None]:
    """Each test starts with no assets, runs or state rows in Airflow's database."""
    _wipe()
    yield
    _wipe()


def _wipe() -> None:
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.models.dagrun import DagRun
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        for model in (TaskStateStoreModel, AssetStateStoreModel, AssetActive, DagRun, AssetModel):
            session.execute(delete(model))


def add_asset(name: str, uri: str, *, active: bool = True, group: str = "asset") -> int:
    """Declare an asset in Airflow's database (as the Dag processor does); return its id."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        model = AssetModel(name=name, uri=uri, group=group)
        session.add(model)
        session.flush()
        if active:
            session.add(AssetActive.for_asset(model))
        return int(model.id)


def deactivate_in_airflow(name: str) -> None:
    """Remove the asset from Airflow's active assets (what orphaning does)."""
    from airflow.models.asset import AssetActive
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetActive).where(AssetActive.name == name))


def metastore_asset_rows() -> int:
    """How many rows Airflow's own asset_state_store table holds."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(session.scalar(select(func.count()).select_from(AssetStateStoreModel)) or 0)


# -- assetry on three backends ----------------------------------------------------------------


def _service_missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (ASSETRY_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} is unavailable")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, for the session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        _service_missing("moto (the S3 test server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"assetry-af-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["sqlite", "postgresql", "s3"])
def instance_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The URL of a fresh assetry state store on each backend. For S3 the endpoint comes
    from Airflow's ``aws_default`` connection, through assetry's connection fallback."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    elif request.param == "postgresql":
        if not _port_open(5432):
            _service_missing("PostgreSQL on 127.0.0.1:5432")
        from assetry.backends.sql.testing import scratch_database

        with scratch_database(PG_URL, prefix="assetry_airflow") as url:
            yield url
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            '{"conn_type": "aws", "login": "testing", "password": "testing", '
            f'"extra": {{"endpoint_url": "{endpoint}", "region_name": "us-east-1"}}}}',
        )
        _forget_airflow_connection_cache()
        yield f"s3://{make_bucket(endpoint)}/state"


def _forget_airflow_connection_cache() -> None:
    try:
        from airflow.sdk.execution_time.cache import SecretCache

        SecretCache.reset()
    except (ImportError, AttributeError):
        pass


@pytest.fixture
def instance(instance_url: str) -> Iterator[Any]:
    """An assetry instance on the parametrised backend."""
    import assetry

    with assetry.Instance.from_url(instance_url) as inst:
        yield inst


@pytest.fixture
def configured_backend(instance_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's ``get_state_backend()``, built by Airflow from its configuration:
    ``[state_store] backend`` is AssetryStoreBackend, ``[assetry] backend_url`` this URL."""
    import airflow.state as state

    monkeypatch.setenv("AIRFLOW__ASSETRY__BACKEND_URL", instance_url)
    monkeypatch.setattr(state, "_backend_instance", None)
    backend = state.get_state_backend()
    try:
        yield backend
    finally:
        backend.instance.close()


# -- the task side: Airflow's accessor, the execution API's routes ------------------------------


class RouteComms:
    """Stands in for the supervisor's channel: each message a task sends is answered by the
    execution API's route function for it, in a session of its own, as the API server
    would. ``ti_id`` is the token's task instance (the null id is a trigger's)."""

    def __init__(self, ti_id: uuid.UUID | None = None) -> None:
        self.ti_id = ti_id or uuid.UUID(int=0)
        self.sent: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.utils.session import create_session

        self.sent.append(msg)
        with create_session() as session:
            return self._answer(msg, session)

    async def asend(self, msg: Any) -> Any:
        return self.send(msg)

    def _answer(self, msg: Any, session: Any) -> Any:
        from airflow.api_fastapi.execution_api.datamodels.asset_state_store import (
            AssetStateStorePutBody,
        )
        from airflow.api_fastapi.execution_api.datamodels.token import TIClaims, TIToken
        from airflow.api_fastapi.execution_api.routes import asset_state_store as routes
        from airflow.api_fastapi.execution_api.routes import assets as asset_routes
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time import comms
        from fastapi import HTTPException

        token = TIToken(id=self.ti_id, claims=TIClaims(scope="execution"))
        kind = type(msg).__name__
        by = "name" if kind.endswith("ByName") else "uri"
        ident = {by: getattr(msg, by)}
        try:
            if kind.startswith("GetAssetStateStore"):
                fn = getattr(routes, f"get_asset_state_store_by_{by}")
                resp = fn(key=msg.key, session=session, **ident)
                return comms.AssetStateStoreResult(value=resp.value)
            if kind.startswith("SetAssetStateStore"):
                fn = getattr(routes, f"set_asset_state_store_by_{by}")
                body = AssetStateStorePutBody(value=msg.value)
                fn(key=msg.key, body=body, session=session, token=token, **ident)
                return comms.OKResponse(ok=True)
            if kind.startswith("DeleteAssetStateStore"):
                getattr(routes, f"delete_asset_state_store_by_{by}")(
                    key=msg.key, session=session, **ident
                )
                return comms.OKResponse(ok=True)
            if kind.startswith("ClearAssetStateStore"):
                getattr(routes, f"clear_asset_state_store_by_{by}")(session=session, **ident)
                return comms.OKResponse(ok=True)
            if kind.startswith("GetAssetBy"):
                resp = getattr(asset_routes, f"get_asset_by_{by}")(session=session, **ident)
                return comms.AssetResult(
                    name=resp.name, uri=resp.uri, group=resp.group, extra=resp.extra
                )
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            # what the task SDK's HTTP client turns a 404 into
            error = (
                ErrorType.ASSET_NOT_FOUND
                if kind.startswith("GetAssetBy")
                else ErrorType.ASSET_STORE_NOT_FOUND
            )
            return comms.ErrorResponse(error=error, detail=ident)
        raise NotImplementedError(f"no route for {kind} in these tests")


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> RouteComms:
    """The supervisor channel of a running task, answered by the execution API's routes."""
    from airflow.sdk.execution_time import task_runner

    channel = RouteComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
    return channel


@pytest.fixture
def worker_backend_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``[workers] state_store_backend`` set to AssetryWorkerStoreBackend for one test."""
    from airflow.sdk.execution_time import context

    monkeypatch.setenv(
        "AIRFLOW__WORKERS__STATE_STORE_BACKEND", "assetry.airflow.AssetryWorkerStoreBackend"
    )
    context._get_worker_state_store_backend.cache_clear()
    try:
        yield
    finally:
        backend = context._get_worker_state_store_backend()
        context._get_worker_state_store_backend.cache_clear()
        if backend is not None:
            backend.instance.close()


def run_async(make: Any) -> Any:
    """Run ``make()`` (a coroutine function) in a fresh event loop, releasing Airflow's
    async engine's connections before the loop closes (they are bound to it)."""
    import asyncio

    async def main() -> Any:
        try:
            return await make()
        finally:
            from airflow import settings

            if settings.async_engine is not None:
                await settings.async_engine.dispose()

    return asyncio.run(main())


def add_dag_run(dag_id: str, run_id: str) -> int:
    """A Dag run in Airflow's database (task state belongs to one); return its id."""
    from airflow._shared.timezones import timezone
    from airflow.models.dagrun import DagRun, DagRunType
    from airflow.utils.session import create_session

    with create_session() as session:
        run = DagRun(
            dag_id=dag_id,
            run_id=run_id,
            run_type=DagRunType.MANUAL,
            logical_date=timezone.datetime(2026, 12, 1),
            run_after=timezone.datetime(2026, 12, 1),
        )
        session.add(run)
        session.flush()
        return int(run.id)


class HTTPComms:
    """Stands in for the supervisor's channel the way Airflow's triggerer serves it: each
    message goes through Airflow's own request handlers and task-SDK HTTP client to the
    execution API application, served in this process (``InProcessExecutionAPI``)."""

    def __init__(self) -> None:
        from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
        from airflow.sdk.api.client import Client

        self.client = Client(
            base_url=None, token="", dry_run=True, transport=InProcessExecutionAPI().transport
        )
        self.client.base_url = "http://in-process.invalid./"  # as the triggerer sets it
        self.sent: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time import comms, request_handlers

        self.sent.append(msg)
        kind = type(msg).__name__
        if kind in {"GetAssetByName", "GetAssetByUri"}:
            by = {"name": msg.name} if kind.endswith("Name") else {"uri": msg.uri}
            resp = self.client.assets.get(**by)
            if isinstance(resp, comms.ErrorResponse):
                return resp
            return comms.AssetResult.from_asset_response(resp)
        words = "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")
        handler = getattr(request_handlers, f"handle_{words}")
        answer, _ = handler(self.client, msg)
        return answer if answer is not None else comms.OKResponse(ok=True)

    async def asend(self, msg: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.send, msg)


@pytest.fixture(scope="session")
def _http_comms() -> HTTPComms:
    return HTTPComms()


@pytest.fixture
def http_comms(_http_comms: HTTPComms, monkeypatch: pytest.MonkeyPatch) -> HTTPComms:
    """The supervisor channel of a running task, over HTTP to the in-process execution API."""
    from airflow.sdk.execution_time import task_runner

    _http_comms.sent.clear()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", _http_comms, raising=False)
    return _http_comms
