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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    real = values[~missing]
    if len(real) == 0:
        return np.full(m, NONE, dtype=np.int64)
    lo = int(real.min()) - 1  # stands for NONE while scanning
    span = int(real.max()) - lo + 1
    run: I64 = np.where(missing, lo, values).astype(np.int64)
    if span * nseg < (1 << 62):
        # Lift every segment above the previous one so one global running max restarts per segment.
        lift = np.repeat(np.arange(nseg, dtype=np.int64) * span - lo, np.diff(np.r_[starts, m]))
        run += lift
        np.maximum.accumulate(run, out=run)
        run -= lift
    else:  # pragma: no cover - only for absurd sequence spans; correct but slower
        for s, e in zip(*_bounds(seg_start), strict=True):
            run[s:e] = np.maximum.accumulate(run[s:e])
    run[run == lo] = NONE
    if inclusive:
        return run
    out: I64 = np.empty_like(run)
    out[0] = NONE
    out[1:] = run[:-1]
    out[starts] = NONE
    return out


def _bounds(seg_start: BOOL) -> tuple[I64, I64]:
    starts = np.flatnonzero(seg_start)
    return starts, np.r_[starts[1:], len(seg_start)]


def first_index_per_group(mask: BOOL, group_of: I64, n_groups: int) -> I64:
    """Index of the first True of ``mask`` per group (array order), -1 where none.

    Every group's elements must be contiguous in array order, as they are for packets (sorted by
    block) and for ``dorder`` positions (sorted by direction group).
    """
    out = np.full(n_groups, -1, dtype=np.int64)
    idx = np.flatnonzero(mask)
    if len(idx):
        g = group_of[idx]
        first = np.r_[True, g[1:] != g[:-1]]
        out[g[first]] = idx[first]
    return out


def last_index_per_group(mask: BOOL, group_of: I64, n_groups: int) -> I64:
    """Index of the last True of ``mask`` per group (array order), -1 where none."""
    out = np.full(n_groups, -1, dtype=np.int64)
    idx = np.flatnonzero(mask)
    if len(idx):
        g = group_of[idx]
        last = np.r_[g[1:] != g[:-1], True]
        out[g[last]] = idx[last]
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


def compute_seq(tp: TcpPackets) -> SeqInfo:
    """Relative sequence numbers of every packet of ``tp`` (rules: module docstring)."""
    n = tp.n_packets
    ng = 2 * tp.n_blocks
    group = tp.block * 2 + tp.dir.astype(np.int64)
    dorder = np.concatenate([np.flatnonzero(tp.dir == 0), np.flatnonzero(tp.dir == 1)]).astype(np.int64)
    g_sorted = group[dorder]
    counts = np.bincount(group, minlength=ng).astype(np.int64)
    # Groups appear in dorder as: all even groups ascending, then all odd groups ascending.
    order_of_groups = np.r_[np.arange(0, ng, 2), np.arange(1, ng, 2)].astype(np.int64)
    pos = np.zeros(ng, dtype=np.int64)
    pos[order_of_groups] = np.r_[0, np.cumsum(counts[order_of_groups])[:-1]] if ng else []
    gstart = pos
    gend = pos + counts

    flags = tp.flags
    is_syn = (flags & TCP_SYN) != 0
    is_fin = (flags & TCP_FIN) != 0
    is_rst = (flags & TCP_RST) != 0
    seq64 = tp.seq.astype(np.int64)

    # Base per group: first SYN's seq, else first seq - 1.
    first_syn_pos = first_index_per_group(is_syn[dorder], g_sorted, ng)
    has_syn = first_syn_pos >= 0
    isn = np.where(has_syn, seq64[dorder[np.maximum(first_syn_pos, 0)]], -1) if n else np.zeros(ng, np.int64)
    nonempty = counts > 0
    first_seq = np.zeros(ng, dtype=np.int64)
    first_seq[nonempty] = seq64[dorder[gstart[nonempty]]]
    base = np.where(has_syn, isn, (first_seq - 1) & 0xFFFFFFFF)

    seg_start = np.zeros(n, dtype=bool)
    seg_start[gstart[nonempty]] = True
    rel = np.zeros(n, dtype=np.int64)
    if n:
        s_sorted = tp.seq[dorder]
        step = np.empty(n, dtype=np.int64)
        step[1:] = (s_sorted[1:] - s_sorted[:-1]).view(np.int32)
        sp = np.flatnonzero(seg_start)  # group starts in dorder position order
        first_rel = ((s_sorted[sp].astype(np.int64) - base[g_sorted[sp]]) & 0xFFFFFFFF).astype(np.uint32)
        step[sp] = first_rel.view(np.int32)
        csum = np.cumsum(step)
        offset = csum[sp] - step[sp]
        rel[dorder] = csum - np.repeat(offset, np.diff(np.r_[sp, n]))

    syn_i = is_syn.astype(np.int64)
    payload_in_seq = np.where(is_rst, 0, tp.plen)
    end = rel + payload_in_seq + syn_i + is_fin.astype(np.int64)
    data_start = rel + syn_i

    vals = np.where(is_rst, NONE, end)[dorder]
    nxt_sorted = segmented_running_max(vals, seg_start, inclusive=False)
    next_expected = np.empty(n, dtype=np.int64)
    next_expected[dorder] = nxt_sorted

    top = np.zeros(ng, dtype=np.int64)
    if n:
        sp = np.flatnonzero(seg_start)
        top[g_sorted[sp]] = np.maximum.reduceat(end[dorder], sp)

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
        isn=isn.astype(np.int64),
        base=base.astype(np.int64),
        top=top,
    )
