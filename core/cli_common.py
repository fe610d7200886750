"""What every ``assetry`` command shares: the resolved instance, output, and error handling."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from . import plugins
from .config import Settings, load_settings
from .errors import AssetryError
from .instance import Instance
from .retention import parse_duration
from .urls import scrub_text

__all__ = [
    "AssetryGroup",
    "CliState",
    "CommandFailed",
    "console",
    "emit_json",
    "err_console",
    "json_option",
    "one_line",
    "parse_when",
    "print_table",
    "state",
]

F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """A failure (exit code 1) with a one-line message naming what to fix."""

    exit_code = 1


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, secrets scrubbed; the type name where it
    says nothing."""
    message = scrub_text(exc).strip()
    text = message.splitlines()[0] if message else ""
    if isinstance(exc, AssetryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class CliState:
    """The global options, and the instance opened from them on first use."""

    backend: str | None = None
    url: str | None = None
    json: bool = False
    debug: bool = False
    _instance: Instance | None = field(default=None, repr=False)

    def backend_name(self) -> str | None:
        """``--backend``, else the backend ``--url`` selects by its scheme (so a URL given
        here is never paired with a backend named in the environment)."""
        if self.backend is None and self.url is not None:
            return plugins.backend_for_url(self.url)
        return self.backend

    def settings(self) -> Settings:
        """The resolved configuration, with these options as explicit arguments."""
        return load_settings(backend=self.backend_name(), url=self.url)

    def instance(self) -> Instance:
        """The configured instance (``--backend``/``--url`` > environment > file > default)."""
        if self._instance is None:
            self._instance = Instance(backend=self.backend_name(), url=self.url)
        return self._instance

    def close(self) -> None:
        if self._instance is not None:
            instance, self._instance = self._instance, None
            instance.close()


def state() -> CliState:
    """The :class:`CliState` of the running command."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a command invoked on its own, outside ``main``
        obj = ctx.ensure_object(CliState)
    return obj


class AssetryGroup(click.Group):
    """The top-level group: turns every failure into a one-line message and exit code 1
    (usage errors stay click's exit code 2), unless ``--debug`` asks for the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            hint = "" if isinstance(exc, AssetryError) else " (rerun with --debug for details)"
            raise CommandFailed(one_line(exc) + hint) from None


def json_option(func: F) -> F:
    """Add ``--json`` to a listing command (same as the global ``--json``)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(CliState).json = True

    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=callback,
        help="Print as JSON (for scripts).",
    )(func)


def console() -> Any:
    """A rich console on standard output (wide and plain when not a terminal)."""
    from rich.console import Console

    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else 200, soft_wrap=not terminal)


def err_console() -> Any:
    """A rich console on standard error, for progress and notes that are not data."""
    from rich.console import Console

    return Console(file=sys.stderr, stderr=True)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on standard output."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    empty: str = "nothing to show",
) -> None:
    """Print rows as a rich table (or ``empty`` when there are none)."""
    from rich.table import Table

    rows = list(rows)
    out = console()
    if not rows:
        out.print(empty, markup=False, highlight=False)
        return
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


def parse_when(text: str, what: str = "time") -> dt.datetime:
    """An aware UTC datetime from ISO 8601 (naive means UTC) or a duration ago (``2h``, ``7d``)."""
    text = text.strip()
    try:
        return dt.datetime.now(dt.UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2024-06-01T12:00:00Z) "
            "nor a duration ago (30m, 12h, 7d)",
            param_hint=what,
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
