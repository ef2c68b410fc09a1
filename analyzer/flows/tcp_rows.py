"""Per-packet view of the TCP connections: which connection (``tcp.stream``) each packet belongs
to, its direction, and its relative sequence and acknowledgement numbers.

The flow analysis (``analyzer.flows.tcp``) works on connection blocks internally and reports one
record per connection; the reports that draw every packet (ladder diagrams, time-sequence plots)
need the per-packet facts. ``tcp_packet_rows`` derives them with the same stages
(``tcp_streams``, ``tcp_seq``, ``tcp_data.classify_packets``), so stream ids and relative
numbers are exactly those of the flow records.

Relative numbers follow Wireshark: a side's base is its ISN (first payload byte at 1) or, without
a SYN, the first packet's ``seq - 1``. ``rel_ack`` is the ACK field relative to the *peer's*
base, ``-1`` when the ACK flag is clear.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.flows.tcp_data import classify_packets
from analyzer.flows.tcp_seq import NONE, compute_seq
from analyzer.flows.tcp_streams import build_tcp_packets
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

__all__ = ["TCP_PACKET_ROW_COLUMNS", "tcp_packet_rows"]

TCP_PACKET_ROW_COLUMNS: tuple[str, ...] = (
    "row",  # position in the PACKETS frame
    "frame",
    "ts",
    "stream",  # connection id (the ``id`` of the tcp records, like tcp.stream)
    "dir",  # 0 client -> server, 1 server -> client
    "flags",
    "rel_seq",  # seq relative to the sender's base (unwrapped)
    "rel_ack",  # ack relative to the peer's base, -1 without the ACK flag
    "len",  # tcp.len
    "win",
    "retransmission",  # carries sequence space the sender had already sent (payload, SYN or FIN)
    "keepalive",
    "dup_ack",
    "zero_window",
)


def tcp_packet_rows(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per TCP packet of a PACKETS frame, sorted by (stream, frame).

    ``retransmission`` marks a segment whose payload, SYN or FIN starts below the highest
    sequence number the sender had already used: retransmissions and out-of-order arrivals
    alike (the flow records separate the two by timing; a drawing only needs to show that the
    segment went back in the sequence space).
    """
    tp = build_tcp_packets(packets)
    si = compute_seq(tp)
    _, keepalive, dup, zero_win = classify_packets(tp, si)
    n = tp.n_packets
    stream = tp.conn_id[tp.block] if n else np.zeros(0, dtype=np.int64)

    has_ack = (tp.flags & TCP_ACK) != 0
    peer_base = si.base[si.group ^ 1] if n else np.zeros(0, dtype=np.int64)
    rel_ack = np.where(has_ack, (tp.ack.astype(np.int64) - peer_base) & 0xFFFFFFFF, -1)

    uses_seq = (tp.flags & (TCP_SYN | TCP_FIN)) != 0
    occupies = ((tp.plen > 0) | uses_seq) & ((tp.flags & TCP_RST) == 0) & ~keepalive
    known = si.next_expected != NONE
    retrans = occupies & known & (si.rel < si.next_expected)

    order = np.lexsort((tp.frame, stream)) if n else np.zeros(0, dtype=np.int64)
    cols = {
        "row": tp.row,
        "frame": tp.frame,
        "ts": tp.ts,
        "stream": stream.astype(np.int64),
        "dir": tp.dir.astype(np.int8),
        "flags": tp.flags,
        "rel_seq": si.rel,
        "rel_ack": rel_ack.astype(np.int64),
        "len": tp.plen,
        "win": tp.win,
        "retransmission": retrans,
        "keepalive": keepalive,
        "dup_ack": dup,
        "zero_window": zero_win,
    }
    return pd.DataFrame(
        {k: np.asarray(v)[order] for k, v in cols.items()}, columns=list(TCP_PACKET_ROW_COLUMNS)
    )
