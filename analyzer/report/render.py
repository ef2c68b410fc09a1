"""Write an analysis in the document and table formats of ``--format``: md, html, junit, csv, parquet.

(text and json have their own writers in ``text`` and ``json_report``.) The CLI commands call
``write_report`` so each of them offers the same formats with the same ``-o`` rules:

* ``md``, ``html``, ``junit``: one document, to ``-o FILE`` or stdout;
* ``csv``, ``parquet``: three tables, ``packets.*``, ``tcp.*`` and ``udp.*``, into ``-o DIR``
  (required: three tables do not fit one stream, and Parquet is binary).

``junit`` without an expectation file has one test case per TCP connection, passing when the
analysis found no anomaly in it; ``analyzer verify --expect SPEC --junit FILE`` checks a spec.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analyzer.analysis import Analysis
from analyzer.errors import UsageError

__all__ = ["DOCUMENT_FORMATS", "TABLE_FORMATS", "anomaly_checks", "write_report"]

DOCUMENT_FORMATS = ("md", "html", "junit")
TABLE_FORMATS = ("csv", "parquet")


def anomaly_checks(analysis: Analysis) -> list[Any]:
    """One ``Check`` per TCP connection: expected no anomaly, observed the anomaly names."""
    from analyzer.checks import Check
    from analyzer.report.ladder import endpoint_text

    checks = []
    for rec in analysis.tcp_records:
        names = sorted(
            {str(a.get("name")) if isinstance(a, dict) else str(a) for a in rec.get("anomalies") or []}
        )
        cid = int(rec["id"])
        client = endpoint_text(str(rec["client"]["ip"]), int(rec["client"]["port"]))
        server = endpoint_text(str(rec["server"]["ip"]), int(rec["server"]["port"]))
        checks.append(
            Check(
                name=f"tcp[{cid}].anomalies",
                selector=f"tcp {cid} {client} -> {server}",
                field="anomalies",
                expected=[],
                observed=names,
                passed=not names,
                flows=(cid,),
                expected_text="no anomalies",
            )
        )
    return checks


def write_report(analysis: Analysis, fmt: str, output: Path | None, *, started: float | None = None) -> None:
    """Render ``analysis`` as ``fmt`` into ``output`` (stdout for documents when None)."""
    if fmt in TABLE_FORMATS:
        if output is None:
            raise UsageError(
                f"--format {fmt} writes three tables (packets, tcp, udp): it needs -o DIR",
                hint=f"pass a directory, e.g. -o tables/ (writes tables/packets.{fmt}, tcp.{fmt}, udp.{fmt})",
            )
        from analyzer.report.tables import export_tables

        for path in export_tables(analysis, output, fmt):
            sys.stdout.write(f"wrote {path}\n")
        return
    if fmt == "md":
        from analyzer.report.markdown import render_markdown

        data = render_markdown(analysis).encode("utf-8")
    elif fmt == "html":
        from analyzer.report.html import render_html

        data = render_html(analysis).encode("utf-8")
    elif fmt == "junit":
        from analyzer import __version__
        from analyzer.report.junit import Suite, render_junit

        suite = Suite(
            name=analysis.capture.file,
            checks=anomaly_checks(analysis),
            time_s=0.0 if started is None else time.perf_counter() - started,
            timestamp=datetime.now(UTC),
            properties={"msl_s": f"{analysis.msl:g}", "engine": analysis.engine, "analyzer": __version__},
        )
        data = render_junit([suite], name="analyzer analyze")
    else:
        raise UsageError(
            f"unknown report format {fmt!r}", hint="use text, json, md, html, junit, csv or parquet"
        )
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
