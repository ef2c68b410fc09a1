"""Per-endpoint RFC 9293 state timelines, as a table-driven state machine (h11 style).

Rules
-----
* Each endpoint (client, server) has one state from RFC 9293 section 3.3.2: LISTEN, SYN-SENT,
  SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSING, TIME-WAIT, CLOSE-WAIT, LAST-ACK,
  CLOSED.
* Only the segments that can move a state are events: SYNs, SYN-ACKs, the ACK of a SYN, FINs,
  the ACK of a FIN, RSTs, the first payload of each side and the first new payload a side sends
  after its own FIN. A segment is an ``SND_*`` event for its sender and an ``RCV_*`` event for
  its receiver, both at the capture time.
* The capture point sees a segment before the receiver processes it. When a side's own SYN (or
  FIN) shows it had not yet seen the peer's SYN (FIN) - a simultaneous open (close) - the
  receipt of the peer's segment is moved to just after that side's own segment.
* ``TRANSITIONS[(state, event)] = (next_state, anomaly)``. An anomaly names a transition that
  RFC 9293 allows but that is worth a look (a RST killing TIME-WAIT). A (state, event) pair
  missing from the table is an anomaly too; the state stays as it was. Anomalies are data in
  the report, never exceptions.
* A connection's events form a short code string; connections with the same string share one
  run of the machine, so the cost is per distinct pattern, not per connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.flows.tcp_handshake import SIMULTANEOUS_OPEN, HandshakeFacts
from analyzer.flows.tcp_seq import SeqInfo, first_index_per_group
from analyzer.flows.tcp_streams import C2S, S2C, TcpPackets
from analyzer.flows.tcp_teardown import TeardownFacts, _covers
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

LISTEN = "LISTEN"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSING = "CLOSING"
TIME_WAIT = "TIME-WAIT"
CLOSE_WAIT = "CLOSE-WAIT"
LAST_ACK = "LAST-ACK"
CLOSED = "CLOSED"
STATES = (
    LISTEN,
    SYN_SENT,
    SYN_RECEIVED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    CLOSING,
    TIME_WAIT,
    CLOSE_WAIT,
    LAST_ACK,
    CLOSED,
)


class Ev(IntEnum):
    """What one endpoint does or sees."""

    SND_SYN = 0
    RCV_SYN = 1
    SND_SYNACK = 2
    RCV_SYNACK = 3  # acks our SYN
    RCV_BAD_SYNACK = 4  # a SYN-ACK that does not ack our SYN
    RCV_ACK_OF_SYN = 5
    SND_DATA = 6
    RCV_DATA = 7
    SND_FIN = 8
    RCV_FIN = 9
    RCV_FIN_ACKING = 10  # a FIN whose ACK also covers our FIN
    RCV_ACK_OF_FIN = 11
    SND_RST = 12
    RCV_RST = 13


_ANY_OPEN = (SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSING, CLOSE_WAIT, LAST_ACK)

TRANSITIONS: dict[tuple[str, Ev], tuple[str, str | None]] = {
    (CLOSED, Ev.SND_SYN): (SYN_SENT, None),
    (CLOSED, Ev.RCV_SYN): (CLOSED, None),  # no listener: the answer is a RST (a refused connect)
    (CLOSED, Ev.SND_RST): (CLOSED, None),
    (CLOSED, Ev.RCV_RST): (CLOSED, None),
    (LISTEN, Ev.RCV_SYN): (SYN_RECEIVED, None),
    (LISTEN, Ev.RCV_RST): (LISTEN, None),
    (SYN_SENT, Ev.SND_SYN): (SYN_SENT, None),  # SYN retransmission
    (SYN_SENT, Ev.RCV_SYNACK): (ESTABLISHED, None),
    (SYN_SENT, Ev.RCV_BAD_SYNACK): (SYN_SENT, "bad_SYN_ack"),
    (SYN_SENT, Ev.RCV_SYN): (SYN_RECEIVED, None),  # simultaneous open
    (SYN_SENT, Ev.RCV_RST): (CLOSED, None),
    (SYN_RECEIVED, Ev.SND_SYNACK): (SYN_RECEIVED, None),
    (SYN_RECEIVED, Ev.SND_SYN): (SYN_RECEIVED, None),
    (SYN_RECEIVED, Ev.RCV_SYN): (SYN_RECEIVED, None),  # retransmitted SYN
    (SYN_RECEIVED, Ev.RCV_ACK_OF_SYN): (ESTABLISHED, None),
    (SYN_RECEIVED, Ev.RCV_SYNACK): (ESTABLISHED, None),  # simultaneous open
    (SYN_RECEIVED, Ev.RCV_RST): (LISTEN, None),  # passive open; an active one goes to CLOSED
    (ESTABLISHED, Ev.SND_DATA): (ESTABLISHED, None),
    (ESTABLISHED, Ev.RCV_DATA): (ESTABLISHED, None),
    (ESTABLISHED, Ev.SND_FIN): (FIN_WAIT_1, None),
    (ESTABLISHED, Ev.RCV_FIN): (CLOSE_WAIT, None),
    (ESTABLISHED, Ev.RCV_SYNACK): (ESTABLISHED, None),  # duplicate SYN-ACK: ACK it again
    (ESTABLISHED, Ev.SND_SYNACK): (ESTABLISHED, None),
    (ESTABLISHED, Ev.RCV_ACK_OF_SYN): (ESTABLISHED, None),
    (ESTABLISHED, Ev.RCV_SYN): (ESTABLISHED, "SYN_inside_connection"),
    (FIN_WAIT_1, Ev.SND_FIN): (FIN_WAIT_1, None),
    (FIN_WAIT_1, Ev.RCV_ACK_OF_FIN): (FIN_WAIT_2, None),
    (FIN_WAIT_1, Ev.RCV_FIN): (CLOSING, None),
    (FIN_WAIT_1, Ev.RCV_FIN_ACKING): (TIME_WAIT, None),
    (FIN_WAIT_1, Ev.RCV_DATA): (FIN_WAIT_1, None),  # half-close: the peer may still send
    (FIN_WAIT_1, Ev.SND_DATA): (FIN_WAIT_1, "data_after_fin"),
    (FIN_WAIT_1, Ev.RCV_SYNACK): (FIN_WAIT_1, None),
    (FIN_WAIT_2, Ev.RCV_FIN): (TIME_WAIT, None),
    (FIN_WAIT_2, Ev.RCV_FIN_ACKING): (TIME_WAIT, None),
    (FIN_WAIT_2, Ev.RCV_DATA): (FIN_WAIT_2, None),
    (FIN_WAIT_2, Ev.RCV_ACK_OF_FIN): (FIN_WAIT_2, None),
    (FIN_WAIT_2, Ev.SND_FIN): (FIN_WAIT_2, None),  # retransmitted; the capture saw the ACK first
    (FIN_WAIT_2, Ev.SND_DATA): (FIN_WAIT_2, "data_after_fin"),
    (CLOSING, Ev.RCV_ACK_OF_FIN): (TIME_WAIT, None),
    (CLOSING, Ev.RCV_FIN_ACKING): (TIME_WAIT, None),
    (CLOSING, Ev.RCV_FIN): (CLOSING, None),
    (CLOSING, Ev.SND_FIN): (CLOSING, None),
    (TIME_WAIT, Ev.RCV_FIN): (TIME_WAIT, None),  # retransmitted FIN: re-ACK, restart 2*MSL
    (TIME_WAIT, Ev.RCV_FIN_ACKING): (TIME_WAIT, None),
    (TIME_WAIT, Ev.RCV_ACK_OF_FIN): (TIME_WAIT, None),
    (TIME_WAIT, Ev.SND_FIN): (TIME_WAIT, None),
    (TIME_WAIT, Ev.RCV_RST): (CLOSED, "rst_in_time_wait"),  # RFC 1337 TIME-WAIT assassination
    (CLOSE_WAIT, Ev.SND_DATA): (CLOSE_WAIT, None),
    (CLOSE_WAIT, Ev.SND_FIN): (LAST_ACK, None),
    (CLOSE_WAIT, Ev.RCV_FIN): (CLOSE_WAIT, None),
    (CLOSE_WAIT, Ev.RCV_DATA): (CLOSE_WAIT, None),  # the sender is flagged data_after_fin
    (LAST_ACK, Ev.RCV_ACK_OF_FIN): (CLOSED, None),
    (LAST_ACK, Ev.RCV_FIN_ACKING): (CLOSED, None),
    (LAST_ACK, Ev.RCV_FIN): (LAST_ACK, None),
    (LAST_ACK, Ev.SND_FIN): (LAST_ACK, None),
    (LAST_ACK, Ev.RCV_DATA): (LAST_ACK, None),
}
for _state in _ANY_OPEN:
    TRANSITIONS.setdefault((_state, Ev.SND_RST), (CLOSED, None))
    TRANSITIONS.setdefault((_state, Ev.RCV_RST), (CLOSED, None))
TRANSITIONS[(TIME_WAIT, Ev.SND_RST)] = (CLOSED, None)

# Names for (state, event) pairs missing from TRANSITIONS that have a well-known meaning.
ANOMALY_NAMES: dict[tuple[str, Ev], str] = {
    (SYN_SENT, Ev.SND_DATA): "data_before_established",
    (SYN_RECEIVED, Ev.RCV_DATA): "data_before_established",
    (SYN_SENT, Ev.RCV_DATA): "data_before_established",
    (SYN_RECEIVED, Ev.SND_DATA): "data_before_established",
    (LISTEN, Ev.RCV_DATA): "data_before_established",
    (SYN_SENT, Ev.SND_FIN): "FIN_before_established",
    (SYN_RECEIVED, Ev.RCV_FIN): "FIN_before_established",
    (ESTABLISHED, Ev.SND_SYN): "SYN_inside_connection",
    (CLOSED, Ev.RCV_DATA): "segment_after_close",
    (CLOSED, Ev.RCV_FIN): "segment_after_close",
    (CLOSED, Ev.RCV_FIN_ACKING): "segment_after_close",
    (CLOSED, Ev.RCV_ACK_OF_FIN): "segment_after_close",
    (CLOSED, Ev.SND_DATA): "segment_after_close",
    (CLOSED, Ev.SND_FIN): "FIN_after_close",  # e.g. a FIN retransmitted after its ACK was lost
}


def anomaly_name(state: str, event: Ev) -> str:
    """Name of the anomaly for a (state, event) pair the table does not allow."""
    known = ANOMALY_NAMES.get((state, event))
    if known is not None:
        return known
    return f"{event.name.lower()}_in_{state.lower().replace('-', '_')}"


class Pk(IntEnum):
    """Segment-level codes of the event string; the value order is the order within a packet."""

    SYN = 0
    SYN_SIM_FIRST = 1  # the first SYN of a simultaneous open: its receipt is deferred
    SYN_SIM_SECOND = 2  # the second SYN: also delivers the deferred first SYN to its sender
    SYNACK_OK = 3
    SYNACK_BAD = 4
    ACK_OF_SYN = 5
    ACK_OF_FIN = 6
    DATA = 7
    FIN = 8
    FIN_ACKING = 9
    FIN_SIM_FIRST = 10
    FIN_SIM_SECOND = 11
    RST = 12


# (events for the sender, events for the receiver, events for the sender after the receiver)
_EXPAND: dict[Pk, tuple[tuple[Ev, ...], tuple[Ev, ...], tuple[Ev, ...]]] = {
    Pk.SYN: ((Ev.SND_SYN,), (Ev.RCV_SYN,), ()),
    Pk.SYN_SIM_FIRST: ((Ev.SND_SYN,), (), ()),
    Pk.SYN_SIM_SECOND: ((Ev.SND_SYN,), (Ev.RCV_SYN,), (Ev.RCV_SYN,)),
    Pk.SYNACK_OK: ((Ev.SND_SYNACK,), (Ev.RCV_SYNACK,), ()),
    Pk.SYNACK_BAD: ((Ev.SND_SYNACK,), (Ev.RCV_BAD_SYNACK,), ()),
    Pk.ACK_OF_SYN: ((), (Ev.RCV_ACK_OF_SYN,), ()),
    Pk.ACK_OF_FIN: ((), (Ev.RCV_ACK_OF_FIN,), ()),
    Pk.DATA: ((Ev.SND_DATA,), (Ev.RCV_DATA,), ()),
    Pk.FIN: ((Ev.SND_FIN,), (Ev.RCV_FIN,), ()),
    Pk.FIN_ACKING: ((Ev.SND_FIN,), (Ev.RCV_FIN_ACKING,), ()),
    Pk.FIN_SIM_FIRST: ((Ev.SND_FIN,), (), ()),
    Pk.FIN_SIM_SECOND: ((Ev.SND_FIN,), (Ev.RCV_FIN,), (Ev.RCV_FIN,)),
    Pk.RST: ((Ev.SND_RST,), (Ev.RCV_RST,), ()),
}

SIDES = ("client", "server")


@dataclass(frozen=True)
class PatternResult:
    """One run of the machine over an event string.

    Timeline entries are (state, event position); position -1 means "at the first packet".
    """

    timelines: tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]
    anomalies: tuple[tuple[str, int, int], ...]  # (name, side, event position)
    final: tuple[str, str]


def _initial_states(codes: list[tuple[int, int]]) -> tuple[str, str]:
    """Inferred states before the first event, from what each side is seen to do first."""
    client_syn = any(d == C2S and c in (Pk.SYN, Pk.SYN_SIM_FIRST, Pk.SYN_SIM_SECOND) for c, d in codes)
    server_syn = any(d == S2C and c in (Pk.SYN, Pk.SYN_SIM_FIRST, Pk.SYN_SIM_SECOND) for c, d in codes)
    synack = [d for c, d in codes if c in (Pk.SYNACK_OK, Pk.SYNACK_BAD)]
    if client_syn:
        client = CLOSED
        if server_syn:
            server = CLOSED
        else:
            server_first = next((c for c, d in codes if d == S2C), None)
            server = CLOSED if server_first == Pk.RST else LISTEN
        return client, server
    if synack:
        # The SYN was not captured: the SYN-ACK's sender is past LISTEN already.
        return SYN_SENT, SYN_RECEIVED
    return ESTABLISHED, ESTABLISHED


def run_pattern(codes: list[tuple[int, int]]) -> PatternResult:
    """Run the machine over (Pk code, sender dir) pairs of one connection."""
    init = _initial_states(codes)
    state = [init[0], init[1]]
    timelines: list[list[tuple[str, int]]] = [[(init[0], -1)], [(init[1], -1)]]
    anomalies: list[tuple[str, int, int]] = []
    passive = [False, init[1] in (LISTEN, SYN_RECEIVED)]

    def step(side: int, ev: Ev, pos: int) -> None:
        cur = state[side]
        hit = TRANSITIONS.get((cur, ev))
        if hit is None:
            anomalies.append((anomaly_name(cur, ev), side, pos))
            return
        nxt, note = hit
        if cur == SYN_RECEIVED and ev == Ev.RCV_RST and not passive[side]:
            nxt = CLOSED
        if note is not None:
            anomalies.append((note, side, pos))
        if nxt != cur:
            state[side] = nxt
            timelines[side].append((nxt, pos))

    for pos, (code, sender) in enumerate(codes):
        receiver = 1 - sender
        snd, rcv, late = _EXPAND[Pk(code)]
        for ev in snd:
            step(sender, ev, pos)
        for ev in rcv:
            step(receiver, ev, pos)
        for ev in late:
            step(sender, ev, pos)
    return PatternResult(
        timelines=(tuple(timelines[0]), tuple(timelines[1])),
        anomalies=tuple(anomalies),
        final=(state[0], state[1]),
    )


@dataclass(frozen=True)
class StateEvents:
    """Per-block event strings and the machine's results, shared between blocks."""

    ev_pkt: I64  # packet index of every event, grouped by block
    ev_start: I64  # per block: first event position in ev_pkt
    pattern_of_block: I64  # index into results
    results: list[PatternResult]


