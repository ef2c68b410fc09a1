"""Payload per direction: reassembly, unique bytes, retransmissions, out-of-order segments, gaps,
duplicate ACKs, zero windows and keep-alives.

Definitions (per direction group; Wireshark's ``tcp.analysis.*`` where one exists, WSUG 7.5):

* *keep-alive*: no SYN/FIN/RST, 0 or 1 payload byte, ``seq`` = next expected - 1. Its byte is
  garbage by design, so it is not stream data.
* *data segment*: a packet with payload that is neither a RST (RST payload is a diagnostic, not
  stream data, RFC 9293 3.5.3) nor a keep-alive.
* *retransmission*: a data segment carrying bytes already seen (wholly or partly), or filling a
  hole below the highest sequence seen more than one handshake RTT (3 ms when unknown) after
  the segment that advanced that highest sequence.
* *out-of-order*: a data segment filling a hole below the highest sequence seen, within that RTT.
* *gap*: stream bytes that never appeared in the capture (lost before the capture point, or cut
  by the snap length); reported as ``[offset, length]`` pairs in stream offsets (0 = first byte).
* *duplicate ACK*: no payload, no SYN/FIN/RST, same ACK and same non-zero window as the previous
  packet of the direction, ``seq`` at the next expected sequence number, not a keep-alive.
* *zero window*: window field 0 on a packet without SYN/FIN/RST.

Reassembly keeps the first copy of every byte (a later, different copy of the same bytes does
not overwrite it), as a receiving TCP does for data it has already accepted. Directions whose
segments all arrive in order, without overlap and fully captured (nearly all of them) take a
fast path: their bytes are the concatenation of the payloads. The others go through an interval
set, segment by segment.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.flows.preview import PREVIEW_BYTES, preview
from analyzer.flows.tcp_seq import NONE, SeqInfo, reduce_per_group
from analyzer.flows.tcp_streams import TcpPackets
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

try:  # optional C helper (setup.py); without it the same digests come from hashlib
    from analyzer.flows import _digest  # type: ignore[attr-defined]

    if not _digest.available():
        _digest = None
except ImportError:
    _digest = None

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_OOO_RTT_S = 0.003  # Wireshark's out-of-order threshold when no handshake RTT is known


@dataclass(frozen=True)
class DataFacts:
    """Per direction group (2 * block + dir) payload facts, plus per-packet classifications."""

    bytes: I64  # stream length: unique payload bytes up to the highest one seen, holes included
    segments: I64  # data segments (retransmissions included)
    retransmissions: I64
    out_of_order: I64
    dup_acks: I64
    zero_windows: I64
    keep_alives: I64
    missing: I64  # bytes in gaps
    origin: I64  # relative sequence number of stream offset 0
    gaps: list[list[list[int]]]  # per group: [[offset, length], ...]
    sha256: list[str | None]  # None when payload bytes were not available
    preview: list[str | None]
    is_data: BOOL  # per packet: data segment
    is_keepalive: BOOL  # per packet
    stream_index: StreamIndex | None = None


@dataclass(frozen=True)
class StreamIndex:
    """Where each direction's reassembled bytes are in the capture file."""

    seg_groups: I64  # direction group of each run of data segments (ascending within a direction)
    bounds_start: I64  # [start, end) of each group's run in offsets/lengths
    bounds_end: I64
    offsets: I64  # file offset of every data segment (grouped, frame order)
    lengths: I64
    careful: dict[int, list[tuple[int, int, int]]]  # group -> (stream offset, file offset, length)

    def pieces(self, group: int) -> list[tuple[int, int]]:
        """(file offset, length) pieces of ``group``'s stream, in stream order."""
        if group in self.careful:
            return [(o, n) for _, o, n in self.careful[group]]
        # seg_groups is sorted within each direction (even groups, then odd groups)
        cand = np.flatnonzero(self.seg_groups % 2 == group % 2)
        i = int(np.searchsorted(self.seg_groups[cand], group))
        if i >= len(cand) or self.seg_groups[cand[i]] != group:
            return []
        a, b = int(self.bounds_start[cand[i]]), int(self.bounds_end[cand[i]])
        return list(zip(self.offsets[a:b].tolist(), self.lengths[a:b].tolist(), strict=True))


NO_GAPS: list[list[int]] = []  # shared by every direction without gaps (records are read-only)


