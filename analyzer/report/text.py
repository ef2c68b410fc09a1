"""The readable text report of ``analyzer analyze``: the capture, then one section per flow.

Everything shown comes from the ``analyzer.report/1`` records, so the text and the JSON never
disagree. With ``color=True`` (a terminal, no ``NO_COLOR``) the sections use colour and box
drawing through rich; otherwise the output is plain ASCII (arrows as ``->``, previews' ``⏎`` as
``\\n``), safe to pipe, diff and paste. Strings from the capture only ever reach the output through
the previews, which hold no control characters, and are never interpreted as rich markup.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

from analyzer import __version__
from analyzer.analysis import Analysis
from analyzer.flows.udp import ZEEK_ANSWERED, ZEEK_UNANSWERED, icmp_reason
from analyzer.report.ladder_text import ladder_sections

LINK_NAMES = {
    0: "NULL",
    1: "Ethernet",
    101: "raw IP",
    108: "LOOP",
    113: "Linux SLL",
    228: "IPv4",
    229: "IPv6",
    276: "Linux SLL2",
}

# Wireshark's tcp.completeness bits, in its own order.
COMPLETENESS_BITS = ((1, "SYN"), (2, "SYN-ACK"), (4, "ACK"), (8, "DATA"), (16, "FIN"), (32, "RST"))

HANDSHAKE_TEXT = {
    "complete": "complete",
    "refused": "refused: the SYN was answered by RST",
    "no-reply": "no reply to the SYN",
    "partial": "partial: the three-way handshake did not finish",
    "not-seen": "not seen: the capture started mid-connection",
    "simultaneous-open": "simultaneous open: both sides sent a SYN",
}

LINUX_TIME_WAIT_S = 60.0  # TCP_TIMEWAIT_LEN
RFC9293_MSL_S = 120.0

DATAGRAMS_SHOWN = 10  # longer UDP conversations show their first and last datagrams only

_ASCII = (
    ("→", "->"),
    ("←", "<-"),
    ("↔", "<->"),
    ("·", "|"),
    ("×", "x"),
    ("–", "-"),
    ("━", "="),
    ("⏎", "\\n"),
    ("…", "..."),
)

# A line of the report: (text, rich style) segments; the ladder sections come as rich Texts.
Segment = tuple[str, str]
Line = list[Segment] | Text

LABEL_WIDTH = 11


def render_text(analysis: Analysis, *, color: bool = False, width: int = 100) -> str:
    """The whole report as one string (ANSI styled when ``color``, plain ASCII otherwise)."""
    lines: list[Line] = [*_capture_lines(analysis), []]
    ladders = ladder_sections(analysis, fancy=color, width=width)
    for rec in analysis.tcp_records:
        lines += _tcp_section(rec, analysis.msl, width, color)
        lines += ladders.get(("tcp", int(rec["id"])), [])
        lines.append([])
    for rec in analysis.udp_records:
        lines += _udp_section(rec, width, color)
        lines += ladders.get(("udp", int(rec["id"])), [])
        lines.append([])
    if not analysis.tcp_records and not analysis.udp_records:
        lines.append([("no TCP or UDP traffic in this capture", "")])
    if color:
        return _ansi(lines, width)
    text = "\n".join(_plain(line) for line in lines).rstrip("\n") + "\n"
    # str.replace per symbol runs in C; a translate table with multi-character values would
    # look up every character of a report that may be tens of megabytes.
    for symbol, ascii_text in _ASCII:
        text = text.replace(symbol, ascii_text)
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _plain(line: Line) -> str:
    return line.plain if isinstance(line, Text) else "".join(part for part, _ in line)


def _ansi(lines: list[Line], width: int) -> str:
    """ANSI-styled text. Our own lines are styled segment by segment with rich's SGR codes (a
    rich Console prints about ten thousand lines a second: too slow for a 100k-flow report); the
    ladder sections, rich Texts, go through a Console."""
    console: Console | None = None
    out: list[str] = []
    for line in lines:
        if isinstance(line, Text):
            if console is None:
                console = Console(
                    file=io.StringIO(),
                    force_terminal=True,
                    color_system="standard",
                    width=width,
                    soft_wrap=True,
                )
            with console.capture() as captured:
                console.print(line, highlight=False)
            out.append(captured.get().rstrip("\n"))
        else:
            out.append(
                "".join(_sgr(style).render(part, color_system=ColorSystem.STANDARD) for part, style in line)
            )
    return "\n".join(out) + "\n"


@cache
def _sgr(style: str) -> Style:
    return Style.parse(style) if style else Style.null()


def _printable(text: str) -> str:
    """``text`` with control and other non-printable characters as ``\\xNN`` (for file names)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