def select_events(
    tp: TcpPackets, si: SeqInfo, hs: HandshakeFacts, td: TeardownFacts, is_data: BOOL
) -> tuple[I64, I64]:
    """(packet index, Pk code) of every event, sorted by packet then code."""
    nb = tp.n_blocks
    n = tp.n_packets
    blk = tp.block
    flags = tp.flags
    idx_all = np.arange(n, dtype=np.int64)
    syn_bits = flags & (TCP_SYN | TCP_ACK)
    pure_syn = syn_bits == TCP_SYN
    syn_ack = syn_bits == (TCP_SYN | TCP_ACK)
    is_fin = (flags & TCP_FIN) != 0
    is_rst = (flags & TCP_RST) != 0
    parts_idx: list[I64] = []
    parts_code: list[I64] = []

    def add(mask_or_idx: BOOL | I64, code: int) -> None:
        """Events of ``code`` at a boolean mask's packets, or at packet indices (-1 = none)."""
        if mask_or_idx.dtype == bool:
            idx = np.flatnonzero(mask_or_idx).astype(np.int64)
        else:
            idx = mask_or_idx[mask_or_idx >= 0].astype(np.int64)
        parts_idx.append(idx)
        parts_code.append(np.full(len(idx), code, dtype=np.int64))

    # SYNs (pure); the two first SYNs of a simultaneous open get their own codes.
    sim_open = hs.state == SIMULTANEOUS_OPEN
    first_c = np.where(sim_open, hs.syn_idx, -1)
    first_s = np.where(sim_open, hs.server_syn_idx, -1)
    special = np.zeros(n, dtype=bool)
    special[first_c[first_c >= 0]] = True
    special[first_s[first_s >= 0]] = True
    add(pure_syn & ~special, int(Pk.SYN))
    sim_first = np.where(first_c >= 0, np.minimum(first_c, np.where(first_s >= 0, first_s, n)), -1)
    sim_second = np.where(first_c >= 0, np.maximum(first_c, first_s), -1)
    add(sim_first, int(Pk.SYN_SIM_FIRST))
    add(sim_second, int(Pk.SYN_SIM_SECOND))

    # SYN-ACKs: acceptable when they ack the receiver's ISN + 1.
    if n:
        peer_isn = np.where(tp.dir == C2S, hs.server_isn[blk], hs.client_isn[blk])
        ok = (peer_isn >= 0) & (tp.ack.astype(np.int64) == ((peer_isn + 1) & 0xFFFFFFFF))
    else:
        ok = np.zeros(0, bool)
    add(syn_ack & ok, int(Pk.SYNACK_OK))
    add(syn_ack & ~ok, int(Pk.SYNACK_BAD))

    # The ACK of the server's SYN-ACK (it completes the server's handshake).
    ack_syn = hs.ack_idx.copy()
    add(ack_syn, int(Pk.ACK_OF_SYN))

    # First non-FIN segment from the peer that ACKs each side's first FIN.
    has_ack = (flags & TCP_ACK) != 0
    for d in (C2S, S2C):
        fi = td.fin_idx[d]
        peer = (tp.dir != d) & has_ack & ~is_fin & (fi[blk] >= 0) & (idx_all > fi[blk])
        cov = _covers(tp.ack, td.fin_next_raw[d][blk]) if n else np.zeros(0, bool)
        add(first_index_per_group(peer & cov, blk, nb), int(Pk.ACK_OF_FIN))

    # First data of each side, and its first new data after its own FIN.
    group = si.group
    first_data = first_index_per_group(is_data[si.dorder], group[si.dorder], 2 * nb)
    add(np.where(first_data >= 0, si.dorder[np.maximum(first_data, 0)], -1), int(Pk.DATA))
    fin_rel = np.full((2, nb), np.iinfo(np.int64).max, dtype=np.int64)
    for d in (C2S, S2C):
        fi = td.fin_idx[d]
        fin_rel[d][fi >= 0] = si.end[fi[fi >= 0]] - 1
    # (computed on the data segments only: they are the only candidates)
    dpos = np.flatnonzero(is_data[si.dorder])
    if len(dpos):
        dk = si.dorder[dpos]
        d_dir = tp.dir[dk]
        d_blk = blk[dk]
        own_fin_idx = td.fin_idx[d_dir, d_blk]
        late = (
            (own_fin_idx >= 0)
            & (dk > own_fin_idx)
            & (si.data_start[dk] + tp.plen[dk] > fin_rel[d_dir, d_blk])
        )
        late_first = first_index_per_group(late, group[dk], 2 * nb)
        late_idx = np.where(late_first >= 0, dk[np.maximum(late_first, 0)], -1)
        first_data_idx = np.where(first_data >= 0, si.dorder[np.maximum(first_data, 0)], -2)
        add(late_idx[(late_idx >= 0) & (late_idx != first_data_idx)], int(Pk.DATA))

    # FINs: crossing first FINs get the simultaneous codes; a FIN that ACKs the receiver's FIN
    # moves the receiver straight to TIME-WAIT/CLOSED.
    crossed = td.fins_crossed
    c_fin = td.fin_idx[C2S]
    s_fin = td.fin_idx[S2C]
    sim_f1 = np.where(crossed, np.minimum(c_fin, s_fin), -1)
    sim_f2 = np.where(crossed, np.maximum(c_fin, s_fin), -1)
    fins = np.flatnonzero(is_fin)
    special = np.isin(fins, np.r_[sim_f1[sim_f1 >= 0], sim_f2[sim_f2 >= 0]])
    f_dir = tp.dir[fins]
    f_blk = blk[fins]
    recv_fin_idx = td.fin_idx[1 - f_dir, f_blk]
    acking = (
        has_ack[fins]
        & (recv_fin_idx >= 0)
        & (recv_fin_idx < fins)
        & _covers(tp.ack[fins], td.fin_next_raw[1 - f_dir, f_blk])
    )
    add(fins[~special & ~acking], int(Pk.FIN))
    add(fins[~special & acking], int(Pk.FIN_ACKING))
    add(sim_f1, int(Pk.FIN_SIM_FIRST))
    add(sim_f2, int(Pk.FIN_SIM_SECOND))

    add(is_rst, int(Pk.RST))

    ev_idx = np.concatenate(parts_idx) if parts_idx else np.zeros(0, np.int64)
    ev_code = np.concatenate(parts_code) if parts_code else np.zeros(0, np.int64)
    order = np.argsort(ev_idx * 16 + ev_code, kind="stable")
    return ev_idx[order], ev_code[order]


