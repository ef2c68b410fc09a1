"""Transport layer: TCP (with options), UDP, ICMP/ICMPv6 and the headers quoted by ICMP errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.decode.gather import gather, rows
from analyzer.decode.layers import I64, U8, Bool, Fields, Layers, fields, mark_if, put, take
from analyzer.decode.wire import (
    ICMP4_ERRORS,
    ICMP6_ERRORS,
    IP4_DT,
    IP6_DT,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LINUX_SYN_DT,
    LINUX_TS_DT,
    NOP_NOP_TS,
    NOTE_MALFORMED,
    NOTE_TRUNCATED,
    TCP_DT,
    TCP_FIELDS,
    TS_FIELDS,
    UDP_DT,
)

# The per-packet columns ``transport`` fills: dtype, and the value of a packet without them.
TRANSPORT_COLUMNS: dict[str, tuple[type[np.generic], int]] = {
    "sport": (np.uint16, 0),
    "dport": (np.uint16, 0),
    "tcp_flags": (np.uint16, 0),
    "seq": (np.uint32, 0),
    "ack": (np.uint32, 0),
    "win": (np.uint16, 0),
    "payload_len": (np.uint32, 0),
    "payload_offset": (np.int64, -1),
    "payload_caplen": (np.uint32, 0),
    "opt_mss": (np.uint16, 0),
    "opt_wscale": (np.int8, -1),
    "opt_sack_perm": (np.bool_, 0),
    "opt_ts": (np.bool_, 0),
    "opt_tsval": (np.uint32, 0),
    "opt_tsecr": (np.uint32, 0),
    "opt_sack_blocks": (np.uint8, 0),
    "icmp_type": (np.int16, -1),
    "icmp_code": (np.int16, -1),
    "inner_proto": (np.uint8, 0),
    "inner_sport": (np.uint16, 0),
    "inner_dport": (np.uint16, 0),
}


def transport(ly: Layers) -> tuple[dict[str, npt.NDArray[np.generic]], Inner]:
    c: dict[str, npt.NDArray[np.generic]] = {
        name: ly.column(name, dtype, fill) for name, (dtype, fill) in TRANSPORT_COLUMNS.items()
    }
    has_l4 = ly.l4 >= 0
    _tcp(ly, c)
    _udp(ly, c, np.nonzero(has_l4 & (ly.ip_proto == 17))[0])
    icmp = has_l4 & (
        ((ly.ip_proto == IPPROTO_ICMP) & (ly.ip_version == 4))
        | ((ly.ip_proto == IPPROTO_ICMPV6) & (ly.ip_version == 6))
    )
    inner = _icmp(ly, c, np.nonzero(icmp)[0])
    return c, inner


def _payload(ly: Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64, off: I64, length: I64) -> None:
    bad = length < 0
    if bad.any():
        ly.mark(idx[bad], NOTE_MALFORMED)
        length = np.where(bad, 0, length)
    put(c["payload_len"], idx, length)
    put(c["payload_offset"], idx, off)
    avail = take(ly.end, idx) - off
    put(c["payload_caplen"], idx, np.minimum(np.maximum(avail, 0), length))


def _tcp(ly: Layers, c: Fields) -> None:
    """TCP for every packet at once (masks over whole columns), like _ipv4."""
    m = (ly.l4 >= 0) & (ly.ip_proto == IPPROTO_TCP)
    if not m.any():
        return
    l4, end = ly.l4, ly.end
    m = mark_if(ly, m & (l4 + 20 > end), NOTE_TRUNCATED, m)
    h = _tcp_headerfields(ly, m)
    off_byte = h["off"].astype(np.int64)
    doff = (off_byte >> 4) << 2
    m = mark_if(ly, m & (doff < 20), NOTE_MALFORMED, m)
    m = mark_if(ly, m & (l4 + doff > end), NOTE_TRUNCATED, m)
    for name in ("sport", "dport", "seq", "ack", "win"):
        np.copyto(c[name], h[name], where=m, casting="unsafe")
    flags = ((off_byte & 0x0F) << 8) | h["flags"].astype(np.int64)  # reserved bits + AE, then the eight
    np.copyto(c["tcp_flags"], flags, where=m, casting="unsafe")
    data_at = l4 + doff
    length = ly.l4_end - data_at
    bad = m & (length < 0)
    if bad.any():
        ly.note[bad] |= np.uint8(NOTE_MALFORMED)
        length = np.where(bad, 0, length)
    np.copyto(c["payload_len"], length, where=m, casting="unsafe")
    np.copyto(c["payload_offset"], data_at, where=m)
    captured = np.minimum(np.maximum(end - data_at, 0), length)
    np.copyto(c["payload_caplen"], captured, where=m, casting="unsafe")
    with_opts = m & (doff > 20)
    # Fast path: exactly NOP, NOP, TS (12 bytes), as Linux sends on every established segment.
    ts_hit = with_opts & (doff == 32) & (h["nopnop"] == NOP_NOP_TS)
    if ts_hit.any():
        np.copyto(c["opt_ts"], True, where=ts_hit)
        np.copyto(c["opt_tsval"], h["tsval"], where=ts_hit)
        np.copyto(c["opt_tsecr"], h["tsecr"], where=ts_hit)
    rest = np.nonzero(with_opts & ~ts_hit)[0]
    rest = _linux_syn_options(ly, c, rest, l4[rest] + 20, data_at[rest])
    _tcp_options(ly, c, rest, l4[rest] + 20, data_at[rest])


def _linux_syn_options(ly: Layers, c: Fields, idx: I64, start: I64, stop: I64) -> I64:
    """Fill the options of ``idx`` laid out exactly as Linux's SYN/SYN-ACK; return the others."""
    syn = np.nonzero(stop - start == 20)[0]
    if not len(syn):
        return idx
    o = gather(ly.buf, start[syn], LINUX_SYN_DT)
    hit = (
        (o["mss_kl"] == 0x0204)
        & (o["sack_ts_kl"] == 0x0402080A)
        & (o["nop_ws_kl"] == 0x0103)
        & (o["ws_len"] == 3)
    )
    if not hit.any():
        return idx
    rows = idx[syn[hit]]
    c["opt_mss"][rows] = o["mss"][hit]
    c["opt_sack_perm"][rows] = True
    c["opt_ts"][rows] = True
    c["opt_tsval"][rows] = o["tsval"][hit]
    c["opt_tsecr"][rows] = o["tsecr"][hit]
    c["opt_wscale"][rows] = o["wscale"][hit].astype(np.int8)
    left = np.ones(len(idx), dtype=np.bool_)
    left[syn[hit]] = False
    return idx[left]


