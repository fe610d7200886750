"""Server-rendered SVG for the web view: the lineage graph and the event timeline.

Plain SVG markup inlined in the page: no script, no inline style (the pages' policy allows
neither), classes styled by the view's stylesheet. Every name and value is user data and
goes through :func:`_esc` (text and attribute values alike), so a name cannot inject markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from html import escape
from typing import Final

from markupsafe import Markup

from ..contracts import Freshness
from ..lineage import COLUMNS, Lineage, Node
from ..models import AssetEvent

__all__ = ["lineage_svg", "timeline_svg"]

NODE_W: Final = 200
NODE_H: Final = 28
COL_GAP: Final = 90
ROW_GAP: Final = 14
LABEL_CHARS: Final = 26
TITLES: Final = {
    "producer": "Producers",
    "alias": "Aliases",
    "asset": "Assets",
    "consumer": "Consumers",
}

CHART_W: Final = 900
ROW_H: Final = 26
LEFT: Final = 150
TOP: Final = 12
AXIS_H: Final = 30
#: Partitions drawn as their own row; the rest share the last row, "other partitions".
MAX_ROWS: Final = 12


def _esc(value: object) -> str:
    """Escaped for SVG text and quoted attribute values."""
    return escape(str(value), quote=True)


def _label(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ordered(graph: Lineage) -> list[list[Node]]:
    """The columns, assets by name and every other column ordered by the mean row of its
    neighbours (so edges mostly run straight and cross less); ties by name."""
    columns = graph.columns()
    neighbours: dict[Node, list[Node]] = {}
    for edge in graph.edges:
        neighbours.setdefault(edge.source, []).append(edge.target)
        neighbours.setdefault(edge.target, []).append(edge.source)
    asset_col = COLUMNS.index("asset")
    order = [asset_col, asset_col - 1, asset_col + 1, asset_col - 2]  # alias, consumer, producer
    row: dict[Node, int] = {n: i for i, n in enumerate(columns[asset_col])}
    for col in order[1:]:

        def mean_row(node: Node) -> tuple[float, str]:
            placed = [row[n] for n in neighbours.get(node, []) if n in row]
            return (sum(placed) / len(placed) if placed else float("inf"), node.name)

        columns[col] = sorted(columns[col], key=mean_row)
        row.update((n, i) for i, n in enumerate(columns[col]))
    return columns


def lineage_svg(graph: Lineage, link: Callable[[Node], str | None]) -> Markup:
    """The graph as layered columns (producers, aliases, assets, consumers) with curved
    edges; ``link(node)`` gives a node's page (or ``None``). Empty columns are left out."""
    columns = [(kind, nodes) for kind, nodes in zip(COLUMNS, _ordered(graph), strict=True) if nodes]
    rows = max((len(nodes) for _, nodes in columns), default=0)
    width = max(1, len(columns)) * (NODE_W + COL_GAP) - COL_GAP + 20
    height = 40 + rows * (NODE_H + ROW_GAP) + 10
    where: dict[Node, tuple[int, int]] = {}
    parts: list[str] = []
    for col, (kind, nodes) in enumerate(columns):
        x = 10 + col * (NODE_W + COL_GAP)
        parts.append(f'<text class="heading" x="{x}" y="20">{_esc(TITLES[kind])}</text>')
        for row, node in enumerate(nodes):
            y = 36 + row * (NODE_H + ROW_GAP)
            where[node] = (x, y)
    for edge in sorted(graph.edges):
        if edge.source not in where or edge.target not in where:
            continue
        (x1, y1), (x2, y2) = where[edge.source], where[edge.target]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (sx + tx) / 2
        parts.append(
            f'<path class="edge" data-source="{_esc(edge.source.kind)}:{_esc(edge.source.name)}" '
            f'data-target="{_esc(edge.target.kind)}:{_esc(edge.target.name)}" '
            f'd="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ty:.0f} {tx:.0f},{ty:.0f}"/>'
        )
    for node, (x, y) in sorted(where.items()):
        box = (
            f'<g class="node {node.kind}" data-node="{_esc(node.kind)}:{_esc(node.name)}">'
            f"<title>{_esc(node.kind)}: {_esc(node.name)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
            f'<text x="{x + 8}" y="{y + 18}">{_esc(_label(node.name))}</text></g>'
        )
        href = link(node)
        parts.append(f'<a href="{_esc(href)}">{box}</a>' if href else box)
    return Markup(
        f'<svg id="lineage-graph" class="lineage" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="lineage graph">{"".join(parts)}</svg>'
    )


