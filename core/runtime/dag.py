"""Declaring tasks: the ``DAG`` grouping and the checks on what a task declares.

A DAG runs nothing; it names tasks and lends them its schedule, for code written against
Airflow's ``with DAG(...):``. The checks turn a task's ``inlets``, ``outlets`` and
``schedule`` arguments into validated values, with errors that say what was expected.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..models import Asset, AssetAlias, AssetRef, BaseAsset, validate_name

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["DAG", "Inlet", "check_assets", "check_schedule", "current_dag"]

#: What a task may declare as an inlet or outlet.
Inlet = Asset | AssetRef | AssetAlias

_ACTIVE_DAG: contextvars.ContextVar[DAG | None] = contextvars.ContextVar(
    "assetry_dag", default=None
)


class DAG:
    """A named group of tasks, for code written against Airflow's ``with DAG(...):``.

    assetry is not an orchestrator: a DAG runs nothing. Tasks declared inside the block get
    ``"<dag_id>.<task name>"`` as task id and, when they declare none, the DAG's
    ``schedule`` (an asset condition makes them consumers; a string such as ``"@daily"``
    is kept for the orchestrator that calls them).
    """

    def __init__(
        self,
        dag_id: str,
        schedule: BaseAsset | str | None = None,
        *,
        description: str | None = None,
    ) -> None:
        self.dag_id = validate_name(dag_id, "a dag_id")
        self.schedule = check_schedule(schedule, f"DAG {dag_id!r}")
        self.description = description
        self.tasks: list[Task] = []
        self._tokens: list[contextvars.Token[DAG | None]] = []

    def __repr__(self) -> str:
        return f"DAG(dag_id={self.dag_id!r}, schedule={self.schedule!r})"

    def __enter__(self) -> DAG:
        self._tokens.append(_ACTIVE_DAG.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE_DAG.reset(self._tokens.pop())


def check_schedule(schedule: object, owner: str) -> BaseAsset | str | None:
    """``schedule`` if it is an asset condition, a time schedule string or ``None``."""
    if schedule is None or isinstance(schedule, str | BaseAsset):
        return schedule
    raise TypeError(
        f"the schedule of {owner} must be an Asset, Asset.ref(...), AssetAlias, a condition "
        f"(a & b, a | b), a time schedule string or None, not {type(schedule).__name__}"
    )


def check_assets(objects: Iterable[object] | None, what: str, owner: str) -> tuple[Inlet, ...]:
    """The declared ``inlets`` or ``outlets`` (``what``) of ``owner``, checked, without repeats."""
    if objects is None:
        return ()
    if isinstance(objects, BaseAsset | str):
        raise TypeError(f"{what} of {owner} must be a list, e.g. {what}=[asset]")
    out: list[Inlet] = []
    for obj in objects:
        if not isinstance(obj, Asset | AssetRef | AssetAlias):
            raise TypeError(
                f"{what} of {owner} must be Asset, Asset.ref(...) or AssetAlias objects, "
                f"not {type(obj).__name__}"
            )
        if obj not in out:
            out.append(obj)
    return tuple(out)


def current_dag() -> DAG | None:
    """The DAG whose ``with`` block is open in this context, if any."""
    return _ACTIVE_DAG.get()