def _tcp_headerfields(ly: Layers, m: Bool) -> Fields:
    """TCP_FIELDS + TS_FIELDS for the ``m`` packets, full-length (garbage where not ``m``)."""
    pre = ly.pre_mask
    h = ly.pre if pre is not None else None
    missing = m if pre is None else m & ~pre
    if not missing.any():
        assert h is not None
        return h
    if h is None or missing.sum() * 4 > ly.n:  # most headers still unread: one gather for all
        return _read_tcpfields(ly, np.where(m, ly.l4, 0))
    idx = np.nonzero(missing)[0]
    for name, values in _read_tcpfields(ly, ly.l4[idx]).items():
        h[name][idx] = values
    return h


def _read_tcpfields(ly: Layers, at: I64) -> Fields:
    tcp = fields(gather(ly.buf, at, TCP_DT), TCP_FIELDS)
    return tcp | fields(gather(ly.buf, at + 20, LINUX_TS_DT), TS_FIELDS)


def _tcp_options(ly: Layers, c: Fields, idx: I64, start: I64, stop: I64) -> None:
    """Walk the option lists of ``idx`` (those not in Linux's NOP,NOP,TS layout), all in step."""
    if not len(idx):
        return
    pos = start.copy()
    active = pos < stop
    u8 = ly.u8
    for _ in range(40):  # at most 40 option bytes: the loop always ends
        if not active.any():
            break
        a = np.nonzero(active)[0]
        p = pos[a]
        kind = u8[p]
        eol = kind == 0
        nop = kind == 1
        active[a[eol]] = False
        pos[a[nop]] += 1
        o = ~(eol | nop)
        a, p, kind = a[o], p[o], kind[o]
        has_len = p + 1 < stop[a]
        length = np.where(has_len, u8[np.minimum(p + 1, len(u8) - 1)], 0).astype(np.int64)
        broken = ~has_len | (length < 2) | (p + length > stop[a])
        ly.mark(idx[a[broken]], NOTE_MALFORMED)
        active[a[broken]] = False
        a, p, kind, length = a[~broken], p[~broken], kind[~broken], length[~broken]
        gi = idx[a]
        m = (kind == 2) & (length == 4)
        c["opt_mss"][gi[m]] = ly.be16(p[m] + 2)
        m = (kind == 3) & (length == 3)
        c["opt_wscale"][gi[m]] = u8[p[m] + 2].astype(np.int8)
        m = (kind == 4) & (length == 2)
        c["opt_sack_perm"][gi[m]] = True
        m = kind == 5
        c["opt_sack_blocks"][gi[m]] = ((length[m] - 2) // 8).astype(np.uint8)
        m = (kind == 8) & (length == 10)
        if m.any():
            c["opt_ts"][gi[m]] = True
            c["opt_tsval"][gi[m]] = _be32(u8, p[m] + 2)
            c["opt_tsecr"][gi[m]] = _be32(u8, p[m] + 6)
        pos[a] += length
        active[a] = pos[a] < stop[a]


def _be32(u8: U8, pos: I64) -> npt.NDArray[np.uint32]:
    b = [u8[pos + k].astype(np.uint32) for k in range(4)]
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]).astype(np.uint32, copy=False)


