"""``assetry doctor|db|config|backends|iomanagers`` (and ``copy``, from :mod:`.cli_copy`):
operating the configured setup."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from . import plugins
from .backend import StateBackend
from .cli_common import CommandFailed, emit_json, json_option, one_line, print_table, state
from .config import DEFAULT_CONN_IDS, Connection, Settings
from .errors import AssetryError, SchemaVersionError, StateNotFoundError
from .uri import uri_scheme
from .urls import render_url, scrub_text, secrets_of

__all__ = ["register", "schema_status"]


def register(main: click.Group) -> None:
    """Add the operations commands to the ``assetry`` group."""
    from .cli_copy import copy_command

    main.add_command(copy_command)
    main.add_command(doctor)
    main.add_command(db)
    main.add_command(config)
    main.add_command(backends_command)
    main.add_command(iomanagers_command)


def _settings() -> Settings:
    return state().settings()


# -- backends / iomanagers -----------------------------------------------------------------------


def _plugin_rows(registry: plugins.PluginRegistry) -> list[dict[str, Any]]:
    rows = []
    for info in registry.info():
        row: dict[str, Any] = {
            "name": info.name,
            "target": info.target,
            "distribution": info.distribution,
            "schemes": list(info.schemes),
            "error": info.error,
        }
        if registry is plugins.backends and info.error is None:
            caps = getattr(registry.load(info.name), "capabilities", None)
            if caps is not None and dataclasses.is_dataclass(caps):
                row["capabilities"] = [
                    f.name for f in dataclasses.fields(caps) if getattr(caps, f.name)
                ]
        rows.append(row)
    return rows


def _print_plugins(rows: list[dict[str, Any]], group: str, with_caps: bool) -> None:
    columns = ["name", "schemes", "target", "distribution", "status"]
    if with_caps:
        columns.insert(2, "capabilities")
    table = []
    for row in rows:
        values = [
            row["name"],
            ", ".join(row["schemes"]),
            row["target"],
            row["distribution"] or "",
            "ok" if row["error"] is None else f"import error: {row['error']}",
        ]
        if with_caps:
            values.insert(2, ", ".join(row.get("capabilities", [])))
        table.append(values)
    print_table(None, columns, table, empty=f"no plugins in the {group!r} entry-point group")


@click.command("backends")
@json_option
def backends_command() -> None:
    """Installed state backends: entry point, URL schemes, capabilities, import errors."""
    rows = _plugin_rows(plugins.backends)
    if state().json:
        emit_json(rows)
    else:
        _print_plugins(rows, plugins.backends.group, with_caps=True)


@click.command("iomanagers")
@json_option
def iomanagers_command() -> None:
    """Installed IO managers: entry point, URI schemes they serve, import errors."""
    rows = _plugin_rows(plugins.iomanagers)
    if state().json:
        emit_json(rows)
    else:
        _print_plugins(rows, plugins.iomanagers.group, with_caps=False)


# -- config ------------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Show the resolved configuration."""


@config.command("show")
@json_option
def config_show() -> None:
    """Every setting, its value (secrets masked) and where it came from."""
    settings = _settings()
    rows = settings.describe()
    if state().json:
        emit_json(
            {
                "config_file": str(settings.config_file) if settings.config_file else None,
                "settings": [{"name": n, "value": v, "source": s} for n, v, s in rows],
            }
        )
        return
    where = settings.config_file or "none (environment and defaults only)"
    click.echo(f"config file: {where}")
    print_table(None, ["setting", "value", "source"], rows)


# -- db ----------------------------------------------------------------------------------------


def schema_status(backend: StateBackend) -> dict[str, str | None]:
    """``{"current": ..., "head": ...}`` of a backend's stored schema; empty where it has no
    versioned schema. Uses ``schema_status()``, else ``schema_revision()``/``head_revision()``."""
    status = dict(backend.schema_status())
    if not status and hasattr(backend, "schema_revision") and hasattr(backend, "head_revision"):
        status = {"current": backend.schema_revision(), "head": backend.head_revision()}
    return status


def _describe_status(status: dict[str, str | None]) -> str:
    if not status:
        return "no versioned schema"
    current, head = status.get("current"), status.get("head")
    if current == head:
        return "up to date"
    if current is None:
        return "not created yet; run `assetry db upgrade`"
    return "behind this version of assetry; run `assetry db upgrade`"


@click.group()
def db() -> None:
    """The backend's stored schema (Alembic migrations for the sql backend)."""


