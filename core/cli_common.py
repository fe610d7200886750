"""What every ``assetry`` command shares: the resolved instance, output, and error handling."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from . import plugins
from .backend import AssetRecord, StateBackend
from .config import Settings, load_settings
from .errors import AssetryError, StoreValueError
from .instance import Instance
from .models import validate_name
from .retention import parse_duration
from .urls import scrub_text
from .values import canonical_json, validate_partition_key

__all__ = [
    "MAX_ID",
    "AssetryGroup",
    "CliState",
    "CommandFailed",
    "asset_name",
    "bad_input",
    "compact",
    "confirm_destructive",
    "console",
    "dry_run_option",
    "emit_json",
    "err_console",
    "json_option",
    "one_line",
    "parse_age",
    "parse_when",
    "partition_arg",
    "print_table",
    "read_json_argument",
    "read_stdin",
    "record_of",
    "state",
    "stdin_is_terminal",
    "when",
    "where",
    "yes_option",
]

#: The largest event id (and count) accepted on the command line: a signed 64-bit integer,
#: what every SQL backend stores.
MAX_ID = 2**63 - 1

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

    def instance(self, *, create: bool = True) -> Instance:
        """The configured instance (``--backend``/``--url`` > environment > file > default).

        ``create=False`` (reading commands) opens existing state only: nothing is created or
        migrated, and missing state raises :class:`~assetry.errors.StateNotFoundError`.
        """
        if self._instance is None:
            self._instance = Instance(backend=self.backend_name(), url=self.url, create=create)
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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            _refuse_undecodable(arg)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except (RecursionError, OverflowError) as exc:
            # only hostile input reaches these (a JSON nested thousands deep, a number or
            # date beyond every limit): a usage error, not a failure of the store
            if ctx.params.get("debug"):
                raise
            raise click.UsageError(
                f"the input is too deeply nested or out of range ({type(exc).__name__}); "
                "check the values given"
            ) from None
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            hint = "" if isinstance(exc, AssetryError) else " (rerun with --debug for details)"
            raise CommandFailed(one_line(exc) + hint) from None


def _refuse_undecodable(text: str) -> None:
    """Refuse an argument that is not valid UTF-8 (Python keeps its bytes as lone
    surrogates): stored, it would turn into U+FFFD and name another key than the one given."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise click.UsageError(
            f"argument {shown[:80]!r} is not valid UTF-8; give names, keys and values as UTF-8 text"
        ) from None


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
    table = Table(
        title=_literal(title) if title is not None else None,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for name in columns:
        table.add_column(_literal(name), overflow="fold")
    for row in rows:
        table.add_row(*(_literal("" if v is None else str(v)) for v in row))
    out.print(table)


def _literal(text: str) -> Any:
    """``text`` as a rich ``Text``: printed as is, never read as markup (``[red]``,
    ``[tool.assetry]``), emoji codes (``:x:``) or highlighted."""
    from rich.text import Text

    return Text(text, no_wrap=False)


def parse_when(text: str, what: str = "time") -> dt.datetime:
    """An aware UTC datetime from ISO 8601 (naive means UTC) or a duration ago (``2h``, ``7d``,
    ``PT30M``)."""
    text = text.strip()
    try:
        return dt.datetime.now(dt.UTC) - parse_duration(text)
    except ValueError as exc:
        if "ambiguous" in str(exc) or "longest" in str(exc) or "no fixed length" in str(exc):
            raise click.BadParameter(str(exc), param_hint=what) from None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"{text[:80]!r} is neither an ISO 8601 time (2024-06-01T12:00:00Z) "
            "nor a duration ago (30min, 12h, 7d, PT30M)",
            param_hint=what,
        ) from None


