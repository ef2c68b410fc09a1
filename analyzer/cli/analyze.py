"""``analyzer analyze FILE``: every TCP connection and UDP conversation, as text or JSON."""

from __future__ import annotations

import gc
import os
import shutil
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors
from analyzer.cli.packets import Engine
from analyzer.errors import UsageError


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    md = "md"
    html = "html"
    junit = "junit"
    csv = "csv"
    parquet = "parquet"


@app.command(
    epilog=(
        "Examples: analyzer analyze cap.pcapng · "
        "analyzer analyze cap.pcapng --format json -o report.json · "
        "analyzer analyze cap.pcap --msl 60"
    ),
)
@handle_errors
def analyze(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file (may be gzip-compressed).")],
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            "-f",
            help="text (readable, default), json (analyzer.report/1), md, html, junit, "
            "or csv/parquet (packets, tcp, udp tables into -o DIR).",
        ),
    ] = ReportFormat.text,
    msl: Annotated[
        float,
        typer.Option(
            "--msl", help="Maximum segment lifetime in seconds; TIME_WAIT lasts 2*MSL (30 = Linux)."
        ),
    ] = 30.0,
    engine: Annotated[Engine, typer.Option("--engine", "-e", help="Decoder engine.")] = Engine.native,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here instead of stdout.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=0,
            help="Processes for the TCP analysis of a large capture (0: one per CPU; 1: no fork). "
            "Default: one per CPU for json, 1 for the other formats (they need every record).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Reconstruct the handshake, data, teardown and TIME_WAIT of every flow in FILE."""
    if not msl > 0:  # also rejects NaN
        raise UsageError(f"invalid --msl {msl}", hint="pass a positive number of seconds, e.g. --msl 30")
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: no directory {output.parent}", hint="create it first")
    from analyzer.analysis import gc_paused

    # Until the report is written and dropped: otherwise the collector rescans the millions of
    # report objects (about a second per million packets) and finds nothing.
    with gc_paused():
        if jobs is None:
            # Several processes pay off when the records are only written as JSON text: the
            # other formats read every record, which the workers' texts must be parsed back into.
            jobs = 0 if fmt is ReportFormat.json else 1
        _report(file, fmt, msl, engine, output, jobs)
        # Every object made during the pause is young: the first collection after it would
        # scan them all (~40 ms for 10^5 flows) just before the process exits. They are the
        # kept analysis (_KEPT), not garbage: freeze them out of the collector's sight.
        gc.freeze()


# The last analysis, left for the process exit to free: dropping the objects of 10^5 flows one
# by one takes ~25 ms, which the console script's exit (``cli.exit_now``) does not spend.
_KEPT: list[object] = []


def _report(
    file: Path, fmt: ReportFormat, msl: float, engine: Engine, output: Path | None, jobs: int
) -> None:
    from analyzer.analysis import analyze as run_analysis

    result = run_analysis(file, msl=msl, engine=engine.value, jobs=jobs)
    _KEPT[:] = [result]
    if fmt not in (ReportFormat.text, ReportFormat.json):
        from analyzer.report.render import write_report

        write_report(result, fmt.value, output)
        return
    if fmt is ReportFormat.json:
        from analyzer.report.json_report import write_json

        if output is None:
            sys.stdout.flush()
            write_json(result, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with output.open("wb") as fh:
                write_json(result, fh)
        return
    from analyzer.report.text import render_text

    # https://no-color.org: a non-empty NO_COLOR turns colour off.
    color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = shutil.get_terminal_size().columns if color else 100
    text = render_text(result, color=color, width=width)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