# -- capture ----------------------------------------------------------------------------------


def _capture_lines(analysis: Analysis) -> list[Line]:
    cap = analysis.capture
    links = ", ".join(f"{LINK_NAMES.get(t, 'link type')} ({t})" for t in cap.link_types) or "no interfaces"
    first: Line = [
        (f"analyzer {__version__} · ", "dim"),
        (_printable(cap.file), "bold"),
        (f" · {cap.format} · {links}", "dim"),
    ]
    counts = [
        _plural(cap.packets, "packet"),
        _plural(len(analysis.tcp_records), "TCP connection"),
        _plural(len(analysis.udp_records), "UDP conversation"),
    ]
    span = _capture_span(analysis)
    if span:
        counts.append(span)
    bad = []
    if cap.malformed:
        bad.append(f"{cap.malformed:,} malformed")
    if cap.truncated:
        bad.append(f"{cap.truncated:,} truncated")
    counts.append(", ".join(bad) if bad else "no malformed or truncated frames")
    out: list[Line] = [first, [(" · ".join(counts), "")]]
    out += [[(f"warning: {_printable(w)}", "yellow")] for w in cap.warnings]
    return out


def _capture_span(analysis: Analysis) -> str:
    ts = analysis.packets["ts"]
    ts = ts[ts > 0]  # pcapng simple packet blocks carry no time
    if len(ts) == 0:
        return ""
    start, end = float(ts.min()), float(ts.max())
    return f"{_utc(start)} UTC, {_duration(end - start)}"


# -- TCP --------------------------------------------------------------------------------------


def _tcp_section(rec: dict[str, Any], msl: float, width: int, color: bool) -> list[Line]:
    client, server = _ep(rec["client"]), _ep(rec["server"])
    t0 = float(rec["first_ts"])
    guessed = " (client guessed: no SYN seen)" if rec.get("client_guessed") else ""
    title = f"TCP {rec['id']} · {client} (client) → {server} (server){guessed}"
    out = [_header(title, width, color, "cyan")]
    out.append(
        _row(
            "packets",
            f"{_plural(rec['packets'], 'packet')} in {_duration(rec['last_ts'] - t0)}, from {_utc(t0)} UTC",
        )
    )
    out += _handshake_rows(rec["handshake"])
    out += _data_rows(rec["data"])
    out.append(_row("teardown", _teardown_text(rec["teardown"]), style=_teardown_style(rec["teardown"])))
    out.append(_row("TIME_WAIT", _time_wait_text(rec, msl, t0)))
    out += _rows("", _time_wait_events(rec["time_wait"], t0), style="yellow")
    out += _state_rows(rec["states"])
    zeek = rec["zeek"]
    out.append(
        _row(
            "interop",
            f"Zeek {zeek['conn_state']} {zeek['history'] or '-'} · "
            f"Wireshark completeness {_completeness(int(rec['completeness']))}",
        )
    )
    anomalies = rec.get("anomalies") or []
    if anomalies:
        out += _rows("anomalies", [_anomaly(a) for a in anomalies], style="yellow")
    return out


def _handshake_rows(hs: dict[str, Any]) -> list[Line]:
    parts = [HANDSHAKE_TEXT.get(str(hs["state"]), str(hs["state"]))]
    if hs.get("rtt_ms") is not None:
        parts.append(f"RTT {_ms(float(hs['rtt_ms']))}")
    if hs.get("syn_retransmits"):
        parts.append(f"{_plural(hs['syn_retransmits'], 'SYN retransmission')}")
    isns = [
        f"{side} ISN {hs[f'{side}_isn']}"
        for side in ("client", "server")
        if hs.get(f"{side}_isn") is not None
    ]
    if isns:
        parts.append(", ".join(isns))
    style = "green" if hs["state"] == "complete" else "yellow"
    rows = [_row("handshake", " · ".join(parts), style=style)]
    offered = _options_text(hs.get("options") or {})
    if offered:
        rows.append(_row("", offered))
    return rows


