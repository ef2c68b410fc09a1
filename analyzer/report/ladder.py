"""The ladder (sequence) diagram of each flow, independent of how it is drawn.

A ``Ladder`` has two lifelines keyed on ip:port, the client on the left and the server on the
right (so two sockets on 127.0.0.1 are still two columns, unlike Wireshark's flow graph, which
keys on addresses), and one arrow per packet: direction, time since the flow's first packet,
and a label with the flags, relative seq/ack, length and a short payload preview. The arrows
carry each endpoint's state changes (from the record's ``states`` timelines), the ladder carries
the TIME_WAIT period on the holder's side and, in ``analyzer run`` reports, the kernel's
observation of the socket (``time_wait.kernel``). ``DataItem``s hold the data exchanged (the
reassembled stream per direction for TCP, each datagram for UDP) for the reports that show it.

The text, HTML/SVG and Mermaid renderers (``ladder_text``, ``html``, ``markdown``) only lay out
what is here, so they always agree. Long flows keep their first and last arrows plus every
SYN/FIN/RST and state change in between, with ``Elision`` rows for what was left out.

Every string taken from the capture is a preview (``analyzer.flows.preview``: no control
characters, ``\\xNN`` escapes); renderers still escape for their own syntax.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Analysis
from analyzer.decode.source import CaptureBytes
from analyzer.errors import InputError
from analyzer.flags import flags_to_str
from analyzer.flows.preview import ELLIPSIS, preview
from analyzer.flows.tcp_rows import tcp_packet_rows
from analyzer.schema import TCP_FIN, TCP_RST, TCP_SYN

__all__ = [
    "Arrow",
    "DataItem",
    "Elision",
    "Endpoint",
    "KernelSocket",
    "KernelView",
    "Ladder",
    "StateChange",
    "TimeWait",
    "build_ladders",
    "endpoint_text",
    "printable_text",
]

MAX_ARROWS = 60  # arrows drawn per flow before the middle is elided
HEAD_ARROWS = 30  # of those, the first ones...
TAIL_ARROWS = 12  # ...and the last ones; the rest of the budget goes to SYN/FIN/RST/state rows
LABEL_PREVIEW_BYTES = 20  # payload bytes shown on an arrow
FULL_TEXT_BYTES = 64 * 1024  # bytes of each stream shown in full (behind a disclosure element)
DATAGRAM_ITEMS = 50  # UDP datagrams listed in the data section

SIDES = ("client", "server")
C2S, S2C = "c2s", "s2c"


def endpoint_text(ip: str, port: int) -> str:
    """``127.0.0.1:13``, ``[::1]:13``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    role: str  # "client" or "server"

    @property
    def label(self) -> str:
        return endpoint_text(self.ip, self.port)


@dataclass(frozen=True)
class Arrow:
    """One packet: drawn from its sender's lifeline to the receiver's."""

    index: int  # position of the packet in its flow, from 0
    frame: int | None
    t: float  # seconds since the flow's first packet
    direction: str  # "c2s" or "s2c"
    kind: str  # "tcp", "udp" or "icmp"
    flags: str  # "SYN,ACK"; "" for UDP/ICMP
    seq: int | None  # relative; None when the segment uses no sequence space
    ack: int | None  # relative; None without ACK
    length: int  # payload bytes
    preview: str  # short payload preview (escaped), "" without payload
    label: str  # what the arrow says: flags, seq/ack, len, preview, notes
    retransmission: bool = False
    rst: bool = False
    client_states: tuple[str, ...] = ()  # states the client entered at this packet
    server_states: tuple[str, ...] = ()

    def states(self, side: str) -> tuple[str, ...]:
        return self.client_states if side == "client" else self.server_states


@dataclass(frozen=True)
class Elision:
    """Consecutive packets left out of a long ladder."""

    count: int
    c2s: int
    s2c: int
    t_from: float
    t_to: float
    label: str


@dataclass(frozen=True)
class StateChange:
    state: str
    t: float  # seconds since the flow's first packet
    frame: int | None


@dataclass(frozen=True)
class KernelSocket:
    local: str
    remote: str
    side: str
    timer_s: float | None


@dataclass(frozen=True)
class KernelView:
    """The kernel's sockets for this connection at the run's sample (``time_wait.kernel``)."""

    sockets: tuple[KernelSocket, ...]
    agrees: bool | None
    text: str


