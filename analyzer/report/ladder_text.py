"""The compact text ladder of a flow, for terminals and plain-text reports.

```
            127.0.0.1:40864 (client)                     127.0.0.1:13 (server)
 +0.000 ms  SYN-SENT     ── SYN seq=0 ─────────────────────▶  LISTEN → SYN-RECEIVED
 +0.013 ms  ESTABLISHED  ◀─ SYN,ACK seq=0 ack=1 ───────────
```

One line per arrow: the time since the flow's first packet, the state the client entered at that
packet, the arrow with its label, the state the server entered. With ``fancy=True`` (a terminal
without ``NO_COLOR``) it uses box drawing and colour; otherwise every character is ASCII
(``--->``, ``<--``, ``\\n`` for ``⏎``), so the output pipes, diffs and pastes anywhere. Labels
come from ``analyzer.report.ladder``, whose payload previews hold no control characters; they are
never interpreted as rich markup.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from analyzer.analysis import Analysis
from analyzer.report.ladder import Arrow, Elision, Ladder, build_ladders

__all__ = ["TEXT_LADDER_FLOWS", "ladder_lines", "ladder_sections", "render_ladder"]

TEXT_LADDER_FLOWS = 100  # flows of each kind that get a ladder in the text report

MIN_ARROW = 28  # arrow column width never goes below this
MAX_STATE = 26  # a client state column wider than this is cut
SERVER_ROOM = 16  # cells kept free for the server's states when labels are long

_ASCII = str.maketrans(
    {
        "→": "->",
        "←": "<-",
        "↔": "<->",
        "·": "|",
        "×": "x",
        "–": "-",
        "⏎": "\\n",
        "…": "...",
    }
)


def _ascii(text: str) -> str:
    return text.translate(_ASCII).encode("ascii", "backslashreplace").decode("ascii")


def _cut(text: str, width: int, ell: str) -> str:
    """``text`` shortened to ``width`` terminal cells, ending with ``ell`` when cut."""
    if cell_len(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - len(ell):
            break
        out.append(ch)
        used += w
    return "".join(out) + ell


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_len(text))


def ladder_lines(ladder: Ladder, *, fancy: bool = False, width: int = 100) -> list[Text]:
    """The ladder as styled lines (plain ASCII text when not ``fancy``)."""
    conv = (lambda s: s) if fancy else _ascii
    ell = "…" if fancy else "..."

    def cut(text: str, w: int) -> str:
        return _cut(text, w, ell)

    def states(states: tuple[str, ...]) -> str:
        return conv(" → ".join(states))

    rows = ladder.rows
    times = [ladder.time(r.t if isinstance(r, Arrow) else r.t_from) for r in rows]
    tw = ladder.time_wait
    if tw is not None and tw.start is not None:
        times.append(ladder.time(tw.start))
    time_w = max((len(t) for t in times), default=9)
    client_w = min(
        MAX_STATE,
        max([cell_len(states(r.client_states)) for r in rows if isinstance(r, Arrow)] + [11]),
    )
    labels = [conv(r.label) for r in rows if isinstance(r, Arrow)]
    server_w = max([cell_len(states(r.server_states)) for r in rows if isinstance(r, Arrow)] + [0])
    lead = 1 + time_w + 2 + client_w + 1
    # The server's states may run past ``width`` by a few cells rather than cut every label.
    room = max(MIN_ARROW, width - lead - 2 - min(server_w, SERVER_ROOM))
    arrow_w = max(MIN_ARROW, min(room, max((cell_len(s) for s in labels), default=0) + 5))

    out: list[Text] = []
    head = Text(" " * (1 + time_w + 2))
    head.append(_pad(conv(f"{ladder.client.label} (client)"), client_w + 1 + arrow_w + 2), style="bold")
    head.append(conv(f"{ladder.server.label} (server)"), style="bold")
    out.append(head)

    for r, t in zip(rows, times, strict=False):
        line = Text(" " + t.rjust(time_w) + "  ")
        if isinstance(r, Elision):
            dots = "⋮" if fancy else ":"
            line.append(" " * client_w + " ")
            mid = cut(conv(f"{dots} {r.label} {dots}"), arrow_w)
            line.append(mid.center(arrow_w).rstrip(), style="dim")
            out.append(line)
            continue
        line.append(_pad(cut(states(r.client_states), client_w), client_w), style="bold green")
        line.append(" ")
        line.append(_arrow_text(r, conv(r.label), arrow_w, fancy, cut), style=_arrow_style(r))
        right = states(r.server_states)
        if right:
            line.append("  ")
            line.append(right, style="bold green")
        out.append(Text(line.plain.rstrip()) if not fancy else _rstrip(line))

    if tw is not None:
        for side in tw.holders:
            at = ladder.time(tw.start) if tw.start is not None else ell
            line = Text(" " + at.rjust(time_w) + "  ")
            text = conv(f"{'┃' if fancy else '|'} {tw.label}")
            if side == "server":
                line.append(" " * (client_w + 1 + arrow_w + 2))
            line.append(text, style="yellow")
            out.append(line)
            if tw.kernel is not None:
                k = Text(" " + " " * time_w + "  " + ("┃ " if fancy else "| "))
                if side == "server":
                    k.append(" " * (client_w + 1 + arrow_w + 2))
                k.append(conv(tw.kernel.text), style="green" if tw.kernel.agrees else "red")
                out.append(k)
    return out


def _rstrip(line: Text) -> Text:
    line.rstrip()
    return line


def _arrow_style(r: Arrow) -> str:
    if r.rst:
        return "red"
    if r.retransmission:
        return "yellow"
    return "cyan" if r.direction == "c2s" else "magenta"


def _arrow_text(r: Arrow, label: str, width: int, fancy: bool, cut: object) -> str:
    """``── label ─────▶`` (client to server) or ``◀─ label ──────`` (server to client)."""
    line, head_r, head_l = ("─", "▶", "◀") if fancy else ("-", ">", "<")
    assert callable(cut)
    body = cut(label, width - 5)
    fill = width - 4 - cell_len(body)
    if r.direction == "c2s":
        return f"{line}{line} {body} " + line * (fill - 1) + head_r
    return f"{head_l}{line} {body} " + line * fill


def render_ladder(ladder: Ladder, *, fancy: bool = False, width: int = 100) -> str:
    """The ladder as one string (ends with a newline)."""
    return "\n".join(t.plain for t in ladder_lines(ladder, fancy=fancy, width=width)) + "\n"


def ladder_sections(
    analysis: Analysis, *, fancy: bool = False, width: int = 100, max_flows: int = TEXT_LADDER_FLOWS
) -> dict[tuple[str, int], list[Text]]:
    """Per flow ``("tcp"|"udp", id)``: a ``ladder`` heading and the ladder lines, for the text report.

    Only the first ``max_flows`` flows of each kind get a ladder (a capture with thousands of
    connections would otherwise print tens of thousands of lines); ``--format html|md`` draw more.
    """
    tcp, udp = build_ladders(analysis, max_flows=max_flows)
    out: dict[tuple[str, int], list[Text]] = {}
    for lad in [*tcp, *udp]:
        if not lad.arrows:
            continue
        head = Text(" ladder", style="bold")
        if lad.packets > len(lad.arrows):
            head.append(f"     {len(lad.arrows):,} of {lad.packets:,} packets drawn", style="dim")
        out[(lad.kind, lad.id)] = [head, *ladder_lines(lad, fancy=fancy, width=width)]
    return out
