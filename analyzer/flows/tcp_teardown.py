"""How each connection ended, and who is left in TIME_WAIT for how long.

Teardown kinds (``TEARDOWN_KINDS``), from the first FIN of each side and the first RST:

* ``fin-4way`` - the second FIN was sent after a separate segment had ACKed the first FIN.
* ``fin-3way`` - the second FIN itself carries the first ACK of the first FIN.
* ``simultaneous`` - each FIN was sent before its sender had seen the peer's FIN: neither FIN's
  ACK field covers the other FIN (RFC 9293 figure 13). Wireshark calls one of them "initiates"
  and the other "undergoes" the close; here both sides are closers.
* ``rst`` - a RST came before the close completed (both FINs ACKed); ``rst_by`` says who sent
  it and ``fin_before_rst`` whether a FIN came first.
* ``half-closed`` - exactly one side sent a FIN by the end of the capture.
* ``open`` - no FIN and no RST.

The *active closer* is the sender of the first FIN (``first_fin``). A FIN counts as ACKed when a
later segment from the peer has an ACK field covering FIN + 1. ``bytes_after_first_fin`` are the
new payload bytes the other side sent after the first FIN (the half-close of the textbook).

TIME_WAIT is never on the wire; this is the expectation the wire evidence supports:

* holder: the active closer for ``fin-3way``/``fin-4way``, ``both`` for ``simultaneous``,
  ``none`` for ``rst``, ``half-closed`` and ``open`` (a RST-aborted socket goes straight to
  CLOSED; an unfinished close leaves FIN-WAIT-2/CLOSE-WAIT, not TIME-WAIT).
* start: when the holder has both ACKed the peer's FIN and seen its own FIN ACKed (for the
  usual close that is the holder's final ACK; in a simultaneous close, the peer's ACK that ends
  CLOSING).
* until: start + 2*MSL. ``msl`` defaults to 30 s, so 60 s = Linux's fixed TCP_TIMEWAIT_LEN
  (``include/net/tcp.h``); RFC 9293's nominal MSL is 2 minutes (4 minutes of TIME-WAIT). A
  retransmitted peer FIN that the holder ACKs again restarts the timer (RFC 9293 3.10.7.4;
  Linux ``tcp_timewait_state_process``): ``fin_reacked``.
* ``reused_by``: the next connection on the same 4-tuple if its SYN came before ``until``;
  ``rfc6191_ok`` says whether that SYN could be accepted from TIME-WAIT by RFC 6191: a newer
  timestamp when both incarnations use timestamps, else an ISN above the old sequence space.
* ``rst_in_time_wait``: a RST reached the tuple during TIME-WAIT (RFC 1337 "TIME-WAIT
  assassination": Linux drops the TIME-WAIT socket unless ``net.ipv4.tcp_rfc1337=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.flows.tcp_handshake import HandshakeFacts
from analyzer.flows.tcp_seq import (
    SeqInfo,
    direction_rows,
    first_after,
    first_in_spans,
    first_row_per_group,
    reduce_per_group,
)
from analyzer.flows.tcp_streams import C2S, S2C, TcpPackets
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

TEARDOWN_KINDS = ("open", "half-closed", "fin-4way", "fin-3way", "simultaneous", "rst")
OPEN, HALF_CLOSED, FIN_4WAY, FIN_3WAY, SIMULTANEOUS, RST = range(6)
HOLDERS = ("none", "client", "server", "both")
H_NONE, H_CLIENT, H_SERVER, H_BOTH = range(4)
SIDES = ("client", "server")
RFC9293_MSL_S = 120.0
TIME_WAIT_NOTE = (
    "TIME_WAIT is inferred from the wire: holder = side(s) that closed first, until = start + 2*MSL. "
    "MSL defaults to 30 s (2*MSL = 60 s, Linux's fixed TCP_TIMEWAIT_LEN); RFC 9293's nominal MSL "
    "is 2 minutes (4 minutes of TIME-WAIT)."
)


@dataclass(frozen=True)
class TeardownFacts:
    """Per-block teardown and TIME_WAIT facts (see the module docstring)."""

    kind: I64  # index into TEARDOWN_KINDS
    fins_crossed: BOOL  # both FINs sent and neither ACKs the other (even if a RST came later)
    first_fin: I64  # C2S, S2C or -1
    fin_idx: I64  # shape (2, n_blocks): first FIN packet index per side, -1
    fin_ack_idx: I64  # shape (2, n_blocks): first peer packet ACKing that FIN, -1
    fin_next_raw: I64  # shape (2, n_blocks): raw sequence number FIN + 1 per side
    rst_idx: I64  # first RST, -1
    rst_dir: I64  # C2S, S2C or -1
    fin_before_rst: BOOL
    bytes_after_first_fin: I64
    holder: I64  # index into HOLDERS
    tw_start: F64  # NaN when unknown or no holder
    tw_until: F64
    tw_hold: F64  # until - start in seconds: 2*MSL, or more after a re-ACKed FIN
    tw_start_idx: I64  # packet that started TIME_WAIT (the earliest side), -1
    tw_side_start: F64  # shape (2, n_blocks): per side, NaN if that side holds no TIME_WAIT
    tw_side_until: F64
    fin_reacked: BOOL
    rst_in_time_wait: BOOL
    rst_in_time_wait_idx: I64
    reused_by: I64  # conn_id of the connection that reused the tuple during TIME_WAIT, -1
    reuse_ts: F64
    rfc6191_ok: npt.NDArray[np.object_]  # True/False/None per block
    rfc6191_by: npt.NDArray[np.object_]  # "timestamp", "isn" or None
    msl: float


def _covers(ack: npt.NDArray[np.uint32], target: I64) -> BOOL:
    """Whether 32-bit ACK values are at or beyond ``target`` (sequence arithmetic)."""
    return (ack - (target & 0xFFFFFFFF).astype(np.uint32)).view(np.int32) >= 0


def first_ack_covering(tp: TcpPackets, rows: I64, after: I64, target: I64, exclude: int = 0) -> I64:
    """Per block: the first of ``rows`` (ascending) after packet ``after[b]`` (-1: none) in the
    block, with the ACK flag and none of the ``exclude`` flags, whose ACK covers ``target[b]``."""
    flags = tp.flags
    ack = tp.ack
    target32 = (target & 0xFFFFFFFF).astype(np.uint32)

    def acks(q: I64, r: I64) -> BOOL:
        flag_ok = (flags[r] & (TCP_ACK | exclude)) == TCP_ACK
        ok: BOOL = flag_ok & ((ack[r] - target32[q]).view(np.int32) >= 0)
        return ok

    return first_after(rows, after, np.where(after >= 0, tp.ends, -1), acks)


def _any_row(q: I64, r: I64) -> BOOL:
    return np.ones(len(r), dtype=bool)


def analyze_teardown(
    packets: pd.DataFrame,
    tp: TcpPackets,
    si: SeqInfo,
    hs: HandshakeFacts,
    is_data: BOOL,
    origin: I64,
    msl: float,
) -> TeardownFacts:
    """Teardown kind, FIN/RST evidence and the TIME_WAIT expectation of every block."""
    nb = tp.n_blocks
    n = tp.n_packets
    blk = tp.block
    flags = tp.flags
    ends = tp.ends
    # FINs and RSTs are few: select them once; the searches for ACKs run over one direction's
    # packets (a slice of dorder) from each FIN on.
    fin_rows = np.flatnonzero((flags & TCP_FIN) != 0)
    fin_dir = tp.dir[fin_rows]
    rst_rows = np.flatnonzero((flags & TCP_RST) != 0)
    dir_rows = direction_rows(si)

    fin_idx = np.full((2, nb), -1, dtype=np.int64)
    fin_ack_idx = np.full((2, nb), -1, dtype=np.int64)
    fin_next = np.zeros((2, nb), dtype=np.int64)
    for d in (C2S, S2C):
        fi = first_row_per_group(fin_rows[fin_dir == d], blk, nb)
        fin_idx[d] = fi
        # raw FIN + 1 = base + relative end of the FIN segment
        fin_next[d] = np.where(fi >= 0, (si.base[d::2] + si.end[fi]) & 0xFFFFFFFF, 0)
        fin_ack_idx[d] = first_ack_covering(tp, dir_rows[1 - d], fi, fin_next[d])

    rst_idx = first_row_per_group(rst_rows, blk, nb)
    rst_dir = np.where(rst_idx >= 0, tp.dir[rst_idx].astype(np.int64), -1)
    both_fin = (fin_idx[0] >= 0) & (fin_idx[1] >= 0)
    any_fin = (fin_idx[0] >= 0) | (fin_idx[1] >= 0)
    first_fin = np.where(
        both_fin,
        np.where(fin_idx[0] < fin_idx[1], C2S, S2C),
        np.where(fin_idx[0] >= 0, C2S, np.where(fin_idx[1] >= 0, S2C, -1)),
    ).astype(np.int64)
    both_acked = both_fin & (fin_ack_idx[0] >= 0) & (fin_ack_idx[1] >= 0)
    complete_idx = np.where(both_acked, np.maximum(fin_ack_idx[0], fin_ack_idx[1]), -1)
    rst_ends = (rst_idx >= 0) & ((complete_idx < 0) | (rst_idx < complete_idx))

    a = np.maximum(first_fin, 0)
    b = 1 - a
    cols = np.arange(nb)
    fin_a = fin_idx[a, cols]
    fin_b = fin_idx[b, cols]
    next_a = fin_next[a, cols]
    next_b = fin_next[b, cols]
    ack_of_a = fin_ack_idx[a, cols]
    fa0 = np.maximum(fin_a, 0)
    fb0 = np.maximum(fin_b, 0)
    b_covers_a = ((flags[fb0] & TCP_ACK) != 0) & _covers(tp.ack[fb0], next_a)
    a_covers_b = ((flags[fa0] & TCP_ACK) != 0) & _covers(tp.ack[fa0], next_b)
    simultaneous = both_fin & ~b_covers_a & ~a_covers_b
    three_way = both_fin & ~simultaneous & (ack_of_a == fin_b)

    kind = np.full(nb, OPEN, dtype=np.int64)
    kind[any_fin] = HALF_CLOSED
    kind[both_fin] = FIN_4WAY
    kind[three_way] = FIN_3WAY
    kind[simultaneous] = SIMULTANEOUS
    kind[rst_ends] = RST

    fin_before_rst = (
        (rst_idx >= 0)
        & any_fin
        & (
            np.minimum(np.where(fin_idx[0] >= 0, fin_idx[0], n), np.where(fin_idx[1] >= 0, fin_idx[1], n))
            < rst_idx
        )
    )

    after = _bytes_after(tp, si, is_data, origin, first_fin, fin_idx)

    holder = np.full(nb, H_NONE, dtype=np.int64)
    closes = (kind == FIN_3WAY) | (kind == FIN_4WAY)
    holder[closes & (first_fin == C2S)] = H_CLIENT
    holder[closes & (first_fin == S2C)] = H_SERVER
    holder[kind == SIMULTANEOUS] = H_BOTH

    # Per side: TIME_WAIT starts once its own FIN is ACKed and it has ACKed the peer's FIN.
    # Times are kept in integer ns so that hold_s is exactly 2*MSL unless a re-ACK extended it.
    two_msl_ns = round(2.0 * msl * 1e9)
    side_start_idx = np.full((2, nb), -1, dtype=np.int64)
    side_until_ns = np.full((2, nb), -1, dtype=np.int64)
    for d in (C2S, S2C):
        holds = (holder == H_BOTH) | (holder == (H_CLIENT if d == C2S else H_SERVER))
        own_acked = fin_ack_idx[d]
        acked_peer = fin_ack_idx[1 - d]
        ok = holds & (own_acked >= 0) & (acked_peer >= 0)
        sidx = np.maximum(own_acked, acked_peer)
        side_start_idx[d] = np.where(ok, sidx, -1)
        side_until_ns[d][ok] = tp.ts_ns[sidx[ok]] + two_msl_ns

    fin_reacked = np.zeros(nb, dtype=bool)
    _fin_reacks(tp, fin_rows, holder, fin_next, side_start_idx, side_until_ns, two_msl_ns, fin_reacked)

    has_side = side_start_idx >= 0
    big = np.iinfo(np.int64).max
    first_side = np.where(has_side, side_start_idx, big).min(axis=0) if nb else np.zeros(0, np.int64)
    tw_start_idx = np.where(first_side == big, -1, first_side)
    has_tw = tw_start_idx >= 0
    start_ns = np.where(has_tw, tp.ts_ns[np.maximum(tw_start_idx, 0)], 0) if nb else np.zeros(0, np.int64)
    until_ns = side_until_ns.max(axis=0) if nb else np.zeros(0, np.int64)
    tw_start = np.where(has_tw, tp.ts[np.maximum(tw_start_idx, 0)], np.nan) if nb else np.zeros(0)
    tw_hold = np.where(has_tw, (until_ns - start_ns) / 1e9, np.nan)
    tw_until = tw_start + tw_hold
    side_start = np.where(has_side, tp.ts[np.maximum(side_start_idx, 0)], np.nan) if nb else np.zeros((2, 0))
    side_until = (
        np.where(
            has_side, side_start + (side_until_ns - tp.ts_ns[np.maximum(side_start_idx, 0)]) / 1e9, np.nan
        )
        if nb
        else np.zeros((2, 0))
    )

    # A RST after TIME_WAIT began and before it would expire (RFC 1337).
    rst_tw = first_after(rst_rows, tw_start_idx, np.where(has_tw, ends, -1), _any_row)
    rst_in_tw = (rst_tw >= 0) & (tp.ts_ns[np.maximum(rst_tw, 0)] < until_ns) if nb else np.zeros(0, bool)

    reused_by, reuse_ts, ok6191, by6191 = _reuse(packets, tp, si, hs, np.where(has_tw, until_ns, -1), holder)

    return TeardownFacts(
        kind=kind,
        fins_crossed=simultaneous,
        first_fin=first_fin,
        fin_idx=fin_idx,
        fin_ack_idx=fin_ack_idx,
        fin_next_raw=fin_next,
        rst_idx=rst_idx,
        rst_dir=rst_dir,
        fin_before_rst=fin_before_rst,
        bytes_after_first_fin=after,
        holder=holder,
        tw_start=tw_start,
        tw_until=tw_until,
        tw_hold=tw_hold,
        tw_start_idx=tw_start_idx,
        tw_side_start=side_start,
        tw_side_until=side_until,
        fin_reacked=fin_reacked,
        rst_in_time_wait=rst_in_tw,
        rst_in_time_wait_idx=np.where(rst_in_tw, rst_tw, -1),
        reused_by=reused_by,
        reuse_ts=reuse_ts,
        rfc6191_ok=ok6191,
        rfc6191_by=by6191,
        msl=msl,
    )


def _bytes_after(
    tp: TcpPackets, si: SeqInfo, is_data: BOOL, origin: I64, first_fin: I64, fin_idx: I64
) -> I64:
    """New payload bytes the other side sent after the first FIN."""
    nb = tp.n_blocks
    out = np.zeros(nb, dtype=np.int64)
    if nb == 0:
        return out
    cols = np.arange(nb)
    ff = fin_idx[np.maximum(first_fin, 0), cols]
    # the passive side's data segments (only data rows can count)
    rows = np.flatnonzero(is_data)
    b = tp.block[rows]
    ffb = first_fin[b]
    passive = (ffb >= 0) & (tp.dir[rows] == 1 - ffb)
    rows, b = rows[passive], b[passive]
    ends = si.data_start[rows] + tp.plen[rows]
    low = np.iinfo(np.int64).min
    all_max = reduce_per_group(np.maximum, ends, b, nb, low)
    ends[rows >= ff[b]] = low
    before_max = reduce_per_group(np.maximum, ends, b, nb, low)
    passive_group = 2 * cols + (1 - np.maximum(first_fin, 0))
    floor = np.where(before_max == low, origin[passive_group], before_max)
    has = all_max != low
    out[has] = np.maximum(all_max[has] - floor[has], 0)
    return out


def _fin_reacks(
    tp: TcpPackets,
    fin_rows: I64,
    holder: I64,
    fin_next: I64,
    side_start_idx: I64,
    side_until_ns: I64,
    two_msl_ns: int,
    fin_reacked: BOOL,
) -> None:
    """Find retransmitted peer FINs re-ACKed during TIME_WAIT; extend ``side_until_ns`` in place."""
    fin_count = np.bincount(tp.block[fin_rows] * 2 + tp.dir[fin_rows], minlength=2 * tp.n_blocks)
    multi = (fin_count[0::2] > 1) | (fin_count[1::2] > 1)
    cand = np.flatnonzero(multi & (holder != H_NONE))
    for b in cand.tolist():
        e = int(tp.ends[b])
        for d in (C2S, S2C):
            start_i = int(side_start_idx[d, b])
            if start_i < 0:
                continue
            peer = 1 - d
            target = int(fin_next[peer, b])
            until = int(side_until_ns[d, b])
            k = start_i + 1
            while k < e:
                if tp.dir[k] == peer and tp.flags[k] & TCP_FIN and tp.ts_ns[k] < until:
                    # The holder's next ACK covering the FIN re-acknowledges it and restarts 2*MSL.
                    for j in range(k + 1, e):
                        if (
                            tp.dir[j] == d
                            and tp.flags[j] & TCP_ACK
                            and ((int(tp.ack[j]) - target) & 0xFFFFFFFF) < 0x80000000
                        ):
                            fin_reacked[b] = True
                            until = int(tp.ts_ns[j]) + two_msl_ns
                            k = j
                            break
                k += 1
            side_until_ns[d, b] = until


def _reuse(
    packets: pd.DataFrame,
    tp: TcpPackets,
    si: SeqInfo,
    hs: HandshakeFacts,
    until_ns: I64,
    holder: I64,
) -> tuple[I64, F64, npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """The next connection on the 4-tuple when its SYN came during TIME_WAIT, and RFC 6191."""
    nb = tp.n_blocks
    reused_by = np.full(nb, -1, dtype=np.int64)
    reuse_ts = np.full(nb, np.nan)
    ok = np.full(nb, None, dtype=object)
    by = np.full(nb, None, dtype=object)
    nxt = tp.next_on_tuple
    cand = np.flatnonzero((holder != H_NONE) & (nxt >= 0) & (until_ns >= 0))
    if len(cand) == 0:
        return reused_by, reuse_ts, ok, by
    nb2 = nxt[cand]
    syn = np.where(hs.syn_idx[nb2] >= 0, hs.syn_idx[nb2], tp.starts[nb2])
    t_syn = tp.ts[syn]
    hit = tp.ts_ns[syn] < until_ns[cand]
    cand, nb2, syn, t_syn = cand[hit], nb2[hit], syn[hit], t_syn[hit]
    if len(cand) == 0:
        return reused_by, reuse_ts, ok, by
    reused_by[cand] = tp.conn_id[nb2]
    reuse_ts[cand] = t_syn

    # The old direction whose endpoint sent the new SYN.
    syn_src_is_new_client = tp.dir[syn] == C2S
    same_client = (tp.client_ip[nb2] == tp.client_ip[cand]) & (tp.client_port[nb2] == tp.client_port[cand])
    d_old = np.where(syn_src_is_new_client == same_client, C2S, S2C).astype(np.int64)
    g_old = 2 * cand + d_old

    # Timestamps: the last TSval the endpoint sent in the old connection (looked up only where
    # the new SYN carries timestamps, over the packets of those old directions).
    opt_ts = packets["opt_ts"].to_numpy()
    tsval = packets["opt_tsval"].to_numpy()
    syn_rows = tp.row[syn]
    syn_has_ts = opt_ts[syn_rows].astype(bool)
    need = np.flatnonzero(syn_has_ts)
    # the last packet of the old direction that carried timestamps: the first one walking back
    # from the direction's end (the direction's last packet, when the connection used them)
    back = si.dorder[::-1]
    m = len(back)

    def has_ts(q: I64, r: I64) -> BOOL:
        ok: BOOL = opt_ts[tp.row[r]].astype(bool)
        return ok

    pos = first_in_spans(back, m - si.gend[g_old[need]], m - si.gstart[g_old[need]], has_ts)
    old_ts_row = np.full(len(cand), -1, dtype=np.int64)
    old_ts_row[need] = np.where(pos >= 0, tp.row[back[pos]], -1)
    use_ts = old_ts_row >= 0
    old_ts = np.where(use_ts, tsval[old_ts_row].astype(np.int64), 0)
    ts_step = (tsval[syn_rows].astype(np.int64) - old_ts) & 0xFFFFFFFF
    ts_ok = (ts_step > 0) & (ts_step < 0x80000000)

    # ISN: above the old sequence space (RCV.NXT), RFC 6191 / RFC 1122 4.2.2.13.
    top = (si.base[g_old] + si.top[g_old]) & 0xFFFFFFFF
    isn_step = (tp.seq[syn].astype(np.int64) - top) & 0xFFFFFFFF
    isn_ok = isn_step < 0x80000000

    ok[cand] = np.array([False, True], dtype=object)[np.where(use_ts, ts_ok, isn_ok).astype(np.int64)]
    by[cand] = np.array(["isn", "timestamp"], dtype=object)[use_ts.astype(np.int64)]
    return reused_by, reuse_ts, ok, by
