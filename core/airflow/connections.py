"""Airflow's connections as assetry connections (the ``airflow`` connection source).

Registered under the ``assetry.connection_sources`` entry point: when assetry's own
configuration has no connection of an id (``ASSETRY_CONN_<ID>``, ``[tool.assetry]``),
and the process has imported Airflow (a task, a triggerer, the API server), the id is
looked up with Airflow's ``Connection.get`` (its secrets backends, ``AIRFLOW_CONN_<ID>``,
the execution API inside a task). The result is an ordinary :class:`assetry.config.Connection`,
which assetry turns into fsspec storage options or a database URL as it does any other.
"""

from __future__ import annotations

import sys
from typing import Any

from ..config import Connection

__all__ = ["airflow_connection", "from_airflow"]

#: Airflow connection types of object stores, and how their fields become fsspec options.
_OBJECT_STORE_TYPES = {"aws", "s3", "google_cloud_platform", "gcpcloudsql", "wasb", "adls", "azure"}


def airflow_connection(conn_id: str) -> Connection | None:
    """Airflow's connection ``conn_id`` as an assetry connection, or ``None`` when Airflow is
    not loaded in this process or has no connection of that id."""
    if "airflow" not in sys.modules:
        return None  # not an Airflow process: do not import Airflow to find out
    try:
        from airflow.sdk import Connection as AirflowConnection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        conn = AirflowConnection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return None if conn is None else from_airflow(conn_id, conn)


def from_airflow(conn_id: str, conn: Any) -> Connection:
    """An Airflow connection object (``conn_type``, ``host``, ``login``, ``password``,
    ``schema``, ``port``, ``extra``) as an assetry connection.

    Object stores (``aws``, Google Cloud, Azure) become fsspec storage options: for ``aws``
    the login and password are the access key pair and ``extra``'s ``endpoint_url`` and
    ``region_name`` are passed on (s3fs's ``endpoint_url`` and ``client_kwargs``). Other types
    are databases: login, password, host, port and ``schema`` (Airflow's name for the
    database) are the fields assetry builds a database URL from; their ``extra`` is not
    passed to drivers.
    """
    conn_type = (getattr(conn, "conn_type", None) or "").lower().replace("-", "_")
    extra = _extra(conn)
    if conn_type in {"aws", "s3"}:
        return Connection(conn_id, None, _aws_options(conn, extra))
    if conn_type in _OBJECT_STORE_TYPES:
        options = {k: v for k, v in extra.items() if v is not None}
        if conn.login and conn_type in {"wasb", "adls", "azure"}:
            options.setdefault("account_name", conn.login)
            if conn.password:
                options.setdefault("account_key", conn.password)
        return Connection(conn_id, None, options)
    fields = {
        "login": conn.login,
        "password": conn.password,
        "host": conn.host,
        "port": conn.port,
        "database": conn.schema,
    }
    return Connection(conn_id, None, {k: v for k, v in fields.items() if v not in (None, "")})


def _extra(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    return dict(extra) if isinstance(extra, dict) else {}


def _aws_options(conn: Any, extra: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    key = conn.login or extra.get("aws_access_key_id")
    secret = conn.password or extra.get("aws_secret_access_key")
    if key:
        options["key"] = key
    if secret:
        options["secret"] = secret
    if extra.get("aws_session_token"):
        options["token"] = extra["aws_session_token"]
    endpoint = extra.get("endpoint_url") or (extra.get("service_config") or {}).get("s3", {}).get(
        "endpoint_url"
    )
    if endpoint:
        options["endpoint_url"] = endpoint
    client_kwargs = {}
    if extra.get("region_name"):
        client_kwargs["region_name"] = extra["region_name"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options
