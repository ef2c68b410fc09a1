"""The Markdown report: the HTML report's content for GitHub/GitLab, ladders as Mermaid diagrams.

Each flow's ladder is a Mermaid ``sequenceDiagram`` (both forges render it): the participants are
``C`` and ``S`` with their ip:port as aliases, one message per drawn packet (a dotted arrow for a
retransmission, a cross for a RST or an ICMP error), the state changes as notes beside the
participant that changed, the TIME_WAIT period as a note on the holder.

Escaping: text inside Mermaid goes through ``mermaid_text`` (Mermaid's ``#code;`` entities for the
characters its grammar or its HTML labels break on: ``# ; < > & % " ` { }`` and newlines);
text in tables and prose through ``md_text`` (backslash escapes for Markdown's punctuation,
entities for ``< > &`` so no capture string can become HTML); full payload texts sit in fenced
code blocks whose fence is longer than any backtick run inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from analyzer.analysis import Analysis
from analyzer.report.facts import (
    TCP_COLUMNS,
    UDP_COLUMNS,
    capture_facts,
    tcp_facts,
    tcp_summary_row,
    udp_facts,
    udp_summary_row,
)
from analyzer.report.ladder import Arrow, Elision, Ladder, build_ladders

__all__ = ["MAX_FLOWS", "md_text", "mermaid_ladder", "mermaid_text", "render_markdown"]

MAX_FLOWS = 100
MAX_TABLE_ROWS = 2000

_MERMAID = {
    "#": "#35;",
    ";": "#59;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "%": "#37;",
    '"': "#quot;",
    "`": "#96;",
    "{": "#123;",
    "}": "#125;",
    "\n": " ",
    "\r": " ",
}
_MERMAID_TABLE = str.maketrans(_MERMAID)

# Inline punctuation Markdown may read as syntax (emphasis, code, links, table cells,
# strikethrough); "<", ">", "&" become entities instead, so no text can turn into HTML.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def mermaid_text(text: str) -> str:
    """``text`` safe inside a Mermaid message, note or participant alias."""
    return text.translate(_MERMAID_TABLE)


def md_text(text: str) -> str:
    """``text`` shown literally in Markdown prose or a table cell (one line)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def render_markdown(
    analysis: Analysis,
    *,
    tcp_records: Sequence[dict[str, Any]] | None = None,
    udp_records: Sequence[dict[str, Any]] | None = None,
    max_flows: int = MAX_FLOWS,
) -> str:
    """The whole report as one Markdown document."""
    tcp_recs = list(analysis.tcp_records if tcp_records is None else tcp_records)
    udp_recs = list(analysis.udp_records if udp_records is None else udp_records)
    tcp_ladders, udp_ladders = build_ladders(
        analysis, tcp_records=tcp_recs, udp_records=udp_recs, max_flows=max_flows
    )
    out = ["# analyzer report", ""]
    out += _facts(capture_facts(analysis))
    out += ["", f"## TCP connections ({len(tcp_recs):,})", ""]
    out += (
        _table(TCP_COLUMNS, [tcp_summary_row(r) for r in tcp_recs[:MAX_TABLE_ROWS]]) if tcp_recs else ["none"]
    )
    out += ["", f"## UDP conversations ({len(udp_recs):,})", ""]
    out += (
        _table(UDP_COLUMNS, [udp_summary_row(r) for r in udp_recs[:MAX_TABLE_ROWS]]) if udp_recs else ["none"]
    )
    if len(tcp_recs) > MAX_TABLE_ROWS or len(udp_recs) > MAX_TABLE_ROWS:
        out += ["", f"Tables list the first {MAX_TABLE_ROWS:,} flows of each kind."]
    for rec, lad in zip(tcp_recs, tcp_ladders, strict=False):
        out += _flow(lad, tcp_facts(rec))
    for rec, lad in zip(udp_recs, udp_ladders, strict=False):
        out += _flow(lad, udp_facts(rec))
    hidden = max(0, len(tcp_recs) - len(tcp_ladders)) + max(0, len(udp_recs) - len(udp_ladders))
    if hidden:
        out += ["", f"{hidden:,} more flows are not drawn; `--format json` has every one."]
    return "\n".join(out).rstrip("\n") + "\n"


