"""``analyzer plot FILE --flow N -o out.png|svg``: a time-sequence (Stevens) graph of one connection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors
from analyzer.cli.packets import Engine


@app.command(
    epilog=(
        "Examples: analyzer plot cap.pcapng --flow 0 -o flow0.png · "
        "analyzer plot cap.pcap -n 3 -o flow3.svg --width 1600 --height 900"
    ),
)
@handle_errors
def plot(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file (may be gzip-compressed).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write: .png or .svg.")],
    flow: Annotated[
        int, typer.Option("--flow", "-n", help="TCP connection id (as in 'analyzer analyze').")
    ] = 0,
    width: Annotated[int, typer.Option("--width", help="Image width in pixels.")] = 1000,
    height: Annotated[int, typer.Option("--height", help="Image height in pixels.")] = 600,
    engine: Annotated[Engine, typer.Option("--engine", "-e", help="Decoder engine.")] = Engine.native,
) -> None:
    """Plot relative sequence numbers against time for each direction of one TCP connection,
    with the ACK and window lines, retransmissions in red and SYN/FIN/RST marked."""
    from analyzer.analysis import analyze
    from analyzer.errors import UsageError
    from analyzer.report.plot import EXT_HINT, PLOT_FORMATS, plot_flow

    if output.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise UsageError(f"cannot write a plot to {output}: unknown extension", hint=EXT_HINT)
    result = analyze(file, engine=engine.value)
    written = plot_flow(result, flow, output, width=width, height=height)
    typer.echo(f"wrote {written}")
