"""Configuration and named connections.

Resolution order: explicit arguments > environment (``ASSETRY_*``) > ``[tool.assetry]`` in
the nearest ``pyproject.toml`` or an ``assetry.toml`` > defaults. Each resolved setting
remembers where it came from (for ``assetry config show``). Secrets are masked in every
repr.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .connection import (
    CONNECTION_FIELDS,
    DEFAULT_CONN_IDS,
    Connection,
    default_conn_id,
    mask_secrets,
)
from .current import current_or_none
from .errors import ConfigurationError
from .urls import redact, render_url
from .values import DEFAULT_MAX_VALUE_BYTES

if TYPE_CHECKING:
    from .retention import RetentionPolicy

__all__ = [
    "CONNECTION_FIELDS",
    "CONNECTION_SOURCES_GROUP",
    "DEFAULT_CONN_IDS",
    "Connection",
    "Settings",
    "active_settings",
    "default_conn_id",
    "find_config_file",
    "get_connection",
    "load_settings",
    "lookup_connection",
    "mask_secrets",
    "redact",
    "register_connection_lookup",
    "resolve_connection",
    "storage_options_for",
]

DEFAULT_STATE_PATH = Path(".assetry") / "state.db"


@dataclass(frozen=True, repr=False)
class Settings:
    """Resolved configuration; ``sources`` says where each setting came from."""

    backend: str | None
    backend_url: str | None
    backend_options: Mapping[str, Any]
    connections: Mapping[str, Connection]
    max_value_bytes: int
    auto_upgrade: bool
    sources: Mapping[str, str]
    config_file: Path | None = None
    #: The event-retention policy applied by ``assetry events prune`` and ``assetry gc``.
    retention: RetentionPolicy | None = None

    def __repr__(self) -> str:
        url = render_url(self.backend_url) if self.backend_url else None
        return (
            f"Settings(backend={self.backend!r}, backend_url={url!r}, "
            f"backend_options={redact(dict(self.backend_options))!r}, "
            f"connections={sorted(self.connections)!r}, max_value_bytes={self.max_value_bytes})"
        )

    def connection(self, conn_id: str) -> Connection | None:
        """The connection called ``conn_id`` (ids are case-insensitive): configured, else
        from a registered lookup (:func:`register_connection_lookup`), else ``None``."""
        return lookup_connection(conn_id, self)

    def describe(self) -> list[tuple[str, str, str]]:
        """(setting, masked value, source) rows for display."""
        rows = [
            ("backend", str(self.backend), self.sources.get("backend", "default")),
            (
                "backend_url",
                render_url(self.backend_url) if self.backend_url else "",
                self.sources.get("backend_url", "default"),
            ),
            (
                "backend_options",
                json.dumps(redact(dict(self.backend_options))),
                self.sources.get("backend_options", "default"),
            ),
            (
                "max_value_bytes",
                str(self.max_value_bytes),
                self.sources.get("max_value_bytes", "default"),
            ),
            (
                "auto_upgrade",
                str(self.auto_upgrade).lower(),
                self.sources.get("auto_upgrade", "default"),
            ),
            (
                "retention",
                json.dumps(self.retention.to_dict()) if self.retention else "",
                self.sources.get("retention", "default"),
            ),
        ]
        for cid, conn in sorted(self.connections.items()):
            rows.append((f"connection {cid}", repr(conn), self.sources.get(f"conn:{cid}", "?")))
        return rows


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``assetry.toml``, or ``pyproject.toml`` with ``[tool.assetry]``, walking up."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "assetry.toml"
        if candidate.is_file():
            data = _read_toml(candidate)
            return candidate, data.get("tool", {}).get("assetry", data)
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            table = _read_toml(candidate).get("tool", {}).get("assetry")
            if table is not None:
                return candidate, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None


def _parse_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"{what} must be true or false, got {value!r}")


def _pick_backend(
    layers: list[tuple[str, str, Any, Any]], sources: dict[str, str]
) -> tuple[Any, Any]:
    """The backend and its URL, taken as a pair from the highest layer that sets either.

    A layer naming only a backend borrows a lower layer's URL when that URL is for the
    same backend, so ``ASSETRY_BACKEND=sql`` never pairs with a file's ``memory://`` URL.
    """
    for i, (backend_src, url_src, name, url) in enumerate(layers):
        if name is None and url is None:
            continue
        if name is not None:
            sources["backend"] = backend_src
        if url is not None:
            sources["backend_url"] = url_src
        elif isinstance(name, str):
            for _, lower_url_src, lower_name, lower_url in layers[i + 1 :]:
                if lower_url is not None and _backend_kind(lower_name, lower_url) == name:
                    url = lower_url
                    sources["backend_url"] = lower_url_src
                    break
        return name, url
    return None, None


def _backend_kind(name: Any, url: Any) -> str | None:
    """The backend a (name, URL) pair selects, or ``None`` when neither says."""
    if isinstance(name, str):
        return name
    if isinstance(url, str):
        from .plugins import backend_for_url

        try:
            return backend_for_url(url)
        except Exception:
            return None
    return None


def _parse_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigurationError(f"{what} must be a whole number, got {value!r}")
    try:
        result = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a whole number, got {value!r}") from None
    if result <= 0:
        raise ConfigurationError(f"{what} must be positive, got {result}")
    return result


def load_settings(
    *,
    backend: str | None = None,
    url: str | None = None,
    options: Mapping[str, Any] | None = None,
    max_value_bytes: int | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve the configuration (arguments > environment > config file > defaults)."""
    env = os.environ if environ is None else environ
    found = find_config_file(cwd)
    file_path, table = (found[0], found[1]) if found else (None, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"[tool.assetry] in {file_path} must be a table")
    known = {
        "backend",
        "backend_url",
        "url",
        "backend_options",
        "connections",
        "max_value_bytes",
        "auto_upgrade",
        "retention",
        "server",  # [tool.assetry.server], read by assetry.server
    }
    unknown = set(table) - known
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(sorted(unknown))} in {file_path}; "
            f"known: {', '.join(sorted(known))}"
        )
    file_src = f"{file_path}" if file_path else "config file"
    sources: dict[str, str] = {}

    def pick(name: str, arg: Any, env_name: str, file_key: str | tuple[str, ...]) -> Any:
        if arg is not None:
            sources[name] = "argument"
            return arg
        if env.get(env_name):
            sources[name] = f"environment {env_name}"
            return env[env_name]
        for key in (file_key,) if isinstance(file_key, str) else file_key:
            if key in table:
                sources[name] = file_src
                return table[key]
        sources[name] = "default"
        return None

    chosen_backend, chosen_url = _pick_backend(
        [
            ("argument", "argument", backend, url),
            (
                "environment ASSETRY_BACKEND",
                "environment ASSETRY_BACKEND_URL",
                env.get("ASSETRY_BACKEND") or None,
                env.get("ASSETRY_BACKEND_URL") or None,
            ),
            (file_src, file_src, table.get("backend"), table.get("backend_url", table.get("url"))),
        ],
        sources,
    )
    raw_max = pick("max_value_bytes", max_value_bytes, "ASSETRY_MAX_VALUE_BYTES", "max_value_bytes")
    raw_upgrade = pick("auto_upgrade", None, "ASSETRY_AUTO_UPGRADE", "auto_upgrade")
    raw_retention = pick("retention", None, "ASSETRY_RETENTION", "retention")

    backend_options: dict[str, Any] = {}
    file_options = table.get("backend_options", {})
    if not isinstance(file_options, dict):
        raise ConfigurationError(f"backend_options in {file_path} must be a table")
    chosen_kind = _backend_kind(chosen_backend, chosen_url)

    def applies(layer_backend: Any, layer_url: Any) -> bool:
        # options written for another backend than the one chosen are not passed to it
        layer_kind = _backend_kind(layer_backend, layer_url)
        return layer_kind is None or chosen_kind is None or layer_kind == chosen_kind

    if file_options and applies(table.get("backend"), table.get("backend_url", table.get("url"))):
        backend_options.update(file_options)
        sources["backend_options"] = file_src
    if env.get("ASSETRY_BACKEND_OPTIONS") and applies(
        env.get("ASSETRY_BACKEND") or None, env.get("ASSETRY_BACKEND_URL") or None
    ):
        try:
            env_options = json.loads(env["ASSETRY_BACKEND_OPTIONS"])
        except json.JSONDecodeError:
            raise ConfigurationError("ASSETRY_BACKEND_OPTIONS must be a JSON object") from None
        if not isinstance(env_options, dict):
            raise ConfigurationError("ASSETRY_BACKEND_OPTIONS must be a JSON object")
        backend_options.update(env_options)
        sources["backend_options"] = "environment ASSETRY_BACKEND_OPTIONS"
    if options:
        backend_options.update(options)
        sources["backend_options"] = "argument"

    if chosen_backend is not None and not isinstance(chosen_backend, str):
        raise ConfigurationError(f"backend must be a name, got {chosen_backend!r}")
    if chosen_url is not None and not isinstance(chosen_url, str):
        raise ConfigurationError("backend_url must be a string")
    if chosen_backend is None and chosen_url is None:
        chosen_backend = "sql"
        base = (cwd or Path.cwd()) / DEFAULT_STATE_PATH
        chosen_url = f"sqlite:///{base}"
        sources["backend"] = sources["backend_url"] = "default"

    connections: dict[str, Connection] = {}
    file_conns = table.get("connections", {})
    if not isinstance(file_conns, dict):
        raise ConfigurationError(f"connections in {file_path} must be a table")
    for cid, value in file_conns.items():
        if isinstance(value, str):
            conn = Connection.parse(cid, value)
        elif isinstance(value, dict):
            data = dict(value)
            conn = Connection(cid, data.pop("uri", None), data)
        else:
            raise ConfigurationError(f"connection {cid!r} in {file_path} must be a URI or a table")
        connections[cid.lower()] = conn
        sources[f"conn:{cid.lower()}"] = file_src
    for name, value in env.items():
        if name.startswith("ASSETRY_CONN_") and value:
            cid = name[len("ASSETRY_CONN_") :].lower()
            connections[cid] = Connection.parse(cid, value)
            sources[f"conn:{cid}"] = f"environment {name}"

    return Settings(
        backend=chosen_backend,
        backend_url=chosen_url,
        backend_options=backend_options,
        connections=connections,
        max_value_bytes=(
            _parse_int(raw_max, "max_value_bytes")
            if raw_max is not None
            else DEFAULT_MAX_VALUE_BYTES
        ),
        auto_upgrade=_parse_bool(raw_upgrade, "auto_upgrade") if raw_upgrade is not None else False,
        sources=sources,
        config_file=file_path,
        retention=_parse_retention(raw_retention, sources["retention"]),
    )


