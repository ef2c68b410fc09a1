"""Interop summaries: Zeek's ``conn_state``/``history`` and Wireshark's ``tcp.completeness``.

Zeek (zeek/zeek ``src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc``, ``TCP_Endpoint.cc``,
``scripts/base/protocols/conn/main.zeek``; ../shared/ANCHORS.md section 2):

* The originator is the first packet's sender, flipped when that packet is not a pure SYN and its
  source port is a likely server port (history starts with ``^``), or later on a SYN/SYN-ACK
  reversal. Zeek's ``likely_server_ports`` comes from the analyzers it loads; ``LIKELY_SERVER_PORTS``
  is a fixed approximation of the default set.
* History letters, upper case for the originator: ``s`` SYN, ``h`` SYN-ACK, ``a`` pure ACK,
  ``d`` payload, ``f`` FIN, ``r`` RST, ``i`` FIN+RST, ``q`` other multi-flag, ``t`` payload not
  advancing the sequence, ``w`` zero window, ``g`` content gap. ``a d i q`` once per side;
  ``s h f r`` again when the sequence number changes; ``t w g`` at the 1st, 10th, 100th, ...
  occurrence. ``c`` (bad checksum) never appears: checksums are not verified, as with
  ``zeek -C`` (loopback captures carry offloaded checksums).
* Endpoint states INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET follow
  ``UpdateStateMachine``; ``conn_state`` is ``main.zeek``'s function of the two states.
* Differences kept on purpose: connections are this analyzer's (Wireshark-like) connections,
  while Zeek also ends one 5 s after its close (``tcp_close_delay``) or on inactivity; ``g`` is
  counted per gap the peer ACKed (Zeek's reassembler reports the same holes, packet by packet).

Wireshark ``tcp.completeness`` (``packet-tcp.c``, 4.0): bits 1 SYN, 2 SYN-ACK, 4 ACK, 8 DATA,
16 FIN, 32 RST, OR-ed over the conversation's packets with these rules: the pure SYN that
creates a conversation sets 1 (and 8 if it carries data); every later packet adds 2 for SYN+ACK,
4 for an ACK without SYN and without payload, 8 for an ACK without SYN with payload, 16 for
FIN+ACK, 32 for RST. The first packet of a conversation that does not start with a pure SYN adds
nothing. The value reported is the conversation's value after one pass over the file, which is
what ``tshark -2`` shows on the first packet of each stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import compress

import numpy as np
import numpy.typing as npt

from analyzer.flows.tcp_seq import SeqInfo, factorize_runs, first_in_spans, sort_keys
from analyzer.flows.tcp_streams import TcpPackets
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

# Zeek endpoint states (TCP_ENDPOINT_*).
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
ZEEK_STATES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")

LIKELY_SERVER_PORTS = frozenset(
    {21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 123, 135, 137, 139, 143, 161, 389, 443, 445, 465,
     502, 514, 587, 631, 636, 993, 995, 1080, 1433, 1521, 1883, 2049, 3128, 3306, 3389, 5060,
     5222, 5353, 5432, 5672, 6379, 6667, 8000, 8080, 8443, 8888, 9200, 11211, 27017}
)  # fmt: skip

TOO_LARGE_SEQ_DELTA = 1048576
COMPLETENESS_LABELS = {
    1: "Incomplete, SYN_SENT",
    3: "Incomplete, CLIENT_ESTABLISHED",
    7: "Incomplete, ESTABLISHED",
    15: "Incomplete, DATA",
    31: "Complete, WITH_DATA",
    47: "Complete, WITH_DATA",
    63: "Complete, WITH_DATA",
    23: "Complete, NO_DATA",
    39: "Complete, NO_DATA",
    55: "Complete, NO_DATA",
}

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def completeness_label(value: int) -> str:
    """Wireshark's text for a ``tcp.completeness`` value (``conversation_completeness_fill``)."""
    return COMPLETENESS_LABELS.get(value, f"Incomplete ({value})")


def conn_state(os_: int, rs: int, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's ``conn_state`` for TCP (``main.zeek``), from the two endpoint states."""
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


# ---------------------------------------------------------------------------------------------
# The Zeek model, packet by packet. Used directly for rare connections (a role flip, a SYN whose
# sequence number moves) and, on reduced event strings, for every connection's endpoint states.
# ---------------------------------------------------------------------------------------------

HIST_SYN, HIST_FIN, HIST_RST, HIST_FIN_RST, HIST_DATA, HIST_ACK, HIST_MULTI = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40,
)  # fmt: skip