def _options_text(options: dict[str, Any]) -> str:
    """``client offered MSS 65495, wscale 7, SACK, timestamps · server offered the same``."""
    sides: list[tuple[str, str]] = []
    for side in ("client", "server"):
        opts = options.get(side)
        if isinstance(opts, dict):
            sides.append((side, _one_side_options(opts)))
    if not sides:
        return ""
    if len(sides) == 2 and sides[0][1] == sides[1][1]:
        return f"both offered {sides[0][1]}"
    return " · ".join(f"{side} offered {text}" for side, text in sides)


def _one_side_options(opts: dict[str, Any]) -> str:
    if not opts:
        return "no options"
    words: list[str] = []
    for key, value in opts.items():
        if value is None or value is False:
            continue
        name = key.lower()
        if name == "mss":
            words.append(f"MSS {value}")
        elif name in ("wscale", "window_scale"):
            if isinstance(value, int) and value >= 0:
                words.append(f"wscale {value}")
        elif name.startswith("sack"):
            words.append("SACK")
        elif name in ("ts", "timestamps", "timestamp"):
            words.append("timestamps")
        elif value is True:
            words.append(name)
        else:
            words.append(f"{name} {value}")
    return ", ".join(words) if words else "no options"


def _data_rows(data: dict[str, Any]) -> list[Line]:
    lines = []
    for key, arrow in (("client_to_server", "client→server"), ("server_to_client", "server→client")):
        d = data[key]
        line = f"{arrow} {_bytes(d['bytes'])} in {_plural(d['segments'], 'segment')}"
        if d["bytes"]:
            line += f' "{d["preview"]}"'
        lines.append(line)
    extra = []
    if data.get("retransmissions"):
        extra.append(_plural(data["retransmissions"], "retransmission"))
    if data.get("out_of_order"):
        extra.append(f"{data['out_of_order']:,} out of order")
    # Fields the TCP analysis adds beyond issue 3's list, shown when present.
    for key, word in (
        ("dup_acks", "duplicate ACK"),
        ("zero_windows", "zero window"),
        ("keep_alives", "keep-alive"),
    ):
        if data.get(key):
            extra.append(_plural(int(data[key]), word))
    missing = sum(int(data[k].get("missing_bytes") or 0) for k in ("client_to_server", "server_to_client"))
    if missing:
        extra.append(f"{_bytes(missing)} never captured (gaps)")
    if extra:
        lines.append(" · ".join(extra))
    return _rows("data", lines)


def _teardown_text(td: dict[str, Any]) -> str:
    kind = str(td["kind"])
    first = td.get("first_fin")
    passive = {"client": "server", "server": "client"}.get(str(first), "")
    parts = [kind]
    if kind in ("fin-4way", "fin-3way"):
        parts.append(f"the {first} closed first (active closer)")
    elif kind == "simultaneous":
        parts.append("both sides closed at once (each FIN sent before the other's arrived)")
    elif kind == "half-closed":
        parts.append(f"only the {first} sent a FIN; the capture ends half-closed")
    elif kind == "rst":
        by = td.get("rst_by")
        who = "both sides" if by == "both" else f"the {by}"
        reset = f"reset by {who}"
        if first:
            reset += f", after a FIN from the {first}"
        parts.append(reset)
    elif kind == "open":
        parts.append("no FIN or RST: still open at the end of the capture")
    if first:
        parts.append(_fins_acked_text(td.get("fins_acked") or {}, kind))
    after = int(td.get("bytes_after_first_fin") or 0)
    if after and passive:
        parts.append(f"the {passive} sent {_bytes(after)} after the {first}'s FIN")
    return " · ".join(p for p in parts if p)


def _fins_acked_text(acked: dict[str, Any], kind: str) -> str:
    sent = [side for side in ("client", "server") if acked.get(side) is not None]
    if not sent:
        return ""
    if all(acked[side] for side in sent):
        return "both FINs ACKed" if len(sent) == 2 else f"the {sent[0]}'s FIN ACKed"
    missing = [side for side in sent if not acked[side]]
    return " · ".join(f"the {side}'s FIN was not ACKed" for side in missing)


def _teardown_style(td: dict[str, Any]) -> str:
    return {"rst": "red", "open": "yellow", "half-closed": "yellow"}.get(str(td["kind"]), "")


