"""Network layer: IPv4 (options, fragments) and IPv6 (extension headers walked)."""

from __future__ import annotations

import numpy as np

from analyzer.decode.gather import gather, rows
from analyzer.decode.layers import I64, Layers, fields, mark_if, mark_past_capture
from analyzer.decode.wire import (
    IP4_TCP_TS_DT,
    IP6_DT,
    IPPROTO_TCP,
    IPV6_EXT_HEADERS,
    MAX_IPV6_EXT,
    NOTE_FRAGMENT,
    NOTE_MALFORMED,
    NOTE_TRUNCATED,
    TCP_FIELDS,
    TS_FIELDS,
)


def ipv4(ly: Layers) -> None:
    """IPv4 for every packet at once: masks over whole columns, no index arrays.

    Nearly every packet of a typical capture is IPv4, so reading a header for the few that are
    not (at offset 0, results masked away) is cheaper than gathering and scattering subsets.
    """
    m = ly.l3_kind == 4
    if not m.any():
        return
    l3 = ly.l3
    m = mark_if(ly, m & (l3 + 20 > ly.end), NOTE_TRUNCATED, m)
    pre, pre_at = ly.pre_l3, ly.pre_l3_at
    if pre is not None and pre_at is not None and ((l3 == pre_at) | ~m).all():
        both = pre  # read with the link header (link._ethertype)
    else:
        both = gather(ly.buf, np.where(m, l3, 0), IP4_TCP_TS_DT)
    h = both["ip"]
    vihl = h["vihl"]
    m = mark_if(ly, m & ((vihl >> 4) != 4), NOTE_MALFORMED, m)
    ly.ip_version[m] = 4
    np.copyto(ly.src4, h["src"], where=m)
    np.copyto(ly.dst4, h["dst"], where=m)
    proto = h["proto"]
    np.copyto(ly.ip_proto, proto, where=m)
    ihl = (vihl & 0x0F).astype(np.int64) << 2
    total = h["len"].astype(np.int64)
    frag = h["frag"]
    is_frag = m & ((frag & 0x3FFF) != 0)  # MF or a fragment offset
    if is_frag.any():
        ly.ip_frag |= is_frag
        ly.note[is_frag] |= np.uint8(NOTE_FRAGMENT)
    ok = mark_if(ly, m & ((ihl < 20) | (total < ihl)), NOTE_MALFORMED, m)
    ok &= (frag & 0x1FFF) == 0  # later fragments carry no transport header
    dgram_end = l3 + total
    np.copyto(ly.l4, l3 + ihl, where=ok)
    np.copyto(ly.l4_end, dgram_end, where=ok)
    mark_past_capture(ly, ok & (dgram_end > ly.end))
    # TCP headers already read: IHL 5 puts them right after the IPv4 header.
    pre = ok & (ihl == 20) & (proto == IPPROTO_TCP)
    if pre.any():
        ly.pre_mask = pre
        ly.pre = fields(both["tcp"], TCP_FIELDS) | fields(both["ts"], TS_FIELDS)


def ipv6(ly: Layers, idx: I64) -> None:
    idx = idx[~ly.short(idx, ly.l3[idx] + 40)]
    if not len(idx):
        return
    h = gather(ly.buf, ly.l3[idx], IP6_DT)
    bad_version = (h["vtcfl"] >> 28) != 6
    ly.mark(idx[bad_version], NOTE_MALFORMED)
    idx, h = idx[~bad_version], rows(h, ~bad_version)
    ly.ip_version[idx] = 6
    ly.idx6 = idx
    ly.src6 = h["src"].astype(np.uint64)
    ly.dst6 = h["dst"].astype(np.uint64)
    nh = h["nh"].astype(np.uint8)
    pos = ly.l3[idx] + 40
    dgram_end = pos + h["plen"].astype(np.int64)
    alive = np.ones(len(idx), dtype=np.bool_)  # transport header still reachable
    for _ in range(MAX_IPV6_EXT):
        ext = alive & np.isin(nh, IPV6_EXT_HEADERS)
        if not ext.any():
            break
        e = np.nonzero(ext)[0]
        lacking = ly.short(idx[e], pos[e] + 8)
        alive[e[lacking]] = False
        e = e[~lacking]
        p = pos[e]
        nxt = ly.u8[p]
        hl = ly.u8[p + 1].astype(np.int64)
        kind = nh[e]
        length = np.where(kind == 51, (hl + 2) * 4, np.where(kind == 44, 8, (hl + 1) * 8))
        is_frag = kind == 44
        if is_frag.any():
            f = e[is_frag]
            ly.ip_frag[idx[f]] = True
            ly.mark(idx[f], NOTE_FRAGMENT)
            nonfirst = (ly.be16(pos[f] + 2) >> 3) != 0
            alive[f[nonfirst]] = False
            nh[f[nonfirst]] = nxt[is_frag][nonfirst]  # ip_proto still names the upper layer
            nxt_keep = ~np.isin(e, f[nonfirst])
            e, nxt, length = e[nxt_keep], nxt[nxt_keep], length[nxt_keep]
        nh[e] = nxt
        pos[e] += length
    over = alive & (pos > dgram_end)
    ly.mark(idx[over], NOTE_MALFORMED)
    alive &= ~over
    ly.ip_proto[idx] = nh
    _set_l4(ly, idx[alive], pos[alive], dgram_end[alive])


def _set_l4(ly: Layers, idx: I64, l4: I64, dgram_end: I64) -> None:
    ly.l4[idx] = l4
    ly.l4_end[idx] = dgram_end
    past = np.zeros(ly.n, dtype=np.bool_)
    past[idx] = dgram_end > ly.end[idx]
    mark_past_capture(ly, past)
