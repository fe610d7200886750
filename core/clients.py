"""The seeds' lower-level entry points: ``ObjectStoragePath`` and ``DatabaseClient``.

Both take an asset URI and an optional connection id; credentials and endpoints come from
the named connection (or the scheme's default one), never from the URI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .config import Connection, Settings, default_conn_id, load_settings
from .errors import ConfigurationError
from .models import Asset
from .uri import mask_url, normalize_uri, uri_scheme

if TYPE_CHECKING:
    from upath import UPath

    from .iomanager import AssetHandle, IOManagerDispatcher

__all__ = [
    "DatabaseClient",
    "ObjectStoragePath",
    "active_settings",
    "resolve_connection",
    "storage_options_for",
]


def active_settings() -> Settings:
    """The current instance's settings when one is current, else the configuration.

    Unlike :func:`assetry.current_instance` this never creates an instance (and so never
    creates the default state database) just to read connections.
    """
    from .instance import _current

    instance = _current.get()
    return instance.settings if instance is not None else load_settings()


def resolve_connection(
    scheme: str, conn_id: str | None, settings: Settings | None = None
) -> Connection | None:
    """The connection named ``conn_id``, or the scheme's default one if it is configured.

    A named connection that is not configured is an error; a missing default connection is
    not (the library's own credential chain, such as AWS environment variables, applies).
    """
    default = default_conn_id(scheme) if conn_id is None else None
    if conn_id is None and default is None:
        return None  # file://, memory://, ...: nothing to look up
    settings = settings if settings is not None else active_settings()
    if conn_id is not None:
        conn = settings.connection(conn_id)
        if conn is None:
            env = f"ASSETRY_CONN_{conn_id.upper()}"
            raise ConfigurationError(
                f"connection {conn_id!r} is not configured; set {env} (a URI or a JSON object) "
                "or add it under [tool.assetry.connections]"
            )
        return conn
    assert default is not None
    return settings.connection(default)


def storage_options_for(
    uri: str, conn_id: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """fsspec storage options for ``uri`` from its connection (credentials, endpoint)."""
    scheme = uri_scheme(uri) or "file"
    conn = resolve_connection(scheme, conn_id, settings)
    if conn is None:
        return {}
    options = dict(conn.storage_options)
    # an Airflow-style connection keeps the access key in login and the secret in password
    if scheme in {"s3", "s3a"} and "key" not in options and conn.login:
        options["key"] = conn.login
        if conn.password:
            options["secret"] = conn.password
    options.pop("login", None)
    options.pop("password", None)
    return options


def ObjectStoragePath(uri: str, conn_id: str | None = None, **storage_options: Any) -> UPath:
    """A universal-pathlib path for ``uri`` carrying its connection's storage options.

    ``ObjectStoragePath("s3://bucket/example.csv", conn_id="aws_default").open("rb")``;
    explicit ``storage_options`` override the connection's.
    """
    from upath import UPath

    if not isinstance(uri, str):
        raise TypeError(f"ObjectStoragePath() needs a URI string, not {type(uri).__name__}")
    normalized = normalize_uri(uri)
    if not uri_scheme(normalized):
        raise ValueError(
            f"ObjectStoragePath() needs a URI with a scheme (s3://, file://, ...), got {uri!r}"
        )
    options = storage_options_for(normalized, conn_id)
    options.update(storage_options)
    return UPath(normalized, **options)


class DatabaseClient:
    """A client on one table URI: ``with client.connect() as t: t.insert(df)``.

    ``connect()`` yields the same handle as ``io_manager.connect(Asset(uri=uri))``, through
    the current instance's IO managers when one is current (so writes are reported the same
    way), else through IO managers this client owns (closed by :meth:`close`).
    """

    def __init__(self, uri: str, conn_id: str | None = None) -> None:
        if not isinstance(uri, str):
            raise TypeError(f"DatabaseClient() needs a URI string, not {type(uri).__name__}")
        self.asset = Asset(uri=uri)
        self.uri = self.asset.uri
        self.conn_id = conn_id
        self._own: IOManagerDispatcher | None = None

    def __repr__(self) -> str:
        return f"DatabaseClient({mask_url(self.uri)!r}, conn_id={self.conn_id!r})"

    def _dispatcher(self) -> IOManagerDispatcher:
        from .instance import _current
        from .iomanager import IOManagerDispatcher

        instance = _current.get()
        if instance is not None:
            return instance.io_manager
        if self._own is None:
            self._own = IOManagerDispatcher(load_settings())
        return self._own

    @contextmanager
    def connect(self, partition: str | None = None) -> Iterator[AssetHandle]:
        """A handle on the table (and ``partition``), closed when the block ends."""
        with self._dispatcher().connect(self.asset, partition, conn_id=self.conn_id) as handle:
            yield handle

    def close(self) -> None:
        """Close the connections this client opened itself."""
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> DatabaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