@dataclass(frozen=True)
class TimeWait:
    holders: tuple[str, ...]  # "client" and/or "server"
    start: float | None  # seconds since the flow's first packet; None when unknown
    until: float | None
    hold_s: float | None
    msl_s: float
    start_row: int  # index in ``rows`` of the first row inside the hold; len(rows) = after the last
    label: str
    kernel: KernelView | None = None


@dataclass(frozen=True)
class DataItem:
    """Data one side sent: a TCP direction's reassembled stream, or one UDP datagram."""

    title: str  # "client → server", "#3 client → server"
    direction: str
    bytes: int
    preview: str
    full_text: str | None  # printable text of the bytes (None when the capture is not readable)
    truncated: bool  # full_text stops before the end of the data
    t: float | None = None  # for datagrams: seconds since the flow's first packet


@dataclass(frozen=True)
class Ladder:
    kind: str  # "tcp" or "udp"
    id: int
    client: Endpoint
    server: Endpoint
    t0: float  # epoch seconds of the first packet
    packets: int  # packets in the flow (arrows + elided)
    rows: tuple[Arrow | Elision, ...]
    states: dict[str, tuple[StateChange, ...]] = field(default_factory=dict)
    time_wait: TimeWait | None = None
    data: tuple[DataItem, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.kind.upper()} {self.id} · {self.client.label} (client) → {self.server.label} (server)"

    @property
    def arrows(self) -> list[Arrow]:
        return [r for r in self.rows if isinstance(r, Arrow)]

    @property
    def unit(self) -> str:
        """ "ms" when the whole flow lasts under a second, "s" otherwise."""
        last = max((r.t if isinstance(r, Arrow) else r.t_to for r in self.rows), default=0.0)
        return "ms" if last < 1.0 else "s"

    def time(self, t: float) -> str:
        """A relative time in this ladder's unit: ``+0.028 ms``, ``+12.504113 s``."""
        return rel_time(t, self.unit)

    def endpoint(self, side: str) -> Endpoint:
        return self.client if side == "client" else self.server


def rel_time(t: float, unit: str) -> str:
    if unit == "ms":
        return f"+{t * 1e3:.3f} ms"
    return f"+{t:.6f} s"