def stdin_is_terminal() -> bool:
    """Whether someone is at a terminal to answer a question (tests replace this)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm_destructive(action: str, *, yes: bool) -> None:
    """Consent to ``action`` (``"delete 3 keys of asset 'x'"``), a change that deletes or
    overwrites: ``--yes`` gives it; on a terminal the user is asked; without a terminal
    (cron, CI, a pipe) the command refuses (exit 2), so a script never destroys by accident."""
    if yes:
        return
    if not stdin_is_terminal():
        raise click.UsageError(
            f"refusing to {action} without consent: pass --yes to go ahead (or --dry-run to "
            "see what would change); there is no terminal to ask on"
        )
    click.confirm(action[:1].upper() + action[1:] + "?", abort=True)


def yes_option(func: F) -> F:
    """Add ``--yes``/``-y``: consent to a destructive change without being asked."""
    return click.option(
        "--yes", "-y", is_flag=True, help="Go ahead without asking (needed without a terminal)."
    )(func)


def dry_run_option(func: F) -> F:
    """Add ``--dry-run``: print what would change, change nothing."""
    return click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")(
        func
    )


@contextmanager
def bad_input(param_hint: str) -> Iterator[None]:
    """Turn a validation error of user input into a usage error (exit code 2)."""
    try:
        yield
    except (StoreValueError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        text = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise click.BadParameter(scrub_text(text), param_hint=param_hint) from None


def asset_name(name: str, param_hint: str = "ASSET") -> str:
    """A valid asset name, else a usage error."""
    with bad_input(param_hint):
        return validate_name(name)


def partition_arg(partition: str | None) -> str | None:
    """A valid ``--partition`` key (or ``None``), else a usage error."""
    if partition is None:
        return None
    with bad_input("--partition"):
        return validate_partition_key(partition)


def record_of(backend: StateBackend, name: str) -> AssetRecord:
    """The registry record of ``name``, or a failure saying how to find the right name."""
    record = backend.get_asset(asset_name(name))
    if record is None:
        raise CommandFailed(
            f"asset {name!r} is not registered; `assetry assets list` shows the registered "
            f"ones and `assetry assets register {shlex.quote(name)} --uri URI` registers it"
        )
    return record


def compact(value: Any) -> str:
    """A value as compact JSON text."""
    return canonical_json(value)


def when(value: dt.datetime | None) -> str:
    """A time as ISO 8601 to the second ("" for none)."""
    return value.isoformat(timespec="seconds") if value else ""


def where(asset: str, partition: str | None) -> str:
    """``asset 'x'`` or ``asset 'x' partition 'p'``, for messages."""
    return f"asset {asset!r}" + (f" partition {partition!r}" if partition is not None else "")


def parse_age(text: str, param_hint: str) -> dt.timedelta:
    """A duration option (``30d``, ``12h``, ``PT10M``), else a usage error; ``m``/``M`` is
    refused as ambiguous (minutes or months)."""
    with bad_input(param_hint):
        return parse_duration(text)


def read_json_argument(value: str, param_hint: str, *, object_only: bool = False) -> Any:
    """JSON text given on the command line (``-``: standard input), else a usage error."""
    if value == "-":
        value = read_stdin(param_hint).strip()
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{value[:60]!r} is not JSON ({exc.msg}); quote strings as JSON "
            """('"2024-06-01"')""" + (" or pass --string" if param_hint == "VALUE" else ""),
            param_hint=param_hint,
        ) from None
    except (RecursionError, ValueError) as exc:  # nested too deeply, a huge integer
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise click.BadParameter(f"not usable JSON: {reason}", param_hint=param_hint) from None
    if object_only and not isinstance(decoded, dict):
        raise click.BadParameter(
            'must be a JSON object such as {"rows": 25}', param_hint=param_hint
        )
    return decoded


def read_stdin(param_hint: str) -> str:
    """Standard input as text; input that is not valid UTF-8 is a usage error (never stored
    as U+FFFD)."""
    try:
        return click.get_text_stream("stdin").read()
    except UnicodeDecodeError:
        raise click.BadParameter(
            "standard input is not valid UTF-8", param_hint=param_hint
        ) from None