def run_states(
    tp: TcpPackets, si: SeqInfo, hs: HandshakeFacts, td: TeardownFacts, is_data: BOOL
) -> StateEvents:
    """Run the machine once per distinct event string and map every block to its result."""
    nb = tp.n_blocks
    ev_pkt, ev_code = select_events(tp, si, hs, td, is_data)
    ev_block = tp.block[ev_pkt]
    counts = np.bincount(ev_block, minlength=nb).astype(np.int64)
    ev_start = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64) if nb else np.zeros(0, np.int64)
    symbols = (ev_code * 2 + tp.dir[ev_pkt].astype(np.int64) + 48).astype(np.uint8)
    text = symbols.tobytes().decode("ascii")
    starts = ev_start.tolist()
    ends = (ev_start + counts).tolist()
    keys = [text[a:b] for a, b in zip(starts, ends, strict=True)]
    codes_idx, uniques = pd.factorize(pd.Series(keys, dtype=object), sort=False)
    results: list[PatternResult] = []
    for key in uniques.tolist():
        pairs = [((ord(ch) - 48) >> 1, (ord(ch) - 48) & 1) for ch in key]
        results.append(run_pattern(pairs))
    return StateEvents(
        ev_pkt=ev_pkt,
        ev_start=ev_start,
        pattern_of_block=np.asarray(codes_idx, dtype=np.int64),
        results=results,
    )