def _facts(rows: Iterable[tuple[str, str]]) -> list[str]:
    return [f"- **{md_text(k)}**: {md_text(v)}" for k, v in rows]


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(md_text(c) for c in columns) + " |"]
    out.append("|" + "|".join("---:" if c == "id" else "---" for c in columns) + "|")
    out += ["| " + " | ".join(md_text(v) for v in row) + " |" for row in rows]
    return out


def _flow(lad: Ladder, facts: list[tuple[str, str]]) -> list[str]:
    out = ["", f"## {md_text(lad.title)}", ""]
    out += _facts(facts)
    out += [f"- {md_text(n)}" for n in lad.notes]
    out += ["", f"### Ladder ({lad.packets:,} packets)", "", "```mermaid", mermaid_ladder(lad), "```"]
    if lad.states:
        out += ["", "### State timelines (RFC 9293)", ""]
        rows = []
        for side in ("client", "server"):
            for k, ch in enumerate(lad.states.get(side) or ()):
                who = f"{side} {lad.endpoint(side).label}" if k == 0 else ""
                rows.append((who, ch.state, lad.time(ch.t), "" if ch.frame is None else str(ch.frame)))
        out += _table(("endpoint", "state", "time", "frame"), rows)
    if lad.data:
        out += ["", "### Data exchanged", ""]
        for item in lad.data:
            when = "" if item.t is None else f" at {lad.time(item.t)}"
            head = f"- {md_text(item.title + when)}: {item.bytes:,} B"
            if item.bytes and item.preview:
                head += f" — {md_text(item.preview)}"
            out.append(head)
            if item.bytes and item.full_text is not None:
                cut = " (cut: the first bytes only)" if item.truncated else ""
                out += [
                    "",
                    f"  <details><summary>full text{cut}</summary>",
                    "",
                    *("  " + line for line in _fence(item.full_text).split("\n")),
                    "",
                    "  </details>",
                    "",
                ]
    return out


def mermaid_ladder(lad: Ladder) -> str:
    """The ladder as the body of a Mermaid ``sequenceDiagram``."""
    lines = [
        "sequenceDiagram",
        f"    participant C as {mermaid_text(lad.client.label)} (client)",
        f"    participant S as {mermaid_text(lad.server.label)} (server)",
    ]
    tw = lad.time_wait
    for k, r in enumerate(lad.rows):
        if isinstance(r, Elision):
            lines.append(f"    Note over C,S: {mermaid_text('⋮ ' + r.label)}")
        else:
            lines += _message(lad, r)
        if tw is not None and k == tw.start_row:
            lines += _tw_notes(lad)
    if tw is not None and tw.start_row >= len(lad.rows):
        lines += _tw_notes(lad)
    return "\n".join(lines)


def _message(lad: Ladder, r: Arrow) -> list[str]:
    a, b = ("C", "S") if r.direction == "c2s" else ("S", "C")
    arrow = "-x" if r.rst else "-->>" if r.retransmission else "->>"
    out = [f"    {a}{arrow}{b}: {mermaid_text(lad.time(r.t) + ' ' + r.label)}"]
    if r.client_states:
        out.append(f"    Note left of C: {mermaid_text(' → '.join(r.client_states))}")
    if r.server_states:
        out.append(f"    Note right of S: {mermaid_text(' → '.join(r.server_states))}")
    return out


def _tw_notes(lad: Ladder) -> list[str]:
    tw = lad.time_wait
    if tw is None:
        return []
    out = []
    for side in tw.holders:
        where = "left of C" if side == "client" else "right of S"
        text = tw.label if tw.start is None else f"{lad.time(tw.start)} {tw.label}"
        if tw.kernel is not None:
            text += f" — {tw.kernel.text}"
        out.append(f"    Note {where}: {mermaid_text(text)}")
    return out