class _Intervals:
    """Disjoint, merged half-open intervals; ``add`` returns the parts that were not covered yet."""

    __slots__ = ("e", "s")

    def __init__(self) -> None:
        self.s: list[int] = []
        self.e: list[int] = []

    def add(self, a: int, b: int) -> list[tuple[int, int]]:
        if b <= a:
            return []
        s, e = self.s, self.e
        i = bisect_left(e, a)
        j = bisect_right(s, b)
        new: list[tuple[int, int]] = []
        cur = a
        for k in range(i, j):
            if s[k] > cur:
                new.append((cur, min(s[k], b)))
            cur = max(cur, e[k])
        if cur < b:
            new.append((cur, b))
        if i < j:
            lo, hi = min(a, s[i]), max(b, e[j - 1])
            s[i:j] = [lo]
            e[i:j] = [hi]
        else:
            s.insert(i, a)
            e.insert(i, b)
        return new

    def complement(self, a: int, b: int) -> list[tuple[int, int]]:
        """Parts of [a, b) not covered."""
        out: list[tuple[int, int]] = []
        cur = a
        for s, e in zip(self.s, self.e, strict=True):
            if e <= cur:
                continue
            if s >= b:
                break
            if s > cur:
                out.append((cur, s))
            cur = max(cur, e)
        if cur < b:
            out.append((cur, b))
        return out