def _parse_retention(raw: Any, source: str) -> RetentionPolicy | None:
    """The retention policy of a table, or of ``ASSETRY_RETENTION``'s JSON object."""
    from .retention import RetentionPolicy

    if raw is None:
        return None
    if isinstance(raw, str) and source.startswith("environment"):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigurationError(
                f'retention from {source} must be a JSON object such as {{"keep_last": 1000}}'
            ) from None
    return RetentionPolicy.from_mapping(raw, f"retention (from {source})")


_building: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "assetry_building_settings", default=None
)


@contextmanager
def settings_scope(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what :func:`active_settings` returns while a backend is built, so
    an ``Instance(settings=...)`` reaches the backend's connection lookups."""
    token = _building.set(settings)
    try:
        yield settings
    finally:
        _building.reset(token)


def active_settings() -> Settings:
    """The settings being built with, else the current instance's, else the configuration.

    Unlike :func:`assetry.current_instance` this never creates an instance (and so never
    creates the default state database) just to read connections.
    """
    building = _building.get()
    if building is not None:
        return building
    instance = current_or_none()
    return instance.settings if instance is not None else load_settings()


ConnectionLookup = Callable[[str], "Connection | None"]
_log = logging.getLogger(__name__)

#: Extra sources of connections, asked in order when the configuration lacks an id.
_lookups: list[ConnectionLookup] = []
_lookups_lock = threading.Lock()


def register_connection_lookup(lookup: ConnectionLookup) -> Callable[[], None]:
    """Add a source of connections asked after the configuration (``ASSETRY_CONN_<ID>``,
    ``[tool.assetry.connections]``): a callable taking a lower-cased connection id and
    returning a :class:`Connection` or ``None``. The hook point of integrations (Airflow's
    connections); returns the function that removes it again."""
    with _lookups_lock:
        _lookups.append(lookup)

    def unregister() -> None:
        with _lookups_lock:
            if lookup in _lookups:
                _lookups.remove(lookup)

    return unregister


def lookup_connection(conn_id: str, settings: Settings) -> Connection | None:
    """The one lookup of a connection id: ``settings``' connections, then each registered
    lookup in order; ``None`` when nobody has it."""
    cid = conn_id.lower()
    found = settings.connections.get(cid)
    if found is not None:
        return found
    with _lookups_lock:
        lookups = list(_lookups)
    for lookup in lookups:
        found = lookup(cid)
        if found is not None:
            return found
    return _entry_point_connection(conn_id)


#: Entry-point group of connection lookups that packages declare (``assetry.airflow``'s
#: ``airflow``): asked after the registered ones, in name order, with the id as given.
CONNECTION_SOURCES_GROUP = "assetry.connection_sources"
_sources: dict[str, ConnectionLookup] | None = None


def _entry_point_sources() -> dict[str, ConnectionLookup]:
    global _sources
    with _lookups_lock:
        if _sources is None:
            from importlib.metadata import entry_points

            found: dict[str, ConnectionLookup] = {}
            for ep in entry_points(group=CONNECTION_SOURCES_GROUP):
                try:
                    found[ep.name] = ep.load()
                except Exception as exc:  # a broken plugin must not break the others
                    _log.warning(
                        "connection source %r (%s) cannot be loaded: %s", ep.name, ep.value, exc
                    )
            _sources = dict(sorted(found.items()))
        return _sources


def _entry_point_connection(conn_id: str) -> Connection | None:
    """The connection from the first declared source that has it. A source that fails is
    logged (by the error's type only: its message may quote a secret) and skipped; a
    :class:`ConfigurationError` (a connection it has but cannot convert) propagates."""
    for name, source in _entry_point_sources().items():
        try:
            found = source(conn_id)
        except ConfigurationError:
            raise
        except Exception as exc:
            _log.warning(
                "connection source %r failed to look up %r: %s", name, conn_id, type(exc).__name__
            )
            continue
        if found is not None:
            return found
    return None


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
    from .uri import uri_scheme

    scheme = uri_scheme(uri) or "file"
    conn = resolve_connection(scheme, conn_id, settings)
    return conn.to_storage_options(scheme) if conn is not None else {}


def get_connection(conn_id: str, settings: Settings | None = None) -> Connection | None:
    """The connection ``conn_id`` from ``settings`` (or the active settings), or from a
    registered lookup."""
    return lookup_connection(conn_id, settings if settings is not None else active_settings())