def duration(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if abs(seconds) < 1 else f"{seconds:,.3f} s"


# -- building --------------------------------------------------------------------------------


def build_ladders(
    analysis: Analysis,
    *,
    tcp_records: Sequence[dict[str, Any]] | None = None,
    udp_records: Sequence[dict[str, Any]] | None = None,
    max_flows: int | None = None,
    max_arrows: int = MAX_ARROWS,
) -> tuple[list[Ladder], list[Ladder]]:
    """(TCP ladders, UDP ladders) for the first ``max_flows`` flows of each kind.

    ``tcp_records``/``udp_records`` default to the analysis' own; pass the records of an
    ``analyzer run`` report to draw its ``time_wait.kernel`` observations.
    """
    tcp_recs = list(analysis.tcp_records if tcp_records is None else tcp_records)
    udp_recs = list(analysis.udp_records if udp_records is None else udp_records)
    if max_flows is not None:
        tcp_recs, udp_recs = tcp_recs[:max_flows], udp_recs[:max_flows]
    # A hand-made Analysis may carry records without the packet table: its ladders have no
    # TCP arrows (UDP arrows come from the records themselves).
    table = PACKET_COLUMNS.issubset(analysis.packets.columns)
    with _payloads(analysis.capture.file) as payloads:
        tcp: list[Ladder] = []
        if tcp_recs:
            by_stream: dict[int, slice] = {}
            cols: dict[str, list[Any]] = {k: [] for k in TCP_COLUMN_KEYS}
            if table:
                rows = tcp_packet_rows(analysis.packets)
                wanted = np.isin(rows["stream"].to_numpy(), [int(r["id"]) for r in tcp_recs])
                rows = rows[wanted]
                by_stream = _stream_slices(rows["stream"].to_numpy())
                cols = _tcp_columns(analysis.packets, rows)
            for rec in tcp_recs:
                sl = by_stream.get(int(rec["id"]), slice(0, 0))
                tcp.append(_tcp_ladder(rec, cols, sl, payloads, max_arrows))
        packets = analysis.packets if table and udp_recs else None
        by_pair = _udp_rows_by_pair(analysis.packets) if packets is not None else {}
        udp = [_udp_ladder(rec, packets, by_pair, payloads, max_arrows) for rec in udp_recs]
    return tcp, udp


@contextmanager
def _payloads(path: str) -> Iterator[CaptureBytes | None]:
    """The capture's bytes for previews, or None when the file is gone (previews then stay empty)."""
    try:
        cap = CaptureBytes(path)
    except (InputError, OSError):
        yield None
        return
    with cap:
        yield cap


def _stream_slices(stream: np.ndarray[Any, np.dtype[np.int64]]) -> dict[int, slice]:
    if len(stream) == 0:
        return {}
    cuts = np.flatnonzero(np.r_[True, stream[1:] != stream[:-1]])
    ends = np.r_[cuts[1:], len(stream)]
    return {int(stream[a]): slice(int(a), int(b)) for a, b in zip(cuts, ends, strict=True)}


TCP_COLUMN_KEYS = (
    "frame",
    "ts",
    "dir",
    "flags",
    "seq",
    "ack",
    "len",
    "retrans",
    "keepalive",
    "dup",
    "zwin",
    "poff",
    "pcap",
)
# PACKETS columns the ladders read (tcp_packet_rows and the UDP datagram lookup).
PACKET_COLUMNS = frozenset(
    (
        "frame",
        "ts",
        "ts_ns",
        "proto",
        "src",
        "dst",
        "sport",
        "dport",
        "tcp_flags",
        "seq",
        "ack",
        "win",
        "payload_len",
        "payload_offset",
        "payload_caplen",
    )
)


def _tcp_columns(packets: pd.DataFrame, rows: pd.DataFrame) -> dict[str, list[Any]]:
    """Per-packet Python lists (fast to slice per flow) of everything a TCP arrow needs."""
    prow = rows["row"].to_numpy()
    return {
        "frame": rows["frame"].tolist(),
        "ts": rows["ts"].tolist(),
        "dir": rows["dir"].tolist(),
        "flags": rows["flags"].tolist(),
        "seq": rows["rel_seq"].tolist(),
        "ack": rows["rel_ack"].tolist(),
        "len": rows["len"].tolist(),
        "retrans": rows["retransmission"].tolist(),
        "keepalive": rows["keepalive"].tolist(),
        "dup": rows["dup_ack"].tolist(),
        "zwin": rows["zero_window"].tolist(),
        "poff": packets["payload_offset"].to_numpy()[prow].tolist(),
        "pcap": packets["payload_caplen"].to_numpy()[prow].tolist(),
    }


def _side_states(rec: dict[str, Any], t0: float) -> tuple[dict[str, tuple[StateChange, ...]], dict[str, Any]]:
    """State timelines relative to ``t0``, and per side {frame: states entered at that frame}."""
    states: dict[str, tuple[StateChange, ...]] = {}
    at_frame: dict[str, dict[int | None, list[str]]] = {}
    for side in SIDES:
        entries = (rec.get("states") or {}).get(side) or []
        changes = tuple(
            StateChange(str(e[0]), float(e[1]) - t0, int(e[2]) if len(e) > 2 and e[2] is not None else None)
            for e in entries
        )
        states[side] = changes
        by_frame: dict[int | None, list[str]] = defaultdict(list)
        for i, ch in enumerate(changes):
            # The initial CLOSED says nothing on an arrow ("SYN-SENT" already implies it).
            if i == 0 and ch.state == "CLOSED" and len(changes) > 1 and changes[1].frame == ch.frame:
                continue
            by_frame[ch.frame].append(ch.state)
        at_frame[side] = by_frame
    return states, at_frame


def _tcp_ladder(
    rec: dict[str, Any],
    cols: dict[str, list[Any]],
    sl: slice,
    payloads: CaptureBytes | None,
    max_arrows: int,
) -> Ladder:
    t0 = float(rec["first_ts"])
    client = Endpoint(str(rec["client"]["ip"]), int(rec["client"]["port"]), "client")
    server = Endpoint(str(rec["server"]["ip"]), int(rec["server"]["port"]), "server")
    states, at_frame = _side_states(rec, t0)
    c = {k: v[sl] for k, v in cols.items()}
    n = len(c["frame"])
    state_frames = {f for side in SIDES for f in at_frame[side]}
    landmark = [
        bool(c["flags"][i] & (TCP_SYN | TCP_FIN | TCP_RST)) or c["frame"][i] in state_frames for i in range(n)
    ]
    keep = _keep(n, landmark, max_arrows)

    def arrow(i: int) -> Arrow:
        flags = int(c["flags"][i])
        length = int(c["len"][i])
        occupies = bool(flags & (TCP_SYN | TCP_FIN | TCP_RST)) or length > 0
        text = ""
        if length and payloads is not None and c["poff"][i] >= 0:
            data = payloads.get(int(c["poff"][i]), min(int(c["pcap"][i]), LABEL_PREVIEW_BYTES))
            text = preview(data, LABEL_PREVIEW_BYTES)
            if length > LABEL_PREVIEW_BYTES and not text.endswith(ELLIPSIS):
                text += ELLIPSIS
        seq = int(c["seq"][i]) if occupies else None
        ack = int(c["ack"][i]) if c["ack"][i] >= 0 else None
        notes = []
        if c["retrans"][i]:
            notes.append("retransmission")
        if c["keepalive"][i]:
            notes.append("keep-alive")
        if c["dup"][i]:
            notes.append("dup ACK")
        if c["zwin"][i]:
            notes.append("zero window")
        frame = int(c["frame"][i])
        return Arrow(
            index=i,
            frame=frame,
            t=float(c["ts"][i]) - t0,
            direction=C2S if c["dir"][i] == 0 else S2C,
            kind="tcp",
            flags=flags_to_str(flags),
            seq=seq,
            ack=ack,
            length=length,
            preview=text,
            label=tcp_label(flags_to_str(flags), seq, ack, length, text, notes),
            retransmission=bool(c["retrans"][i]),
            rst=bool(flags & TCP_RST),
            client_states=tuple(at_frame["client"].get(frame, ())),
            server_states=tuple(at_frame["server"].get(frame, ())),
        )

    rows = _rows(keep, n, arrow, [float(t) - t0 for t in c["ts"]], c["dir"])
    time_wait = _time_wait(rec, t0, rows)
    data = _tcp_data(rec, c, payloads)
    notes = []
    if rec.get("client_guessed"):
        notes.append("no SYN seen: the client is the sender of the first packet (a guess)")
    return Ladder(
        kind="tcp",
        id=int(rec["id"]),
        client=client,
        server=server,
        t0=t0,
        packets=n,
        rows=tuple(rows),
        states=states,
        time_wait=time_wait,
        data=data,
        notes=tuple(notes),
    )


def tcp_label(
    flags: str, seq: int | None, ack: int | None, length: int, text: str, notes: Sequence[str]
) -> str:
    """``PSH,ACK seq=1 ack=1 len=20 "2026-11-26 22:14:03⏎"``."""
    parts = [flags or "(no flags)"]
    if seq is not None:
        parts.append(f"seq={seq}")
    if ack is not None:
        parts.append(f"ack={ack}")
    if length:
        parts.append(f"len={length}")
    # Notes before the preview: a label cut to fit a column loses the preview's tail, not them.
    parts += [f"({n})" for n in notes]
    if text:
        parts.append(f'"{text}"')
    return " ".join(parts)


def _keep(n: int, landmark: Sequence[bool], max_arrows: int) -> list[int]:
    """Indices of the packets drawn: all of them, or head + tail + landmarks within the budget."""
    if n <= max_arrows:
        return list(range(n))
    head = min(HEAD_ARROWS, max_arrows)
    tail = min(TAIL_ARROWS, max(0, max_arrows - head))
    chosen = set(range(head)) | set(range(n - tail, n))
    budget = max(0, max_arrows - len(chosen))
    middle = [i for i in range(head, n - tail) if landmark[i]]
    # Spread the budget over the landmarks when there are more of them than room.
    if len(middle) > budget:
        middle = [middle[round(k * (len(middle) - 1) / max(1, budget - 1))] for k in range(budget)]
    chosen.update(middle)
    return sorted(chosen)


def _rows(
    keep: list[int],
    n: int,
    arrow: Any,
    ts: Sequence[float],
    dirs: Sequence[Any],
) -> list[Arrow | Elision]:
    rows: list[Arrow | Elision] = []
    prev = -1
    for i in [*keep, n]:
        if i - prev > 1:
            a, b = prev + 1, i
            c2s = sum(1 for d in dirs[a:b] if d in (0, C2S))
            count = b - a
            rows.append(
                Elision(
                    count=count,
                    c2s=c2s,
                    s2c=count - c2s,
                    t_from=ts[a],
                    t_to=ts[b - 1],
                    label=f"{count:,} more packets ({c2s:,} client→server, {count - c2s:,} server→client)",
                )
            )
        if i < n:
            rows.append(arrow(i))
        prev = i
    return rows


def _time_wait(rec: dict[str, Any], t0: float, rows: Sequence[Arrow | Elision]) -> TimeWait | None:
    tw = rec.get("time_wait") or {}
    holder = str(tw.get("holder") or "none")
    if holder == "none":
        return None
    holders = SIDES if holder == "both" else (holder,)
    start = None if tw.get("start_ts") is None else float(tw["start_ts"]) - t0
    until = None if tw.get("until_ts") is None else float(tw["until_ts"]) - t0
    hold = None if tw.get("hold_s") is None else float(tw["hold_s"])
    msl = float(tw.get("msl_s") or 30.0)
    start_row = len(rows)
    if start is not None:
        for k, r in enumerate(rows):
            t = r.t if isinstance(r, Arrow) else r.t_to
            if t >= start - 1e-9:
                start_row = k
                break
    label = "TIME-WAIT"
    if until is not None:
        label += f" until +{duration(until)}"
    if hold is not None:
        label += f" (2×MSL = {hold:g} s)"
    return TimeWait(
        holders=tuple(holders),
        start=start,
        until=until,
        hold_s=hold,
        msl_s=msl,
        start_row=start_row,
        label=label,
        kernel=kernel_view(tw.get("kernel")),
    )


def kernel_view(view: Any) -> KernelView | None:
    if not isinstance(view, dict):
        return None
    sockets = tuple(
        KernelSocket(
            local=str(o.get("local", "?")),
            remote=str(o.get("remote", "?")),
            side=str(o.get("side", "?")),
            timer_s=None if o.get("timer_s") is None else float(o["timer_s"]),
        )
        for o in view.get("observed") or []
        if isinstance(o, dict)
    )
    agrees = view.get("agrees")
    seen = [
        f"{s.local} ↔ {s.remote} in TIME-WAIT"
        + ("" if s.timer_s is None else f", {s.timer_s:.0f} s left")
        + f" ({s.side})"
        for s in sockets
    ]
    text = "kernel: " + ("; ".join(seen) if seen else "no TIME-WAIT socket")
    if agrees is not None:
        text += " · agrees" if agrees else " · DISAGREES"
    return KernelView(sockets=sockets, agrees=None if agrees is None else bool(agrees), text=text)


# -- data exchanged ---------------------------------------------------------------------------

_CONTROL = {code: f"\\x{code:02x}" for code in range(0x20) if code not in (0x09, 0x0A)}
_CONTROL[0x7F] = "\\x7f"
_CONTROL.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})


