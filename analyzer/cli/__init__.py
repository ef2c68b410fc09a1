"""The command-line interface: a thin typer layer, one module per command."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import Annotated, NoReturn

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


# The CLI does no linear algebra, but numpy's OpenBLAS starts a spare thread per CPU when it
# loads, which spins for a while: ~0.09 s of CPU taken from the decoder's threads on a 2-CPU
# machine. Set before any command module imports numpy (an explicit setting is kept).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _register() -> None:
    # Commands live in their own modules; importing them registers them on ``app``.
    from analyzer.cli import analyze, crosscheck, demo, packets, plot, run, scenarios, verify  # noqa: F401


_register()


def main() -> None:
    """The ``analyzer`` console script: run the command, then exit without interpreter teardown."""
    try:
        app()
    except SystemExit as stop:
        exit_now(stop.code)


def exit_now(code: object) -> NoReturn:
    """Exit with ``code`` (as ``SystemExit`` would) without tearing the interpreter down.

    After a large analysis the teardown (every module cleared, a final collection over every
    object left) takes 0.1-0.2 s and does nothing for the user. atexit handlers still run and
    the standard streams are flushed; only the teardown is skipped.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # SystemExit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing can reach it
            stream.flush()
    os._exit(status)
