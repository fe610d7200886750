"""The objectstore backend: the conformance suite on S3 (moto), a local directory and
memory://, plus what only it does (layout, requests per operation, retries, connections)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import assetry
import pytest
from assetry.backend import EventQuery, NewEvent
from assetry.backends.objectstore import Layout, ObjectStoreBackend
from assetry.backends.objectstore.base import HINT_INTERVAL, TOKEN_HISTORY
from assetry.backends.objectstore.location import _storage_options
from assetry.errors import BackendUnavailableError, ConfigurationError, ConflictError
from assetry.testing import StateBackendConformance

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def aio_session() -> Any:
    """One aiobotocore session for the module: each test still gets its own client, but the
    S3 service model is parsed once instead of once per test."""
    from aiobotocore.session import AioSession

    return AioSession()


def _memory_url() -> str:
    return f"memory://assetry-test-{uuid.uuid4().hex}/state"


# == conformance =================================================================================


@pytest.mark.services
class TestObjectStoreOnS3(StateBackendConformance):
    """Every behaviour of the contract on moto's S3 server (one request is ~10 ms there)."""

    threads = 6
    updates_per_thread = 10
    appends_per_thread = 5
    pagination_events = 15
    page_size = 4

    @pytest.fixture
    def s3_url(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/state/v1"

    @pytest.fixture
    def s3_options(self, s3_server: Any, aio_session: Any) -> dict[str, Any]:
        return {**s3_server.storage_options, "session": aio_session}

    @pytest.fixture
    def backend(self, s3_url: str, s3_options: dict[str, Any]) -> Iterator[ObjectStoreBackend]:
        with ObjectStoreBackend(s3_url, storage_options=s3_options) as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(
        self, s3_url: str, s3_options: dict[str, Any]
    ) -> Callable[[], ObjectStoreBackend]:
        return lambda: ObjectStoreBackend(s3_url, storage_options=s3_options)


class TestObjectStoreOnLocalDirectory(StateBackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[ObjectStoreBackend]:
        with ObjectStoreBackend(f"file://{tmp_path}/state") as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self, tmp_path: Path) -> Callable[[], ObjectStoreBackend]:
        return lambda: ObjectStoreBackend(f"file://{tmp_path}/state")


class TestObjectStoreOnMemory(StateBackendConformance):
    @pytest.fixture
    def memory_url(self) -> Iterator[str]:
        url = _memory_url()
        yield url
        import fsspec

        fs = fsspec.filesystem("memory")
        root = "/" + url.split("://", 1)[1].split("/", 1)[0]
        if fs.exists(root):
            fs.rm(root, recursive=True)

    @pytest.fixture
    def backend(self, memory_url: str) -> Iterator[ObjectStoreBackend]:
        with ObjectStoreBackend(memory_url) as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self, memory_url: str) -> Callable[[], ObjectStoreBackend]:
        return lambda: ObjectStoreBackend(memory_url)


# == S3 helpers ===================================================================================


class RequestLog:
    """Counts the HTTP requests a backend's S3 client sends, by operation (botocore events)."""

    def __init__(self, backend: ObjectStoreBackend) -> None:
        client = backend.storage.client()  # type: ignore[attr-defined]
        self.calls: list[str] = []
        client.meta.events.register("before-send.s3", self._seen)

    def _seen(self, request: Any, **kwargs: Any) -> None:
        self.calls.append(f"{request.method}")

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/state"


@pytest.fixture
def s3_backend(s3_url: str, s3_server: Any) -> Iterator[ObjectStoreBackend]:
    with ObjectStoreBackend(s3_url, storage_options=s3_server.storage_options) as backend:
        yield backend


