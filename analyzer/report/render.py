"""Write an analysis in the document and table formats of ``--format``: md, html, junit, csv, parquet.

(text and json have their own writers in ``text`` and ``json_report``.) The CLI commands call
``write_report`` so each of them offers the same formats with the same ``-o`` rules:

* ``md``, ``html``: one document, to ``-o FILE`` or stdout;
* ``csv``, ``parquet``: three tables, ``packets.*``, ``tcp.*`` and ``udp.*``, into ``-o DIR``
  (required: three tables do not fit one stream, and Parquet is binary).
"""

from __future__ import annotations

import sys
from pathlib import Path

from analyzer.analysis import Analysis
from analyzer.errors import UsageError

__all__ = ["DOCUMENT_FORMATS", "TABLE_FORMATS", "write_report"]

DOCUMENT_FORMATS = ("md", "html")
TABLE_FORMATS = ("csv", "parquet")


def write_report(analysis: Analysis, fmt: str, output: Path | None) -> None:
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