def _time_wait_text(rec: dict[str, Any], msl: float, t0: float) -> str:
    tw = rec["time_wait"]
    holder = str(tw["holder"])
    if holder == "none":
        why = "a RST ended the connection" if rec["teardown"]["kind"] == "rst" else "the close did not finish"
        return f"nobody: {why}"
    if holder == "both":
        who = f"both ({_ep(rec['client'])} and {_ep(rec['server'])}: simultaneous close)"
    else:
        who = f"{holder} {_ep(rec[holder])}"
    text = who
    if tw.get("start_ts") is not None and tw.get("until_ts") is not None:
        text += f" from +{_rel(tw['start_ts'], t0)} until +{_rel(tw['until_ts'], t0)}"
    hold = tw.get("hold_s")
    text += f" ({_seconds(hold if hold is not None else 2 * msl)} = 2×MSL; {_msl_note(msl)})"
    return text


def _time_wait_events(tw: dict[str, Any], t0: float) -> list[str]:
    """What happened to the tuple during TIME_WAIT (fields the TCP analysis adds, when present)."""
    events = []
    if tw.get("fin_reacked"):
        events.append("a retransmitted FIN was ACKed again during TIME_WAIT")
    if tw.get("reused_by_syn") is not None:
        line = f"TCP {tw['reused_by_syn']} reused the 4-tuple before expiry"
        if tw.get("reuse_ts") is not None:
            line += f" (at +{_rel(tw['reuse_ts'], t0)})"
        ok = tw.get("rfc6191_ok")
        if ok is not None:
            by = f" by {tw['rfc6191_by']}" if tw.get("rfc6191_by") else ""
            line += (
                f"; RFC 6191 {'satisfied' + by if ok else 'violated: neither ISN nor timestamp is higher'}"
            )
        events.append(line)
    if tw.get("rst_in_time_wait"):
        events.append("a RST hit the tuple during TIME_WAIT (RFC 1337 TIME-WAIT assassination)")
    return events


def _msl_note(msl: float) -> str:
    linux = "Linux's fixed 60 s TIME_WAIT"
    rfc = "RFC 9293's nominal MSL is 2 min"
    if msl * 2 == LINUX_TIME_WAIT_S:
        return f"MSL {_seconds(msl)} = {linux}; {rfc}"
    return f"MSL {_seconds(msl)} from --msl; {linux} is MSL 30 s; {rfc}"


def _state_rows(states: dict[str, Any]) -> list[Line]:
    lines = []
    for side in ("client", "server"):
        path = [str(step[0]) for step in states.get(side) or []]
        if path:
            lines.append(f"{side:<7}{' → '.join(path)}")
    return _rows("states", lines)


def _completeness(value: int) -> str:
    names = [name for bit, name in COMPLETENESS_BITS if value & bit]
    return f"{value} ({', '.join(names)})" if names else f"{value}"


def _anomaly(a: Any) -> str:
    if not isinstance(a, dict):
        return str(a)
    name = str(a.get("name") or "anomaly")
    where = []
    if a.get("side"):
        where.append(str(a["side"]))
    if a.get("frame") is not None:
        where.append(f"frame {a['frame']}")
    where += [f"{k} {v}" for k, v in a.items() if k not in ("name", "side", "frame", "ts") and v is not None]
    return f"{name} ({', '.join(where)})" if where else name


# -- UDP --------------------------------------------------------------------------------------


def _udp_section(rec: dict[str, Any], width: int, color: bool) -> list[Line]:
    client, server = _ep(rec["client"]), _ep(rec["server"])
    dgs: list[dict[str, Any]] = rec["datagrams"]
    t0 = float(dgs[0]["ts"]) if dgs else 0.0
    out = [_header(f"UDP {rec['id']} · {client} (client) → {server} (server)", width, color, "magenta")]
    c2s = [d for d in dgs if d["dir"] == "c2s"]
    s2c = [d for d in dgs if d["dir"] == "s2c"]
    span = _duration(float(dgs[-1]["ts"]) - t0) if dgs else "0 s"
    out.append(
        _row(
            "datagrams",
            f"{len(c2s)} from the client ({_bytes(sum(d['bytes'] for d in c2s))}), "
            f"{len(s2c)} from the server ({_bytes(sum(d['bytes'] for d in s2c))}), over {span}",
        )
    )
    out.append(
        _row("exchanges", _exchanges_text(rec, len(c2s), len(s2c)), style="green" if rec["echo"] else "")
    )
    out += _rows("", list(_datagram_lines(dgs, t0)))
    if rec["icmp_unreachable"]:
        out += _rows("ICMP", [_icmp_text(e, dgs, t0) for e in rec["icmp_unreachable"]], style="yellow")
    out.append(
        _row("state", "no handshake, no teardown, no TIME_WAIT: UDP has no connection state", style="dim")
    )
    zeek = ZEEK_ANSWERED if s2c else ZEEK_UNANSWERED
    out.append(_row("interop", f"Zeek {zeek[0]} {zeek[1]}"))
    return out


