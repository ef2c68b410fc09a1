"""Row-at-a-time construction of the PACKETS frame, shared by the reference engines (scapy, tshark).

The native engine builds its columns with numpy; the scapy and tshark engines fill one ``Row`` per
record with the values their dissectors found, and apply the few length rules of docs/PACKETS.md
(when a datagram counts as truncated or malformed, how the payload is located) through the helpers
here, so both reference engines apply them identically.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.decode.records import Record
from analyzer.schema import PACKETS, PROTO_DTYPE, empty_packets

SUPPORTED_LINK_TYPES = frozenset((0, 1, 101, 108, 113, 228, 229, 276))
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, old QinQ
MAX_VLAN_TAGS = 4
AF_INET6_VALUES = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
IPV6_EXT_HEADERS = frozenset((0, 43, 44, 60, 51, 135))
MAX_IPV6_EXT = 8
ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
ICMP6_ERRORS = frozenset((1, 2, 3, 4))
# note tokens, rendered in this order (docs/PACKETS.md: engines agree on the first token)
NOTE_ORDER = ("truncated", "malformed", "fragment", "unsupported-link")


@dataclass
class Row:
    rec: Record
    ip_version: int = 0
    src: str | None = None
    dst: str | None = None
    ip_proto: int = 0
    ip_frag: bool = False
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    win: int = 0
    payload_len: int = 0
    payload_offset: int = -1
    payload_caplen: int = 0
    opt_mss: int = 0
    opt_wscale: int = -1
    opt_sack_perm: bool = False
    opt_ts: bool = False
    opt_tsval: int = 0
    opt_tsecr: int = 0
    opt_sack_blocks: int = 0
    icmp_type: int = -1
    icmp_code: int = -1
    inner_src: str | None = None
    inner_dst: str | None = None
    inner_proto: int = 0
    inner_sport: int = 0
    inner_dport: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # token -> detail

    @property
    def caplen(self) -> int:
        return self.rec.caplen

    def note(self, token: str, detail: str = "") -> None:
        self.notes.setdefault(token, detail)

    def note_text(self) -> str:
        parts = []
        for token in NOTE_ORDER:
            if token in self.notes:
                detail = self.notes[token]
                parts.append(f"{token}: {detail}" if detail else token)
        return ";".join(parts)


def datagram_end(row: Row, end: int) -> None:
    """A datagram longer than the captured frame: snaplen cut it, or its length field lies."""
    if end > row.caplen:
        if row.rec.caplen < row.rec.wirelen:
            row.note("truncated", "IP datagram")
        else:
            row.note("malformed", "IP length beyond the frame")


# -- transport --------------------------------------------------------------------------------


def payload(row: Row, at: int, length: int) -> None:
    if length < 0:
        row.note("malformed", f"negative payload length {length}")
        length = 0
    row.payload_len = length
    row.payload_offset = row.rec.data_offset + at
    row.payload_caplen = min(max(row.caplen - at, 0), length)


def _text(addr: str | None) -> str | None:
    """scapy prints addresses with inet_ntop already; re-render so every engine uses one form."""
    if addr is None:
        return None
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, addr))


def to_frame(rows: list[Row]) -> pd.DataFrame:
    """The PACKETS frame of ``rows`` (frame numbers are their positions, from 1)."""
    if not rows:
        return empty_packets()
    recs = [r.rec for r in rows]
    ts_ns = np.fromiter((r.ts_ns for r in recs), dtype=np.int64, count=len(recs))
    data: dict[str, Any] = {
        "frame": np.arange(1, len(rows) + 1, dtype=np.int64),
        "ts": ts_ns / 1e9,
        "ts_ns": ts_ns,
        "caplen": [r.caplen for r in recs],
        "wirelen": [r.wirelen for r in recs],
        "link_type": [r.link_type for r in recs],
        "src": pd.Categorical([_text(r.src) for r in rows]),
        "dst": pd.Categorical([_text(r.dst) for r in rows]),
        "proto": pd.Categorical([_proto(r) for r in rows], dtype=PROTO_DTYPE),
        "inner_src": pd.Categorical([_text(r.inner_src) for r in rows]),
        "inner_dst": pd.Categorical([_text(r.inner_dst) for r in rows]),
        "note": pd.Categorical([r.note_text() for r in rows]),
    }
    out: dict[str, Any] = {}
    for col in PACKETS:
        values = data[col.name] if col.name in data else [getattr(r, col.name) for r in rows]
        out[col.name] = values if col.dtype == "category" else np.asarray(values, dtype=col.dtype)
    return pd.DataFrame(out)


def _proto(row: Row) -> str:
    if row.ip_version == 0:
        return "other"
    if row.ip_proto == 6:
        return "tcp"
    if row.ip_proto == 17:
        return "udp"
    if row.ip_proto == 1 and row.ip_version == 4:
        return "icmp"
    if row.ip_proto == 58 and row.ip_version == 6:
        return "icmpv6"
    return "other"