def printable_text(data: bytes) -> str:
    """Bytes as readable text that keeps its line breaks and tabs: UTF-8 as is, ``\\r\\n`` as a
    newline, every other control byte or invalid byte as ``\\xNN`` (never a raw control character).
    """
    text = data.replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape").translate(_CONTROL)
    if not all(ch.isprintable() or ch in "\n\t" for ch in text):
        text = "".join(
            ch if ch.isprintable() or ch in "\n\t" else "".join(f"\\x{b:02x}" for b in ch.encode("utf-8"))
            for ch in text
        )
    return text


def _tcp_data(
    rec: dict[str, Any], c: dict[str, list[Any]], payloads: CaptureBytes | None
) -> tuple[DataItem, ...]:
    items = []
    data = rec.get("data") or {}
    for d, (key, title) in enumerate(
        (("client_to_server", "client → server"), ("server_to_client", "server → client"))
    ):
        facts = data.get(key) or {}
        full: str | None = None
        truncated = False
        if payloads is not None:
            stream, truncated = _reassemble(c, d, payloads)
            full = stream
        items.append(
            DataItem(
                title=title,
                direction=C2S if d == 0 else S2C,
                bytes=int(facts.get("bytes") or 0),
                preview=str(facts.get("preview") or ""),
                full_text=full,
                truncated=truncated,
            )
        )
    return tuple(items)


