"""``analyzer demo NAME HOST PORT``: run one of the bundled demo programs on its own."""

from __future__ import annotations

import importlib
import subprocess
from enum import StrEnum
from typing import Annotated

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors
from analyzer.errors import UsageError


class Impl(StrEnum):
    python = "python"
    c = "c"


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=(
        "Examples: analyzer demo tcp-daytime-server 127.0.0.1 13013 -n 1 · "
        "analyzer demo tcp-daytime-client 127.0.0.1 13013 · "
        "analyzer demo udp-echo-client ::1 7007 --message hi --impl c. "
        "Options after PORT go to the program (--mode, -n, --message, --timeout)."
    ),
)
@handle_errors
def demo(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(help="tcp-daytime-server, tcp-daytime-client, udp-echo-server or udp-echo-client."),
    ],
    host: Annotated[str, typer.Argument(help="Address: 127.0.0.1, ::1 or a name.")],
    port: Annotated[int, typer.Argument(min=0, max=65535, help="TCP or UDP port.")],
    impl: Annotated[Impl, typer.Option("--impl", help="Python program or its C twin.")] = Impl.python,
) -> None:
    """Run one demo program (the textbook daytime and echo pairs) on its own."""
    from analyzer.demos.programs import PROGRAMS, command

    program = PROGRAMS.get(name)
    if program is None:
        raise UsageError(f"unknown demo program {name!r}", hint=f"choose one of: {', '.join(PROGRAMS)}")
    argv = [host, str(port), *ctx.args]
    if impl is Impl.python:
        module = importlib.import_module(f"analyzer.demos.{program.module}")
        raise typer.Exit(module.main(argv))
    from analyzer.demos.cbuild import build

    try:
        code = subprocess.call([*command(name, "c", build()), *argv])
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)
