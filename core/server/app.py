"""The ASGI application behind ``assetry serve``: the HTTP API, its OpenAPI document, and
the web view, over one :class:`assetry.Instance`.

``create_app(instance, tokens=...)`` builds it; ``tokens=None`` reads them from
configuration (:func:`assetry.server.auth.load_server_settings`). Errors always answer
``{"error": {"type": ..., "message": ...}}``; an unexpected failure answers 500 with a
generic message and is logged on the server, never sent.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import AssetryError, SchemaVersionError, ValidationError
from ..instance import Instance
from ..urls import scrub_text
from .auth import Access, ApiToken, Authenticator, SessionSigner, load_server_settings
from .deps import authenticate
from .protocol import ApiError, classify, error_body
from .schemas import ErrorOut, HealthOut
from .transport import install_access_log_redactor

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("assetry.server")

#: Request bodies above this answer 413 (a store value is at most 64 KiB by default).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_DESCRIPTION = """\
The asset store, the event log and the asset registry of one assetry instance, over HTTP.

Authenticate with `Authorization: Bearer <token>`. Tokens are configured on the server,
each read-only or read-write, reaching every asset group or only some: an asset outside a
token's groups looks exactly like one that does not exist.

Assets are named in the path, percent-encoded (`/api/v1/assets/a%2Fb` or `/api/v1/assets/a/b`
for the asset `a/b`), or by query on the same path without the name
(`/api/v1/asset?uri=s3://data/orders`). Errors answer
`{"error": {"type": "...", "message": "..."}}`.

The `backend` routes expose every StateBackend method; `assetry.backends.http` uses them
so that `Instance.from_url("http://host:8000")` works from another machine.
"""


def create_app(
    instance: Instance,
    *,
    tokens: Iterable[ApiToken] | Authenticator | None = None,
    anonymous: Access | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The application serving ``instance``.

    ``tokens``: the accepted bearer tokens (``None``: tokens and body limit from
    configuration). ``anonymous``: the access of a request without a token (default:
    refused). ``max_body_bytes``: the largest request body accepted (default 1 MiB).
    """
    settings = load_server_settings() if tokens is None else None
    if isinstance(tokens, Authenticator):
        auth = tokens
    else:
        chosen = settings.tokens if settings is not None else tuple(tokens or ())
        auth = Authenticator(chosen, anonymous=anonymous)
    limit = max_body_bytes
    if limit is None:
        limit = (settings.max_body_bytes if settings else None) or DEFAULT_MAX_BODY_BYTES
    if limit <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {limit}")

    app = FastAPI(
        title="assetry",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by _add_docs_routes from installed assets, never a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.instance = instance
    app.state.auth = auth
    app.state.sessions = SessionSigner(auth)
    install_access_log_redactor(auth)
    app.state.max_body_bytes = limit

    _install_error_handlers(app)

    from . import api, backend_api, pages, views

    # FastAPI tries routes in order (twice per request): the busiest family first.
    app.include_router(backend_api.router)
    _add_health_routes(app)
    _add_docs_routes(app)
    app.include_router(api.router)
    app.include_router(views.router)
    app.include_router(pages.router)

    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limit)
    app.add_middleware(AuthenticateFirstMiddleware, auth=auth)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


# -- errors ----------------------------------------------------------------------------------