def classify_packets(tp: TcpPackets, si: SeqInfo) -> tuple[BOOL, BOOL, BOOL, BOOL]:
    """Per packet: (data segment, keep-alive, duplicate ACK, zero window)."""
    flags = tp.flags
    ctl = (flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0
    known = si.next_expected != NONE
    keepalive = ~ctl & (tp.plen <= 1) & known & (si.rel == si.next_expected - 1)
    is_data = (tp.plen > 0) & ((flags & TCP_RST) == 0) & ~keepalive
    zero_win = (tp.win == 0) & ~ctl

    n = tp.n_packets
    dup = np.zeros(n, dtype=bool)
    if n:
        d = si.dorder
        prev_ack = np.empty(n, dtype=np.int64)
        prev_win = np.empty(n, dtype=np.int64)
        prev_has_ack = np.zeros(n, dtype=bool)
        ack_d = tp.ack[d].astype(np.int64)
        win_d = tp.win[d].astype(np.int64)
        has_ack_d = (flags[d] & TCP_ACK) != 0
        prev_ack[1:] = ack_d[:-1]
        prev_win[1:] = win_d[:-1]
        prev_has_ack[1:] = has_ack_d[:-1]
        first = np.zeros(n, dtype=bool)
        first[si.gstart[si.gend > si.gstart]] = True
        prev_has_ack[first] = False
        dup_d = (
            (tp.plen[d] == 0)
            & ~ctl[d]
            & has_ack_d
            & prev_has_ack
            & (ack_d == prev_ack)
            & (win_d == prev_win)
            & (win_d != 0)
            & (si.rel[d] == si.next_expected[d])
            & ~keepalive[d]
        )
        dup[d] = dup_d
    return is_data, keepalive, dup, zero_win


def analyze_data(
    tp: TcpPackets,
    si: SeqInfo,
    payloads: CaptureBytes | None,
    irtt_s: npt.NDArray[np.float64],
) -> DataFacts:
    """Reassemble every direction of every connection (rules: module docstring).

    ``irtt_s`` is the per-block handshake RTT in seconds (NaN when unknown), the out-of-order
    threshold.
    """
    ng = 2 * tp.n_blocks
    is_data, keepalive, dup, zero_win = classify_packets(tp, si)
    group = si.group
    seg_count = np.bincount(group[is_data], minlength=ng).astype(np.int64)
    ka_count = np.bincount(group[keepalive], minlength=ng).astype(np.int64)
    dup_count = np.bincount(group[dup], minlength=ng).astype(np.int64)
    zw_count = np.bincount(group[zero_win], minlength=ng).astype(np.int64)

    # Data segments grouped by direction group, frame order inside.
    segs = si.dorder[is_data[si.dorder]]
    g = group[segs]
    start = si.data_start[segs]
    length = tp.plen[segs]
    cap = np.minimum(tp.column("payload_caplen", segs).astype(np.int64), length)
    off = tp.column("payload_offset", segs).astype(np.int64)
    m = len(segs)
    gfirst = np.r_[True, g[1:] != g[:-1]] if m else np.zeros(0, bool)

    origin = np.ones(ng, dtype=np.int64)
    if m:
        min_start = reduce_per_group(np.minimum, start, g, ng, np.iinfo(np.int64).max)
        no_syn = ~si.has_syn
        has = min_start != np.iinfo(np.int64).max
        origin[no_syn & has] = min_start[no_syn & has]

    expected = np.empty(m, dtype=np.int64)
    if m:
        expected[1:] = start[:-1] + length[:-1]
        expected[gfirst] = origin[g[gfirst]]
    bad = (start != expected) | (cap != length) | (off < 0)
    bad_groups = np.bincount(g[bad], minlength=ng) > 0 if m else np.zeros(ng, bool)

    total = np.bincount(g, weights=length, minlength=ng).astype(np.int64) if m else np.zeros(ng, np.int64)
    unique = total.copy()
    retrans = np.zeros(ng, dtype=np.int64)
    ooo = np.zeros(ng, dtype=np.int64)
    missing = np.zeros(ng, dtype=np.int64)
    gaps: list[list[list[int]]] = [NO_GAPS] * ng

    bounds_start = np.flatnonzero(gfirst)
    bounds_end = np.r_[bounds_start[1:], m].astype(np.int64) if m else bounds_start
    seg_groups = g[bounds_start]
    careful: dict[int, list[tuple[int, int, int]]] = {}
    bad_k = np.flatnonzero(bad_groups[seg_groups])
    if len(bad_k):
        start_l = start.tolist()
        len_l = length.tolist()
        cap_l = cap.tolist()
        off_l = off.tolist()
        ts_l = tp.ts[segs].tolist()
        irtt_l = irtt_s.tolist()
        origin_l = origin.tolist()
        for gi, a, b in zip(
            seg_groups[bad_k].tolist(), bounds_start[bad_k].tolist(), bounds_end[bad_k].tolist(), strict=True
        ):
            rtt = irtt_l[gi >> 1]
            threshold = rtt if rtt == rtt and rtt > 0 else DEFAULT_OOO_RTT_S  # NaN != NaN
            u, r, o, pieces, gap_list = _careful(
                start_l[a:b], len_l[a:b], cap_l[a:b], off_l[a:b], ts_l[a:b], origin_l[gi], threshold
            )
            unique[gi] = u
            retrans[gi] = r
            ooo[gi] = o
            careful[gi] = pieces
            gaps[gi] = gap_list
            missing[gi] = sum(x[1] for x in gap_list)

    index = StreamIndex(
        seg_groups=seg_groups, bounds_start=bounds_start, bounds_end=bounds_end, offsets=off, lengths=length,
        careful=careful,
    )  # fmt: skip
    sha: list[str | None] = [None] * ng
    prev: list[str | None] = [None] * ng
    if payloads is not None:
        sha[:] = [EMPTY_SHA256] * ng
        prev[:] = [""] * ng
        _digests_and_previews(payloads, index, bad_groups, missing, sha, prev)

    return DataFacts(
        bytes=unique,
        segments=seg_count,
        retransmissions=retrans,
        out_of_order=ooo,
        dup_acks=dup_count,
        zero_windows=zw_count,
        keep_alives=ka_count,
        missing=missing,
        origin=origin,
        gaps=gaps,
        sha256=sha,
        preview=prev,
        is_data=is_data,
        is_keepalive=keepalive,
        stream_index=index,
    )


HASH_BATCH = 16384  # directions hashed between two drops of the mapped pages


def drop_resident_pages(payloads: CaptureBytes) -> None:
    """Let the kernel drop the capture's mapped pages from this process once they are hashed.

    Hashing touches every payload byte, which makes the whole mapped file part of the process'
    resident memory (a quarter of a GB at 10^6 packets) although the page cache keeps it anyway;
    later reads fault the pages back in from the cache.
    """
    data = payloads.data
    if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") and not data.closed:
        data.madvise(mmap.MADV_DONTNEED)


def _digests_and_previews(
    payloads: CaptureBytes,
    index: StreamIndex,
    bad_groups: BOOL,
    missing: I64,
    sha: list[str | None],
    prev: list[str | None],
) -> None:
    """sha256 (None when the stream has gaps) and preview of every direction group.

    Segments are hashed straight from the capture's bytes (no copy of the stream); only the
    first PREVIEW_BYTES + 1 bytes are assembled, for the preview. Directions reassembled in
    order (nearly all) are runs of consecutive pieces of the stream index: the C helper
    (``_digest``) hashes a batch of them per call, hashlib does it without it. Directions that
    took the careful path have their own piece lists, hashed the same way.
    """
    data = payloads.data
    want = PREVIEW_BYTES + 1
    previews: dict[bytes, str] = {}

    def preview_of(head: bytes) -> str:
        # A preview depends only on the first PREVIEW_BYTES bytes and on whether more follow.
        text = previews.get(head)
        if text is None:
            text = previews[head] = preview(head)
        return text

    groups = index.seg_groups
    runs = np.flatnonzero(~bad_groups[groups])
    # In file order, a batch at a time, dropping the mapped pages after each batch: the pages
    # of the whole file are never resident in this process at once.
    runs = runs[np.argsort(index.offsets[index.bounds_start[runs]], kind="stable")]
    for part in range(0, len(runs), HASH_BATCH):
        batch = runs[part : part + HASH_BATCH]
        starts, ends = index.bounds_start[batch], index.bounds_end[batch]
        digests, heads = _hash_runs(data, index.offsets, index.lengths, starts, ends, want)
        for gi, digest, head in zip(groups[batch].tolist(), digests, heads, strict=True):
            sha[gi] = digest
            prev[gi] = preview_of(head)
        drop_resident_pages(payloads)

    # Directions that took the careful path: their own pieces, as runs of one flat list.
    careful = list(index.careful.items())
    if careful:
        counts = np.fromiter((len(p) for _, p in careful), dtype=np.int64, count=len(careful))
        ends = np.cumsum(counts)
        flat = [(o, n) for _, pieces in careful for _, o, n in pieces]
        offsets = np.fromiter((o for o, _ in flat), dtype=np.int64, count=len(flat))
        lengths = np.fromiter((n for _, n in flat), dtype=np.int64, count=len(flat))
        digests, heads = _hash_runs(data, offsets, lengths, ends - counts, ends, want)
        for (gi, _), digest, head in zip(careful, digests, heads, strict=True):
            sha[gi] = digest
            prev[gi] = preview_of(head)
    drop_resident_pages(payloads)
    # A stream with gaps has no sha256: it would not match what the application sent.
    for gi in np.flatnonzero(missing > 0).tolist():
        sha[gi] = None


def _hash_runs(
    data: Buffer, offsets: I64, lengths: I64, starts: I64, ends: I64, want: int
) -> tuple[list[str], list[bytes]]:
    """Hex sha256 and first ``want`` bytes of each run of pieces ``starts[r]:ends[r]``."""
    if _digest is not None and os.environ.get("ANALYZER_PURE_PYTHON") != "1":
        raw = _digest.sha256_runs(data, offsets, lengths, starts, ends).hex()
        digests = [raw[k : k + 64] for k in range(0, len(raw), 64)]
        return digests, _digest.heads(data, offsets, lengths, starts, ends, want)
    mv = memoryview(data)
    off_l, len_l = offsets.tolist(), lengths.tolist()
    digests, heads = [], []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        h = hashlib.sha256()
        head = b""
        for o, n in zip(off_l[a:b], len_l[a:b], strict=True):
            h.update(mv[o : o + n])
            if len(head) < want:
                head += data[o : o + min(n, want - len(head))]
        digests.append(h.hexdigest())
        heads.append(head)
    return digests, heads


def _careful(
    starts: list[int],
    lens: list[int],
    caps: list[int],
    offs: list[int],
    times: list[float],
    origin: int,
    ooo_threshold: float,
) -> tuple[int, int, int, list[tuple[int, int, int]], list[list[int]]]:
    """Reassemble one direction segment by segment.

    Returns (stream length, retransmissions, out-of-order, content pieces, gaps).
    """
    seq_cov = _Intervals()
    content_cov = _Intervals()
    pieces: list[tuple[int, int, int]] = []
    max_end = origin
    t_adv: float | None = None
    retrans = ooo = 0
    for s, n, c, o, t in zip(starts, lens, caps, offs, times, strict=True):
        e = s + n
        new = seq_cov.add(s, e)
        new_len = sum(b - a for a, b in new)
        if new_len == 0:
            retrans += 1
        elif s < max_end:
            if new_len < n or t_adv is None or t - t_adv >= ooo_threshold:
                retrans += 1
            else:
                ooo += 1
        if e > max_end:
            max_end = e
            t_adv = t
        if c > 0 and o >= 0:
            for a, b in content_cov.add(s, s + c):
                pieces.append((a - origin, o + (a - s), b - a))
    lo = min(origin, seq_cov.s[0]) if seq_cov.s else origin
    # The stream's length, holes included: what the sender sent; ``missing`` says what we lack.
    unique = max_end - lo
    gap_list = [[a - origin, b - a] for a, b in content_cov.complement(lo, max_end)]
    pieces.sort()
    return unique, retrans, ooo, pieces, gap_list