@db.command("current")
@click.option("--check", is_flag=True, help="Exit with code 1 when the schema is not at head.")
@json_option
def db_current(check: bool) -> None:
    """The stored schema revision and the one this version of assetry expects (reads only:
    creates nothing)."""
    settings = _settings()
    try:
        backend = state().instance(create=False).backend
    except StateNotFoundError:
        backend = None
    if backend is None:
        shown = render_url(settings.backend_url) or str(settings.backend)
        summary = "no assetry state yet; `assetry db upgrade` creates it"
        if state().json:
            emit_json({"backend": shown, "current": None, "status": summary})
        else:
            click.echo(f"backend:  {shown}")
            click.echo("current:  (none)")
            click.echo(f"status:   {summary}")
        if check:
            raise CommandFailed(f"no assetry state at {shown}; `assetry db upgrade` creates it")
        return
    status = schema_status(backend)
    summary = _describe_status(status)
    if state().json:
        emit_json({"backend": backend.describe(), **status, "status": summary})
    else:
        click.echo(f"backend:  {backend.describe()}")
        if status:
            click.echo(f"current:  {status.get('current') or '(none)'}")
            click.echo(f"head:     {status.get('head') or '(none)'}")
        click.echo(f"status:   {summary}")
    if check and status and status.get("current") != status.get("head"):
        raise CommandFailed(f"the schema of {backend.describe()} is {summary}")


@db.command("upgrade")
@json_option
def db_upgrade() -> None:
    """Bring the stored schema to this version of assetry (creating it if needed)."""
    backend = state().instance().backend
    before = schema_status(backend)
    backend.upgrade()
    after = schema_status(backend)
    if state().json:
        emit_json(
            {
                "backend": backend.describe(),
                "from": before.get("current"),
                "to": after.get("current"),
                "head": after.get("head"),
            }
        )
    elif not after:
        click.echo(f"{backend.describe()} has no versioned schema; nothing to upgrade")
    elif before.get("current") == after.get("current"):
        click.echo(f"already at {after.get('current')}; nothing to do")
    else:
        click.echo(
            f"upgraded {backend.describe()} from {before.get('current') or '(empty)'} "
            f"to {after.get('current')}"
        )


# -- doctor ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Check:
    """One doctor finding."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


_KIND_BY_CONN_ID = {cid: scheme for scheme, cid in reversed(DEFAULT_CONN_IDS.items())}
_OBJECT_SCHEMES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}
_DB_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
_DB_DRIVERS.update({"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"})


def _scrub(text: str, conn: Connection | None = None) -> str:
    """``text`` with URL passwords and the connection's secrets masked."""
    return scrub_text(text, conn.secrets() if conn is not None else ())


def _check_connection(conn: Connection) -> Check:
    name = f"connection {conn.conn_id}"
    scheme = uri_scheme(conn.uri) if conn.uri else _KIND_BY_CONN_ID.get(conn.conn_id, "")
    base = scheme.split("+", 1)[0]
    try:
        if base in _OBJECT_SCHEMES:
            return _check_object_storage(name, base, conn)
        if base in _DB_DRIVERS:
            return _check_database(name, scheme, conn)
    except Exception as exc:
        hint = plugins.INSTALL_HINTS.get(base, "")
        fix = (
            f"install the driver: {hint}"
            if isinstance(exc, ImportError) and hint
            else (
                f"check the endpoint and credentials of {conn.conn_id!r} "
                f"(ASSETRY_CONN_{conn.conn_id.upper()} or [tool.assetry.connections])"
            )
        )
        return Check(name, "fail", _scrub(one_line(exc), conn), fix)
    return Check(
        name,
        "warn",
        "not checked: its kind is unknown (no URI scheme, not a default connection id)",
        "give it a uri (s3://..., postgresql://...) to have it checked",
    )


def _check_object_storage(name: str, scheme: str, conn: Connection) -> Check:
    import fsspec

    options = conn.to_storage_options(scheme)
    if scheme in {"s3", "s3a"}:
        config_kwargs = dict(options.get("config_kwargs") or {})
        config_kwargs.setdefault("connect_timeout", 5)
        config_kwargs.setdefault("read_timeout", 10)
        config_kwargs.setdefault("retries", {"max_attempts": 1})
        options["config_kwargs"] = config_kwargs
        options.setdefault("skip_instance_cache", True)
    fs = fsspec.filesystem(scheme, **options)
    url = conn.url
    target = "/".join(filter(None, [url.host, url.database])) if url is not None else ""
    listed = fs.ls(target, detail=False)
    where = f"{scheme}://{target}" if target else f"{scheme} (listing buckets)"
    return Check(name, "ok", f"{where}: reachable, {len(listed)} entr(y/ies) listed")


def _check_database(name: str, scheme: str, conn: Connection) -> Check:
    import sqlalchemy as sa

    url = conn.to_sqlalchemy_url(drivername=_DB_DRIVERS[scheme.split("+", 1)[0]])
    if url.host is None:
        url = url.set(host="localhost")
    connect_args = {"connect_timeout": 5}
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()
    shown = render_url(url)
    return Check(name, "ok", f"{shown}: connected")


