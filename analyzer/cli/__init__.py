"""The command-line interface: a thin typer layer, one module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer import __version__
from analyzer.cli import _errors

app = typer.Typer(
    name="analyzer",
    help="Make TCP and UDP behaviour visible and verifiable from packet captures.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"analyzer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _errors.DEBUG["on"] = debug


def _register() -> None:
    # Commands live in their own modules; importing them registers them on ``app``.
    from analyzer.cli import analyze, crosscheck, demo, packets, plot, run, scenarios, verify  # noqa: F401


_register()


def main() -> None:
    app()