def _exchanges_text(rec: dict[str, Any], requests: int, replies: int) -> str:
    pairs: list[dict[str, Any]] = rec.get("pairs") or []
    n = int(rec["exchanges"])
    text = f"{_plural(n, 'request/reply pair')}"
    if pairs:
        lat = [float(p["latency_ms"]) for p in pairs]
        lo, hi = min(lat), max(lat)
        text += f" · RTT {_ms(lo)}" if lo == hi else f" · RTT {_num_ms(lo)}–{_ms(hi)}"
    if rec["echo"]:
        return text + " · every reply equals its request (echo)"
    unanswered = requests - n
    if replies == 0:
        return text + " · no replies"
    notes = []
    if unanswered > 0:
        notes.append(f"{unanswered} of {requests} requests got no reply")
    if replies > n:
        notes.append(f"{_plural(replies - n, 'reply', 'replies')} without a request")
    dgs = rec["datagrams"]
    same = sum(1 for p in pairs if _same_payload(dgs[p["request"]], dgs[p["reply"]]))
    if pairs and same == len(pairs):
        notes.append("every reply equals its request")
    elif same:
        notes.append(f"{same} of {len(pairs)} replies equal their request")
    return text + (" · " + " · ".join(notes) if notes else "")


def _same_payload(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["sha256"] is not None and a["sha256"] == b["sha256"] and a["bytes"] == b["bytes"]


def _datagram_lines(dgs: Sequence[dict[str, Any]], t0: float) -> Iterable[str]:
    shown: list[int | None] = list(range(len(dgs)))
    if len(dgs) > DATAGRAMS_SHOWN:
        head = DATAGRAMS_SHOWN - 3
        shown = [*range(head), None, *range(len(dgs) - 2, len(dgs))]
    for i in shown:
        if i is None:
            yield f"   … {len(dgs) - DATAGRAMS_SHOWN + 1} more datagrams"
            continue
        d = dgs[i]
        arrow = "client→server" if d["dir"] == "c2s" else "server→client"
        line = f"#{i:<3} {'+' + _rel(d['ts'], t0):>11}  {arrow}  {_bytes(d['bytes'])}"
        if d["bytes"]:
            line += f' "{d["preview"]}"'
        yield line


def _icmp_text(e: dict[str, Any], dgs: Sequence[dict[str, Any]], t0: float) -> str:
    family = "ICMPv6" if e["type"] == 1 else "ICMP"
    text = f"{icmp_reason(int(e['type']), int(e['code']))} ({family} type {e['type']} code {e['code']})"
    text += f" from {e['from']} at +{_rel(e['ts'], t0)} (frame {e['frame']})"
    idx = e.get("datagram")
    if idx is not None:
        d = dgs[idx]
        text += f", answering datagram #{idx} ({'client→server' if d['dir'] == 'c2s' else 'server→client'})"
    return text


# -- formatting helpers -----------------------------------------------------------------------


def _header(title: str, width: int, color: bool, style: str) -> Line:
    head = f"━━ {title} "
    return [
        (head, f"bold {style}" if color else ""),
        ("━" * max(3, width - len(head)), style if color else ""),
    ]


def _row(label: str, value: str, *, style: str = "") -> Line:
    return [(" " + label.ljust(LABEL_WIDTH), "bold"), (value, style)]


def _rows(label: str, values: Sequence[str], *, style: str = "") -> list[Line]:
    return [_row(label if i == 0 else "", v, style=style) for i, v in enumerate(values)]


def _ep(ep: dict[str, Any]) -> str:
    ip = str(ep["ip"])
    return f"[{ip}]:{ep['port']}" if ":" in ip else f"{ip}:{ep['port']}"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _bytes(n: int) -> str:
    return f"{n:,} B"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _num_ms(ms: float) -> str:
    return f"{ms:.3f}"


def _ms(ms: float) -> str:
    return f"{ms:.3f} ms"


def _seconds(s: float) -> str:
    return f"{s:g} s"


def _duration(seconds: float) -> str:
    return _ms(seconds * 1000) if abs(seconds) < 1 else f"{seconds:.3f} s"


def _rel(ts: float, t0: float) -> str:
    return _duration(float(ts) - t0)
