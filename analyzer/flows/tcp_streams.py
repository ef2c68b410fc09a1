"""TCP connection reconstruction: which packets form one connection, and who is the client.

Rules (Wireshark's ``tcp.stream`` in 4.0, ``packet-tcp.c`` ``dissect_tcp``, plus one deliberate
extension the analyzer's spec asks for):

* Packets are grouped by their unordered 4-tuple (address:port pair).
* Each direction has a *base sequence number*, set by the first packet that reveals it: a SYN
  from that side (``seq``), any other packet from that side (``seq - 1``), or a packet from the
  peer with the ACK flag (``ack - 1``) — whichever comes first.
* A pure SYN (SYN without ACK) whose ``seq`` differs from its side's base starts a new
  connection on the same 4-tuple (port reuse, ``tcp.analysis.reused_ports``).
* A SYN-ACK whose ``seq`` differs from its side's base only moves the base (no new connection).
* Extension: a pure SYN after the connection *ended* (a RST, or a FIN from each side) starts a new
  connection even when it repeats the old ISN. Wireshark 4.0 keeps such a SYN in the old stream.
* Connections are numbered from 0 in the order of their first packet.
* The client is the sender of the connection's first pure SYN; failing that, the receiver of
  its first SYN-ACK; failing that, the sender of its first packet (``client_guessed``).

The result, ``TcpPackets``, holds the TCP packets sorted by (connection block, frame) as plain
numpy arrays, so every later stage can work with vectorized group operations. Blocks are
numbered in 4-tuple order; ``conn_id[block]`` is the connection's number.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
BOOL = npt.NDArray[np.bool_]

C2S = 0  # dir value of a client -> server packet
S2C = 1


@dataclass(frozen=True)
class TcpPackets:
    """TCP packets grouped into connections (see the module docstring).

    Per-packet arrays have one entry per TCP packet, sorted by (block, frame); per-block arrays
    have one entry per connection, in block order.
    """

    # per packet
    block: I64  # connection block of the packet
    dir: npt.NDArray[np.int8]  # C2S or S2C
    row: I64  # position of the packet in the PACKETS frame (to fetch rarely used columns)
    frame: I64
    ts: npt.NDArray[np.float64]
    ts_ns: I64  # exact capture time, for durations
    flags: npt.NDArray[np.uint16]
    seq: U32
    ack: U32
    win: npt.NDArray[np.uint16]
    plen: I64  # tcp.len
    # per block
    starts: I64  # index of the block's first packet
    ends: I64  # one past the block's last packet
    conn_id: I64  # connection number (rank of the first packet)
    tuple_id: I64  # 4-tuple the block belongs to
    next_on_tuple: I64  # block of the next connection on the same 4-tuple, -1 if none
    client_ip: npt.NDArray[np.object_]
    client_port: I64
    server_ip: npt.NDArray[np.object_]
    server_port: I64
    client_guessed: BOOL  # no SYN or SYN-ACK told who the client is
    opened_by_split: BOOL  # the connection began with a SYN that split a 4-tuple (not its first)
    packets: pd.DataFrame  # the PACKETS frame ``row`` points into

    def column(self, name: str, idx: I64) -> npt.NDArray[np.generic]:
        """PACKETS column ``name`` of the TCP packets ``idx`` (for columns few packets need)."""
        values: npt.NDArray[np.generic] = self.packets[name].to_numpy()[self.row[idx]]
        return values

    @property
    def n_blocks(self) -> int:
        return len(self.starts)

    @property
    def n_packets(self) -> int:
        return len(self.block)

    def counts(self) -> I64:
        return self.ends - self.starts


def select_tcp(packets: pd.DataFrame) -> I64:
    """Rows of ``packets`` that carry a decoded TCP header (not non-first fragments/truncated)."""
    proto = packets["proto"]
    if isinstance(proto.dtype, pd.CategoricalDtype):
        cats = list(proto.cat.categories)
        code = cats.index("tcp") if "tcp" in cats else -2
        is_tcp = proto.cat.codes.to_numpy() == code
    else:
        is_tcp = proto.to_numpy() == "tcp"
    # A TCP row whose header was not decoded keeps neutral ports and flags (docs/PACKETS.md).
    decoded = (
        (packets["sport"].to_numpy() != 0)
        | (packets["dport"].to_numpy() != 0)
        | (packets["tcp_flags"].to_numpy() != 0)
    )
    return np.flatnonzero(is_tcp & decoded).astype(np.int64)


def stable_argsort_codes(codes: I64) -> I64:
    """``np.argsort(codes, kind="stable")`` for non-negative codes, by 16-bit radix passes.

    numpy sorts 16-bit integers stably with a radix sort, several times faster than its merge
    sort of int64; codes above 16 bits take one more (least significant digit first) pass.
    """
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    high = codes >> 16
    while high.any():
        order = order[np.argsort((high[order] & 0xFFFF).astype(np.uint16), kind="stable")]
        high = high >> 16
    out: I64 = order.astype(np.int64, copy=False)
    return out


@dataclass(frozen=True)
class TcpTuples:
    """The TCP packets of a PACKETS frame and their 4-tuples' endpoints, before grouping."""

    rows: I64  # PACKETS rows, in frame order
    s_ip: I64  # source address: code into ``addresses``
    d_ip: I64
    sport: I64
    dport: I64
    addresses: pd.Index  # every source and destination address, one shared code space

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, idx: I64) -> TcpTuples:
        """The packets ``idx`` (positions in this TcpTuples, ascending) only."""
        return TcpTuples(
            self.rows[idx], self.s_ip[idx], self.d_ip[idx], self.sport[idx], self.dport[idx], self.addresses
        )

    def endpoints(self) -> tuple[I64, I64]:
        """(lower, higher) endpoint of each packet's 4-tuple, as ``address code << 16 | port``."""
        src_ep = (self.s_ip << 16) | self.sport
        dst_ep = (self.d_ip << 16) | self.dport
        return np.minimum(src_ep, dst_ep), np.maximum(src_ep, dst_ep)

    def tuple_hash(self) -> npt.NDArray[np.uint64]:
        """A hash of each packet's unordered 4-tuple: equal for both directions of a connection."""
        lo, hi = self.endpoints()
        # splitmix64-style mixing: the low bits of port numbers are anything but uniform.
        with np.errstate(over="ignore"):
            h = lo.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ hi.astype(np.uint64)
            h ^= h >> np.uint64(31)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
        return h