def _udp(ly: Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64) -> None:
    idx = idx[~ly.short(idx, ly.l4[idx] + 8)]
    if not len(idx):
        return
    h = gather(ly.buf, ly.l4[idx], UDP_DT)
    c["sport"][idx] = h["sport"]
    c["dport"][idx] = h["dport"]
    _payload(ly, c, idx, ly.l4[idx] + 8, h["len"].astype(np.int64) - 8)


@dataclass
class Inner:
    """Addresses of the datagrams quoted by ICMP errors."""

    version: U8
    src4: npt.NDArray[np.uint32]
    dst4: npt.NDArray[np.uint32]
    idx6: I64
    src6: npt.NDArray[np.uint64]
    dst6: npt.NDArray[np.uint64]


def _icmp(ly: Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64) -> Inner:
    n = ly.n
    inner = Inner(
        np.zeros(n, np.uint8),
        np.zeros(n, np.uint32),
        np.zeros(n, np.uint32),
        np.zeros(0, np.int64),
        np.zeros((0, 2), np.uint64),
        np.zeros((0, 2), np.uint64),
    )
    idx = idx[~ly.short(idx, ly.l4[idx] + 4)]
    if not len(idx):
        return inner
    p = ly.l4[idx]
    itype = ly.u8[p].astype(np.int16)
    c["icmp_type"][idx] = itype
    c["icmp_code"][idx] = ly.u8[p + 1]
    v4 = ly.ip_version[idx] == 4
    err = np.where(v4, np.isin(itype, ICMP4_ERRORS), np.isin(itype, ICMP6_ERRORS))
    q = p + 8  # the quoted datagram follows the 8-byte ICMP header
    e4, q4 = idx[err & v4], q[err & v4]
    has = q4 + 20 <= ly.end[e4]
    e4, q4 = e4[has], q4[has]
    if len(e4):
        h = gather(ly.buf, q4, IP4_DT)
        ok = (h["vihl"] >> 4) == 4
        e4, q4, h = e4[ok], q4[ok], rows(h, ok)
        inner.version[e4] = 4
        inner.src4[e4] = h["src"]
        inner.dst4[e4] = h["dst"]
        c["inner_proto"][e4] = h["proto"]
        _inner_ports(ly, c, e4, q4 + (h["vihl"] & 0x0F).astype(np.int64) * 4, h["proto"])
    e6, q6 = idx[err & ~v4], q[err & ~v4]
    has = q6 + 40 <= ly.end[e6]
    e6, q6 = e6[has], q6[has]
    if len(e6):
        h = gather(ly.buf, q6, IP6_DT)
        ok = (h["vtcfl"] >> 28) == 6
        e6, q6, h = e6[ok], q6[ok], rows(h, ok)
        inner.version[e6] = 6
        inner.idx6 = e6
        inner.src6 = h["src"].astype(np.uint64)
        inner.dst6 = h["dst"].astype(np.uint64)
        c["inner_proto"][e6] = h["nh"]
        _inner_ports(ly, c, e6, q6 + 40, h["nh"])
    return inner


def _inner_ports(
    ly: Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64, at: I64, proto: npt.NDArray[np.uint8]
) -> None:
    ok = np.isin(proto, (IPPROTO_TCP, IPPROTO_UDP)) & (at + 4 <= ly.end[idx])
    idx, at = idx[ok], at[ok]
    c["inner_sport"][idx] = ly.be16(at)
    c["inner_dport"][idx] = ly.be16(at + 2)
