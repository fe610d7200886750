"""Lineage: producers → (aliases →) assets → consumers, from what the state records.

Every edge comes from stored data, so a served instance (or a remote one) shows the same
graph as the process that ran the tasks: a **producer** is the ``source_task_id`` of an
asset's recent events, an **alias** is one those events were emitted through, and a
**consumer** is a task holding a cursor on the asset (an asset-scheduled task, once it has
run). Tasks known in process can add what they declare (outlets and schedules) before they
have ever run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from .backend import AssetRecord, EventQuery, StateBackend
from .models import Asset, AssetAlias, BaseAsset

__all__ = ["EVENTS_SCANNED", "Edge", "Lineage", "Node", "NodeKind", "lineage_from_state"]

NodeKind = Literal["producer", "alias", "asset", "consumer"]
#: The newest events of each asset read for producers and aliases.
EVENTS_SCANNED: Final = 500
#: Left to right: the column of each kind of node.
COLUMNS: Final[tuple[NodeKind, ...]] = ("producer", "alias", "asset", "consumer")


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """One node: its kind and name (a task id, an alias or an asset name)."""

    kind: NodeKind
    name: str


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """A directed edge, ``source`` feeding ``target``."""

    source: Node
    target: Node


@dataclass(slots=True)
class Lineage:
    """A graph of nodes and edges, built with :meth:`link`."""

    nodes: set[Node] = field(default_factory=set)
    edges: set[Edge] = field(default_factory=set)

    def add(self, kind: NodeKind, name: str) -> Node:
        node = Node(kind, name)
        self.nodes.add(node)
        return node

    def link(self, source: Node, target: Node) -> None:
        self.nodes.update((source, target))
        self.edges.add(Edge(source, target))

    def columns(self) -> list[list[Node]]:
        """The nodes of each kind, sorted by name, in :data:`COLUMNS` order."""
        return [sorted(n for n in self.nodes if n.kind == kind) for kind in COLUMNS]


def lineage_from_state(
    backend: StateBackend,
    records: Sequence[AssetRecord],
    *,
    consumers: Iterable[str] | None = None,
    tasks: Iterable[object] = (),
    events_scanned: int = EVENTS_SCANNED,
) -> Lineage:
    """The lineage of ``records`` (the assets a caller may see): producers and aliases from
    their newest ``events_scanned`` events, consumers from the cursors of ``consumers``
    (default: every consumer the backend knows) on those assets, and what ``tasks``
    (:class:`~assetry.runtime.Task` objects) declare as outlets and schedules."""
    graph = Lineage()
    names = {r.name for r in records}
    for record in records:
        asset = graph.add("asset", record.name)
        for event in backend.query_events(
            EventQuery(record.name, limit=events_scanned, descending=True)
        ):
            producer = graph.add("producer", event.source_task_id) if event.source_task_id else None
            for alias_name in event.aliases:
                alias = graph.add("alias", alias_name)
                graph.link(alias, asset)
                if producer is not None:
                    graph.link(producer, alias)
            if producer is not None and not event.aliases:
                graph.link(producer, asset)
    for consumer in backend.list_consumers() if consumers is None else consumers:
        for name in backend.get_cursors(consumer):
            if name in names:
                graph.link(Node("asset", name), Node("consumer", consumer))
    for task in tasks:
        _declared(graph, task, names)
    return graph


def _declared(graph: Lineage, task: object, names: set[str]) -> None:
    """The edges a task declares: outlets (assets it produces, aliases it emits through)
    and the assets and aliases its schedule waits on; only toward assets in ``names``."""
    task_id = str(getattr(task, "task_id", ""))
    if not task_id:
        return
    for outlet in getattr(task, "outlets", ()) or ():
        if isinstance(outlet, Asset) and outlet.name in names:
            graph.link(Node("producer", task_id), Node("asset", outlet.name))
        elif isinstance(outlet, AssetAlias):
            graph.link(Node("producer", task_id), Node("alias", outlet.name))
    schedule = getattr(task, "schedule", None)
    if isinstance(schedule, BaseAsset):
        leaves: Callable[[], Iterable[BaseAsset]] = schedule.leaves
        for leaf in leaves():
            if isinstance(leaf, AssetAlias):
                graph.link(Node("alias", leaf.name), Node("consumer", task_id))
            else:
                name = getattr(leaf, "name", None)
                if name in names:
                    graph.link(Node("asset", str(name)), Node("consumer", task_id))