def tcp_tuples(packets: pd.DataFrame) -> TcpTuples:
    """The TCP packets of ``packets`` with integer codes for their addresses."""
    rows = select_tcp(packets)
    src = packets["src"].astype("category").array
    dst = packets["dst"].astype("category").array
    assert isinstance(src, pd.Categorical) and isinstance(dst, pd.Categorical)
    src_cats = pd.Index(src.categories)
    dst_cats = pd.Index(dst.categories)
    cats = src_cats.append(dst_cats).unique()
    s_map = cats.get_indexer(src_cats).astype(np.int64)
    d_map = cats.get_indexer(dst_cats).astype(np.int64)
    return TcpTuples(
        rows=rows,
        s_ip=s_map[np.asarray(src.codes)[rows].astype(np.int64)],
        d_ip=d_map[np.asarray(dst.codes)[rows].astype(np.int64)],
        sport=packets["sport"].to_numpy()[rows].astype(np.int64),
        dport=packets["dport"].to_numpy()[rows].astype(np.int64),
        addresses=cats,
    )


def build_tcp_packets(packets: pd.DataFrame) -> TcpPackets:
    """Group the TCP packets of a PACKETS frame into connections (rules: module docstring)."""
    return group_connections(packets, tcp_tuples(packets))


def group_connections(packets: pd.DataFrame, tr: TcpTuples) -> TcpPackets:
    """Group the TCP packets ``tr`` of ``packets`` into connections.

    ``tr`` may be any set of whole 4-tuples (``tcp_parallel`` gives each process a share):
    ``conn_id`` then ranks the first packets of these connections only (``with_ids`` sets
    the capture-wide numbers).
    """
    rows, s_ip, d_ip, sport, dport = tr.rows, tr.s_ip, tr.d_ip, tr.sport, tr.dport
    n = len(rows)
    lo, hi = tr.endpoints()
    # dir0: the packet goes from the lower endpoint to the higher one (orientation of the tuple).
    from_lo = ((s_ip << 16) | sport) == lo
    width = int(hi.max()) + 1 if n else 1
    tuple_of_row: I64
    if width < (1 << 31):
        codes, _ = pd.factorize(lo * width + hi, sort=False)
        tuple_of_row = codes.astype(np.int64)
    else:  # too many addresses for one int64 key: factorize the pair
        pair = pd.DataFrame({"lo": lo, "hi": hi})
        tuple_of_row = np.asarray(pair.groupby(["lo", "hi"], sort=False).ngroup(), dtype=np.int64)
    order = stable_argsort_codes(tuple_of_row)
    prow = rows[order]  # PACKETS row of each packet in (tuple, frame) order
    tup = tuple_of_row[order]
    lo_dir = from_lo[order]

    flags_all = packets["tcp_flags"].to_numpy()
    flags = flags_all[prow].astype(np.uint16)
    seq = packets["seq"].to_numpy()[prow].astype(np.uint32)
    ack = packets["ack"].to_numpy()[prow].astype(np.uint32)

    tuple_start = np.flatnonzero(np.r_[True, tup[1:] != tup[:-1]]) if n else np.zeros(0, np.int64)
    new_block = _split_tuples(tup, tuple_start, lo_dir, flags, seq, ack)
    new_block[tuple_start] = True
    starts = np.flatnonzero(new_block).astype(np.int64)
    ends = np.r_[starts[1:], n].astype(np.int64)
    nb = len(starts)
    block = np.cumsum(new_block, dtype=np.int64) - 1

    frame = packets["frame"].to_numpy()[prow].astype(np.int64)
    ts_ns = packets["ts_ns"].to_numpy()[prow].astype(np.int64)
    first_frame = frame[starts] if nb else np.zeros(0, np.int64)
    rank = np.argsort(first_frame, kind="stable")
    conn_id = np.empty(nb, dtype=np.int64)
    conn_id[rank] = np.arange(nb, dtype=np.int64)

    tuple_id = tup[starts] if nb else np.zeros(0, np.int64)
    next_on_tuple = np.full(nb, -1, dtype=np.int64)
    if nb > 1:
        same = tuple_id[1:] == tuple_id[:-1]
        next_on_tuple[:-1][same] = np.arange(1, nb, dtype=np.int64)[same]
    opened_by_split = np.zeros(nb, dtype=bool)
    if nb > 1:
        opened_by_split[1:] = tuple_id[1:] == tuple_id[:-1]

    # Who is the client: first pure SYN's sender, else first SYN-ACK's receiver, else first sender.
    syn_bits = flags & (TCP_SYN | TCP_ACK)
    pure_syn = syn_bits == TCP_SYN
    syn_ack = syn_bits == (TCP_SYN | TCP_ACK)
    client_is_lo = lo_dir[starts].copy() if nb else np.zeros(0, bool)
    guessed = np.ones(nb, dtype=bool)
    for mask, sender_is_client in ((syn_ack, False), (pure_syn, True)):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            continue
        blk, first = np.unique(block[idx], return_index=True)
        pick = idx[first]
        client_is_lo[blk] = lo_dir[pick] if sender_is_client else ~lo_dir[pick]
        guessed[blk] = False
    direction = np.where(lo_dir == client_is_lo[block], C2S, S2C).astype(np.int8)

    first_dir = direction[starts]
    first_row = order[starts]  # position (in ``rows``) of each block's first packet
    f_src_ip, f_dst_ip = s_ip[first_row], d_ip[first_row]
    f_sport, f_dport = sport[first_row], dport[first_row]
    c_ip = np.where(first_dir == C2S, f_src_ip, f_dst_ip)
    s_ip_b = np.where(first_dir == C2S, f_dst_ip, f_src_ip)
    c_port = np.where(first_dir == C2S, f_sport, f_dport)
    s_port = np.where(first_dir == C2S, f_dport, f_sport)
    cat_values = np.asarray(tr.addresses, dtype=object)

    return TcpPackets(
        block=block,
        dir=direction,
        row=prow,
        frame=frame,
        ts=ts_ns / 1e9,  # docs/PACKETS.md: ts = ts_ns / 1e9
        ts_ns=ts_ns,
        flags=flags,
        seq=seq,
        ack=ack,
        win=packets["win"].to_numpy()[prow].astype(np.uint16),
        plen=packets["payload_len"].to_numpy()[prow].astype(np.int64),
        starts=starts,
        ends=ends,
        conn_id=conn_id,
        tuple_id=tuple_id,
        next_on_tuple=next_on_tuple,
        client_ip=cat_values[c_ip] if nb else np.zeros(0, dtype=object),
        client_port=c_port.astype(np.int64),
        server_ip=cat_values[s_ip_b] if nb else np.zeros(0, dtype=object),
        server_port=s_port.astype(np.int64),
        client_guessed=guessed,
        opened_by_split=opened_by_split,
        packets=packets,
    )


