"""The HTML report: one self-contained file with the summary tables and, per flow, an SVG ladder.

Self-contained means no network fetches and no scripts: CSS is inline, the ladders are inline
SVG, and a Content-Security-Policy ``default-src 'none'`` makes the browser refuse anything else
(so even a bug in the escaping could not load or run code). Every string taken from the capture
(payload previews and texts, addresses in anomaly details, the file name) goes through
``html.escape``; numbers are formatted here.

Per flow: the facts (handshake, data, teardown, TIME_WAIT, interop), the SVG ladder (two
lifelines labelled ip:port, one ``<line class="ladder-arrow">`` per drawn packet, labelled with
flags, relative seq/ack and length; a time axis on the left; the TIME_WAIT bar on the holder's
lifeline with the kernel's observation when the report has one), the per-endpoint state
timelines, and the data exchanged (previews, the full text behind ``<details>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
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
from analyzer.report.ladder import Arrow, DataItem, Elision, Ladder, build_ladders

__all__ = ["MAX_FLOWS", "MAX_TABLE_ROWS", "render_html", "svg_ladder"]

MAX_FLOWS = 200  # flows drawn in detail; the summary tables list more
MAX_TABLE_ROWS = 5000

# SVG geometry (user units = CSS px)
WIDTH = 1040
TIME_X = 96  # the time axis
CLIENT_X = 330
SERVER_X = 790
TOP = 78  # first row
ROW = 30
LABEL_CHARS = 66  # arrow labels longer than this are cut (the full label is in <title>)
STATE_CHARS = 30

CSS = """
:root { --c2s: #1f6fb2; --s2c: #8a3ab9; --rst: #c62828; --retrans: #e08e0b; --tw: #f4b400;
        --muted: #666; --line: #bbb; font-family: system-ui, sans-serif; }
body { margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .9rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f7f7f7; padding: .5rem; white-space: pre-wrap; word-break: break-all; font-size: .8rem; }
.note { color: var(--muted); font-size: .85rem; }
svg.ladder { display: block; max-width: 100%; height: auto; background: #fff; }
svg.ladder text { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; fill: #222; }
svg.ladder .lifeline { stroke: var(--line); stroke-width: 2; }
svg.ladder .axis { stroke: #999; stroke-width: 1; }
svg.ladder .party rect { fill: #eef3f8; stroke: #7a9cc0; }
svg.ladder .party text { font-size: 12px; font-weight: 600; }
svg.ladder .ladder-arrow { stroke-width: 1.6; }
svg.ladder .c2s { stroke: var(--c2s); fill: var(--c2s); }
svg.ladder .s2c { stroke: var(--s2c); fill: var(--s2c); }
svg.ladder .retrans { stroke: var(--retrans); fill: var(--retrans); stroke-dasharray: 5 3; }
svg.ladder .rst { stroke: var(--rst); fill: var(--rst); }
svg.ladder text.state { fill: #1b5e20; font-weight: 600; }
svg.ladder text.time { fill: var(--muted); }
svg.ladder text.elided { fill: var(--muted); font-style: italic; }
svg.ladder .elision { stroke: var(--line); stroke-dasharray: 2 4; }
svg.ladder .tw-bar { fill: var(--tw); opacity: .75; }
svg.ladder text.tw { fill: #8a6100; font-weight: 600; }
svg.ladder text.kernel-ok { fill: #1b5e20; }
svg.ladder text.kernel-bad { fill: var(--rst); font-weight: 600; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def render_html(
    analysis: Analysis,
    *,
    tcp_records: Sequence[dict[str, Any]] | None = None,
    udp_records: Sequence[dict[str, Any]] | None = None,
    max_flows: int = MAX_FLOWS,
) -> str:
    """The whole report as one HTML document.

    ``tcp_records``/``udp_records`` default to the analysis' own (pass a run report's records
    to show their ``time_wait.kernel`` observations).
    """
    tcp_recs = list(analysis.tcp_records if tcp_records is None else tcp_records)
    udp_recs = list(analysis.udp_records if udp_records is None else udp_records)
    tcp_ladders, udp_ladders = build_ladders(
        analysis, tcp_records=tcp_recs, udp_records=udp_recs, max_flows=max_flows
    )
    name = analysis.capture.file
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>analyzer report · {_e(name)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>analyzer report</h1>",
        _facts(capture_facts(analysis)),
        "</header>",
    ]
    out += _summary(tcp_recs, udp_recs)
    for rec, lad in zip(tcp_recs, tcp_ladders, strict=False):
        out += _flow_section(lad, tcp_facts(rec))
    for rec, lad in zip(udp_recs, udp_ladders, strict=False):
        out += _flow_section(lad, udp_facts(rec))
    hidden = max(0, len(tcp_recs) - len(tcp_ladders)) + max(0, len(udp_recs) - len(udp_ladders))
    if hidden:
        out.append(
            f'<p class="note">{hidden:,} more flows are not drawn (only the first {max_flows:,} of each '
            "kind are); <code>--format json</code> has every one.</p>"
        )
    if not tcp_recs and not udp_recs:
        out.append('<p class="note">No TCP or UDP traffic in this capture.</p>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], link: str) -> list[str]:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    out = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for row in rows:
        cells = [f'<td class="num"><a href="#{link}-{_e(row[0])}">{_e(row[0])}</a></td>']
        for value in row[1:]:
            num = value[:1].isdigit() and not any(c in value for c in ".:[")
            cls = ' class="num"' if num else ""
            cells.append(f"<td{cls}>{_e(value)}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return out


def _summary(tcp: Sequence[dict[str, Any]], udp: Sequence[dict[str, Any]]) -> list[str]:
    out = ['<section id="summary">']
    out.append(f"<h2>TCP connections ({len(tcp):,})</h2>")
    if tcp:
        out += _table(TCP_COLUMNS, (tcp_summary_row(r) for r in tcp[:MAX_TABLE_ROWS]), "tcp")
    else:
        out.append('<p class="note">none</p>')
    out.append(f"<h2>UDP conversations ({len(udp):,})</h2>")
    if udp:
        out += _table(UDP_COLUMNS, (udp_summary_row(r) for r in udp[:MAX_TABLE_ROWS]), "udp")
    else:
        out.append('<p class="note">none</p>')
    if len(tcp) > MAX_TABLE_ROWS or len(udp) > MAX_TABLE_ROWS:
        out.append(f'<p class="note">Tables list the first {MAX_TABLE_ROWS:,} flows of each kind.</p>')
    out.append("</section>")
    return out


def _flow_section(lad: Ladder, facts: list[tuple[str, str]]) -> list[str]:
    anchor = f"{lad.kind}-{lad.id}"
    out = [f'<section class="flow" id="{anchor}">', f"<h2>{_e(lad.title)}</h2>", _facts(facts)]
    out += [f'<p class="note">{_e(n)}</p>' for n in lad.notes]
    out.append(f"<h3>Ladder ({lad.packets:,} packets)</h3>")
    out.append(svg_ladder(lad))
    if lad.states:
        out += _states(lad)
    out += _data(lad.data, lad)
    out.append("</section>")
    return out


def _states(lad: Ladder) -> list[str]:
    out = ["<h3>State timelines (RFC 9293)</h3>", "<table><thead><tr>"]
    out.append("<th>endpoint</th><th>state</th><th>time</th><th>frame</th></tr></thead><tbody>")
    for side in ("client", "server"):
        changes = lad.states.get(side) or ()
        for k, ch in enumerate(changes):
            who = f"{side} {lad.endpoint(side).label}" if k == 0 else ""
            frame = "" if ch.frame is None else f"{ch.frame}"
            out.append(
                f"<tr><td>{_e(who)}</td><td>{_e(ch.state)}</td>"
                f'<td class="num">{_e(lad.time(ch.t))}</td><td class="num">{frame}</td></tr>'
            )
    out.append("</tbody></table>")
    return out


def _data(items: Sequence[DataItem], lad: Ladder) -> list[str]:
    if not items:
        return []
    out = ["<h3>Data exchanged</h3>"]
    for item in items:
        when = "" if item.t is None else f" at {lad.time(item.t)}"
        head = f"{item.title}{when}: {item.bytes:,} B"
        if not item.bytes:
            out.append(f'<p class="note">{_e(head)}</p>')
            continue
        out.append(f'<p>{_e(head)} <code class="preview">{_e(item.preview)}</code></p>')
        if item.full_text is not None:
            cut = " (cut: the first bytes only)" if item.truncated else ""
            out.append(
                f"<details><summary>full text{_e(cut)}</summary>"
                f'<pre class="payload">{_e(item.full_text)}</pre></details>'
            )
    return out


# -- SVG --------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_ladder(lad: Ladder) -> str:
    """One flow's ladder as an inline ``<svg>`` element."""
    rows = lad.rows
    tw = lad.time_wait
    extra = 0
    if tw is not None:
        extra = (len(tw.holders) * (2 if tw.kernel is not None else 1) + 1) * ROW
    height = TOP + len(rows) * ROW + extra + 24
    bottom = height - 10
    xs = {"client": CLIENT_X, "server": SERVER_X}
    anchor = f"{lad.kind}-{lad.id}"
    out = [
        f'<svg class="ladder" data-flow="{anchor}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_e("ladder diagram of " + lad.title)}">',
        f"<title>{_e(lad.title)}</title>",
    ]
    for side in ("client", "server"):
        ep = lad.endpoint(side)
        x = xs[side]
        out.append(
            f'<g class="party {side}"><rect x="{x - 105}" y="8" width="210" height="40" rx="4"/>'
            f'<text x="{x}" y="25" text-anchor="middle">{_e(ep.label)}</text>'
            f'<text x="{x}" y="41" text-anchor="middle">({side})</text></g>'
        )
        out.append(f'<line class="lifeline" x1="{x}" y1="48" x2="{x}" y2="{bottom}"/>')
    out.append(f'<line class="axis" x1="{TIME_X}" y1="{TOP - 14}" x2="{TIME_X}" y2="{bottom}"/>')
    out.append(f'<text class="time" x="{TIME_X}" y="{TOP - 20}" text-anchor="middle">time</text>')

    for k, r in enumerate(rows):
        y = TOP + k * ROW + ROW // 2
        if isinstance(r, Elision):
            out.append(f'<line class="elision" x1="{CLIENT_X}" y1="{y}" x2="{SERVER_X}" y2="{y}"/>')
            out.append(
                f'<text class="elided" x="{(CLIENT_X + SERVER_X) // 2}" y="{y - 4}" '
                f'text-anchor="middle">{_e("⋮ " + r.label + " ⋮")}</text>'
            )
            out.append(
                f'<text class="time" x="{TIME_X - 6}" y="{y + 4}" text-anchor="end">'
                f"{_e(lad.time(r.t_from))}…</text>"
            )
            continue
        out += _svg_arrow(lad, r, y)

    if tw is not None:
        y0 = TOP + tw.start_row * ROW + ROW // 2 if tw.start_row < len(rows) else TOP + len(rows) * ROW
        step = 2 * ROW if tw.kernel is not None else ROW
        for i, side in enumerate(tw.holders):
            x = xs[side]
            out.append(
                f'<rect class="tw-bar" data-side="{side}" x="{x - 5}" y="{y0}" width="10" '
                f'height="{bottom - y0}"><title>{_e(tw.label)}</title></rect>'
            )
            # Labels go between the lifelines, where no arrow is drawn any more.
            tx, anchor_side = (x - 14, "end") if side == "server" else (x + 14, "start")
            ty = TOP + len(rows) * ROW + ROW // 2 + 6 + i * step
            out.append(
                f'<text class="tw" x="{tx}" y="{ty}" text-anchor="{anchor_side}">{_e(tw.label)}</text>'
            )
            if tw.kernel is not None:
                cls = "kernel-ok" if tw.kernel.agrees else "kernel-bad"
                out.append(
                    f'<text class="{cls}" x="{tx}" y="{ty + ROW - 8}" text-anchor="{anchor_side}">'
                    f"{_e(_cut(tw.kernel.text, LABEL_CHARS))}<title>{_e(tw.kernel.text)}</title></text>"
                )
        if tw.start is not None and tw.start_row >= len(rows):
            out.append(
                f'<text class="time" x="{TIME_X - 6}" y="{y0 + 4}" text-anchor="end">'
                f"{_e(lad.time(tw.start))}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def _svg_arrow(lad: Ladder, r: Arrow, y: int) -> list[str]:
    c2s = r.direction == "c2s"
    x1, x2 = (CLIENT_X, SERVER_X) if c2s else (SERVER_X, CLIENT_X)
    classes = ["ladder-arrow", r.direction]
    if r.rst:
        classes.append("rst")
    elif r.retransmission:
        classes.append("retrans")
    cls = " ".join(classes)
    tip = x2 - 10 if c2s else x2 + 10
    frame = "" if r.frame is None else f' data-frame="{r.frame}"'
    where = "" if r.frame is None else f" frame {r.frame}"
    full = f"{lad.time(r.t)}{where}: {r.label}"
    out = [
        f'<g class="packet"{frame}>',
        f"<title>{_e(full)}</title>",
        f'<line class="{cls}" x1="{x1}" y1="{y}" x2="{tip}" y2="{y}"/>',
        f'<polygon class="ladder-head {" ".join(classes[1:])}" '
        f'points="{x2},{y} {tip},{y - 5} {tip},{y + 5}"/>',
        f'<text x="{(CLIENT_X + SERVER_X) // 2}" y="{y - 5}" text-anchor="middle">'
        f"{_e(_cut(r.label, LABEL_CHARS))}</text>",
        f'<line class="axis" x1="{TIME_X - 3}" y1="{y}" x2="{TIME_X + 3}" y2="{y}"/>',
        f'<text class="time" x="{TIME_X - 6}" y="{y + 4}" text-anchor="end">{_e(lad.time(r.t))}</text>',
    ]
    if r.client_states:
        text = _cut(" → ".join(r.client_states), STATE_CHARS)
        out.append(f'<text class="state" x="{CLIENT_X - 10}" y="{y + 4}" text-anchor="end">{_e(text)}</text>')
    if r.server_states:
        text = _cut(" → ".join(r.server_states), STATE_CHARS)
        out.append(f'<text class="state" x="{SERVER_X + 10}" y="{y + 4}">{_e(text)}</text>')
    out.append("</g>")
    return out
