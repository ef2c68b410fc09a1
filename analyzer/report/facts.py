"""What the HTML and Markdown reports say about a capture and each flow, as plain strings.

Both documents show the same summary tables and the same per-flow facts; this module words them
once from the ``analyzer.report/1`` records (so they never disagree with the JSON), and each
renderer escapes them for its own syntax. Strings taken from the capture are previews (no control
characters); they still need escaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from analyzer import __version__
from analyzer.analysis import Analysis
from analyzer.report.ladder import duration, endpoint_text, kernel_view

__all__ = [
    "TCP_COLUMNS",
    "UDP_COLUMNS",
    "capture_facts",
    "tcp_facts",
    "tcp_summary_row",
    "udp_facts",
    "udp_summary_row",
]

TCP_COLUMNS = (
    "id",
    "client",
    "server",
    "handshake",
    "client→server",
    "server→client",
    "teardown",
    "first FIN",
    "TIME_WAIT",
    "Zeek conn_state",
    "Zeek history",
)
UDP_COLUMNS = (
    "id",
    "client",
    "server",
    "datagrams c→s",
    "datagrams s→c",
    "client→server",
    "server→client",
    "exchanges",
    "echo",
    "ICMP unreachable",
)


def _ep(ep: dict[str, Any]) -> str:
    return endpoint_text(str(ep["ip"]), int(ep["port"]))


def _bytes(n: int) -> str:
    return f"{n:,} B"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def capture_facts(analysis: Analysis) -> list[tuple[str, str]]:
    cap = analysis.capture
    ts = analysis.packets["ts"]
    ts = ts[ts > 0]
    span = f"{utc(float(ts.min()))}, {duration(float(ts.max() - ts.min()))}" if len(ts) else "no time stamps"
    rows = [
        ("file", cap.file),
        ("format", f"{cap.format}, link types {', '.join(str(t) for t in cap.link_types) or 'none'}"),
        (
            "packets",
            f"{_plural(cap.packets, 'packet')} · {_plural(len(analysis.tcp_records), 'TCP connection')} · "
            f"{_plural(len(analysis.udp_records), 'UDP conversation')}",
        ),
        ("time", span),
        ("health", f"{cap.malformed:,} malformed, {cap.truncated:,} truncated frames"),
        ("analysis", f"analyzer {__version__}, engine {analysis.engine}, MSL {analysis.msl:g} s"),
    ]
    rows += [("warning", w) for w in cap.warnings]
    return rows


def tcp_summary_row(rec: dict[str, Any]) -> tuple[str, ...]:
    data = rec["data"]
    td = rec["teardown"]
    tw = rec["time_wait"]
    zeek = rec.get("zeek") or {}
    return (
        str(rec["id"]),
        _ep(rec["client"]),
        _ep(rec["server"]),
        str(rec["handshake"]["state"]),
        _bytes(int(data["client_to_server"]["bytes"])),
        _bytes(int(data["server_to_client"]["bytes"])),
        str(td["kind"]),
        str(td.get("first_fin") or "none"),
        str(tw.get("holder") or "none"),
        str(zeek.get("conn_state") or ""),
        str(zeek.get("history") or ""),
    )


def udp_summary_row(rec: dict[str, Any]) -> tuple[str, ...]:
    dgs = rec.get("datagrams") or []
    c2s = [d for d in dgs if d["dir"] == "c2s"]
    s2c = [d for d in dgs if d["dir"] == "s2c"]
    return (
        str(rec["id"]),
        _ep(rec["client"]),
        _ep(rec["server"]),
        f"{len(c2s):,}",
        f"{len(s2c):,}",
        _bytes(sum(int(d["bytes"]) for d in c2s)),
        _bytes(sum(int(d["bytes"]) for d in s2c)),
        f"{int(rec.get('exchanges') or 0):,}",
        "yes" if rec.get("echo") else "no",
        f"{len(rec.get('icmp_unreachable') or []):,}",
    )


def _options(options: dict[str, Any]) -> str:
    def one(o: dict[str, Any] | None) -> str:
        if not o:
            return "no options"
        words = []
        if o.get("mss"):
            words.append(f"MSS {o['mss']}")
        if o.get("wscale") is not None:
            words.append(f"wscale {o['wscale']}")
        if o.get("sack_perm"):
            words.append("SACK")
        if o.get("timestamps"):
            words.append("timestamps")
        return ", ".join(words) or "no options"

    sides = [(s, one(options.get(s))) for s in ("client", "server") if options.get(s) is not None]
    if len(sides) == 2 and sides[0][1] == sides[1][1]:
        return f"both offered {sides[0][1]}"
    return " · ".join(f"{s} offered {t}" for s, t in sides)


def tcp_facts(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows describing one TCP connection."""
    t0 = float(rec["first_ts"])
    hs = rec["handshake"]
    parts = [str(hs["state"])]
    if hs.get("rtt_ms") is not None:
        parts.append(f"RTT {float(hs['rtt_ms']):.3f} ms")
    if hs.get("syn_retransmits"):
        parts.append(_plural(int(hs["syn_retransmits"]), "SYN retransmission"))
    if hs.get("client_isn") is not None:
        parts.append(f"client ISN {hs['client_isn']}")
    if hs.get("server_isn") is not None:
        parts.append(f"server ISN {hs['server_isn']}")
    opts = _options(hs.get("options") or {})
    if opts:
        parts.append(opts)
    rows = [
        ("packets", f"{int(rec['packets']):,} in {duration(float(rec['last_ts']) - t0)} from {utc(t0)}"),
        ("handshake", " · ".join(parts)),
    ]
    data = rec["data"]
    d_parts = []
    for key, arrow in (("client_to_server", "client→server"), ("server_to_client", "server→client")):
        d = data[key]
        d_parts.append(f"{arrow} {_bytes(int(d['bytes']))} in {_plural(int(d['segments']), 'segment')}")
    if data.get("retransmissions"):
        d_parts.append(_plural(int(data["retransmissions"]), "retransmission"))
    if data.get("out_of_order"):
        d_parts.append(f"{data['out_of_order']:,} out of order")
    rows.append(("data", " · ".join(d_parts)))
    td = rec["teardown"]
    t_parts = [str(td["kind"])]
    if td.get("first_fin"):
        t_parts.append(f"first FIN from the {td['first_fin']} (active closer)")
    acked = td.get("fins_acked") or {}
    for side in ("client", "server"):
        if acked.get(side) is not None:
            t_parts.append(f"{side} FIN {'ACKed' if acked[side] else 'not ACKed'}")
    if td.get("rst_by"):
        t_parts.append(f"RST by {td['rst_by']}")
    if td.get("bytes_after_first_fin"):
        t_parts.append(f"{_bytes(int(td['bytes_after_first_fin']))} sent after the first FIN")
    rows.append(("teardown", " · ".join(t_parts)))
    rows.append(("TIME_WAIT", _time_wait(rec, t0)))
    kernel = (rec.get("time_wait") or {}).get("kernel")
    if isinstance(kernel, dict):
        view = kernel_view(kernel)
        if view is not None:
            rows.append(("kernel", view.text.removeprefix("kernel: ")))
    zeek = rec.get("zeek") or {}
    comp = rec.get("completeness")
    label = rec.get("completeness_label")
    rows.append(
        (
            "interop",
            f"Zeek {zeek.get('conn_state', '')} {zeek.get('history') or '-'} · Wireshark completeness {comp}"
            + (f" ({label})" if label else ""),
        )
    )
    anomalies = rec.get("anomalies") or []
    if anomalies:
        rows.append(("anomalies", "; ".join(_anomaly(a) for a in anomalies)))
    return rows


