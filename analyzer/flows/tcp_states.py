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

from analyzer.flows.tcp_handshake import SIMULTANEOUS_OPEN, HandshakeFacts
from analyzer.flows.tcp_seq import SeqInfo, direction_rows, factorize_runs, first_row_per_group, sort_keys
from analyzer.flows.tcp_streams import C2S, S2C, TcpPackets
from analyzer.flows.tcp_teardown import TeardownFacts, _covers, first_ack_covering
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
    # Only SYN, FIN, RST and data rows carry events (plus one ACK per handshake or FIN): select
    # those rows once instead of masking every packet.
    syn_rows = np.flatnonzero((flags & TCP_SYN) != 0)
    fins = np.flatnonzero((flags & TCP_FIN) != 0)
    rst_rows = np.flatnonzero((flags & TCP_RST) != 0)
    data_rows = np.flatnonzero(is_data)
    parts: list[I64] = []

    def add(idx: I64, code: int) -> None:
        """Events of ``code`` at packet indices ``idx`` (-1 = none); packed as index * 16 + code."""
        parts.append(idx[idx >= 0] * 16 + code)

    # SYNs (pure); the two first SYNs of a simultaneous open get their own codes.
    synack_bit = (flags[syn_rows] & TCP_ACK) != 0
    pure = syn_rows[~synack_bit]
    sim_open = hs.state == SIMULTANEOUS_OPEN
    first_c = np.where(sim_open, hs.syn_idx, -1)
    first_s = np.where(sim_open, hs.server_syn_idx, -1)
    special = np.zeros(len(pure), dtype=bool)
    for first in (first_c, first_s):
        special[np.searchsorted(pure, first[first >= 0])] = True
    add(pure[~special], int(Pk.SYN))
    sim_first = np.where(first_c >= 0, np.minimum(first_c, np.where(first_s >= 0, first_s, n)), -1)
    sim_second = np.where(first_c >= 0, np.maximum(first_c, first_s), -1)
    add(sim_first, int(Pk.SYN_SIM_FIRST))
    add(sim_second, int(Pk.SYN_SIM_SECOND))

    # SYN-ACKs: acceptable when they ack the receiver's ISN + 1.
    sa = syn_rows[synack_bit]
    sa_blk = blk[sa]
    peer_isn = np.where(tp.dir[sa] == C2S, hs.server_isn[sa_blk], hs.client_isn[sa_blk])
    ok = (peer_isn >= 0) & (tp.ack[sa] == ((peer_isn + 1) & 0xFFFFFFFF))
    add(sa[ok], int(Pk.SYNACK_OK))
    add(sa[~ok], int(Pk.SYNACK_BAD))

    # The ACK of the server's SYN-ACK (it completes the server's handshake).
    add(hs.ack_idx, int(Pk.ACK_OF_SYN))

    # First non-FIN segment from the peer that ACKs each side's first FIN: the teardown found the
    # first ACK of it, FIN or not; only where that was a FIN does the search go on.
    dir_rows = direction_rows(si)
    for d in (C2S, S2C):
        fa = td.fin_ack_idx[d]
        fin_acked_by_fin = (fa >= 0) & ((flags[fa] & TCP_FIN) != 0)
        later = np.where(fin_acked_by_fin, fa, -1)
        later = first_ack_covering(tp, dir_rows[1 - d], later, td.fin_next_raw[d], exclude=TCP_FIN)
        add(np.where(fin_acked_by_fin, later, fa), int(Pk.ACK_OF_FIN))

    # First data of each side, and its first new data after its own FIN (only data rows after
    # their side's FIN can be late; few are).
    d_dir = tp.dir[data_rows]
    d_blk = blk[data_rows]
    own_fin_idx = td.fin_idx[d_dir, d_blk]
    after_fin = np.flatnonzero((own_fin_idx >= 0) & (data_rows > own_fin_idx))
    ar = data_rows[after_fin]
    fin_end = si.end[own_fin_idx[after_fin]]
    late = np.zeros(len(data_rows), dtype=bool)
    late[after_fin] = si.data_start[ar] + tp.plen[ar] > fin_end - 1
    for d in (C2S, S2C):
        side = d_dir == d
        first_data = first_row_per_group(data_rows[side], blk, nb)
        add(first_data, int(Pk.DATA))
        late_idx = first_row_per_group(data_rows[side & late], blk, nb)
        add(late_idx[late_idx != first_data], int(Pk.DATA))

    # FINs: crossing first FINs get the simultaneous codes; a FIN that ACKs the receiver's FIN
    # moves the receiver straight to TIME-WAIT/CLOSED.
    crossed = td.fins_crossed
    c_fin = td.fin_idx[C2S]
    s_fin = td.fin_idx[S2C]
    sim_f1 = np.where(crossed, np.minimum(c_fin, s_fin), -1)
    sim_f2 = np.where(crossed, np.maximum(c_fin, s_fin), -1)
    special = np.zeros(len(fins), dtype=bool)
    for sim in (sim_f1, sim_f2):
        special[np.searchsorted(fins, sim[sim >= 0])] = True
    f_dir = tp.dir[fins]
    f_blk = blk[fins]
    recv_fin_idx = td.fin_idx[1 - f_dir, f_blk]
    acking = (
        ((flags[fins] & TCP_ACK) != 0)
        & (recv_fin_idx >= 0)
        & (recv_fin_idx < fins)
        & _covers(tp.ack[fins], td.fin_next_raw[1 - f_dir, f_blk])
    )
    add(fins[~special & ~acking], int(Pk.FIN))
    add(fins[~special & acking], int(Pk.FIN_ACKING))
    add(sim_f1, int(Pk.FIN_SIM_FIRST))
    add(sim_f2, int(Pk.FIN_SIM_SECOND))

    add(rst_rows, int(Pk.RST))

    # (packet, code) pairs are distinct, so sorting the packed keys orders them
    keys = sort_keys(parts, n << 4)
    return keys >> 4, keys & 15


def run_states(
    tp: TcpPackets, si: SeqInfo, hs: HandshakeFacts, td: TeardownFacts, is_data: BOOL
) -> StateEvents:
    """Run the machine once per distinct event string and map every block to its result."""
    nb = tp.n_blocks
    ev_pkt, ev_code = select_events(tp, si, hs, td, is_data)
    counts = np.bincount(tp.block[ev_pkt], minlength=nb)
    ev_start = np.cumsum(counts) - counts
    symbols = ev_code * 2 + tp.dir[ev_pkt]
    pattern_of_block, first_block = factorize_runs(symbols, ev_start, counts, 5)
    results: list[PatternResult] = []
    for b in first_block.tolist():
        a = int(ev_start[b])
        pairs = list(
            zip(ev_code[a : a + counts[b]].tolist(), tp.dir[ev_pkt[a : a + counts[b]]].tolist(), strict=True)
        )
        results.append(run_pattern(pairs))
    return StateEvents(ev_pkt=ev_pkt, ev_start=ev_start, pattern_of_block=pattern_of_block, results=results)
