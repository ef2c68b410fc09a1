"""``analyzer crosscheck FILE``: compare the decoder engines field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors


@app.command(epilog="Example: analyzer crosscheck cap.pcapng --engines native,tshark")
@handle_errors
def crosscheck(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file.")],
    engines: Annotated[
        str, typer.Option("--engines", help="Comma-separated engines to compare.")
    ] = "native,scapy,tshark",
    show: Annotated[int, typer.Option("--show", min=1, help="Differences to print per pair.")] = 10,
) -> None:
    """Decode FILE with several engines and print the first differing fields (exit 1 if any)."""
    from analyzer.decode.compare import crosscheck_engines, format_report

    result = crosscheck_engines(file, [e.strip() for e in engines.split(",") if e.strip()])
    typer.echo(format_report(result, show=show))
    if not result.agree:
        raise typer.Exit(1)
