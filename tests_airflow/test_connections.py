"""Inside an Airflow process, assetry's named connections fall back to Airflow's own.

Airflow's connections here come from ``AIRFLOW_CONN_<ID>`` (one of Airflow's secrets
backends); assetry's configuration (``ASSETRY_CONN_<ID>``) always wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import assetry
import pytest
from assetry.airflow import airflow_connection
from assetry.config import load_settings, lookup_connection, resolve_connection
from conftest import PG_URL, _port_open, make_bucket


@pytest.fixture(autouse=True)
def _fresh_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import os

    from airflow.sdk.execution_time.cache import SecretCache

    for name in list(os.environ):
        if name.startswith("ASSETRY_CONN_"):
            monkeypatch.delenv(name)
    SecretCache.reset()
    yield
    SecretCache.reset()


def aws_connection(endpoint: str, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "s3cr3t-testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1", **extra},
        }
    )


def test_an_aws_connection_becomes_s3_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", aws_connection("http://127.0.0.1:9"))
    conn = airflow_connection("lake")
    assert conn is not None
    assert conn.to_storage_options("s3") == {
        "key": "testing",
        "secret": "s3cr3t-testing",
        "endpoint_url": "http://127.0.0.1:9",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    assert "s3cr3t-testing" not in repr(conn)


def test_an_unknown_id_is_not_airflows_either(monkeypatch: pytest.MonkeyPatch) -> None:
    assert airflow_connection("nowhere_at_all") is None
    with pytest.raises(assetry.ConfigurationError, match="ASSETRY_CONN_NOWHERE_AT_ALL"):
        resolve_connection("s3", "nowhere_at_all", load_settings())


def test_assetry_configuration_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", aws_connection("http://airflow.invalid"))
    monkeypatch.setenv("ASSETRY_CONN_LAKE", '{"endpoint_url": "http://127.0.0.1:1"}')
    conn = lookup_connection("lake", load_settings())
    assert conn is not None and conn.options == {"endpoint_url": "http://127.0.0.1:1"}


def test_object_storage_path_reaches_s3_through_airflows_connection(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", aws_connection(moto_endpoint))
    bucket = make_bucket(moto_endpoint)
    path = assetry.ObjectStoragePath(f"s3://{bucket}/example.csv", conn_id="lake")
    with path.open("wb") as f:
        f.write(b"order_id\n1\n")
    with path.open("rb") as f:
        assert f.read() == b"order_id\n1\n"


def test_a_database_connection_gives_the_state_backend_its_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not _port_open(5432):
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unavailable")
    from assetry.backends.sql.testing import scratch_database

    with scratch_database(PG_URL, prefix="assetry_airflow") as url:
        without_login = url.replace("postgres@", "", 1)
        assert "@" not in without_login.split("?")[0]
        with pytest.raises(assetry.ConfigurationError, match="'warehouse' is not configured"):
            assetry.Instance.from_url(without_login, conn_id="warehouse")
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://postgres@127.0.0.1:5432/test")
        with assetry.Instance.from_url(without_login, conn_id="warehouse") as inst:
            inst.asset_store(assetry.Asset("orders", uri="s3://data/orders")).set("k", 1)
            assert inst.asset_store("orders").get("k") == 1