def _bucket_keys(s3_server: Any, bucket: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# == requests per operation =======================================================================


@pytest.mark.services
def test_get_is_one_get_and_set_of_a_known_key_is_one_put(s3_backend: ObjectStoreBackend) -> None:
    s3_backend.register_asset("orders", "s3://data/orders")
    s3_backend.store_set("orders", "watermark", '"2024-06-01"')
    log = RequestLog(s3_backend)
    assert s3_backend.store_get("orders", "watermark") is not None
    assert log.take() == ["GET"]
    assert s3_backend.store_set("orders", "watermark", '"2024-06-02"') == 2
    assert log.take() == ["PUT"]
    assert s3_backend.store_set("orders", "watermark", '"2024-06-03"', expected_version=2) == 3
    assert log.take() == ["PUT"]


@pytest.mark.services
def test_update_is_one_get_and_one_put(s3_backend: ObjectStoreBackend) -> None:
    instance = assetry.Instance(backend=s3_backend)
    store = instance.asset_store(assetry.Asset("orders", uri="s3://data/orders"))
    store.set("runs", 0)
    log = RequestLog(s3_backend)
    assert store.update("runs", lambda n: n + 1) == 1
    assert log.take() == ["GET", "PUT"]


@pytest.mark.services
def test_append_to_a_known_log_is_one_put(s3_backend: ObjectStoreBackend) -> None:
    s3_backend.register_asset("orders", "s3://data/orders")
    s3_backend.append_events([NewEvent("orders")])
    log = RequestLog(s3_backend)
    assert s3_backend.append_events([NewEvent("orders")])[0].id == 2
    assert log.take() == ["PUT"]


@pytest.mark.services
def test_a_stale_cached_version_costs_a_reread_not_a_lost_write(
    s3_url: str, s3_server: Any
) -> None:
    first = ObjectStoreBackend(s3_url, storage_options=s3_server.storage_options)
    second = ObjectStoreBackend(s3_url, storage_options=s3_server.storage_options)
    first.register_asset("orders", "s3://data/orders")
    first.store_set("orders", "k", "1")
    second.store_set("orders", "k", "2")  # first's remembered ETag is now stale
    log = RequestLog(first)
    assert first.store_set("orders", "k", "3") == 3
    assert log.take() == ["PUT", "GET", "PUT"]  # 412, read again, write
    with pytest.raises(ConflictError, match="'k'"):
        second.store_set("orders", "k", "4", expected_version=2)
    entry = second.store_get("orders", "k")
    assert entry is not None and (entry.value, entry.version) == (3, 3)


# == layout =======================================================================================


@pytest.mark.services
def test_every_object_stays_under_the_prefix(
    s3_backend: ObjectStoreBackend, s3_bucket: str, s3_server: Any
) -> None:
    names = ["a/b", "a_b", "a%2Fb", "..", ".", "ünï/../cödé", "x" * 1500]
    for i, name in enumerate(names):
        s3_backend.register_asset(name, f"s3://data/{i}")
        s3_backend.store_set(name, name, json.dumps(i), partition=name[:500])
        s3_backend.append_events([NewEvent(name, aliases=(name,))])
        s3_backend.set_cursors(name, {name: 1})
    keys = _bucket_keys(s3_server, s3_bucket)
    assert keys and all(k.startswith("state/") for k in keys)
    assert all(len(k.encode()) <= 1024 for k in keys)
    assert not any(seg in (".", "..", "") for k in keys for seg in k.split("/"))
    assert [r.name for r in s3_backend.list_assets()] == sorted(names)
    for i, name in enumerate(names):
        entry = s3_backend.store_get(name, name, partition=name[:500])
        assert entry is not None and entry.value == i
        assert s3_backend.store_keys(name, partition=name[:500]) == [name]
        assert s3_backend.alias_targets(name) == [name]
    assert s3_backend.list_consumers() == sorted(names)


def test_names_that_collide_elsewhere_get_their_own_files(tmp_path: Path) -> None:
    backend = ObjectStoreBackend(f"file://{tmp_path}/state")
    names = ["a/b", "a_b", "a%2Fb", "A_B", "..", "."]
    for i, name in enumerate(names):
        backend.register_asset(name, f"s3://data/{i}")
        backend.store_set(name, "k", json.dumps(i))
    files = [p for p in (tmp_path / "state" / "store").rglob("*.json")]
    assert len(files) == len(names)
    assert all(tmp_path / "state" in p.parents for p in tmp_path.rglob("*") if p.is_file())
    for i, name in enumerate(names):
        entry = backend.store_get(name, "k")
        assert entry is not None and entry.value == i


def test_layout_writes_one_json_document_per_entry_and_event(tmp_path: Path) -> None:
    backend = ObjectStoreBackend(f"file://{tmp_path}")
    backend.register_asset("orders", "s3://data/orders")
    backend.store_set("orders", "watermark", '"2024-06-01"')
    backend.store_set("orders", "rows", "5", partition="2024-06-01")
    backend.append_events([NewEvent("orders", extra_json='{"rows":5}')])
    entry = json.loads((tmp_path / Layout.store_entry("orders", "watermark", None)).read_text())
    assert (entry["key"], entry["value"], entry["version"]) == ("watermark", "2024-06-01", 1)
    part = json.loads((tmp_path / Layout.store_entry("orders", "rows", "2024-06-01")).read_text())
    assert (part["partition"], part["value"]) == ("2024-06-01", 5)
    event = json.loads((tmp_path / "events/orders/00000000000000000001.json").read_text())
    assert (event["id"], event["extra"]) == (1, {"rows": 5})
    assert json.loads((tmp_path / "assets/orders.json").read_text())["uri"] == "s3://data/orders"


def test_a_corrupt_document_is_reported_with_its_key(tmp_path: Path) -> None:
    backend = ObjectStoreBackend(f"file://{tmp_path}")
    backend.register_asset("orders", "s3://data/orders")
    backend.store_set("orders", "k", "1")
    (tmp_path / Layout.store_entry("orders", "k", None)).write_text("not json")
    with pytest.raises(BackendUnavailableError, match=r"store/orders/a/k\.json"):
        backend.store_get("orders", "k")


# == events ======================================================================================


def test_deleted_ids_are_not_reused_by_a_writer_with_an_old_view(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    old, other = ObjectStoreBackend(url), ObjectStoreBackend(url)
    old.register_asset("orders", "s3://data/orders")
    old.append_events([NewEvent("orders")] * 3)  # old now believes the log ends at 3
    other.append_events([NewEvent("orders")] * 2)
    assert other.delete_events("orders", [4, 5]) == 2
    assert [e.id for e in old.append_events([NewEvent("orders")])] == [6]
    assert [e.id for e in other.query_events(EventQuery("orders"))] == [1, 2, 3, 6]


def test_a_stale_or_missing_head_hint_never_changes_ids(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    writer = ObjectStoreBackend(url)
    writer.register_asset("orders", "s3://data/orders")
    count = HINT_INTERVAL + 8
    writer.append_events([NewEvent("orders")] * count)
    hint = tmp_path / Layout.head("orders")
    assert json.loads(hint.read_text())["id"] == HINT_INTERVAL
    hint.write_text(json.dumps({"asset": "orders", "id": 3}))
    assert ObjectStoreBackend(url).append_events([NewEvent("orders")])[0].id == count + 1
    hint.unlink()
    assert ObjectStoreBackend(url).append_events([NewEvent("orders")])[0].id == count + 2
    assert ObjectStoreBackend(url).latest_events()["orders"].id == count + 2


def test_tombstones_are_skipped_without_reading_them(tmp_path: Path) -> None:
    backend = ObjectStoreBackend(f"file://{tmp_path}")
    backend.register_asset("orders", "s3://data/orders")
    backend.append_events([NewEvent("orders", extra_json=json.dumps({"i": i})) for i in range(6)])
    assert backend.delete_events("orders", [5, 6, 6, 99]) == 2
    assert backend.delete_events("orders", [5]) == 0
    fresh = ObjectStoreBackend(f"file://{tmp_path}")
    assert fresh.latest_events()["orders"].extra == {"i": 3}
    assert [e.id for e in fresh.query_events(EventQuery("orders", descending=True))] == [
        4,
        3,
        2,
        1,
    ]


# == retries and errors ===========================================================================


def _inject(backend: ObjectStoreBackend, failures: list[int]) -> list[str]:
    """Answer the next ``len(failures)`` requests with those HTTP statuses, without sending."""
    from botocore.awsrequest import AWSResponse

    client = backend.storage.client()  # type: ignore[attr-defined]
    sent: list[str] = []

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self._body = body

        async def read(self) -> bytes:
            return self._body

        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield self._body

    def answer(request: Any, **kwargs: Any) -> Any:
        sent.append(request.method)
        if not failures:
            return None
        status = failures.pop(0)
        body = (
            b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
            b"</Error>"
            if status == 503
            else b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
        )
        from aiobotocore.awsrequest import AioAWSResponse

        cls = AioAWSResponse if AioAWSResponse is not None else AWSResponse
        return cls(request.url, status, {}, _Raw(body))

    client.meta.events.register_first("before-send.s3", answer)
    return sent


@pytest.mark.services
def test_throttling_and_server_errors_are_retried(s3_url: str, s3_server: Any) -> None:
    backend = ObjectStoreBackend(
        s3_url, storage_options=s3_server.storage_options, retry_base_delay=0.001
    )
    backend.register_asset("orders", "s3://data/orders")
    sent = _inject(backend, [503, 500, 503])
    assert backend.store_set("orders", "k", "1") == 1
    assert backend.store_get("orders", "k") is not None
    assert sent == ["GET"] * 4 + ["PUT", "GET"]  # three refused attempts of the first GET


@pytest.mark.services
def test_a_storage_that_keeps_failing_is_reported_unavailable_without_secrets(
    s3_url: str, s3_server: Any
) -> None:
    options = {**s3_server.storage_options, "secret": "s3cr3t-value"}
    backend = ObjectStoreBackend(
        s3_url, storage_options=options, max_attempts=3, retry_base_delay=0.001
    )
    backend.register_asset("orders", "s3://data/orders")
    sent = _inject(backend, [503] * 10)
    with pytest.raises(BackendUnavailableError, match="after 3 attempts") as failure:
        backend.store_get("orders", "k")
    assert len(sent) == 3
    assert s3_url in str(failure.value)
    for text in (str(failure.value), repr(backend), backend.describe()):
        assert "s3cr3t-value" not in text


@pytest.mark.services
def test_a_write_whose_answer_was_lost_is_not_reported_as_a_conflict(
    s3_backend: ObjectStoreBackend,
) -> None:
    """The PUT lands but its answer is lost; the retry meets 412 and recognises its own bytes."""
    from botocore.exceptions import ConnectionClosedError

    s3_backend.register_asset("orders", "s3://data/orders")
    client = s3_backend.storage.client()  # type: ignore[attr-defined]
    lost: list[bool] = [True]

    def lose_answer(http_response: Any, **kwargs: Any) -> None:
        if lost and http_response.status_code == 200:
            lost.pop()
            raise ConnectionClosedError(endpoint_url="http://moto")

    client.meta.events.register("after-call.s3.PutObject", lose_answer)
    assert s3_backend.append_events([NewEvent("orders")])[0].id == 1
    assert not lost
    assert [e.id for e in s3_backend.query_events(EventQuery("orders"))] == [1]
    assert s3_backend.store_set("orders", "k", "1", expected_version=None) == 1


def _answer_lost_then(
    backend: ObjectStoreBackend, land: bool, meanwhile: Callable[[], Any]
) -> None:
    """Make the backend's next store write lose its answer: it lands (or not), ``meanwhile``
    runs (other writers), and the resend is refused as S3Storage reports it (ambiguous)."""
    from assetry.backends.objectstore.storage import PreconditionFailed

    real_put = backend.storage.put
    armed = [True]

    def put(key: str, data: bytes, **kwargs: Any) -> str:
        if not (armed and key.startswith("store/")):
            return real_put(key, data, **kwargs)
        armed.pop()
        if land:
            real_put(key, data, **kwargs)
        meanwhile()
        refused = PreconditionFailed(key)
        refused.ambiguous = True  # type: ignore[attr-defined]
        raise refused

    backend.storage.put = put  # type: ignore[method-assign]


def test_a_write_whose_answer_was_lost_and_then_overwritten_counts_once() -> None:
    url = _memory_url()
    ours, theirs = ObjectStoreBackend(url), ObjectStoreBackend(url)
    ours.register_asset("orders", "s3://data/orders")
    ours.store_set("orders", "n", "1")
    # ours lands as version 2; another writer reads it and writes version 3 on top
    _answer_lost_then(ours, True, lambda: theirs.store_set("orders", "n", "3", expected_version=2))
    assert ours.store_set("orders", "n", "2", expected_version=1) == 2
    entry = theirs.store_get("orders", "n")
    assert entry is not None and (entry.value, entry.version) == (3, 3)


def test_a_write_whose_answer_was_lost_and_that_never_landed_is_a_conflict() -> None:
    url = _memory_url()
    ours, theirs = ObjectStoreBackend(url), ObjectStoreBackend(url)
    ours.register_asset("orders", "s3://data/orders")
    ours.store_set("orders", "n", "1")
    _answer_lost_then(ours, False, lambda: theirs.store_set("orders", "n", "5", expected_version=1))
    with pytest.raises(ConflictError, match="expected version 1, found version 2"):
        ours.store_set("orders", "n", "2", expected_version=1)


def test_a_lost_answer_beyond_the_entrys_history_is_an_unknown_outcome() -> None:
    url = _memory_url()
    ours, theirs = ObjectStoreBackend(url), ObjectStoreBackend(url)
    ours.register_asset("orders", "s3://data/orders")
    ours.store_set("orders", "n", "0")

    def many_writes() -> None:
        for _ in range(TOKEN_HISTORY):
            theirs.store_set("orders", "n", "9")

    _answer_lost_then(ours, True, many_writes)
    with pytest.raises(BackendUnavailableError, match="too much since to tell"):
        ours.store_set("orders", "n", "1", expected_version=1)


# == configuration ================================================================================


@pytest.mark.services
def test_url_alone_selects_the_backend_with_the_default_connection(
    s3_url: str, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(s3_server.storage_options))
    with assetry.Instance.from_url(s3_url) as instance:
        assert isinstance(instance.backend, ObjectStoreBackend)
        instance.asset_store(assetry.Asset("orders", uri="s3://data/orders")).set("k", 1)
    again = ObjectStoreBackend(s3_url)
    entry = again.store_get("orders", "k")
    assert entry is not None and entry.value == 1


@pytest.mark.services
def test_named_connection_and_explicit_options_override_it(
    s3_url: str, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "ASSETRY_CONN_LAKE", json.dumps({**s3_server.storage_options, "endpoint_url": "x"})
    )
    backend = ObjectStoreBackend(
        s3_url, conn_id="lake", storage_options={"endpoint_url": s3_server.endpoint_url}
    )
    backend.register_asset("orders", "s3://data/orders")
    assert backend.get_asset("orders") is not None


def test_unknown_named_connection_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ASSETRY_CONN_NOPE"):
        ObjectStoreBackend("s3://bucket/prefix", conn_id="nope")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket/prefix", "conditional writes"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3:///prefix", "needs a bucket"),
        ("s3://bucket/prefix?x=1", "query"),
        ("s3://bucket/" + "p" * 700, "longer than"),
        ("ftp://host/x", "does not serve"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ObjectStoreBackend(url)


def test_memory_url_with_backend_name_uses_fsspec_memory() -> None:
    import fsspec

    url = _memory_url()
    with assetry.Instance(backend="objectstore", url=url) as instance:
        assert isinstance(instance.backend, ObjectStoreBackend)
        assert instance.backend.capabilities.multi_process is False
        instance.record_event(assetry.Asset("orders", uri="s3://data/orders"))
    fs = fsspec.filesystem("memory")
    root = url.split("://", 1)[1]
    try:
        assert fs.exists(f"/{root}/events/orders/00000000000000000001.json")
    finally:
        fs.rm(f"/{root.split('/', 1)[0]}", recursive=True)


def test_local_directory_is_declared_multi_process(tmp_path: Path) -> None:
    backend = ObjectStoreBackend(str(tmp_path))
    assert backend.capabilities.multi_process and backend.capabilities.persistent
    assert backend.describe() == f"ObjectStoreBackend(file://{tmp_path})"


def test_a_deactivation_elsewhere_stops_writes_after_the_registry_ttl(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    writer = ObjectStoreBackend(url, registry_ttl=0)
    admin = ObjectStoreBackend(url)
    writer.register_asset("orders", "s3://data/orders")
    writer.store_set("orders", "k", "1")
    admin.deactivate_asset("orders")
    with pytest.raises(assetry.AssetInactiveError):
        writer.store_set("orders", "k", "2")


def test_an_unreachable_endpoint_is_reported_unavailable_after_retries() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    backend = ObjectStoreBackend(
        "s3://bucket/state",
        storage_options={
            "endpoint_url": f"http://127.0.0.1:{port}",
            "key": "k",
            "secret": "do-not-print",
        },
        max_attempts=2,
        retry_base_delay=0.001,
    )
    with pytest.raises(BackendUnavailableError, match="after 2 attempts") as failure:
        backend.get_asset("orders")
    assert "s3://bucket/state" in str(failure.value)
    assert "do-not-print" not in str(failure.value)


def test_an_airflow_style_connection_login_and_password_become_the_s3_key_and_secret(
    s3_url: str, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "ASSETRY_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "login": "airflow-style-key",
                "password": "airflow-style-secret",
                "endpoint_url": s3_server.endpoint_url,
                "client_kwargs": {"region_name": "us-east-1"},
            }
        ),
    )
    options = _storage_options("s3", None, {})
    assert (options["key"], options["secret"]) == ("airflow-style-key", "airflow-style-secret")
    assert "login" not in options and "password" not in options
    with ObjectStoreBackend(s3_url) as backend:
        backend.register_asset("a", "a")
        backend.store_set("a", "k", "1")
        assert backend.store_get("a", "k").value == 1


def test_a_listing_that_misses_an_event_never_lets_a_cursor_skip_it(tmp_path: Path) -> None:
    """A directory read while writers add files is no snapshot: it can show event 3 but
    not event 2. The reader looks the gap up and lists again instead of skipping 2."""
    backend = ObjectStoreBackend(f"file://{tmp_path}/state")
    backend.register_asset("orders", "s3://data/orders")
    backend.append_events([NewEvent("orders") for _ in range(3)])
    real = backend.storage.list_pages
    missing = Layout.event("orders", 2)
    misses = [1]

    def list_pages(folder: str, *, start_after: str | None = None) -> Any:
        for page in real(folder, start_after=start_after):
            if misses and folder.startswith("events/"):
                misses.pop()
                page = [item for item in page if item.key != missing]
            yield page

    backend.storage.list_pages = list_pages  # type: ignore[method-assign]
    assert [e.id for e in backend.query_events(EventQuery("orders", after=1))] == [2, 3]
    assert not misses


def test_gaps_left_by_imported_ids_are_kept(tmp_path: Path) -> None:
    source = ObjectStoreBackend(f"file://{tmp_path}/source")
    source.register_asset("orders", "s3://data/orders")
    events = source.append_events([NewEvent("orders") for _ in range(9)])
    target = ObjectStoreBackend(f"file://{tmp_path}/target")
    target.register_asset("orders", "s3://data/orders")
    target.import_events([events[4], events[8]])  # ids 5 and 9
    assert [e.id for e in target.query_events(EventQuery("orders"))] == [5, 9]
    assert [e.id for e in target.query_events(EventQuery("orders", after=5))] == [9]


def test_a_folder_a_concurrent_delete_removes_while_a_write_makes_it_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.makedirs(exist_ok=True) raises FileExistsError when the folder it found is
    removed (by a delete pruning empty folders) before it checks it is a folder."""
    backend = ObjectStoreBackend(f"file://{tmp_path}/state")
    backend.register_asset("orders", "s3://data/orders")
    real_makedirs = os.makedirs
    races = [1]

    def makedirs(name: Any, *args: Any, **kwargs: Any) -> None:
        if races and "store" in Path(name).parts:
            races.pop()
            raise FileExistsError(17, "File exists", str(name))
        real_makedirs(name, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    assert backend.store_set("orders", "k", "1", expected_version=None) == 1
    assert not races
