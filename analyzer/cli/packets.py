"""``analyzer packets FILE``: the packet table, optionally filtered, as text/CSV/JSON/Parquet."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors
from analyzer.errors import UsageError


class PacketFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class Engine(StrEnum):
    native = "native"
    scapy = "scapy"
    tshark = "tshark"


@app.command(
    epilog="Example: analyzer packets cap.pcapng --query 'proto == \"tcp\" and dport == 13'",
)
@handle_errors
def packets(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file (may be gzip-compressed).")],
    fmt: Annotated[PacketFormat, typer.Option("--format", "-f", help="Output format.")] = (
        PacketFormat.table
    ),
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="pandas query expression over the columns.")
    ] = None,
    engine: Annotated[Engine, typer.Option("--engine", "-e", help="Decoder engine.")] = Engine.native,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="Show at most this many rows.")
    ] = None,
) -> None:
    """Print the packet table of FILE (one row per frame)."""
    from analyzer.decode import read_packets
    from analyzer.report.packets import render_packets, select

    if fmt is PacketFormat.parquet and output is None and sys.stdout.isatty():
        raise UsageError("parquet is binary", hint="pass -o FILE.parquet or redirect stdout")
    df = read_packets(file, engine=engine.value)
    if query:
        df = select(df, query)
    if limit is not None:
        df = df.head(limit)
    render_packets(df, fmt.value, output)