def _reassemble(c: dict[str, list[Any]], d: int, payloads: CaptureBytes) -> tuple[str, bool]:
    """Printable text of the first ``FULL_TEXT_BYTES`` of one direction's stream.

    The first copy of every byte wins (as in the flow analysis); bytes never captured are shown
    as a ``[… N bytes not captured …]`` marker.
    """
    n = len(c["frame"])
    segs = [
        i
        for i in range(n)
        if c["dir"][i] == d
        and c["len"][i] > 0
        and not c["flags"][i] & TCP_RST
        and not c["keepalive"][i]
        and c["poff"][i] >= 0
    ]
    if not segs:
        return "", False
    syn = any(c["dir"][i] == d and c["flags"][i] & TCP_SYN for i in range(n))
    starts = [int(c["seq"][i]) + (1 if c["flags"][i] & TCP_SYN else 0) for i in segs]
    origin = 1 if syn else min(starts)
    top = max(s - origin + int(c["len"][i]) for s, i in zip(starts, segs, strict=True))
    size = max(0, min(top, FULL_TEXT_BYTES))
    buf = np.zeros(size, dtype=np.uint8)
    have = np.zeros(size, dtype=bool)
    for s, i in zip(starts, segs, strict=True):
        a = s - origin
        got = payloads.get(int(c["poff"][i]), int(c["pcap"][i]))
        lo, hi = max(a, 0), min(a + len(got), size)
        if hi <= lo:
            continue
        chunk = np.frombuffer(got, dtype=np.uint8)[lo - a : hi - a]
        new = ~have[lo:hi]
        buf[lo:hi][new] = chunk[new]
        have[lo:hi] = True
    parts: list[str] = []
    edges = np.flatnonzero(np.diff(np.r_[False, have, False].astype(np.int8)))
    pos = 0
    for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        if a > pos:
            parts.append(f"[… {a - pos:,} bytes not captured …]")
        parts.append(printable_text(buf[a:b].tobytes()))
        pos = b
    if pos < size:
        parts.append(f"[… {size - pos:,} bytes not captured …]")
    return "".join(parts), top > size


