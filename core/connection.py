"""Named connections: where a system is and how to sign in to it (``Connection``), the
default connection id of each URI scheme, and the masking of their secrets. Split from
:mod:`assetry.config`, which resolves them and re-exports these names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .urls import is_secret_name, redact, render_url, secrets_of

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "CONNECTION_FIELDS",
    "DEFAULT_CONN_IDS",
    "Connection",
    "default_conn_id",
    "mask_secrets",
]


#: The connection used for a scheme when none is named.
DEFAULT_CONN_IDS: dict[str, str] = {
    "s3": "aws_default",
    "s3a": "aws_default",
    "gs": "google_cloud_default",
    "gcs": "google_cloud_default",
    "az": "azure_default",
    "abfs": "azure_default",
    "abfss": "azure_default",
    "postgresql": "postgres_default",
    "postgres": "postgres_default",
    "mysql": "mysql_default",
    "mariadb": "mysql_default",
}


def default_conn_id(scheme: str) -> str | None:
    """The default connection id of a URI scheme (``s3`` and ``delta+s3`` -> ``aws_default``,
    ``postgresql+psycopg`` -> ``postgres_default``)."""
    from .urls import split_format

    _, base = split_format(scheme)
    return DEFAULT_CONN_IDS.get(base.split("+", 1)[0])


#: The former name of :func:`assetry.urls.render_url` (the one renderer), kept for callers.
mask_secrets = render_url


@dataclass(frozen=True, repr=False)
class Connection:
    """A named connection: a URI and/or options (credentials, endpoints).

    For object storage the options are fsspec ``storage_options``; for databases they carry
    ``login``, ``password``, ``host``, ``port``, ``database`` and driver options.
    """

    conn_id: str
    uri: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.uri is not None and not isinstance(self.uri, str):
            raise ConfigurationError(
                f"connection {self.conn_id!r} has a uri that is a {type(self.uri).__name__}, "
                "not a string such as postgresql://user@host/db"
            )

    @classmethod
    def parse(cls, conn_id: str, text: str) -> Connection:
        """Parse ``ASSETRY_CONN_<ID>``'s value: a JSON object or a URI."""
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"connection {conn_id!r} is not valid JSON ({exc.msg} at position {exc.pos})"
                ) from None
            if not isinstance(data, dict):
                raise ConfigurationError(f"connection {conn_id!r} must be a JSON object")
            return cls(conn_id, data.pop("uri", None), data)
        if "://" not in text:
            raise ConfigurationError(
                f"connection {conn_id!r} must be a URI (scheme://...) or a JSON object"
            )
        return cls(conn_id, text, {})

    def _parsed(self) -> URL | None:
        """The connection's URI, parsed once as SQLAlchemy reads a URL (so a password with
        an unencoded ``/``, ``#`` or ``?`` is read whole); a ConfigurationError that does
        not echo the URI, which may hold a password, when it cannot be parsed."""
        if not self.uri:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(self.uri)
            if parsed.host is not None and any(c in parsed.host for c in "[]@/?# "):
                raise ArgumentError("malformed host")
            return parsed
        except ValueError:  # the port is not a whole number
            raise ConfigurationError(
                f"connection {self.conn_id!r} has an invalid port (a whole number is needed; "
                "an IPv6 host goes in [brackets])"
            ) from None
        except (ArgumentError, TypeError):
            raise ConfigurationError(
                f"connection {self.conn_id!r} has a URI that cannot be parsed; it looks like "
                "scheme://user:password@host:port/database?option=value"
            ) from None

    @property
    def url(self) -> URL | None:
        """The connection's URI parsed once (SQLAlchemy's immutable URL), or ``None``; its
        text comes out through :func:`assetry.urls.render_url` only."""
        return self._parsed()

    def _query(self) -> dict[str, Any]:
        """The URI's query parameters (the last value of a repeated one)."""
        parsed = self._parsed()
        if parsed is None:
            return {}
        return {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}

    def _uri_parts(self) -> dict[str, Any]:
        parsed = self._parsed()
        if parsed is None:
            return {}
        out: dict[str, Any] = {
            "login": parsed.username or None,
            "password": parsed.password or None,
            "host": parsed.host or None,
            "port": parsed.port,
            "database": parsed.database or None,
        }
        out.update(self._query())
        return {k: v for k, v in out.items() if v is not None}

    def get(self, name: str, default: Any = None) -> Any:
        """A field from the options, falling back to the URI's parts."""
        if name in self.options:
            return self.options[name]
        return self._uri_parts().get(name, default)

    @property
    def login(self) -> str | None:
        return self.get("login") or self.get("user") or self.get("username")

    @property
    def password(self) -> str | None:
        return self.get("password")

    @property
    def host(self) -> str | None:
        return self.get("host")

    @property
    def port(self) -> int | None:
        port = self.get("port")
        if port is None:
            return None
        try:
            return int(port)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"connection {self.conn_id!r} has port {port!r}, which is not a whole number"
            ) from None

    @property
    def database(self) -> str | None:
        return self.get("database") or self.get("schema")

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec storage options: the options, plus those a URI's query string carries."""
        opts: dict[str, Any] = dict(self._query())
        opts.update(self.options)
        return opts

    # -- what a driver needs: the one credential merger ----------------------------------------

    def secrets(self) -> set[str]:
        """Every secret the connection holds (password, secret fields and query values), for
        :func:`assetry.urls.scrub_text` to remove from a driver's error message."""
        found = secrets_of(self.uri) | secrets_of(dict(self.options))
        for name, value in self._uri_parts().items():
            if is_secret_name(name) and isinstance(value, str) and value:
                found.add(value)
        return found

    def to_storage_options(self, scheme: str = "") -> dict[str, Any]:
        """fsspec storage options for ``scheme`` (``s3``, ``delta+s3``, ...): the options and
        the URI's query; an Airflow-style ``login``/``password`` becomes ``key``/``secret``
        for S3; ``login`` and ``password`` themselves are never passed to fsspec."""
        from .urls import split_format

        base = split_format(scheme)[1] if scheme else ""
        options = dict(self.storage_options)
        if base in {"s3", "s3a"} and "key" not in options and self.login:
            options["key"] = self.login
            if self.password:
                options["secret"] = self.password
        options.pop("login", None)
        options.pop("password", None)
        return options

    def to_sqlalchemy_url(self, url: str | URL | None = None, *, drivername: str = "") -> URL:
        """A SQLAlchemy URL: ``url`` (else the connection's URI, else ``drivername``) with
        what it lacks (user, password, host, port, database) filled from the connection.

        The password is taken only for the connection's own login (or when it names none),
        so one user's password is never sent for another user named in ``url``.
        """
        from sqlalchemy.engine import URL

        from .urls import parse_database_url

        if url is None and self.uri:
            url = self.uri
        if url is None:
            if not drivername:
                raise ConfigurationError(
                    f"connection {self.conn_id!r} has no uri, so it needs a driver name "
                    "(postgresql+psycopg, mysql+pymysql, ...) to become a database URL"
                )
            parsed = URL.create(drivername)
        else:
            parsed = parse_database_url(url)
            if drivername and "+" not in parsed.drivername:
                parsed = parsed.set(drivername=drivername)
        changes: dict[str, Any] = {}
        if parsed.username is None and self.login:
            changes["username"] = self.login
        login = changes.get("username", parsed.username)
        if parsed.password is None and self.password and _login_matches(login, self.login):
            changes["password"] = self.password
        if parsed.host is None and self.host:
            changes["host"] = self.host
        if parsed.port is None and self.port:
            changes["port"] = self.port
        if parsed.database is None and self.database:
            changes["database"] = self.database
        return parsed.set(**changes) if changes else parsed

    def to_ibis_kwargs(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        database: str | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments of ``ibis.<backend>.connect``: the given location, what it lacks
        from the connection (the password only for the connection's own login), and the
        connection's driver options (JSON fields or URI query parameters)."""
        params: dict[str, Any] = {
            "host": host or self.host,
            "port": port or self.port,
            "user": user or self.login,
            "database": database,
        }
        if self.password and _login_matches(params["user"], self.login):
            params["password"] = self.password
        params.update({k: v for k, v in self.storage_options.items() if k not in CONNECTION_FIELDS})
        return {k: v for k, v in params.items() if v is not None}

    def __repr__(self) -> str:
        uri = f", uri={render_url(self.uri)!r}" if self.uri else ""
        return f"Connection(conn_id={self.conn_id!r}{uri}, options={redact(dict(self.options))!r})"

    __str__ = __repr__


def _login_matches(user: str | None, login: str | None) -> bool:
    """Whether a connection's password may be sent for ``user``: it is the connection's
    login, or one of the two is not named."""
    return user is None or login is None or user == login


#: The fields of a connection that locate and authenticate; the others are driver options.
CONNECTION_FIELDS = frozenset(
    {"login", "user", "username", "password", "host", "port", "database", "schema"}
)