def _due_marks(
    events: Sequence[AssetEvent],
    rows_total: int,
    row_of: dict[str, int],
    freshness: Freshness,
    now: dt.datetime,
    end: dt.datetime,
    x_of: Callable[[dt.datetime], float],
) -> list[str]:
    """When each judged row's next update is due (a tick), and the overdue stretch from
    then to now (a band): per partition row, or across every row for the whole asset."""
    newest: dict[str | None, dt.datetime] = {}
    for event in events:
        key: str | None = (event.partition_key or "") if freshness.per_partition else None
        if key is None or key in row_of:
            newest[key] = max(newest.get(key, event.timestamp), event.timestamp)
    marks: list[str] = []
    for key, last in sorted(newest.items(), key=lambda item: str(item[0])):
        due = last + freshness.max_age
        if key is None:
            y1, y2 = TOP + 2, TOP + rows_total * ROW_H - 2
        else:
            y1 = TOP + row_of[key] * ROW_H + 4
            y2 = y1 + ROW_H - 8
        name = "the asset" if key is None else f"partition {key or '(none)'}"
        title = f"{name}: next update due {due.astimezone(dt.UTC):%Y-%m-%d %H:%M UTC}"
        if due < now:
            marks.append(
                f'<rect class="overdue" x="{x_of(due):.1f}" y="{y1}" '
                f'width="{max(1.0, x_of(now) - x_of(due)):.1f}" height="{y2 - y1}">'
                f"<title>{_esc(title)} (overdue)</title></rect>"
            )
        if due <= end:
            marks.append(
                f'<line class="due" x1="{x_of(due):.1f}" y1="{y1}" x2="{x_of(due):.1f}" '
                f'y2="{y2}"><title>{_esc(title)}</title></line>'
            )
    return marks


def _ticks(start: dt.datetime, end: dt.datetime, count: int = 5) -> list[dt.datetime]:
    if end <= start:
        return [start]
    step = (end - start) / (count - 1)
    return [start + step * i for i in range(count)]


def _tick_label(moment: dt.datetime, span: dt.timedelta) -> str:
    moment = moment.astimezone(dt.UTC)
    if span <= dt.timedelta(days=1):
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def timeline_svg(
    events: Sequence[AssetEvent],
    link: Callable[[AssetEvent], str],
    *,
    now: dt.datetime | None = None,
    freshness: Freshness | None = None,
) -> Markup:
    """The events as points over time, one row per partition (the most recently updated
    partitions first; beyond :data:`MAX_ROWS`, the rest share one row), or one row for an
    unpartitioned asset. ``link(event)`` is where a point leads (its row in the table).

    With ``now`` (the newest page) the axis runs to now, marked; with a ``freshness`` too,
    each judged row (every partition under ``per_partition``, else the whole chart) shows
    the time its next update is due, and the stretch from then to now when it is overdue."""
    if not events:
        return Markup("")
    rows: list[str] = []
    for event in sorted(events, key=lambda e: e.id, reverse=True):
        key = event.partition_key or ""
        if key not in rows:
            rows.append(key)
    shown = rows[: MAX_ROWS - 1] if len(rows) > MAX_ROWS else rows
    other = "other partitions" if len(rows) > MAX_ROWS else None
    labels = [*shown, *([other] if other else [])]
    row_of = {key: i for i, key in enumerate(shown)}
    start = min(e.timestamp for e in events)
    end = max(e.timestamp for e in events)
    if now is not None and now > end:
        end = now
    span = end - start
    plot_w = CHART_W - LEFT - 20
    height = TOP + len(labels) * ROW_H + AXIS_H

    def x_of(moment: dt.datetime) -> float:
        if span.total_seconds() <= 0:
            return LEFT + plot_w / 2
        return LEFT + plot_w * ((moment - start) / span)

    parts: list[str] = []
    for i, label in enumerate(labels):
        y = TOP + i * ROW_H + ROW_H / 2
        text = "(no partition)" if label == "" else _label(label, 22)
        parts.append(
            f'<text class="row-label" x="{LEFT - 8}" y="{y + 4:.0f}">{_esc(text)}</text>'
            f'<line class="row" x1="{LEFT}" y1="{y:.0f}" x2="{LEFT + plot_w}" y2="{y:.0f}"/>'
        )
    axis_y = TOP + len(labels) * ROW_H
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{axis_y}" x2="{LEFT + plot_w}" y2="{axis_y}"/>'
    )
    ticks = _ticks(start, end)
    for i, tick in enumerate(ticks):
        x = x_of(tick)
        # the outer labels hang inwards, so none is cut at the chart's edges
        edge = " first" if i == 0 and len(ticks) > 1 else " last" if i == len(ticks) - 1 > 0 else ""
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}"/>'
            f'<text class="tick-label{edge}" x="{x:.1f}" y="{axis_y + 18}">'
            f"{_esc(_tick_label(tick, span))}</text>"
        )
    if now is not None:
        x = x_of(min(now, end))
        parts.append(
            f'<line class="now" x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{axis_y}"/>'
            f'<text class="now-label" x="{x:.1f}" y="{TOP - 1}">now</text>'
        )
        if freshness is not None:
            parts.extend(_due_marks(events, len(labels), row_of, freshness, now, end, x_of))
    for event in sorted(events, key=lambda e: e.id):
        row = row_of.get(event.partition_key or "", len(shown))
        y = TOP + row * ROW_H + ROW_H / 2
        when = event.timestamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        partition = f" · partition {event.partition_key}" if event.partition_key else ""
        parts.append(
            f'<a href="{_esc(link(event))}"><circle class="point" data-id="{event.id}" '
            f'cx="{x_of(event.timestamp):.1f}" cy="{y:.0f}" r="5">'
            f"<title>#{event.id} · {_esc(when)}{_esc(partition)}</title></circle></a>"
        )
    return Markup(
        f'<svg id="timeline-chart" class="timeline-chart" xmlns="http://www.w3.org/2000/svg" '
        f'width="{CHART_W}" height="{height}" viewBox="0 0 {CHART_W} {height}" role="img" '
        f'aria-label="events over time">{"".join(parts)}</svg>'
    )
