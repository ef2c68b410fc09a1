"""Relative sequence numbers per direction, and the running "next expected sequence number".

A *direction group* is one direction of one connection: ``group = 2 * block + dir``. Its base is
the ISN when that side sent a SYN (so the first payload byte is at relative sequence 1, as in
Wireshark), otherwise the first packet's ``seq - 1``. Raw 32-bit sequence numbers are unwrapped
by summing signed 32-bit differences between consecutive packets of the group, so streams longer
than 4 GiB and stray sequence numbers (a RST with a random ``seq``) do not corrupt the packets
after them.

``dorder`` lists the packets grouped by direction group (client->server packets of every block,
then server->client packets), frame order inside each group; it is how every per-direction
running quantity is computed without sorting a million rows again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.flows.tcp_streams import TcpPackets
from analyzer.schema import TCP_FIN, TCP_RST, TCP_SYN

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
NONE = np.int64(-(1 << 62))  # "no value" in int64 arrays of relative sequence numbers


@dataclass(frozen=True)
class SeqInfo:
    """Per-packet relative sequence facts and per-group bases (see the module docstring)."""

    group: I64  # per packet: 2 * block + dir
    dorder: I64  # packet indices grouped by direction group, frame order inside
    gstart: I64  # per group: first position in dorder (groups with no packet: gstart == gend)
    gend: I64
    rel: I64  # per packet: seq - base, unwrapped
    end: I64  # per packet: rel + sequence space used (payload unless RST, +1 SYN, +1 FIN)
    data_start: I64  # per packet: relative sequence number of the first payload byte
    next_expected: I64  # per packet: max end of the earlier non-RST packets of the group, or NONE
    has_syn: BOOL  # per group: that side sent a SYN (pure or SYN-ACK)
    isn: I64  # per group: raw sequence number of the side's first SYN, -1 if none
    base: I64  # per group: raw base (isn, or first seq - 1)
    top: I64  # per group: highest ``end`` (relative), 0 for a group without packets


def segmented_running_max(values: I64, seg_start: BOOL, inclusive: bool = True) -> I64:
    """Running maximum of ``values`` restarting where ``seg_start`` is true.

    ``NONE`` entries take part as "no value". With ``inclusive=False`` each position gets the
    maximum of the earlier positions of its segment (NONE for a segment's first position).
    """
    m = len(values)
    if m == 0:
        return values.copy()
    starts = np.flatnonzero(seg_start)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.r_[0, starts].astype(np.int64)  # the array's start always opens a segment
    nseg = len(starts)
    missing = values <= NONE
    top = np.iinfo(np.int64).max
    run: I64 = np.where(missing, top, values)
    real_min = int(run.min())
    if real_min == top:
        return np.full(m, NONE, dtype=np.int64)
    lo = real_min - 1  # stands for NONE while scanning
    span = int(values.max()) - lo + 1
    run[missing] = lo
    if span * nseg < (1 << 62):
        # Lift every segment above the previous one so one global running max restarts per segment.
        lift = np.repeat(np.arange(nseg, dtype=np.int64) * span - lo, np.diff(np.r_[starts, m]))
        run += lift
        np.maximum.accumulate(run, out=run)
        run -= lift
    else:  # pragma: no cover - only for absurd sequence spans; correct but slower
        for s, e in zip(*_bounds(seg_start), strict=True):
            run[s:e] = np.maximum.accumulate(run[s:e])
    if not inclusive:
        run[1:] = run[:-1].copy()
        run[starts] = lo
    run[run == lo] = NONE
    return run


def _bounds(seg_start: BOOL) -> tuple[I64, I64]:
    starts = np.flatnonzero(seg_start)
    return starts, np.r_[starts[1:], len(seg_start)]


def first_index_per_group(mask: BOOL, group_of: I64, n_groups: int) -> I64:
    """Index of the first True of ``mask`` per group (array order), -1 where none.

    Every group's elements must be contiguous in array order, as they are for packets (sorted by
    block) and for ``dorder`` positions (sorted by direction group).
    """
    return first_row_per_group(np.flatnonzero(mask), group_of, n_groups)


def first_row_per_group(rows: I64, group_of: I64, n_groups: int) -> I64:
    """The first of the ascending ``rows`` in each group, -1 where none (groups as above).

    ``group_of`` is indexed by row; selecting the few rows that matter (SYNs, FINs, RSTs) first
    saves the passes over every packet that a mask would take.
    """
    out = np.full(n_groups, -1, dtype=np.int64)
    if len(rows):
        g = group_of[rows]
        first = np.ones(len(g), dtype=bool)
        np.not_equal(g[1:], g[:-1], out=first[1:])
        out[g[first]] = rows[first]
    return out


def reduce_per_group(ufunc: np.ufunc, values: I64, group_of: I64, n_groups: int, fill: int) -> I64:
    """``ufunc`` reduction of ``values`` per group (``fill`` for groups without values).

    Like ``ufunc.at`` but with ``reduceat``, so the groups' elements must be contiguous.
    """
    out = np.full(n_groups, fill, dtype=np.int64)
    if len(values):
        starts = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])
        out[group_of[starts]] = ufunc.reduceat(values, starts)
    return out


def first_after(
    rows: I64,
    after: I64,
    limit: I64,
    accept: Callable[[I64, I64], BOOL],
    rounds: int = 3,
) -> I64:
    """Per query ``q``: the first of the ascending ``rows`` strictly between ``after[q]`` and
    ``limit[q]`` for which ``accept(q_indices, rows)`` is true; -1 where none is.

    The match is usually the first candidate or the next (the ACK right after a FIN), so a few
    rounds try each open query's next candidate; the queries still open after that test all
    their remaining candidates at once. No query costs more than its own candidates.
    """
    out = np.full(len(after), -1, dtype=np.int64)
    q = np.flatnonzero(after < limit)
    p = np.searchsorted(rows, after[q], "right")
    nrows = len(rows)
    open_ = p < nrows
    q, p = q[open_], p[open_]
    for _ in range(rounds):
        r = rows[p]
        inside = r < limit[q]
        q, p, r = q[inside], p[inside], r[inside]
        if len(q) == 0:
            return out
        ok = accept(q, r)
        out[q[ok]] = r[ok]
        p += 1
        more = ~ok & (p < nrows)
        q, p = q[more], p[more]
    if len(q):
        _scan_rest(rows, q, p, np.searchsorted(rows, limit[q], "left"), accept, out)
    return out


def first_in_spans(rows: I64, lo: I64, hi: I64, accept: Callable[[I64, I64], BOOL], rounds: int = 3) -> I64:
    """Per query ``q``: the position in ``rows`` of the first of ``rows[lo[q]:hi[q]]`` that
    ``accept`` takes, -1 where none is.

    ``first_after`` for spans known by position, such as a direction group's packets in dorder
    (``si.dorder``, ``si.gstart``, ``si.gend``).
    """
    out = np.full(len(lo), -1, dtype=np.int64)
    q = np.flatnonzero(lo < hi)
    p = lo[q]
    for _ in range(rounds):
        if len(q) == 0:
            return out
        ok = accept(q, rows[p])
        out[q[ok]] = p[ok]
        p = p + 1
        more = ~ok & (p < hi[q])
        q, p = q[more], p[more]
    if len(q):
        _scan_rest(rows, q, p, hi[q], accept, out, positions=True)
    return out


def _scan_rest(
    rows: I64,
    q: I64,
    p: I64,
    stop: I64,
    accept: Callable[[I64, I64], BOOL],
    out: I64,
    positions: bool = False,
) -> None:
    """Test every candidate ``rows[p[i]:stop[i]]`` of the open queries ``q`` at once; the first
    accepted one (its position with ``positions``) goes to ``out``."""
    counts = np.maximum(stop - p, 0)
    owner = np.repeat(np.arange(len(q), dtype=np.int64), counts)
    first_pos = np.cumsum(counts) - counts
    pos = np.arange(len(owner), dtype=np.int64) + np.repeat(p - first_pos, counts)
    r = rows[pos]
    hit = first_index_per_group(accept(q[owner], r), owner, len(q))
    found = hit >= 0
    out[q[found]] = (pos if positions else r)[hit[found]]


def sort_keys(parts: list[I64], max_key: int) -> I64:
    """The keys of ``parts`` (each below ``max_key``) in one sorted int64 array.

    Keys that fit 32 bits are sorted as uint32, which numpy sorts several times faster.
    """
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if max_key <= 1 << 32:
        return np.sort(keys.astype(np.uint32)).astype(np.int64)
    return np.sort(keys)


def factorize_runs(symbols: I64, run_start: I64, run_len: I64, bits: int) -> tuple[I64, I64]:
    """Number the distinct symbol sequences ``symbols[run_start[i] : run_start[i] + run_len[i]]``.

    The runs tile ``symbols`` in order (run i + 1 starts where run i ends). Returns (code per run,
    first run of each code), codes numbered in order of first appearance like ``pd.factorize``
    on the runs as strings. Symbols must lie in ``0 .. 2**bits - 2``.

    A connection's events, history letters, ... are such runs, and few distinct ones exist: a
    run of up to ``63 // bits`` symbols is packed into one int64 (symbol + 1 per ``bits`` bits,
    so runs of different lengths differ); longer runs, which are rare, are compared as bytes.
    """
    nr = len(run_start)
    per = 63 // bits
    keys = np.zeros(nr, dtype=np.int64)
    if len(symbols):
        long_runs = np.flatnonzero(run_len > per)
        k = np.arange(len(symbols), dtype=np.int64)
        k -= np.repeat(run_start, run_len)
        k *= bits
        if len(long_runs):
            np.minimum(k, 63, out=k)
        packed = symbols + 1
        packed <<= k
        if len(long_runs):
            packed[k >= per * bits] = 0
        nonempty = run_len > 0
        keys[nonempty] = np.bitwise_or.reduceat(packed, run_start[nonempty])
        if len(long_runs):
            raw = symbols.astype(np.uint8).tobytes()
            texts = [
                raw[a : a + m]
                for a, m in zip(run_start[long_runs].tolist(), run_len[long_runs].tolist(), strict=True)
            ]
            codes_long, _ = pd.factorize(pd.Series(texts, dtype=object), sort=False)
            keys[long_runs] = -1 - np.asarray(codes_long, dtype=np.int64)
    codes = np.asarray(pd.factorize(keys, sort=False)[0], dtype=np.int64)
    # codes appear in increasing order: a run opens a new code where it beats all earlier ones
    seen = np.maximum.accumulate(codes)
    first = np.ones(nr, dtype=bool)
    np.greater(codes[1:], seen[:-1], out=first[1:])
    return codes, np.flatnonzero(first)


def direction_rows(si: SeqInfo) -> tuple[I64, I64]:
    """(client->server packets, server->client packets), each ascending: the two halves of dorder."""
    nc = int(si.gend[-2]) if len(si.gend) else 0
    return si.dorder[:nc], si.dorder[nc:]


def compute_seq(tp: TcpPackets) -> SeqInfo:
    """Relative sequence numbers of every packet of ``tp`` (rules: module docstring)."""
    n = tp.n_packets
    nb = tp.n_blocks
    ng = 2 * nb
    d = tp.dir
    group = tp.block * 2
    group += d
    c2s = np.flatnonzero(d == 0)
    s2c = np.flatnonzero(d != 0)
    nc = len(c2s)
    dorder = np.concatenate((c2s, s2c))
    # Groups appear in dorder as: all even groups ascending, then all odd groups ascending.
    counts = np.bincount(group, minlength=ng)
    gstart = np.empty(ng, dtype=np.int64)
    for k, offset in ((0, 0), (1, nc)):
        c = counts[k::2]
        gstart[k::2] = np.cumsum(c) - c + offset
    gend = gstart + counts

    flags = tp.flags
    seq = tp.seq
    # Base per group: first SYN's seq, else first seq - 1. SYN rows are few: per direction their
    # groups ascend, so the first of each run is the group's first SYN.
    isn = np.full(ng, -1, dtype=np.int64)
    syn_rows = np.flatnonzero((flags & TCP_SYN) != 0)
    syn_dir = d[syn_rows]
    for k in (0, 1):
        rows = syn_rows[syn_dir == k]
        g = group[rows]
        first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
        isn[g[first]] = seq[rows[first]]
    has_syn = isn >= 0
    nonempty = gend > gstart
    # group starts in dorder position order: the client->server groups come first
    gid = np.flatnonzero(nonempty[0::2]) * 2
    gid = np.r_[gid, np.flatnonzero(nonempty[1::2]) * 2 + 1]
    sp = gstart[gid]
    first_seq = np.zeros(ng, dtype=np.int64)
    first_seq[gid] = seq[dorder[sp]]
    base = np.where(has_syn, isn, (first_seq - 1) & 0xFFFFFFFF)

    # Work in dorder (group) order, where every group is one contiguous run; scatter at the end.
    flags_s = flags[dorder]
    s_sorted = seq[dorder]
    # rel: the first packet's offset from the base, then signed 32-bit steps, summed per group.
    # One cumsum serves all groups: each group's first step also cancels the previous group's sum.
    step = np.empty(n, dtype=np.int32)
    np.subtract(s_sorted[1:], s_sorted[:-1], out=step[1:].view(np.uint32))
    step[sp] = (s_sorted[sp] - base[gid].astype(np.uint32)).view(np.int32)
    rel_s = step.astype(np.int64)
    if n:
        rel_s[sp[1:]] -= np.add.reduceat(rel_s, sp)[:-1]
    np.cumsum(rel_s, out=rel_s)

    rst_s = np.flatnonzero((flags_s & TCP_RST) != 0)
    # sequence space: payload unless RST, +1 for SYN, +1 for FIN
    end_s = tp.plen[dorder]
    end_s[rst_s] = 0
    end_s += (flags_s & TCP_FIN) != 0
    end_s += (flags_s & TCP_SYN) != 0
    end_s += rel_s
    top = np.zeros(ng, dtype=np.int64)
    if n:
        top[gid] = np.maximum.reduceat(end_s, sp)
    # next_expected: the inclusive running max of the previous packet's end (RSTs left out), with
    # every group restarting empty.
    prev_end = np.empty(n, dtype=np.int64)
    prev_end[1:] = end_s[:-1]
    prev_end[rst_s[rst_s < n - 1] + 1] = NONE
    prev_end[sp] = NONE
    seg_start = np.zeros(n, dtype=bool)
    seg_start[sp] = True
    next_s = segmented_running_max(prev_end, seg_start)
    del prev_end

    # Back to packet order. The sorted buffers are reused: every fresh array of a million rows
    # costs page faults.
    rel = np.empty(n, dtype=np.int64)
    rel[dorder] = rel_s
    end = np.empty(n, dtype=np.int64)
    end[dorder] = end_s
    next_expected = end_s
    next_expected[dorder] = next_s
    data_start = np.add(rel, (flags & TCP_SYN) != 0, out=rel_s)

    return SeqInfo(
        group=group,
        dorder=dorder,
        gstart=gstart,
        gend=gend,
        rel=rel,
        end=end,
        data_start=data_start,
        next_expected=next_expected,
        has_syn=has_syn,
        isn=isn,
        base=base,
        top=top,
    )