class _Endpoint:
    __slots__ = (
        "hist_last_fin",
        "hist_last_rst",
        "hist_last_syn",
        "is_orig",
        "last_seq",
        "prev_state",
        "scaled",
        "start_seq",
        "state",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start_seq = 0
        self.last_seq = 0
        self.hist_last_syn = 0
        self.hist_last_fin = 0
        self.hist_last_rst = 0
        # letter -> [counter, threshold]
        self.scaled: dict[str, list[int]] = {"T": [0, 1], "W": [0, 1], "G": [0, 1]}

    def set_state(self, new: int) -> None:
        if new != self.state:
            self.prev_state = self.state
            self.state = new


def _delta(a: int, b: int) -> int:
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= (1 << 31) else d


class ZeekModel:
    """Zeek's TCP session model for one connection (the parts that shape conn.log)."""

    def __init__(self, flip_first: bool = False) -> None:
        self.orig = _Endpoint(True)
        self.resp = _Endpoint(False)
        self.hist_seen = 0
        self.history = "^" if flip_first else ""
        self.flipped = False

    # history helpers (Connection::CheckHistory / AddHistory / ScaledHistoryEntry)
    def _check(self, ep: _Endpoint, mask: int, code: str) -> bool:
        if not ep.is_orig:
            mask <<= 16
            code = code.lower()
        if self.hist_seen & mask == 0:
            self.hist_seen |= mask
            self.history += code
            return False
        return True

    def _add(self, ep: _Endpoint, code: str) -> None:
        self.history += code if ep.is_orig else code.lower()

    def _scaled(self, ep: _Endpoint, code: str) -> None:
        counter = ep.scaled[code]
        counter[0] += 1
        if counter[0] == counter[1]:
            self._add(ep, code)
            counter[1] *= 10

    def process(
        self, is_orig: bool, flags: int, plen: int, seq: int, ack: int, win: int, gap: bool = False
    ) -> None:
        """One packet; ``gap`` counts a content gap of the sender's stream (the ``g`` letter)."""
        ep = self.orig if is_orig else self.resp
        peer = self.resp if is_orig else self.orig
        syn, fin, rst, has_ack = flags & TCP_SYN, flags & TCP_FIN, flags & TCP_RST, flags & TCP_ACK
        seg_len = plen + (1 if syn else 0) + (1 if fin else 0) - (plen if rst else 0)
        past = (seq + seg_len) & 0xFFFFFFFF
        self._init_endpoint(ep, syn != 0, seq, past)
        rel_seq = _delta(seq, ep.start_seq)
        self._update_history(ep, flags, rel_seq, plen)
        if win == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            self._scaled(ep, "W")
        if has_ack and peer.state == INACTIVE:
            peer.start_seq = peer.last_seq = (ack - 1) & 0xFFFFFFFF
        delta_last = self._update_last_seq(ep, past, flags, plen)
        self._state_machine(ep, peer, is_orig, flags, plen, delta_last)
        if gap:
            self._scaled(ep, "G")

    def _init_endpoint(self, ep: _Endpoint, syn: bool, seq: int, past: int) -> None:
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.start_seq = seq
                ep.last_seq = past
            else:
                ep.start_seq = (seq - 1) & 0xFFFFFFFF
                ep.last_seq = seq
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if syn and seq != ep.start_seq:
                ep.start_seq, ep.last_seq = seq, past
        elif st in (ESTABLISHED, PARTIAL):
            if syn:
                ep.start_seq, ep.last_seq = seq, past
        elif st == RESET and syn and ep.prev_state == INACTIVE:
            ep.start_seq, ep.last_seq = seq, past

    def _update_history(self, ep: _Endpoint, flags: int, rel_seq: int, plen: int) -> None:
        syn, fin, rst = flags & TCP_SYN, flags & TCP_FIN, flags & TCP_RST
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                self._check(ep, HIST_FIN_RST, "I")
            else:
                self._check(ep, HIST_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if flags & TCP_ACK else "S"
                if self._check(ep, HIST_SYN, code) and rel_seq != ep.hist_last_syn:
                    self._add(ep, code)
                ep.hist_last_syn = rel_seq
            if fin:
                if self._check(ep, HIST_FIN, "F") and rel_seq + plen != ep.hist_last_fin:
                    self._add(ep, "F")
                ep.hist_last_fin = rel_seq + plen
            if rst:
                if self._check(ep, HIST_RST, "R") and rel_seq != ep.hist_last_rst:
                    self._add(ep, "R")
                ep.hist_last_rst = rel_seq
        elif plen:
            self._check(ep, HIST_DATA, "D")
        elif flags & TCP_ACK:
            self._check(ep, HIST_ACK, "A")

    def _update_last_seq(self, ep: _Endpoint, last_seq: int, flags: int, plen: int) -> int:
        delta = _delta(last_seq, ep.last_seq)
        if flags & (TCP_SYN | TCP_RST) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
            pass
        elif flags & TCP_FIN and ep.last_seq == ((ep.start_seq + 1) & 0xFFFFFFFF):
            ep.last_seq = last_seq
        elif ep.state == RESET:
            pass
        elif delta > 0:
            ep.last_seq = last_seq
        elif plen > 0:
            self._scaled(ep, "T")
        return delta

    def _state_machine(
        self, ep: _Endpoint, peer: _Endpoint, is_orig: bool, flags: int, plen: int, delta_last: int
    ) -> None:
        syn, fin, rst, has_ack = flags & TCP_SYN, flags & TCP_FIN, flags & TCP_RST, flags & TCP_ACK
        st = ep.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if has_ack else SYN_SENT)
                else:
                    if not has_ack and peer.state == SYN_ACK_SENT:
                        # SYN/SYN-ACK reversal: Zeek flips the roles (Connection::FlipRoles).
                        self._flip()
                        peer.set_state(ESTABLISHED)
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
            if ep.state == INACTIVE:
                if not ep.is_orig and plen == 0 and self.orig.state == SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
                elif has_ack and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)
                else:
                    ep.set_state(PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not has_ack:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
        elif st == CLOSED and rst and peer.state != CLOSED:
            ep.set_state(RESET)

    def _flip(self) -> None:
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig = True
        self.resp.is_orig = False
        self.flipped = True
        self.history += "^"


# ---------------------------------------------------------------------------------------------
# Vectorized history and pattern-shared endpoint states for all connections.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InteropFacts:
    """Per-block interop values."""

    zeek_orig_is_client: BOOL
    history: list[str]
    conn_state: list[str]
    completeness: I64


def zeek_roles(tp: TcpPackets) -> tuple[I64, BOOL]:
    """(Zeek originator direction per block, whether Zeek flipped the first packet's roles)."""
    first = tp.starts
    nb = tp.n_blocks
    if nb == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    f_dir = tp.dir[first].astype(np.int64)
    f_flags = tp.flags[first]
    pure_syn = (f_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
    # source/destination ports of the first packet
    sport = np.where(f_dir == 0, tp.client_port, tp.server_port)
    dport = np.where(f_dir == 0, tp.server_port, tp.client_port)
    likely = np.zeros(65536, dtype=bool)
    likely[list(LIKELY_SERVER_PORTS)] = True
    s_likely = likely[sport]
    d_likely = likely[dport]
    is_synflag = (f_flags & TCP_SYN) != 0
    flip = ~pure_syn & s_likely & (~d_likely | (~is_synflag & (sport < dport)))
    orig_dir = np.where(flip, 1 - f_dir, f_dir)
    return orig_dir.astype(np.int64), flip


# History letters: upper case for the originator, lower case for the responder; "^" (a flip)
# comes first. Code k stands for _ALPHABET[k].
_ALPHABET = "^IQDASHFRWTGiqdashfrwtg"
_LETTER = {ch: k for k, ch in enumerate(_ALPHABET)}
_LOWER = 11  # code of a letter's lower case = its upper case code + _LOWER


def _by_side(tp: TcpPackets, rows: I64) -> tuple[I64, I64]:
    """``rows`` (ascending) split by direction: in each half, a run of one block is one group."""
    d = tp.dir[rows] != 0
    return rows[~d], rows[d]


def _run_starts(keys: I64) -> BOOL:
    """Where a run of equal ``keys`` begins."""
    new = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return new


def _scaled(rows: I64, b: I64) -> tuple[I64, I64]:
    """Of one side's ``rows`` (ascending, blocks ``b``): those where the side's count reaches 1,
    10, 100, ... (rows, blocks)."""
    starts = np.flatnonzero(_run_starts(b))
    count = np.arange(1, len(rows) + 1) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    hit = count == 1
    p = 10
    while p <= len(rows):
        hit |= count == p
        p *= 10
    return rows[hit], b[hit]


def _zeek_letters(
    tp: TcpPackets, si: SeqInfo, orig_dir: I64, flip: BOOL, gap_ack: BOOL, kinds: npt.NDArray[np.uint8]
) -> tuple[list[str], BOOL]:
    """History per block from vectorized letter rules, and the blocks that need the full model.

    Only the SYN/FIN/RST rows, the zero-window rows and the payload rows can carry letters
    besides the first ``A`` of each side, which is searched from the side's first packet on. The
    rows are split by side once: within a side, a run of one block is one direction group.
    """
    nb = tp.n_blocks
    n = tp.n_packets
    blk = tp.block
    flags = tp.flags
    plen = tp.plen
    ng = 2 * nb
    ctl_bits = TCP_SYN | TCP_FIN | TCP_RST

    # (packet, sub-position, letter) packed as keys: (packet * 8 + sub) * 32 + letter code
    keys: list[I64] = [tp.starts[flip] * 256 + _LETTER["^"]]

    def emit(idx: I64, b: I64, side: int | I64, sub: int, letter: str) -> None:
        """Letters at packets ``idx`` of blocks ``b`` sent by ``side`` (upper case: originator)."""
        keys.append((idx * 8 + sub) * 32 + (_LETTER[letter] + _LOWER * (orig_dir[b] != side)))

    def firsts(rows: I64, b: I64) -> tuple[I64, I64]:
        new = _run_starts(b)
        return rows[new], b[new]

    needs_model = np.zeros(nb, dtype=bool)
    first_fin = np.full(ng, n, dtype=np.int64)
    first_rst = np.full(ng, n, dtype=np.int64)
    ctl = np.flatnonzero((flags & ctl_bits) != 0)
    for d, rows in enumerate(_by_side(tp, ctl)):
        b = blk[rows]
        f = flags[rows]
        syn = (f & TCP_SYN) != 0
        fin = (f & TCP_FIN) != 0
        rst = (f & TCP_RST) != 0
        for first, m in ((first_fin, fin), (first_rst, rst)):
            r, bb = firsts(rows[m], b[m])
            first[2 * bb + d] = r
        bits = syn.astype(np.int8) + fin + rst
        # i and q: once per side
        multi = bits > 1
        for m, letter in ((multi & fin & rst, "I"), (multi & ~(fin & rst), "Q")):
            emit(*firsts(rows[m], b[m]), d, 1, letter)
        # s/h, f, r: the first of each side, then again when the sequence value changes.
        single = bits == 1
        for m, letter in ((single & syn, "S"), (single & fin, "F"), (single & rst, "R")):
            r, bb = rows[m], b[m]
            new = _run_starts(bb)
            v = si.rel[r] + plen[r] if letter == "F" else si.rel[r]
            changed = np.zeros(len(r), dtype=bool)
            np.not_equal(v[1:], v[:-1], out=changed[1:])
            changed &= ~new
            if letter == "S":
                # A SYN whose sequence number moves re-bases Zeek's relative numbers: use the model.
                needs_model[bb[changed]] = True
                r, bb = r[new], bb[new]
                is_h = (flags[r] & TCP_ACK) != 0
                emit(r[~is_h], bb[~is_h], d, 1, "S")
                emit(r[is_h], bb[is_h], d, 1, "H")
            else:
                keep = new | changed
                emit(r[keep], bb[keep], d, 1, letter)

    # d: the first plain (no SYN/FIN/RST) payload segment of each side.
    # t: payload that does not advance the highest sequence number (Zeek's DidRxmit); the side's
    # first packet starts the highest sequence number seen (its end if a SYN).
    g_first = si.dorder[np.minimum(si.gstart, n - 1)] if n else si.gstart
    init = np.where((flags[g_first] & TCP_SYN) != 0, si.end[g_first], si.rel[g_first])
    for d, rows in enumerate(_by_side(tp, np.flatnonzero(plen > 0))):
        b = blk[rows]
        f = flags[rows]
        plain = (f & ctl_bits) == 0
        emit(*firsts(rows[plain], b[plain]), d, 1, "D")
        g = 2 * b + d
        last_before = np.maximum(si.next_expected[rows], init[g])
        delta = si.end[rows] - last_before
        huge = ((f & (TCP_SYN | TCP_RST)) != 0) & (np.abs(delta) > TOO_LARGE_SEQ_DELTA)
        fin_exc = ((f & TCP_FIN) != 0) & (last_before == 1)
        t = (delta <= 0) & ~huge & ~fin_exc & ~(first_rst[g] < rows)
        emit(*_scaled(rows[t], b[t]), d, 3, "T")

    # a: the first plain empty ACK of each side, searched from the side's first packet on
    def is_a(q: I64, r: I64) -> BOOL:
        ok: BOOL = (kinds[r] & (32 | ctl_bits | TCP_ACK)) == TCP_ACK
        return ok

    pos = first_in_spans(si.dorder, si.gstart, si.gend, is_a)
    g = np.flatnonzero(pos >= 0)
    emit(si.dorder[pos[g]], g >> 1, g & 1, 1, "A")

    # w: zero window unless RST, the peer has closed (sent a FIN, no RST since) or we were reset.
    zr = np.flatnonzero(tp.win == 0)
    g = si.group[zr]
    peer_closed = (first_fin[g ^ 1] < zr) & ~(first_rst[g ^ 1] < zr)
    zr = zr[((flags[zr] & TCP_RST) == 0) & ~peer_closed & ~(first_rst[g] < zr)]
    for d, rows in enumerate(_by_side(tp, zr)):
        emit(*_scaled(rows, blk[rows]), d, 2, "W")

    # g: content gaps the peer ACKed (flagged for the side whose data is missing).
    for d, rows in enumerate(_by_side(tp, np.flatnonzero(gap_ack))):
        emit(*_scaled(rows, blk[rows]), d, 5, "G")

    # (packet, sub) pairs are distinct, so sorting the keys orders the letters
    key = sort_keys(keys, n << 8)
    idx = key >> 8
    letters = key & 31
    counts = np.bincount(blk[idx], minlength=nb)
    starts = np.cumsum(counts) - counts
    pattern, first_block = factorize_runs(letters, starts, counts, 5)
    texts = [
        "".join(_ALPHABET[c] for c in letters[starts[b] : starts[b] + counts[b]].tolist())
        for b in first_block.tolist()
    ]
    return np.asarray(texts, dtype=object)[pattern].tolist(), needs_model


def gap_ack_events(tp: TcpPackets, si: SeqInfo, gaps: list[list[list[int]]], origin: I64) -> BOOL:
    """Per packet: marks, in the data sender's direction, each gap the peer has ACKed.

    A gap counts once a peer segment (not a FIN or RST: Zeek ignores gaps revealed at the very
    end) ACKs past its first byte. The mark is placed on the data direction's next packet after
    that ACK (or its last packet), so that per-direction counting attributes the ``g`` to the
    side whose bytes are missing.
    """
    n = tp.n_packets
    out = np.zeros(n, dtype=bool)
    for gi in compress(range(len(gaps)), gaps):
        b, d = gi >> 1, gi & 1
        s, e = int(tp.starts[b]), int(tp.ends[b])
        dirs = tp.dir[s:e]
        fl = tp.flags[s:e]
        peer = np.flatnonzero((dirs != d) & ((fl & TCP_ACK) != 0) & ((fl & (TCP_FIN | TCP_RST)) == 0))
        mine = np.flatnonzero(dirs == d)
        if len(peer) == 0 or len(mine) == 0:
            continue
        # ACK values relative to the side's base, unwrapped like sequence numbers
        acks = tp.ack[s:e][peer]
        step = np.empty(len(peer), dtype=np.int64)
        step[0] = np.array([(int(acks[0]) - int(si.base[gi])) & 0xFFFFFFFF], dtype=np.uint32).view(np.int32)[
            0
        ]
        step[1:] = (acks[1:] - acks[:-1]).view(np.int32)
        reach = np.maximum.accumulate(np.cumsum(step))
        targets = np.array([int(origin[gi]) + off + 1 for off, _ in gaps[gi]], dtype=np.int64)
        first = np.searchsorted(reach, targets, "left")
        for k in first[first < len(peer)].tolist():
            after = int(np.searchsorted(mine, peer[k], "right"))
            out[s + int(mine[min(after, len(mine) - 1)])] = True
    return out


def _state_code_table() -> I64:
    """Zeek state code of a packet (without the originator bit 32) by its kind byte."""
    k = np.arange(64)
    table: I64 = (
        ((k & TCP_SYN) != 0) * 16
        + ((k & TCP_FIN) != 0) * 8
        + ((k & TCP_RST) != 0) * 4
        + ((k & TCP_ACK) != 0) * 2
        + (k >> 5)
    ).astype(np.int64)
    return table


_STATE_CODE = _state_code_table()


def _zeek_state_codes(
    tp: TcpPackets, si: SeqInfo, orig_dir: I64, kinds: npt.NDArray[np.uint8]
) -> tuple[I64, I64]:
    """(block, code) of the packets that can move Zeek's endpoint states, in packet order.

    Those are the SYN/FIN/RST packets, the originator's first packet and the responder's packets
    up to its first one that is not an empty plain segment.
    """
    nb = tp.n_blocks
    ctl_bits = TCP_SYN | TCP_FIN | TCP_RST
    sel = (kinds & ctl_bits) != 0
    og = 2 * np.arange(nb, dtype=np.int64) + orig_dir
    has_orig = si.gend[og] > si.gstart[og]
    sel[si.dorder[si.gstart[og[has_orig]]]] = True
    rg = og ^ 1

    def not_plain_empty(q: I64, r: I64) -> BOOL:
        ok: BOOL = (kinds[r] & (32 | ctl_bits)) != 0
        return ok

    # in dorder, the responder's lead runs from its first packet to that one (or to its last)
    lo = si.gstart[rg]
    hit = first_in_spans(si.dorder, lo, si.gend[rg], not_plain_empty)
    counts = np.where(hit >= 0, hit + 1, si.gend[rg]) - lo
    pos = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
    sel[si.dorder[pos]] = True
    idx = np.flatnonzero(sel)
    b = tp.block[idx]
    code: I64 = _STATE_CODE[kinds[idx]] + (tp.dir[idx] == orig_dir[b]) * 32
    return b, code


def analyze_interop(
    tp: TcpPackets,
    si: SeqInfo,
    c2s_bytes: I64,
    s2c_bytes: I64,
    gaps: list[list[list[int]]],
    origin: I64,
) -> InteropFacts:
    """Zeek history/conn_state and Wireshark completeness of every block."""
    nb = tp.n_blocks
    orig_dir, flip = zeek_roles(tp)
    gap_ack = gap_ack_events(tp, si, gaps, origin)
    kinds = _packet_kinds(tp)
    history, needs_model = _zeek_letters(tp, si, orig_dir, flip, gap_ack, kinds)

    # Endpoint states, one model run per distinct reduced event string.
    eb, code = _zeek_state_codes(tp, si, orig_dir, kinds)
    # a repeated code does not move the model again
    keep = _run_starts(code) | _run_starts(eb)
    eb, code = eb[keep], code[keep]
    counts = np.bincount(eb, minlength=nb)
    starts = np.cumsum(counts) - counts
    pat_arr, first_block = factorize_runs(code, starts, counts, 7)
    results: list[tuple[int, int, bool]] = []
    for b in first_block.tolist():
        model = ZeekModel()
        for c in code[starts[b] : starts[b] + counts[b]].tolist():
            fl = (TCP_SYN if c & 16 else 0) | (TCP_FIN if c & 8 else 0) | (TCP_RST if c & 4 else 0)
            fl |= TCP_ACK if c & 2 else 0
            model.process(bool(c & 32), fl, 1 if c & 1 else 0, 0, 1, 1)
        results.append((model.orig.state, model.resp.state, model.flipped))

    orig_is_client = orig_dir == 0
    # conn_state per pattern, except where it also depends on sizes or on the history.
    by_pattern: list[str | None] = []
    for os_, rs, flipped in results:
        special = flipped or (rs == RESET and os_ == RESET) or (os_ == RESET and rs in (INACTIVE, PARTIAL))
        by_pattern.append(None if special else conn_state(os_, rs, 1, 1, ""))
    states = np.asarray(by_pattern, dtype=object)[pat_arr] if nb else np.zeros(0, dtype=object)
    redo = np.flatnonzero((states == None) | needs_model)  # noqa: E711 - elementwise test
    size_c = c2s_bytes
    size_s = s2c_bytes
    for b in redo.tolist():
        os_, rs, flipped = results[pat_arr[b]]
        o_is_c = bool(orig_is_client[b])
        if flipped or needs_model[b]:
            history[b], os_, rs, o_is_c = _full_model(tp, b, int(orig_dir[b]), bool(flip[b]), gap_ack)
            orig_is_client[b] = o_is_c
        osz, rsz = (size_c[b], size_s[b]) if o_is_c else (size_s[b], size_c[b])
        states[b] = conn_state(os_, rs, int(osz), int(rsz), history[b])

    return InteropFacts(
        zeek_orig_is_client=orig_is_client,
        history=history,
        conn_state=states.tolist(),
        completeness=_completeness(tp, kinds),
    )


def _full_model(
    tp: TcpPackets, b: int, orig_dir: int, flip_first: bool, gap_ack: BOOL
) -> tuple[str, int, int, bool]:
    """Run the packet-by-packet Zeek model over one block.

    Returns (history, originator state, responder state, whether the final originator is the
    client).
    """
    model = ZeekModel(flip_first=flip_first)
    s, e = int(tp.starts[b]), int(tp.ends[b])
    gaps = gap_ack[s:e].tolist() if len(gap_ack) else [False] * (e - s)
    for k in range(s, e):
        model.process(
            int(tp.dir[k]) == orig_dir,
            int(tp.flags[k]),
            int(tp.plen[k]),
            int(tp.seq[k]),
            int(tp.ack[k]),
            int(tp.win[k]),
            gaps[k - s],
        )
    orig_is_client = (orig_dir == 0) != model.flipped
    return model.history, model.orig.state, model.resp.state, orig_is_client


def run_full_model(tp: TcpPackets, si: SeqInfo, gaps: list[list[list[int]]], origin: I64, b: int) -> str:
    """History of one block from the packet-by-packet model (tests compare it with the fast path)."""
    orig_dir, flip = zeek_roles(tp)
    gap_ack = gap_ack_events(tp, si, gaps, origin)
    return _full_model(tp, b, int(orig_dir[b]), bool(flip[b]), gap_ack)[0]


def _completeness_table() -> npt.NDArray[np.uint8]:
    """Contribution of a packet that does not open its conversation, by (flags & 0x17, payload)."""
    table = np.zeros(64, dtype=np.uint8)
    for f in range(32):
        for has_data in (0, 1):
            v = 0
            syn_bits = f & (TCP_SYN | TCP_ACK)
            if syn_bits == TCP_SYN | TCP_ACK:
                v |= 2
            if syn_bits == TCP_ACK:
                v |= 8 if has_data else 4
            if f & (TCP_FIN | TCP_ACK) == TCP_FIN | TCP_ACK:
                v |= 16
            if f & TCP_RST:
                v |= 32
            table[f | has_data << 5] = v
    return table


_COMPLETENESS = _completeness_table()


def _packet_kinds(tp: TcpPackets) -> npt.NDArray[np.uint8]:
    """Per packet: its FIN, SYN, RST, PSH, ACK bits, plus 32 when it carries payload.

    What both the completeness bits and the plain-segment letters of the history depend on.
    """
    kinds: npt.NDArray[np.uint8] = (tp.flags & 0x1F).astype(np.uint8)
    kinds |= (tp.plen > 0).view(np.uint8) << 5
    return kinds


def completeness(tp: TcpPackets) -> I64:
    """Wireshark's ``tcp.completeness`` per block (rules: module docstring)."""
    return _completeness(tp, _packet_kinds(tp))


def _completeness(tp: TcpPackets, kinds: npt.NDArray[np.uint8]) -> I64:
    nb = tp.n_blocks
    if nb == 0:
        return np.zeros(0, dtype=np.int64)
    contrib = _COMPLETENESS[kinds]
    f = tp.flags
    first = tp.starts
    first_pure_syn = (f[first] & (TCP_SYN | TCP_ACK)) == TCP_SYN
    # The packet that opens a conversation contributes only as a pure SYN (1, and 8 for data on a
    # SYN that created the conversation; a SYN that split a 4-tuple sets exactly 1).
    contrib[first] = np.where(
        first_pure_syn, 1 | np.where((tp.plen[first] > 0) & ~tp.opened_by_split, 8, 0), 0
    ).astype(np.uint8)
    return np.bitwise_or.reduceat(contrib, first).astype(np.int64)
