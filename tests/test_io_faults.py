"""Storage faults in the IO path are assetry errors that say what is wrong.

An unreachable object store is a :class:`BackendUnavailableError` naming the asset URI
(never a raw botocore error, never a secret), after bounded retries; a missing bucket is a
:class:`ConfigurationError`, not an asset "without data yet".
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pyarrow as pa
import pytest
from assetry import (
    Asset,
    AssetNotFoundError,
    BackendUnavailableError,
    ConfigurationError,
    load_settings,
)
from assetry.iomanager import IOManagerDispatcher

SECRET = "S3cret-never-shown-9f2"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dispatcher(options: dict[str, Any]) -> IOManagerDispatcher:
    environ = {"ASSETRY_CONN_AWS_DEFAULT": json.dumps(options)}
    return IOManagerDispatcher(load_settings(backend="memory", environ=environ))


def _down_store() -> IOManagerDispatcher:
    return _dispatcher(
        {
            "endpoint_url": f"http://127.0.0.1:{_closed_port()}",
            "key": "testing",
            "secret": SECRET,
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        }
    )


@pytest.mark.parametrize("uri", ["s3://orders-bucket/orders.parquet", "s3://orders-bucket/events"])
def test_an_unreachable_store_on_read_is_backend_unavailable(uri: str) -> None:
    with (
        pytest.raises(BackendUnavailableError) as err,
        _down_store().connect(Asset(uri=uri)) as handle,
    ):
        handle.to_pyarrow()
    message = str(err.value)
    assert uri in message
    assert "unreachable" in message
    assert SECRET not in message
    assert err.value.__cause__ is None  # the raw driver error is not chained into logs


def test_an_unreachable_store_on_write_is_backend_unavailable() -> None:
    dispatcher = _down_store()
    with (
        pytest.raises(BackendUnavailableError, match="unreachable") as err,
        dispatcher.connect(Asset(uri="s3://orders-bucket/events")) as handle,
    ):
        handle.insert(pa.table({"a": [1]}))
    assert SECRET not in str(err.value)


@pytest.mark.services
@pytest.mark.parametrize("name", ["orders.parquet", "events"])
def test_a_missing_bucket_is_a_configuration_error_not_missing_data(
    s3_server: Any, name: str
) -> None:
    dispatcher = _dispatcher(s3_server.storage_options)
    asset = Asset(uri=f"s3://no-such-bucket-{name.split('.')[0]}/{name}")
    for action in ("exists", "to_pyarrow"):
        with dispatcher.connect(asset) as handle, pytest.raises(ConfigurationError) as err:
            getattr(handle, action)()
        assert "bucket" in str(err.value) and "does not exist" in str(err.value)
    with dispatcher.connect(asset) as handle, pytest.raises(ConfigurationError, match="bucket"):
        handle.overwrite(pa.table({"a": [1]}))


@pytest.mark.services
@pytest.mark.parametrize("name", ["orders.parquet", "events"])
def test_an_existing_bucket_without_the_asset_still_reads_as_not_written(
    s3_server: Any, name: str
) -> None:
    bucket = s3_server.make_bucket()
    dispatcher = _dispatcher(s3_server.storage_options)
    with dispatcher.connect(Asset(uri=f"s3://{bucket}/{name}")) as handle:
        assert handle.exists() is False
        with pytest.raises(AssetNotFoundError, match="no data"):
            handle.to_pyarrow()