# -- UDP --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\\x[0-9a-f]{2}|.", re.DOTALL)


def shorten_preview(text: str, limit: int) -> str:
    """Cut an escaped preview after ``limit`` characters without splitting a ``\\xNN`` escape."""
    tokens = _TOKEN.findall(text.removesuffix(ELLIPSIS))
    if len(tokens) <= limit and not text.endswith(ELLIPSIS):
        return text
    return "".join(tokens[:limit]) + ELLIPSIS


Pair = tuple[tuple[str, int], tuple[str, int]]


def _pair(a: tuple[str, int], b: tuple[str, int]) -> Pair:
    return (a, b) if a <= b else (b, a)


def _udp_rows_by_pair(packets: pd.DataFrame) -> dict[Pair, list[int]]:
    """PACKETS rows of every UDP datagram, by unordered endpoint pair, in frame order."""
    rows = np.flatnonzero((packets["proto"] == "udp").to_numpy())
    src = packets["src"].to_numpy()[rows].astype(object).tolist()
    dst = packets["dst"].to_numpy()[rows].astype(object).tolist()
    sp = packets["sport"].to_numpy()[rows].tolist()
    dp = packets["dport"].to_numpy()[rows].tolist()
    out: dict[Pair, list[int]] = defaultdict(list)
    for r, s, a, d, b in zip(rows.tolist(), src, sp, dst, dp, strict=True):
        out[_pair((str(s), int(a)), (str(d), int(b)))].append(r)
    return out


def _udp_packet_rows(by_pair: dict[Pair, list[int]], rec: dict[str, Any]) -> list[int]:
    """PACKETS rows of a UDP conversation's datagrams, in frame order."""
    client = (str(rec["client"]["ip"]), int(rec["client"]["port"]))
    server = (str(rec["server"]["ip"]), int(rec["server"]["port"]))
    return by_pair.get(_pair(client, server), [])


