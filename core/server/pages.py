"""The web view's pages across assets: consumers with their cursors, and the lineage graph.

``/ui/consumers`` lists each consumer (an asset-scheduled task, by its task id) with its
cursor on each asset and how many events it has still to see; ``/ui/lineage`` draws
producers → aliases → assets → consumers as an SVG graph (:mod:`assetry.lineage`). Both read
only stored state, so they show the same for a served instance as for the process that ran
the tasks. A token limited to some groups sees only its assets, and only the consumers that
hold a cursor on one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..backend import EventQuery
from ..lineage import Node, lineage_from_state
from .deps import Scope
from .svg import lineage_svg
from .views import _render, _scope, _to_login

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Events behind are counted up to this many; beyond, the page says "1000+".
BEHIND_CAP: Final = 1000


@dataclass(frozen=True, slots=True)
class CursorRow:
    """One consumer's position on one asset."""

    asset: str
    cursor: int
    latest: int | None
    behind: int
    capped: bool


def _visible_cursors(scope: Scope, consumer: str) -> dict[str, int]:
    return {
        name: cursor
        for name, cursor in scope.backend.get_cursors(consumer).items()
        if scope.record(name) is not None
    }


def _visible_consumers(scope: Scope) -> dict[str, dict[str, int]]:
    """Each consumer with its cursors on the assets the viewer may see; a scoped viewer
    sees only the consumers with such a cursor."""
    out: dict[str, dict[str, int]] = {}
    for consumer in sorted(scope.backend.list_consumers()):
        cursors = _visible_cursors(scope, consumer)
        if cursors or scope.principal.unscoped:
            out[consumer] = cursors
    return out


@router.api_route("/consumers", methods=["GET", "HEAD"])
def consumers_page(request: Request, consumer: str | None = None) -> Response:
    scope = _scope(request)
    if scope is None:
        return _to_login(request)
    consumers = _visible_consumers(scope)
    if consumer is not None:
        consumers = {c: v for c, v in consumers.items() if c == consumer}
    names = sorted({name for cursors in consumers.values() for name in cursors})
    latest = scope.backend.latest_events(names) if names else {}
    rows: dict[str, list[CursorRow]] = {}
    for name, cursors in consumers.items():
        rows[name] = []
        for asset, cursor in sorted(cursors.items()):
            newer = scope.backend.query_events(
                EventQuery(asset, after=cursor, limit=BEHIND_CAP + 1)
            )
            newest = latest.get(asset)
            rows[name].append(
                CursorRow(
                    asset,
                    cursor,
                    newest.id if newest else None,
                    min(len(newer), BEHIND_CAP),
                    len(newer) > BEHIND_CAP,
                )
            )
    return _render(
        request,
        "consumers.html",
        principal=scope.principal,
        consumers=rows,
        only=consumer,
    )


@router.api_route("/lineage", methods=["GET", "HEAD"])
def lineage_page(request: Request, group: str | None = None) -> Response:
    scope = _scope(request)
    if scope is None:
        return _to_login(request)
    visible = [r for r in scope.backend.list_assets() if scope.visible(r)]
    groups = sorted({r.group for r in visible})
    records = [r for r in visible if group is None or r.group == group]
    graph = lineage_from_state(scope.backend, records, consumers=_visible_consumers(scope))
    base = request.scope.get("root_path", "")

    def link(node: Node) -> str | None:
        if node.kind == "asset":
            return f"{base}/ui/asset?name={quote(node.name, safe='')}"
        if node.kind == "consumer":
            return f"{base}/ui/consumers?consumer={quote(node.name, safe='')}"
        return None

    return _render(
        request,
        "lineage.html",
        principal=scope.principal,
        svg=lineage_svg(graph, link),
        graph=graph,
        groups=groups,
        group=group,
    )