def _time_wait(rec: dict[str, Any], t0: float) -> str:
    tw = rec["time_wait"]
    holder = str(tw.get("holder") or "none")
    if holder == "none":
        return "nobody (a RST ended the connection)" if rec["teardown"]["kind"] == "rst" else "nobody"
    who = "both ends (simultaneous close)" if holder == "both" else f"the {holder} {_ep(rec[holder])}"
    text = who
    if tw.get("start_ts") is not None and tw.get("until_ts") is not None:
        text += f" from +{duration(float(tw['start_ts']) - t0)} until +{duration(float(tw['until_ts']) - t0)}"
    if tw.get("hold_s") is not None:
        msl = tw.get("msl_s")
        text += f" ({float(tw['hold_s']):g} s = 2×MSL" + (f", MSL {float(msl):g} s" if msl else "") + ")"
    for key, what in (
        ("fin_reacked", "a retransmitted FIN was ACKed again during TIME_WAIT"),
        ("rst_in_time_wait", "a RST hit the tuple during TIME_WAIT (RFC 1337)"),
    ):
        if tw.get(key):
            text += f" · {what}"
    if tw.get("reused_by_syn") is not None:
        ok = tw.get("rfc6191_ok")
        text += f" · TCP {tw['reused_by_syn']} reused the 4-tuple before expiry"
        if ok is not None:
            text += f" (RFC 6191 {'satisfied' if ok else 'violated'})"
    return text


def _anomaly(a: Any) -> str:
    if not isinstance(a, dict):
        return str(a)
    where = [str(a[k]) for k in ("side",) if a.get(k)]
    if a.get("frame") is not None:
        where.append(f"frame {a['frame']}")
    return f"{a.get('name')}" + (f" ({', '.join(where)})" if where else "")


def udp_facts(rec: dict[str, Any]) -> list[tuple[str, str]]:
    dgs: Sequence[dict[str, Any]] = rec.get("datagrams") or []
    c2s = sum(1 for d in dgs if d["dir"] == "c2s")
    rows = [("datagrams", f"{c2s:,} from the client, {len(dgs) - c2s:,} from the server")]
    pairs = rec.get("pairs") or []
    ex = _plural(int(rec.get("exchanges") or 0), "request/reply pair")
    if pairs:
        lat = [float(p["latency_ms"]) for p in pairs]
        ex += f" · RTT {min(lat):.3f}–{max(lat):.3f} ms"
    if rec.get("echo"):
        ex += " · every reply equals its request (echo)"
    rows.append(("exchanges", ex))
    icmp = rec.get("icmp_unreachable") or []
    if icmp:
        rows.append(("ICMP", f"{len(icmp)} destination-unreachable errors from {icmp[0].get('from')}"))
    rows.append(("state", "no handshake, no teardown, no TIME_WAIT: UDP has no connection state"))
    return rows