def _udp_ladder(
    rec: dict[str, Any],
    packets: pd.DataFrame | None,
    by_pair: dict[Pair, list[int]],
    payloads: CaptureBytes | None,
    max_arrows: int,
) -> Ladder:
    client = Endpoint(str(rec["client"]["ip"]), int(rec["client"]["port"]), "client")
    server = Endpoint(str(rec["server"]["ip"]), int(rec["server"]["port"]), "server")
    dgs: list[dict[str, Any]] = list(rec.get("datagrams") or [])
    icmps: list[dict[str, Any]] = list(rec.get("icmp_unreachable") or [])
    t0 = float(dgs[0]["ts"]) if dgs else float(icmps[0]["ts"]) if icmps else 0.0
    prow = _udp_packet_rows(by_pair, rec) if packets is not None else []
    frames = packets["frame"].to_numpy() if packets is not None else np.zeros(0, dtype=np.int64)
    exact = len(prow) == len(dgs)  # then datagram k is PACKETS row prow[k]

    events: list[tuple[float, int, dict[str, Any]]] = [(float(d["ts"]), 0, d) for d in dgs]
    events += [(float(e["ts"]), 1, e) for e in icmps]
    order = sorted(range(len(events)), key=lambda k: (events[k][0], events[k][1]))
    dg_index = {id(d): k for k, d in enumerate(dgs)}

    def arrow(pos: int) -> Arrow:
        ts, is_icmp, ev = events[order[pos]]
        if is_icmp:
            from analyzer.flows.udp import icmp_reason

            quoted = ev.get("datagram")
            toward_client = quoted is None or dgs[int(quoted)]["dir"] == C2S
            reason = icmp_reason(int(ev["type"]), int(ev["code"]))
            family = "ICMPv6" if ":" in str(ev.get("from", "")) else "ICMP"
            label = f"{family} {reason} (type {ev['type']} code {ev['code']}) from {ev['from']}"
            return Arrow(
                index=pos,
                frame=int(ev["frame"]) if ev.get("frame") is not None else None,
                t=ts - t0,
                direction=S2C if toward_client else C2S,
                kind="icmp",
                flags="",
                seq=None,
                ack=None,
                length=0,
                preview="",
                label=label,
                rst=True,
            )
        k = dg_index[id(ev)]
        length = int(ev["bytes"])
        text = shorten_preview(str(ev.get("preview") or ""), LABEL_PREVIEW_BYTES) if length else ""
        label = f"UDP len={length}" + (f' "{text}"' if text else "")
        return Arrow(
            index=pos,
            frame=int(frames[prow[k]]) if exact else None,
            t=ts - t0,
            direction=str(ev["dir"]),
            kind="udp",
            flags="",
            seq=None,
            ack=None,
            length=length,
            preview=text,
            label=label,
        )

    n = len(events)
    dirs = [(events[order[p]][2].get("dir") if not events[order[p]][1] else S2C) for p in range(n)]
    landmark = [bool(events[order[p]][1]) for p in range(n)]
    rows = _rows(_keep(n, landmark, max_arrows), n, arrow, [events[order[p]][0] - t0 for p in range(n)], dirs)

    items: list[DataItem] = []
    offsets = packets["payload_offset"].to_numpy() if packets is not None else frames
    caplens = packets["payload_caplen"].to_numpy() if packets is not None else frames
    for k, d in enumerate(dgs[:DATAGRAM_ITEMS]):
        full: str | None = None
        truncated = False
        if payloads is not None and exact:
            r = prow[k]
            off = int(offsets[r])
            cap = int(caplens[r])
            if off >= 0:
                full = printable_text(payloads.get(off, min(cap, FULL_TEXT_BYTES)))
                truncated = cap > FULL_TEXT_BYTES or cap < int(d["bytes"])
        arrow_text = "client → server" if d["dir"] == C2S else "server → client"
        items.append(
            DataItem(
                title=f"#{k} {arrow_text}",
                direction=str(d["dir"]),
                bytes=int(d["bytes"]),
                preview=str(d.get("preview") or ""),
                full_text=full,
                truncated=truncated,
                t=float(d["ts"]) - t0,
            )
        )
    notes = []
    if len(dgs) > DATAGRAM_ITEMS:
        notes.append(f"data: the first {DATAGRAM_ITEMS} of {len(dgs):,} datagrams are listed")
    return Ladder(
        kind="udp",
        id=int(rec["id"]),
        client=client,
        server=server,
        t0=t0,
        packets=n,
        rows=tuple(rows),
        data=tuple(items),
        notes=tuple(notes),
    )
