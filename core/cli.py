"""The ``assetry`` command line.

``main`` is the click group behind the ``assetry`` console script. Its global options pick
the state backend (``--backend``/``--url``, else the environment, pyproject.toml or the
embedded default); the commands live in ``cli_*`` modules and are registered below.
Failures exit 1 and usage errors 2, each with a one-line message; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import click

from .cli_common import AssetryGroup, CliState

__all__ = ["main"]


@click.group(cls=AssetryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--backend",
    metavar="NAME",
    help="State backend entry-point name (memory, sql, objectstore, ...).",
)
@click.option(
    "--url",
    metavar="URL",
    help="State backend URL, e.g. sqlite:///state.db or s3://bucket/prefix.",
)
@click.option("--json", "json_output", is_flag=True, help="Print listings as JSON.")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure.")
@click.version_option(package_name="assetry")
@click.pass_context
def main(
    ctx: click.Context, backend: str | None, url: str | None, json_output: bool, debug: bool
) -> None:
    """assetry: inspect and edit the asset store and event log, copy state between
    backends, apply retention and check the setup."""
    ctx.obj = CliState(backend=backend, url=url, json=json_output, debug=debug)
    ctx.call_on_close(ctx.obj.close)


def _register_commands() -> None:
    from . import cli_events, cli_ops, cli_serve, cli_state, demo

    cli_state.register(main)
    cli_events.register(main)
    cli_ops.register(main)
    cli_serve.register(main)
    demo.register(main)


_register_commands()