def with_ids(tp: TcpPackets, conn_id: I64) -> TcpPackets:
    """``tp`` with its connections numbered ``conn_id`` (one per block)."""
    if len(conn_id) != tp.n_blocks:
        raise ValueError(f"{len(conn_id)} connection ids for {tp.n_blocks} connections")
    return replace(tp, conn_id=np.asarray(conn_id, dtype=np.int64))


def _split_tuples(
    tup: I64, tuple_start: I64, lo_dir: BOOL, flags: npt.NDArray[np.uint16], seq: U32, ack: U32
) -> BOOL:
    """Mark the packets that open a new connection inside their 4-tuple (not the tuple's first).

    A 4-tuple can only split at a pure SYN that is not its first packet. Such a SYN is decided
    from the previous pure SYN *j* of the same side: no split when it repeats j's sequence number
    and nothing ended the connection in between (a SYN retransmission); a split when the
    sequence number differs or a RST / FINs from both sides came in between. Those two rules
    are exact when nothing in between could have moved the side's base (a pure SYN of the other
    side, a SYN-ACK of this side) and no lone FIN leaves "ended" undecided; every other 4-tuple
    goes through ``_split_one`` packet by packet.
    """
    n = len(tup)
    split_at = np.zeros(n, dtype=bool)
    if n == 0:
        return split_at
    syn_bits = flags & (TCP_SYN | TCP_ACK)
    pure_syn = syn_bits == TCP_SYN
    is_first = np.zeros(n, dtype=bool)
    is_first[tuple_start] = True
    cand = np.flatnonzero(pure_syn & ~is_first)
    if len(cand) == 0:
        return split_at
    synack = syn_bits == (TCP_SYN | TCP_ACK)
    fin = (flags & TCP_FIN) != 0
    rst = (flags & TCP_RST) != 0
    hi_dir = ~lo_dir

    # previous pure SYN of the same side in the same 4-tuple
    prev = np.full(n, -1, dtype=np.int64)
    all_syn = np.flatnonzero(pure_syn)
    for side in (lo_dir, hi_dir):
        ps = all_syn[side[all_syn]]
        if len(ps) > 1:
            same = tup[ps[1:]] == tup[ps[:-1]]
            prev[ps[1:][same]] = ps[:-1][same]
    j = prev[cand]
    has_prev = j >= 0
    j0 = np.maximum(j, 0)
    side_lo = lo_dir[cand]

    def between(mask: BOOL) -> I64:
        """How many rows of ``mask`` lie strictly between each candidate and its previous SYN."""
        pos = np.flatnonzero(mask)
        return np.searchsorted(pos, cand, "left") - np.searchsorted(pos, j0, "right")

    other_syn = np.where(side_lo, between(pure_syn & hi_dir), between(pure_syn & lo_dir)) > 0
    own_synack = np.where(side_lo, between(synack & lo_dir), between(synack & hi_dir)) > 0
    rst_between = between(rst) > 0
    fin_lo = between(fin & lo_dir) > 0
    fin_hi = between(fin & hi_dir) > 0
    split = (seq[cand] != seq[j0]) | rst_between | (fin_lo & fin_hi)
    hard = ~has_prev | other_syn | own_synack | (~split & (fin_lo ^ fin_hi))
    split_at[cand[split & ~hard]] = True

    hard_tuples = np.unique(tup[cand[hard]])
    if len(hard_tuples):
        tuple_end = np.r_[tuple_start[1:], n]
        first_of = np.full(int(tup.max()) + 1, -1, dtype=np.int64)
        first_of[tup[tuple_start]] = np.arange(len(tuple_start))
        for t in hard_tuples.tolist():
            k = int(first_of[t])
            a, b = int(tuple_start[k]), int(tuple_end[k])
            sub = _split_one(lo_dir[a:b].tolist(), flags[a:b].tolist(), seq[a:b].tolist(), ack[a:b].tolist())
            split_at[a:b] = np.r_[False, np.diff(np.asarray(sub, dtype=np.int64)) != 0]
    return split_at


