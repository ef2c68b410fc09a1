"""``analyzer verify FILE... --expect SPEC.toml``: check captures against an expectation file, for CI.

Exit 0 when every check passed, 1 when one failed (each failure on stderr: selector, field,
expected, observed), 2 when the spec (or an option) is invalid, 4 when a capture cannot be read.
``--junit`` writes JUnit XML (one testsuite per capture); ``--format json`` prints the
analyzer.report/1 document with its ``checks``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analyzer import __version__
from analyzer.cli import app
from analyzer.cli._errors import handle_errors, stderr
from analyzer.cli.packets import Engine
from analyzer.errors import UsageError, VerificationFailed


class VerifyFormat(StrEnum):
    text = "text"
    json = "json"


@app.command(
    epilog=(
        "Examples: analyzer verify cap.pcapng --expect daytime.toml · "
        "analyzer verify a.pcapng b.pcapng --expect spec.toml --junit junit.xml · "
        "analyzer verify cap.pcapng --expect spec.toml --format json"
    ),
)
@handle_errors
def verify(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="pcap or pcapng files (may be gzip-compressed).")
    ],
    expect: Annotated[
        Path, typer.Option("--expect", "-x", help="Expectation file: TOML with tcp and udp tables.")
    ],
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write JUnit XML here (one testsuite per capture).")
    ] = None,
    fmt: Annotated[
        VerifyFormat,
        typer.Option("--format", "-f", help="text (one line per check) or json (report with checks)."),
    ] = VerifyFormat.text,
    msl: Annotated[
        float,
        typer.Option(
            "--msl", help="Maximum segment lifetime in seconds; TIME_WAIT lasts 2*MSL (30 = Linux)."
        ),
    ] = 30.0,
    engine: Annotated[Engine, typer.Option("--engine", "-e", help="Decoder engine.")] = Engine.native,
) -> None:
    """Check that the flows in each FILE look as the expectation file says."""
    if not msl > 0:  # also rejects NaN
        raise UsageError(f"invalid --msl {msl}", hint="pass a positive number of seconds, e.g. --msl 30")
    if junit is not None and not junit.parent.is_dir():
        raise UsageError(f"cannot write {junit}: no directory {junit.parent}", hint="create it first")
    if fmt is VerifyFormat.json and len(files) > 1:
        raise UsageError(
            "--format json takes one capture (the report is one analyzer.report/1 document)",
            hint="run verify once per capture, or use --junit for several",
        )
    from analyzer.analysis import analyze
    from analyzer.checks import evaluate, failures, load_spec, summary
    from analyzer.report.junit import Suite, write_junit

    spec = load_spec(expect)  # an invalid spec stops here, before any capture is read
    suites: list[Suite] = []
    for file in files:
        started, t0 = datetime.now(UTC), time.perf_counter()
        analysis = analyze(file, msl=msl, engine=engine.value)
        checks = evaluate(spec, analysis)
        suites.append(
            Suite(
                name=str(file),
                checks=checks,
                time_s=time.perf_counter() - t0,
                timestamp=started,
                properties={
                    "spec": str(expect),
                    "msl_s": f"{msl:g}",
                    "engine": engine.value,
                    "analyzer": __version__,
                },
            )
        )
        if fmt is VerifyFormat.json:
            from analyzer.report.json_report import write_json

            doc = analysis.to_dict()
            doc["checks"] = [c.to_dict() for c in checks]
            sys.stdout.flush()
            write_json(doc, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            lines = [f"{file}: {summary(checks)} ({spec.source})"]
            lines += [f"  {'PASS' if c.passed else 'FAIL'}  {c.describe()}" for c in checks]
            sys.stdout.write("\n".join(lines) + "\n")
    if junit is not None:
        write_junit(suites, junit)
    failed = [(s.name, c) for s in suites for c in failures(s.checks)]
    if failed:
        for name, check in failed:
            where = f"  [{check.where}]" if check.where else ""
            stderr.print(f"FAIL {name}: {check.describe()}{where}", markup=False)
        total = sum(len(s.checks) for s in suites)
        raise VerificationFailed(
            f"{len(failed)} of {total} checks failed",
            hint=f"each FAIL line says what {expect} expected and what the capture shows",
        )
