"""``assetry serve``: the HTTP API, its OpenAPI document and a web view over one instance.

Install with ``pip install 'assetry[server]'``. :func:`create_app` builds the ASGI
application; :mod:`assetry.server.auth` reads the bearer tokens from configuration. The
web framework is imported only when the application is built, so the client can share
:mod:`assetry.server.errors` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import ApiToken, Authenticator, Principal, load_server_settings

__all__ = ["ApiToken", "Authenticator", "Principal", "create_app", "load_server_settings"]

_LAZY = {
    "create_app": "app",
    "ApiToken": "auth",
    "Authenticator": "auth",
    "Principal": "auth",
    "load_server_settings": "auth",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'assetry.server' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