def _split_one(lo_dir: list[bool], flags: list[int], seq: list[int], ack: list[int]) -> list[int]:
    """Apply the splitting rules (module docstring) to the packets of one 4-tuple, in order."""
    out: list[int] = []
    current = 0
    base: list[int | None] = [None, None]
    fin_seen = [False, False]
    rst_seen = False
    started = False
    for d_bool, f, s, a in zip(lo_dir, flags, seq, ack, strict=True):
        d = 0 if d_bool else 1
        syn_bits = f & (TCP_SYN | TCP_ACK)
        ended = rst_seen or (fin_seen[0] and fin_seen[1])
        if started and syn_bits == TCP_SYN and (ended or (base[d] is not None and s != base[d])):
            current += 1
            base = [None, None]
            fin_seen = [False, False]
            rst_seen = False
        elif syn_bits == (TCP_SYN | TCP_ACK) and base[d] is not None and s != base[d]:
            base[d] = s
        started = True
        if base[d] is None:
            base[d] = s if f & TCP_SYN else (s - 1) & 0xFFFFFFFF
        if base[1 - d] is None and f & TCP_ACK:
            base[1 - d] = (a - 1) & 0xFFFFFFFF
        if f & TCP_RST:
            rst_seen = True
        if f & TCP_FIN:
            fin_seen[d] = True
        out.append(current)
    return out
