"""Declaring tasks: the ``DAG`` grouping and the checks on what a task declares.

A DAG runs nothing; it names tasks and lends them its schedule, for code written against
Airflow's ``with DAG(...):``. The checks turn a task's ``inlets``, ``outlets`` and
``schedule`` arguments into validated values, with errors that say what was expected.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..models import Asset, AssetAlias, AssetAll, AssetRef, BaseAsset, validate_name

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["DAG", "Inlet", "check_assets", "check_schedule", "current_dag"]

#: What a task may declare as an inlet or outlet.
Inlet = Asset | AssetRef | AssetAlias

#: Airflow 3.3's other ``DAG(...)`` arguments: accepted so that a DAG file reads the same,
#: kept in ``DAG.airflow_args`` for the orchestrator; assetry does not act on them.
AIRFLOW_DAG_ARGS = frozenset(
    {
        "default_args",
        "start_date",
        "end_date",
        "timezone",
        "timetable",
        "template_searchpath",
        "template_undefined",
        "user_defined_macros",
        "user_defined_filters",
        "max_active_tasks",
        "max_active_runs",
        "max_consecutive_failed_dag_runs",
        "dagrun_timeout",
        "deadline",
        "sla_miss_callback",
        "catchup",
        "on_success_callback",
        "on_failure_callback",
        "doc_md",
        "params",
        "access_control",
        "is_paused_upon_creation",
        "jinja_environment_kwargs",
        "render_template_as_native_obj",
        "tags",
        "owner_links",
        "auto_register",
        "fail_fast",
        "allowed_run_types",
        "dag_display_name",
        "disable_bundle_versioning",
        "rerun_with_latest_version",
    }
)

_ACTIVE_DAG: contextvars.ContextVar[DAG | None] = contextvars.ContextVar(
    "assetry_dag", default=None
)


class DAG:
    """A named group of tasks, for code written against Airflow's ``with DAG(...):``.

    assetry is not an orchestrator: a DAG runs nothing. Tasks declared inside the block get
    ``"<dag_id>.<task name>"`` as task id and, when they declare none, the DAG's
    ``schedule`` (an asset condition makes them consumers; a string such as ``"@daily"``
    is kept for the orchestrator that calls them). As in Airflow, a list of assets means all
    of them, and Airflow's other arguments (``start_date``, ``catchup``, ``tags``, ...) are
    accepted and kept in :attr:`airflow_args`; an unknown one is a ``TypeError``.
    """

    def __init__(
        self,
        dag_id: str,
        schedule: BaseAsset | str | dt.timedelta | Iterable[BaseAsset] | None = None,
        *,
        description: str | None = None,
        **airflow_args: Any,
    ) -> None:
        unknown = sorted(set(airflow_args) - AIRFLOW_DAG_ARGS)
        if unknown:
            raise TypeError(f"DAG() got unexpected keyword argument(s): {', '.join(unknown)}")
        self.dag_id = validate_name(dag_id, "a dag_id")
        self.schedule = check_schedule(schedule, f"DAG {dag_id!r}")
        self.description = description
        self.airflow_args: dict[str, Any] = airflow_args
        self.tasks: list[Task] = []
        self._tokens: list[contextvars.Token[DAG | None]] = []

    def __repr__(self) -> str:
        return f"DAG(dag_id={self.dag_id!r}, schedule={self.schedule!r})"

    def __enter__(self) -> DAG:
        self._tokens.append(_ACTIVE_DAG.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE_DAG.reset(self._tokens.pop())


def check_schedule(schedule: object, owner: str) -> BaseAsset | str | dt.timedelta | None:
    """``schedule`` if it is an asset condition, a time schedule (a string or a timedelta,
    kept for the orchestrator) or ``None``; a list of assets is all of them, as in Airflow."""
    if schedule is None or isinstance(schedule, str | BaseAsset | dt.timedelta):
        return schedule
    if isinstance(schedule, list | tuple) and all(isinstance(a, BaseAsset) for a in schedule):
        if not schedule:
            raise ValueError(f"the schedule of {owner} is an empty list of assets")
        return schedule[0] if len(schedule) == 1 else AssetAll(*schedule)
    raise TypeError(
        f"the schedule of {owner} must be an Asset, Asset.ref(...), AssetAlias, a condition "
        f"(a & b, a | b), a list of assets, a time schedule (string or timedelta) or None, "
        f"not {type(schedule).__name__}"
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
