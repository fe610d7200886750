"""``assetry serve``: the HTTP API and web view over the configured instance."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from .cli_common import CommandFailed, err_console, state
from .urls import scrub_text

__all__ = ["register", "serve"]


def register(main: click.Group) -> None:
    """Add ``serve`` to the ``assetry`` group."""
    main.add_command(serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest request body accepted (default: configuration, else 1 MiB).",
)
@click.option(
    "--anonymous",
    type=click.Choice(["read", "write"]),
    default=None,
    help="Access granted without a token; only on a loopback address.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def serve(
    host: str, port: int, max_body_bytes: int | None, anonymous: str | None, log_level: str
) -> None:
    """Serve the configured instance over HTTP: the API under /api/v1 (OpenAPI at
    /api/v1/openapi.json) and a web view under /ui.

    Tokens come from [tool.assetry.server] tokens (each naming the environment variable
    that holds its secret) or from ASSETRY_SERVER_TOKENS, a JSON list such as
    [{"name": "ci", "token_env": "CI_TOKEN", "access": "write", "groups": ["sales"]}].
    """
    try:
        import uvicorn

        from .server.app import create_app
        from .server.auth import Authenticator, load_server_settings
        from .server.transport import uvicorn_options
    except ImportError as exc:
        raise CommandFailed(
            f"assetry serve needs the server extra ({exc.name} is missing): "
            "pip install 'assetry[server]'"
        ) from None

    settings = load_server_settings()
    if anonymous is not None and not _is_loopback(host):
        raise CommandFailed(
            f"--anonymous is allowed only on a loopback address, not {host!r}; "
            "configure tokens instead"
        )
    if not settings.tokens and anonymous is None:
        raise CommandFailed(
            "no server tokens are configured, so every request would be refused; set "
            "ASSETRY_SERVER_TOKENS or [tool.assetry.server] tokens (or, on 127.0.0.1 only, "
            "pass --anonymous read)"
        )
    auth = Authenticator(settings.tokens, anonymous=anonymous)  # type: ignore[arg-type]
    instance = state().instance()
    app = create_app(
        instance,
        tokens=auth,
        max_body_bytes=max_body_bytes or settings.max_body_bytes,
    )
    err_console().print(
        f"assetry serving {scrub_text(instance.backend.describe())} on http://{host}:{port} "
        f"(API /api/v1, docs /api/docs, view /ui; tokens: "
        f"{', '.join(t.name for t in settings.tokens) or 'none'}"
        f"{f'; anonymous {anonymous}' if anonymous else ''})",
        markup=False,
        highlight=False,
        soft_wrap=True,  # one line in a log file, whatever the width
    )
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        **uvicorn_options(),
    }
    uvicorn.run(app, **config)
