"""The web view: server-rendered pages for people, beside the API on the same server.

``/ui/`` lists the assets with their freshness (last event, age), ``/ui/asset?name=...``
shows one asset's per-partition freshness, store contents and recent events, and
``/ui/timeline?name=...`` pages through its events. Assets are named in the query, so
any name works in a browser (browsers rewrite ``..`` and ``%2E%2E`` in paths).

The pages are read-only. A browser signs in once with a token (``/ui/login``), kept in an
HttpOnly, SameSite=Strict cookie that only the pages accept; the API accepts only the
``Authorization`` header, so a page can never be made to write through the cookie.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ..backend import EventQuery
from ..freshness import assess, assess_assets
from ..models import AssetEvent, validate_name
from ..urls import render_url
from ..values import validate_partition_key
from .auth import SESSION_SECONDS, Authenticator, Principal, SessionSigner
from .deps import COOKIE_NAME, Scope
from .schemas import MAX_ID
from .svg import timeline_svg

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

TIMELINE_PAGE = 50
#: The events drawn on the timeline's chart: the page's newest and as many older ones.
CHART_EVENTS = 500
RECENT_EVENTS = 10
MAX_PARTITIONS_SHOWN = 20
VALUE_PREVIEW = 160


@lru_cache(maxsize=1)
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("assetry.server", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda value: quote(str(value), safe="")
    # plain JSON text, escaped by autoescaping (tojson's \u003c escapes are for scripts)
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["when"] = _when
    env.filters["age"] = _age
    env.filters["duration"] = _duration
    env.filters["preview"] = _preview
    env.filters["url"] = render_url  # secret query values of a URI shown as ***
    return env


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = (
        _templates()
        .get_template(template)
        .render(base=request.scope.get("root_path", ""), **context)
    )
    return HTMLResponse(html, status_code=status)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _age(value: dt.datetime | None) -> str:
    """How long ago, in the largest whole unit: ``42s``, ``5m``, ``3h``, ``2d``."""
    if value is None:
        return ""
    seconds = int((dt.datetime.now(dt.UTC) - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _duration(value: dt.timedelta) -> str:
    """A duration in its whole units, largest first: ``1d``, ``6h``, ``1h 30m``, ``45s``."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(out) or "0s"


def _preview(value_json: str) -> str:
    return value_json if len(value_json) <= VALUE_PREVIEW else value_json[:VALUE_PREVIEW] + "…"


# -- who is looking ----------------------------------------------------------------------------


def _principal(request: Request) -> Principal | None:
    """The viewer: a bearer token in the header, else the signed session in the cookie,
    else anonymous access where the server allows it."""
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if header and scheme.lower() == "bearer" and secret:
        return auth.authenticate(secret.strip())
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        sessions: SessionSigner = request.app.state.sessions
        return sessions.open(cookie)
    return auth.authenticate(None)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    base = request.scope.get("root_path", "")
    if target.startswith(base):
        target = target[len(base) :]
    return RedirectResponse(f"{base}/ui/login?next={quote(target, safe='')}", status_code=303)


def _scope(request: Request) -> Scope | None:
    principal = _principal(request)
    if principal is None:
        return None
    instance = request.app.state.instance
    return Scope(instance.backend, principal, instance)


def _safe_next(target: str | None) -> str:
    """Only a page of this view; never another site (no open redirect)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


# -- pages -------------------------------------------------------------------------------------


@router.api_route("/static/style.css", methods=["GET", "HEAD"])
def stylesheet() -> Response:
    css = resources.files("assetry.server").joinpath("static", "style.css").read_text("utf-8")
    return Response(css, media_type="text/css", headers={"cache-control": "max-age=3600"})


@router.api_route("/login", methods=["GET", "HEAD"])
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _render(request, "login.html", next=_safe_next(next), message=None, principal=None)


def _same_origin(request: Request) -> bool:
    """Whether a form was posted from this site: a cross-site post (login or logout CSRF)
    names the other site in ``Origin``, and browsers say ``Sec-Fetch-Site: cross-site``."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _cross_site(request: Request, title: str, message: str) -> HTMLResponse:
    return _render(request, "error.html", status=403, principal=None, title=title, message=message)


