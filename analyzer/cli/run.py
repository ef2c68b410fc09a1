"""``analyzer run``: run the demo scenarios under capture, analyze them, check them against the
kernel and their expectations. Exit 0 when every scenario passed, 1 otherwise, 3 when the
machine cannot run them (with a one-line fix), 130 when interrupted.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.cli import app
from analyzer.cli._errors import handle_errors, stderr
from analyzer.errors import UsageError


class Impl(StrEnum):
    python = "python"
    c = "c"


class CaptureBackend(StrEnum):
    dumpcap = "dumpcap"
    tcpdump = "tcpdump"
    scapy = "scapy"


class RunFormat(StrEnum):
    text = "text"
    json = "json"
    md = "md"
    html = "html"
    junit = "junit"


@app.command(
    epilog=(
        "Examples: analyzer run · analyzer run --all --impl c · "
        "analyzer run simultaneous-close --watch-time-wait · analyzer run --ipv6 --format json · "
        "analyzer run --all --format junit -o junit.xml"
    ),
)
@handle_errors
def run(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[SCENARIO]...", help="Scenarios (see analyzer scenarios).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every scenario.")] = False,
    ipv6: Annotated[bool, typer.Option("--ipv6", help="Use ::1 instead of 127.0.0.1.")] = False,
    impl: Annotated[Impl, typer.Option("--impl", help="Demo programs in Python or C.")] = Impl.python,
    capture: Annotated[
        CaptureBackend | None,
        typer.Option("--capture", help="Capture backend (default: dumpcap, tcpdump, scapy; first usable)."),
    ] = None,
    host_loopback: Annotated[
        bool,
        typer.Option("--host-loopback", help="Capture on the real lo (needs root or CAP_NET_RAW)."),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default captures/runs/<UTC timestamp>/).")
    ] = None,
    fmt: Annotated[
        RunFormat,
        typer.Option(
            "--format",
            "-f",
            help="text (readable, default), json (analyzer.run/1), md, html, "
            "or junit (one test suite per scenario, one test case per check).",
        ),
    ] = RunFormat.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here instead of stdout.")
    ] = None,
    msl: Annotated[
        float,
        typer.Option("--msl", help="Maximum segment lifetime, s; TIME_WAIT = 2*MSL (30 = Linux)."),
    ] = 30.0,
    watch_time_wait: Annotated[
        bool,
        typer.Option("--watch-time-wait", help="Sample the kernel until it releases TIME_WAIT (about 60 s)."),
    ] = False,
) -> None:
    """Run the demo pairs while capturing, then show and verify handshake, data, teardown, TIME_WAIT."""
    from analyzer.demos import render, scenarios, session

    if not msl > 0:
        raise UsageError(f"invalid --msl {msl}", hint="pass a positive number of seconds, e.g. --msl 30")
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: no directory {output.parent}", hint="create it first")
    opts = session.RunOptions(
        scenarios=scenarios.select(names or [], all_),
        ipv6=ipv6,
        impl=impl.value,
        capture=capture.value if capture else None,
        host_loopback=host_loopback,
        out=out,
        msl=msl,
        watch=watch_time_wait,
    )
    console = render.make_console(sys.stderr)
    try:
        with _Progress(console, watch_time_wait) as progress:
            result = session.execute(opts, on_event=progress.event)
    except KeyboardInterrupt:
        # Only outside the workers' lifetime (building, analyzing): nothing is running any more.
        stderr.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    _write(result, fmt, output)
    if result.error is not None:
        raise result.error
    if result.interrupted:
        stderr.print("interrupted: the report above says what was captured before Ctrl-C", markup=False)
        raise typer.Exit(130)
    raise typer.Exit(0 if result.passed else 1)


def _write(result: Any, fmt: RunFormat, output: Path | None) -> None:
    """The report in ``fmt``, to ``output`` or stdout (text: coloured only on a terminal)."""
    from analyzer.demos import documents, render
    from analyzer.demos.outputs import run_doc

    data: str | bytes
    if fmt is RunFormat.text:
        if output is None:
            render.render(result, render.make_console())
            return
        with output.open("w", encoding="utf-8") as fh:
            render.render(result, render.make_console(fh))
        return
    if fmt is RunFormat.json:
        data = json.dumps(run_doc(result), indent=2, default=str) + "\n"
    elif fmt is RunFormat.md:
        data = documents.run_markdown(result)
    elif fmt is RunFormat.html:
        if not documents.html_available():
            raise UsageError(
                "--format html: the HTML report is not part of this build", hint="use md or json"
            )
        data = documents.run_html(result)
    else:
        data = documents.run_junit(result)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(raw)


class _Progress:
    """A spinner while scenarios run and a bar while TIME_WAIT is watched; silent when piped."""

    def __init__(self, console: Any, watch: bool) -> None:
        self.console = console
        self.live = console.is_terminal
        self.watch = watch
        self.running: set[str] = set()

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            columns = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.watch:
                columns.append(BarColumn())
            self.progress = Progress(*columns, console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("starting", total=60.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def event(self, name: str, msg: dict[str, Any]) -> None:
        if not self.live:
            return
        if msg.get("event") == "started":
            self.running.add(name)
        kind = msg.get("kind")
        if kind == "watch":
            left = float(msg.get("left_s", 0.0))
            self.progress.update(
                self.task, description=f"{name}: TIME_WAIT held, {left:.0f} s left", completed=60.0 - left
            )
            return
        if kind == "retry":
            desc = f"{name}: FINs did not cross on try {msg.get('attempt')}, trying again"
        else:
            desc = "running " + ", ".join(sorted(self.running))
        self.progress.update(self.task, description=desc)
