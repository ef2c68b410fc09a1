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

from analyzer.flows.tcp_seq import SeqInfo, first_after, first_row_per_group
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
    blk = tp.block
    seq = tp.seq
    ack = tp.ack

    # Everything but the final ACK is decided by the SYN rows, which are few.
    syn_rows = np.flatnonzero((flags & TCP_SYN) != 0)
    synack_bit = (flags[syn_rows] & TCP_ACK) != 0
    c2s_bit = tp.dir[syn_rows] == C2S
    client_syns = syn_rows[~synack_bit & c2s_bit]
    syn_idx = first_row_per_group(client_syns, blk, nb)
    server_syn_idx = first_row_per_group(syn_rows[~synack_bit & ~c2s_bit], blk, nb)
    synack_idx = first_row_per_group(syn_rows[synack_bit & ~c2s_bit], blk, nb)
    client_synack_idx = first_row_per_group(syn_rows[synack_bit & c2s_bit], blk, nb)
    n_client_syn = np.bincount(blk[client_syns], minlength=nb)
    n_server_pkts = si.gend[1::2] - si.gstart[1::2]

    has_csyn = syn_idx >= 0
    has_synack = synack_idx >= 0
    client_isn = np.where(has_csyn, seq[syn_idx].astype(np.int64), -1)
    srv_syn_src = np.where(has_synack, synack_idx, server_syn_idx)
    server_isn = np.where(srv_syn_src >= 0, seq[srv_syn_src].astype(np.int64), -1)
    synack_ok = has_synack & has_csyn & (ack[synack_idx] == ((client_isn + 1) & 0xFFFFFFFF))

    # The final ACK: a client segment after the SYN-ACK, not a SYN, whose ACK covers server ISN+1
    # and does not ACK beyond what the server ever sent (that would be a broken ACK).
    want = ((server_isn + 1) & 0xFFFFFFFF).astype(np.uint32)
    server_top = ((si.base[1::2] + si.top[1::2]) & 0xFFFFFFFF).astype(np.uint32)
    c2s_rows = si.dorder[: si.gend[-2]] if nb else si.dorder

    def final_ack(q: I64, r: I64) -> BOOL:
        a = ack[r]
        ok: BOOL = (
            ((flags[r] & (TCP_ACK | TCP_SYN)) == TCP_ACK)
            & ((a - want[q]).view(np.int32) >= 0)
            & ((a - server_top[q]).view(np.int32) <= 0)
        )
        return ok

    ack_idx = first_after(c2s_rows, synack_idx, np.where(has_synack, tp.ends, -1), final_ack)

    rst_rows = np.flatnonzero((flags & TCP_RST) != 0)
    first_srv_rst = first_row_per_group(rst_rows[tp.dir[rst_rows] == S2C], blk, nb)
    has_ssyn = server_syn_idx >= 0
    has_any_synack = has_synack | (client_synack_idx >= 0)
    refused = has_csyn & (first_srv_rst >= 0) & (~has_synack | (first_srv_rst < synack_idx))
    complete = has_csyn & synack_ok & (ack_idx >= 0)

    state = np.full(nb, PARTIAL, dtype=np.int64)
    state[complete] = COMPLETE
    state[refused] = REFUSED
    state[has_csyn & (n_server_pkts == 0)] = NO_REPLY
    state[~has_csyn & ~has_any_synack & ~has_ssyn] = NOT_SEEN
    state[has_csyn & has_ssyn] = SIMULTANEOUS_OPEN

    # RTT: from the last client SYN before the SYN-ACK to the final ACK (Wireshark's iRTT).
    last = np.searchsorted(client_syns, synack_idx) - 1
    last_syn = client_syns[np.maximum(last, 0)] if len(client_syns) else np.zeros(nb, np.int64)
    ok = complete & (last >= 0) & (last_syn >= tp.starts)
    rtt = np.full(nb, np.nan)
    rtt[ok] = (tp.ts_ns[ack_idx[ok]] - tp.ts_ns[last_syn[ok]]) / 1e6

    return HandshakeFacts(
        state=state,
        client_isn=client_isn,
        server_isn=server_isn,
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