@router.post("/login")
async def login(request: Request) -> Response:
    if not _same_origin(request):
        return _cross_site(
            request,
            "Sign in from this site",
            "The sign-in form was posted from another site; open this page and sign in here.",
        )
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    sessions: SessionSigner = request.app.state.sessions
    session = sessions.issue(token) if token else None
    if session is None:
        return _render(
            request,
            "login.html",
            status=401,
            next=target,
            message="That token is not one this server knows.",
            principal=None,
        )
    base = request.scope.get("root_path", "")
    response = RedirectResponse(base + target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_SECONDS,
        path=f"{base}/ui",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    if not _same_origin(request):
        return _cross_site(
            request,
            "Sign out from this site",
            "The sign-out form was posted from another site; sign out from this site's pages.",
        )
    base = request.scope.get("root_path", "")
    response = RedirectResponse(f"{base}/ui/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=f"{base}/ui")
    return response


@router.api_route("/", methods=["GET", "HEAD"])
def assets_page(request: Request, group: str | None = None) -> Response:
    scope = _scope(request)
    if scope is None:
        return _to_login(request)
    records = [
        r
        for r in scope.backend.list_assets()
        if scope.visible(r) and (group is None or r.group == group)
    ]
    latest = scope.backend.latest_events([r.name for r in records]) if records else {}
    judged = assess_assets(scope.backend, records, latest)
    groups = sorted({r.group for r in scope.backend.list_assets() if scope.visible(r)})
    return _render(
        request,
        "assets.html",
        principal=scope.principal,
        assets=[(r, latest.get(r.name), judged[r.name]) for r in records],
        groups=groups,
        group=group,
    )


def _invalid(request: Request, scope: Scope, message: str) -> HTMLResponse:
    return _render(
        request,
        "error.html",
        status=422,
        principal=scope.principal,
        title="Invalid request",
        message=message,
    )


def _asset_or_404(request: Request, scope: Scope, name: str | None) -> Any:
    if name:
        try:
            validate_name(name)
        except ValueError as exc:
            return _invalid(request, scope, f"That is not an asset name: {exc}")
    record = scope.record(name) if name else None
    if record is None:
        return _render(
            request,
            "error.html",
            status=404,
            principal=scope.principal,
            title="No such asset",
            message=f"There is no asset called {name!r}." if name else "Name an asset.",
        )
    return record


@router.api_route("/asset", methods=["GET", "HEAD"])
def asset_page(request: Request, name: str | None = None) -> Response:
    scope = _scope(request)
    if scope is None:
        return _to_login(request)
    record = _asset_or_404(request, scope, name)
    if isinstance(record, Response):
        return record
    backend = scope.backend
    latest = backend.latest_events([record.name]).get(record.name)
    by_partition = backend.latest_partition_events(record.name)
    judged = assess(record, latest, by_partition)
    partitions = sorted(by_partition.items(), key=lambda item: item[1].id, reverse=True)
    store_partitions = backend.store_partitions(record.name)
    store = [(None, backend.store_entries(record.name))] + [
        (p, backend.store_entries(record.name, p)) for p in store_partitions[:MAX_PARTITIONS_SHOWN]
    ]
    recent = backend.query_events(EventQuery(record.name, limit=RECENT_EVENTS, descending=True))
    return _render(
        request,
        "asset.html",
        principal=scope.principal,
        asset=record,
        latest=latest,
        judged=judged,
        partitions=partitions,
        store=store,
        more_partitions=max(0, len(store_partitions) - MAX_PARTITIONS_SHOWN),
        recent=recent,
        fields=record.contract.declared_fields(),
    )


@router.api_route("/timeline", methods=["GET", "HEAD"])
def timeline_page(
    request: Request,
    name: str | None = None,
    before: str | None = None,
    partition: str | None = None,
) -> Response:
    scope = _scope(request)
    if scope is None:
        return _to_login(request)
    record = _asset_or_404(request, scope, name)
    if isinstance(record, Response):
        return record
    before_id: int | None = None
    if before:
        try:
            before_id = int(before)
        except ValueError:
            before_id = -1
        if not 0 <= before_id <= MAX_ID:
            return _invalid(request, scope, f"before must be an event id from 0 to {MAX_ID}.")
    if partition:
        try:
            validate_partition_key(partition)
        except ValueError as exc:
            return _invalid(request, scope, f"That is not a partition key: {exc}")
    events: list[AssetEvent] = scope.backend.query_events(
        EventQuery(
            record.name,
            before=before_id or None,
            partition_key=partition or None,
            limit=TIMELINE_PAGE + 1,
            descending=True,
        )
    )
    older = events[TIMELINE_PAGE - 1].id if len(events) > TIMELINE_PAGE else None
    charted = scope.backend.query_events(
        EventQuery(
            record.name,
            before=before_id or None,
            partition_key=partition or None,
            limit=CHART_EVENTS,
            descending=True,
        )
    )
    base = request.scope.get("root_path", "")
    here = f"{base}/ui/timeline?name={quote(record.name, safe='')}"
    if partition:
        here += f"&partition={quote(partition, safe='')}"
    return _render(
        request,
        "timeline.html",
        principal=scope.principal,
        asset=record,
        events=events[:TIMELINE_PAGE],
        older=older,
        chart=timeline_svg(
            charted,
            lambda e: f"{here}&before={e.id + 1}#event-{e.id}",
            # with a freshness policy, the newest page runs to now: a gap is news
            now=None if before_id or not record.contract.freshness else dt.datetime.now(dt.UTC),
            freshness=record.contract.freshness,
        ),
        charted=len(charted),
        chart_limit=CHART_EVENTS,
        partition=partition or None,
        fields=record.contract.declared_fields(),  # the extra_schema's fields as columns
    )
