"""The three-way handshake of each connection: its state, ISNs, RTT, SYN retransmissions, options.

States (``HANDSHAKE_STATES``):

* ``complete`` - client SYN (ISN c), server SYN-ACK acking c+1, then a client segment (not a
  SYN) whose ACK covers the server's ISN+1, in that order.
* ``simultaneous-open`` - both sides sent a pure SYN (RFC 9293 section 3.5, figure 8).
* ``refused`` - the client's SYN was answered by a RST from the server before any SYN-ACK.
* ``no-reply`` - SYN(s) from the client and nothing at all from the server.
* ``partial`` - some of the handshake was seen but not all of it (a SYN-ACK acking the wrong
  number, no final ACK, a SYN-ACK without the SYN, ...).
* ``not-seen`` - no SYN and no SYN-ACK: the capture started mid-connection.

``rtt_ms`` (complete handshakes only) runs from the last client SYN sent before the SYN-ACK to
the final ACK: Wireshark's ``tcp.analysis.initial_rtt`` (it restarts the clock on every SYN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.flows.tcp_seq import SeqInfo, first_index_per_group, last_index_per_group
from analyzer.flows.tcp_streams import C2S, S2C, TcpPackets
from analyzer.schema import TCP_ACK, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

HANDSHAKE_STATES = ("not-seen", "partial", "complete", "refused", "no-reply", "simultaneous-open")
NOT_SEEN, PARTIAL, COMPLETE, REFUSED, NO_REPLY, SIMULTANEOUS_OPEN = range(6)


@dataclass(frozen=True)
class SideOptions:
    """TCP options one side offered in its SYN or SYN-ACK (per block; ``seen`` false if none)."""

    seen: BOOL
    mss: I64  # 0 when absent
    wscale: I64  # -1 when absent
    sack_perm: BOOL
    timestamps: BOOL


@dataclass(frozen=True)
class HandshakeFacts:
    """Per-block handshake facts (see the module docstring)."""

    state: I64  # index into HANDSHAKE_STATES
    client_isn: I64  # -1 when no client SYN was seen
    server_isn: I64  # -1 when no server SYN/SYN-ACK was seen
    syn_retransmits: I64
    rtt_ms: F64  # NaN unless complete
    syn_idx: I64  # packet index of the client's first SYN, -1
    server_syn_idx: I64  # server's first pure SYN (simultaneous open), -1
    synack_idx: I64  # server's first SYN-ACK, -1
    client_synack_idx: I64  # client's first SYN-ACK (simultaneous open), -1
    synack_ok: BOOL  # the server's first SYN-ACK acks client ISN + 1
    ack_idx: I64  # the client segment that completed the handshake, -1
    client_opts: SideOptions
    server_opts: SideOptions


def _options(packets: pd.DataFrame, tp: TcpPackets, idx: I64) -> SideOptions:
    seen = idx >= 0
    rows = tp.row[np.maximum(idx, 0)] if len(idx) else np.zeros(0, np.int64)

    def col(name: str) -> npt.NDArray[np.generic]:
        return packets[name].to_numpy()[rows] if len(rows) else np.zeros(0)

    mss = np.where(seen, col("opt_mss").astype(np.int64), 0)
    wscale = np.where(seen, col("opt_wscale").astype(np.int64), -1)
    sack = seen & col("opt_sack_perm").astype(bool)
    tsopt = seen & col("opt_ts").astype(bool)
    return SideOptions(seen=seen, mss=mss, wscale=wscale, sack_perm=sack, timestamps=tsopt)


def analyze_handshake(packets: pd.DataFrame, tp: TcpPackets, si: SeqInfo) -> HandshakeFacts:
    """Handshake facts of every connection block of ``tp``."""
    nb = tp.n_blocks
    flags = tp.flags
    syn_bits = flags & (TCP_SYN | TCP_ACK)
    pure_syn = syn_bits == TCP_SYN
    syn_ack = syn_bits == (TCP_SYN | TCP_ACK)
    c2s = tp.dir == C2S
    s2c = tp.dir == S2C
    blk = tp.block
    idx_all = np.arange(tp.n_packets, dtype=np.int64)

    syn_idx = first_index_per_group(pure_syn & c2s, blk, nb)
    server_syn_idx = first_index_per_group(pure_syn & s2c, blk, nb)
    synack_idx = first_index_per_group(syn_ack & s2c, blk, nb)
    client_synack_idx = first_index_per_group(syn_ack & c2s, blk, nb)
    n_client_syn = np.bincount(blk[pure_syn & c2s], minlength=nb).astype(np.int64)
    n_server_pkts = np.bincount(blk[s2c], minlength=nb).astype(np.int64)

    seq64 = tp.seq.astype(np.int64)
    ack64 = tp.ack.astype(np.int64)
    client_isn = np.where(syn_idx >= 0, seq64[np.maximum(syn_idx, 0)], -1) if nb else np.zeros(0, np.int64)
    srv_syn_src = np.where(synack_idx >= 0, synack_idx, server_syn_idx)
    server_isn = np.where(srv_syn_src >= 0, seq64[np.maximum(srv_syn_src, 0)], -1) if nb else client_isn
    synack_ok = (
        (synack_idx >= 0)
        & (client_isn >= 0)
        & (ack64[np.maximum(synack_idx, 0)] == ((client_isn + 1) & 0xFFFFFFFF))
        if nb
        else np.zeros(0, bool)
    )

    # The final ACK: a client segment after the SYN-ACK, not a SYN, whose ACK covers server ISN+1
    # and does not ACK beyond what the server ever sent (that would be a broken ACK).
    want = (server_isn[blk] + 1) & 0xFFFFFFFF
    server_top = (si.base[2 * blk + S2C] + si.top[2 * blk + S2C]) & 0xFFFFFFFF
    if tp.n_packets:
        covers = ((tp.ack - want.astype(np.uint32)).view(np.int32) >= 0) & (
            (tp.ack - server_top.astype(np.uint32)).view(np.int32) <= 0
        )
    else:
        covers = np.zeros(0, bool)
    after_synack = (synack_idx[blk] >= 0) & (idx_all > synack_idx[blk])
    final_ack = c2s & ((flags & TCP_ACK) != 0) & ((flags & TCP_SYN) == 0) & after_synack & covers
    ack_idx = first_index_per_group(final_ack, blk, nb)

    first_srv_rst = first_index_per_group(s2c & ((flags & TCP_RST) != 0), blk, nb)
    has_csyn = syn_idx >= 0
    has_ssyn = server_syn_idx >= 0
    has_any_synack = (synack_idx >= 0) | (client_synack_idx >= 0)
    refused = has_csyn & (first_srv_rst >= 0) & ((synack_idx < 0) | (first_srv_rst < synack_idx))
    complete = has_csyn & synack_ok & (ack_idx >= 0)

    state = np.full(nb, PARTIAL, dtype=np.int64)
    state[complete] = COMPLETE
    state[refused] = REFUSED
    state[has_csyn & (n_server_pkts == 0)] = NO_REPLY
    state[~has_csyn & ~has_any_synack & ~has_ssyn] = NOT_SEEN
    state[has_csyn & has_ssyn] = SIMULTANEOUS_OPEN

    # RTT: from the last client SYN before the SYN-ACK to the final ACK (Wireshark's iRTT).
    before_synack = pure_syn & c2s & (idx_all < np.where(synack_idx[blk] >= 0, synack_idx[blk], 0))
    last_syn = last_index_per_group(before_synack, blk, nb)
    ok = complete & (last_syn >= 0)
    rtt = np.full(nb, np.nan)
    rtt[ok] = (tp.ts_ns[ack_idx[ok]] - tp.ts_ns[last_syn[ok]]) / 1e6

    return HandshakeFacts(
        state=state,
        client_isn=client_isn.astype(np.int64),
        server_isn=server_isn.astype(np.int64),
        syn_retransmits=np.maximum(n_client_syn - 1, 0),
        rtt_ms=rtt,
        syn_idx=syn_idx,
        server_syn_idx=server_syn_idx,
        synack_idx=synack_idx,
        client_synack_idx=client_synack_idx,
        synack_ok=synack_ok,
        ack_idx=ack_idx,
        client_opts=_options(packets, tp, syn_idx),
        server_opts=_options(packets, tp, srv_syn_src),
    )