def _json_error(
    status: int,
    type: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    body = error_body(type, scrub_text(message), details)
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc.status, exc.type, exc.message, exc.headers, exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # only where and what: the rejected input is never echoed back
        details = [
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        where = ", ".join(".".join(d["loc"]) + f": {d['msg']}" for d in details[:5])
        return _json_error(422, "invalid_request", f"invalid request ({where})", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 400:  # a body the framework cannot parse: invalid, like bad JSON
            return _json_error(
                422, "invalid_request", f"the request body is not UTF-8 JSON ({message})"
            )
        if exc.status_code == 404:
            message = f"no route {request.url.path!r}; the API is under /api/v1 (see /api/docs)"
        return _json_error(
            exc.status_code,
            kinds.get(exc.status_code, "http_error"),
            message,
            dict(exc.headers) if exc.headers else None,
        )

    async def mapped(request: Request, exc: Exception) -> JSONResponse:
        kind = classify(exc)
        if kind is None:
            return _internal(request, exc)
        return _json_error(
            kind.status, kind.type, str(exc) or type(exc).__name__, details=_details(exc)
        )

    for exc_class in (AssetryError, ValueError, TypeError, NotImplementedError):
        app.add_exception_handler(exc_class, mapped)  # type: ignore[arg-type]


def _details(exc: BaseException) -> dict[str, Any] | None:
    """The check and its errors (each ``{"field", "message"}``) of a failed validation,
    where they are JSON, so a client raises the same :class:`ValidationError`."""
    if not isinstance(exc, ValidationError) or exc.check is None:
        return None
    try:
        json.dumps(exc.details, allow_nan=False)
    except (TypeError, ValueError):
        return {"check": exc.check}
    return {"check": exc.check, "errors": exc.details}


def _log_failure(method: str, path: str, exc: BaseException) -> None:
    """Log an unexpected failure with its traceback, secrets scrubbed (a driver's message
    may carry its connection URL)."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    log.error("%s %s failed:\n%s", method, path, scrub_text(text))


def _internal_response() -> JSONResponse:
    return _json_error(500, "internal", "internal server error; the server log has the details")


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    _log_failure(request.method, request.url.path, exc)
    return _internal_response()


# -- health ----------------------------------------------------------------------------------


def _add_health_routes(app: FastAPI) -> None:
    @app.get(
        "/api/v1/health",
        response_model=HealthOut,
        tags=["health"],
        summary="Liveness",
        description="Answers while the process serves requests; needs no token.",
    )
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/", status_code=307)

    @app.get(
        "/api/v1/ready",
        response_model=HealthOut,
        tags=["health"],
        summary="Readiness",
        description="Answers 200 when the state backend answers and its schema is current, "
        "503 otherwise; needs no token.",
        responses={503: {"model": ErrorOut, "description": "The backend is not ready."}},
    )
    def ready(request: Request) -> Any:
        backend = request.app.state.instance.backend
        try:
            backend.get_asset("assetry-readiness-probe")  # first use creates a new schema
            status = backend.schema_status()
        except SchemaVersionError:
            return _json_error(
                503,
                "backend_unavailable",
                "the state backend's schema is not at this version's revision; "
                "run 'assetry db upgrade'",
            )
        except Exception as exc:
            log.warning("readiness probe failed: %s: %s", type(exc).__name__, scrub_text(exc))
            return _json_error(
                503, "backend_unavailable", "the state backend does not answer; see the server log"
            )
        if status and status.get("current") != status.get("head"):
            return _json_error(
                503,
                "backend_unavailable",
                "the state backend's schema is not at this version's revision; "
                "run 'assetry db upgrade'",
            )
        return {"status": "ready"}


# -- the API's documentation, offline -------------------------------------------------------------

#: Swagger UI's files, from an installed package (the ``server`` extra), by the name served.
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


def _docs_asset(name: str) -> bytes:
    """One of Swagger UI's files, shipped by ``fastapi-offline`` so the documentation page
    works without the internet."""
    from importlib import resources

    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def _add_docs_routes(app: FastAPI) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, Response

    @app.api_route("/api/docs", methods=["GET", "HEAD"], include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        base = f"{request.scope.get('root_path', '')}/api/docs/assets"
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
            title="assetry API",
            swagger_js_url=f"{base}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon.png",
        )

    @app.api_route("/api/docs/assets/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def docs_asset(name: str) -> Response:
        media_type = _DOCS_ASSETS.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", f"no documentation asset {name!r}")
        return Response(
            _docs_asset(name), media_type=media_type, headers={"cache-control": "max-age=86400"}
        )


# -- middleware ------------------------------------------------------------------------------


#: API paths that answer without a token.
_OPEN_PATHS = frozenset({"/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"})


class AuthenticateFirstMiddleware:
    """Refuses an API request without a valid token (401) before anything else looks at
    it: body size, JSON, parameters. So a caller without a token learns nothing about
    what the API accepts, and never gets 413 or 422 instead of 401."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _needs_token(scope):
            authorization = None
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    authorization = value.decode("latin-1")
            try:
                authenticate(self.auth, authorization)
            except ApiError as exc:
                response = _json_error(exc.status, exc.type, exc.message, exc.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _needs_token(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith("/api/v1/") and path not in _OPEN_PATHS


class BodyLimitMiddleware:
    """Answers 413 to a request body over ``max_bytes``, whether it is announced by
    Content-Length or streamed in chunks; the body is read (up to the limit) before the
    application sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > self.max_bytes:
                    await self._too_large(send, announced)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, send: Send, size: int) -> None:
        response = _json_error(
            413,
            "payload_too_large",
            f"the request body is over the server's limit of {self.max_bytes} bytes "
            f"({size} bytes or more); send less at once, or raise max_body_bytes on the server",
        )
        await response({"type": "http"}, _never_receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _never_receive() -> Message:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}


class UnexpectedErrorMiddleware:
    """Answers an unexpected failure with a generic 500 and logs it masked, here rather
    than in the framework's last-resort handler, which would log it again unmasked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            _log_failure(scope.get("method", "?"), scope.get("path", "?"), exc)
            if started:  # too late for an error response: the connection is dropped
                return
            await _internal_response()(scope, receive, send)


class SecurityHeadersMiddleware:
    """Headers that keep browsers from sniffing, framing or caching responses; the web
    view's pages also get a Content-Security-Policy that allows only this origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ui = scope.get("path", "").startswith("/ui")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),  # and Origin stays real on forms
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                if ui:
                    extra.append(
                        (
                            b"content-security-policy",
                            b"default-src 'none'; style-src 'self'; img-src 'self'; "
                            b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                        )
                    )
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