def _check_backend(settings: Settings) -> tuple[list[Check], StateBackend | None]:
    from .instance import Instance

    checks: list[Check] = []
    where = render_url(settings.backend_url) or "(no url)"
    try:
        name = settings.backend or plugins.backend_for_url(settings.backend_url or "")
        cls = plugins.backends.load(name)
    except AssetryError as exc:
        checks.append(
            Check(
                "state backend plugin",
                "fail",
                one_line(exc),
                "install the package that provides the backend, or configure another "
                "(`assetry backends` lists the installed ones)",
            )
        )
        return checks, None
    checks.append(Check("state backend plugin", "ok", f"{name} ({cls.__module__})"))
    try:
        backend = Instance(settings=settings, create=False).backend  # creates nothing
        status = schema_status(backend)
        if not status or status.get("current") == status.get("head"):
            backend.get_asset("assetry-doctor-probe")
            backend.list_consumers()
    except StateNotFoundError as exc:
        checks.append(
            Check(
                "state backend",
                "fail",
                _scrub(one_line(exc)),
                "create it: `assetry db upgrade` (or check the URL points where the state is)",
            )
        )
        return checks, None
    except SchemaVersionError as exc:
        checks.append(Check("state backend", "fail", one_line(exc), "run `assetry db upgrade`"))
        return checks, None
    except Exception as exc:
        checks.append(
            Check(
                "state backend",
                "fail",
                f"{where}: {_scrub(one_line(exc))}",
                "check the URL, that the server is running and reachable, and the credentials "
                "(`assetry config show` says where each setting comes from)",
            )
        )
        return checks, None
    checks.append(Check("state backend", "ok", f"{backend.describe()}: connected"))
    if status:
        current, head = status.get("current"), status.get("head")
        if current == head:
            checks.append(Check("schema", "ok", f"at {head}"))
        elif current is None:
            checks.append(
                Check(
                    "schema",
                    "warn",
                    f"not created yet (head {head}); it is created on first use",
                    "or create it now: `assetry db upgrade`",
                )
            )
        else:
            checks.append(
                Check(
                    "schema",
                    "fail",
                    f"at {current}, this assetry expects {head}",
                    "run `assetry db upgrade` (back up the database first)",
                )
            )
    if settings.retention is not None and not backend.capabilities.event_deletion:
        checks.append(
            Check(
                "retention",
                "fail",
                f"retention is configured but {backend.describe()} cannot delete events",
                "remove the retention setting or use a backend that can (sql, memory)",
            )
        )
    elif settings.retention is not None:
        checks.append(Check("retention", "ok", str(settings.retention)))
    return checks, backend


def _run_doctor(settings_factory: Callable[[], Settings]) -> list[Check]:
    checks: list[Check] = []
    try:
        settings = settings_factory()
    except AssetryError as exc:
        return [
            Check(
                "configuration",
                "fail",
                one_line(exc),
                "fix the setting named above in the environment or the config file",
            )
        ]
    where = settings.config_file or "environment and defaults"
    checks.append(Check("configuration", "ok", f"loaded from {where}"))
    backend_checks, backend = _check_backend(settings)
    checks.extend(backend_checks)
    if backend is not None:
        backend.close()
    for conn in sorted(settings.connections.values(), key=lambda c: c.conn_id):
        checks.append(_check_connection(conn))
    for registry in (plugins.backends, plugins.iomanagers):
        for info in registry.info():
            if info.error is not None:
                checks.append(
                    Check(
                        f"{registry.kind} {info.name}",
                        "warn",
                        info.error,
                        "install its dependencies or uninstall the plugin",
                    )
                )
    # every finding leaves through the one scrubber, knowing every configured secret
    known = secrets_of(settings.backend_url) | secrets_of(dict(settings.backend_options))
    for conn in settings.connections.values():
        known |= conn.secrets()
    return [
        dataclasses.replace(c, detail=scrub_text(c.detail, known), fix=scrub_text(c.fix, known))
        for c in checks
    ]


@click.command()
@json_option
def doctor() -> None:
    """Check the configuration, the state backend and every configured connection, and say
    what is wrong and how to fix it (exit code 1 when something fails)."""
    checks = _run_doctor(_settings)
    failed = [c for c in checks if c.status == "fail"]
    if state().json:
        emit_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        print_table(
            None,
            ["check", "status", "detail", "fix"],
            [(c.name, c.status, c.detail, c.fix) for c in checks],
        )
    if failed:
        raise CommandFailed(
            f"{len(failed)} check(s) failed: "
            + "; ".join(
                f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in failed
            )
        )
