"""The native engine: capture file -> PACKETS frame, columnar.

Why our own decoder: per-packet object models (scapy, dpkt, pyshark) cost microseconds per
packet in Python; tshark is C but dissects everything. Here the container walk
(``container.read_records``) is the only per-record Python step; every header field of every
packet is then gathered at once by numpy fancy indexing over a 1-byte-stride structured view
of the file (``gather``), layer by layer, on the subset of packets that carry that layer.
Rare shapes (VLAN stacks, IPv6 extension headers, TCP options other than Linux's usual
NOP,NOP,TS) are handled by short vectorized loops over the few packets that need them.

Semantics of every column: docs/PACKETS.md and ``analyzer.schema``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode.container import Records, read_records
from analyzer.decode.gather import gather, rows
from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.schema import PACKET_COLUMNS, PROTO_DTYPE

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINK_TYPES = (0, 1, 101, 108, 113, 228, 229, 276)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, old QinQ
MAX_VLAN_TAGS = 4
AF_INET6_VALUES = (10, 24, 28, 30)  # Linux, OpenBSD/NetBSD, FreeBSD/DragonFly, Darwin

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPV6_EXT_HEADERS = (0, 43, 44, 60, 51, 135)  # hop-by-hop, routing, fragment, dstopts, AH, mobility
MAX_IPV6_EXT = 8
ICMP4_ERRORS = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded, param problem
ICMP6_ERRORS = (1, 2, 3, 4)  # unreachable, too big, time exceeded, param problem

# note bits, rendered in this order
NOTE_TRUNCATED = 1
NOTE_MALFORMED = 2
NOTE_FRAGMENT = 4
NOTE_UNSUPPORTED_LINK = 8
NOTE_TOKENS = (
    (NOTE_TRUNCATED, "truncated"),
    (NOTE_MALFORMED, "malformed"),
    (NOTE_FRAGMENT, "fragment"),
    (NOTE_UNSUPPORTED_LINK, "unsupported-link"),
)

IP4_DT = np.dtype(
    [
        ("vihl", "u1"),
        ("tos", "u1"),
        ("len", ">u2"),
        ("id", ">u2"),
        ("frag", ">u2"),
        ("ttl", "u1"),
        ("proto", "u1"),
        ("sum", ">u2"),
        ("src", ">u4"),
        ("dst", ">u4"),
    ]
)
IP6_DT = np.dtype(
    [("vtcfl", ">u4"), ("plen", ">u2"), ("nh", "u1"), ("hlim", "u1"), ("src", ">u8", 2), ("dst", ">u8", 2)]
)
TCP_DT = np.dtype(
    [
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("seq", ">u4"),
        ("ack", ">u4"),
        ("off", "u1"),
        ("flags", "u1"),
        ("win", ">u2"),
        ("sum", ">u2"),
        ("urp", ">u2"),
    ]
)
UDP_DT = np.dtype([("sport", ">u2"), ("dport", ">u2"), ("len", ">u2"), ("sum", ">u2")])
LINUX_TS_DT = np.dtype([("nopnop", ">u4"), ("tsval", ">u4"), ("tsecr", ">u4")])
# IPv4 without options + TCP + Linux's 12 option bytes, read in one gather: on typical captures
# this is nearly every packet, and one pass over the file beats three (cache misses dominate).
BE16 = np.dtype(">u2")
IP4_TCP_TS_DT = np.dtype([("ip", IP4_DT), ("tcp", TCP_DT), ("ts", LINUX_TS_DT)])
NOP_NOP_TS = 0x0101080A  # Linux puts NOP, NOP, kind 8 len 10 on every established segment
T = TypeVar("T", bound=np.generic)


def _take(a: npt.NDArray[T], idx: I64) -> npt.NDArray[T]:
    """``a[idx]``; ``idx`` is sorted and unique, so full length means every element (no gather)."""
    return a if len(idx) == len(a) else a[idx]


def _put(a: npt.NDArray[np.generic], idx: I64, values: npt.ArrayLike) -> None:
    """``a[idx] = values`` without a scatter when ``idx`` covers all of ``a``."""
    if len(idx) == len(a):
        a[...] = values
    else:
        a[idx] = values


def _keep(idx: I64, mask: Bool) -> I64:
    return idx if mask.all() else idx[mask]


def read_native(path: Path) -> pd.DataFrame:
    """Decode ``path`` into a PACKETS frame."""
    src = CaptureBytes(path)
    try:
        records = read_records(src.data, path)
        df = decode(src.data, records)
    finally:
        src.close()
    df.attrs.update(
        path=str(path),
        format=records.format,
        compressed=src.compressed,
        link_types=list(records.link_types),
        warnings=list(records.warnings),
    )
    return df


class _Layers:
    """Working columns while decoding; one entry per packet."""

    def __init__(self, buf: Buffer, rec: Records) -> None:
        n = len(rec.data_off)
        self.buf = buf
        self.u8: U8 = np.frombuffer(buf, dtype=np.uint8) if len(buf) else np.zeros(0, np.uint8)
        self.n = n
        self.start = rec.data_off
        self.end = rec.data_off + rec.caplen.astype(np.int64)  # one past the last captured byte
        self.cut = rec.caplen < rec.wirelen  # snaplen shortened the frame
        self.note = np.zeros(n, dtype=np.uint8)
        self.l3 = np.full(n, -1, dtype=np.int64)
        self.l3_kind = np.zeros(n, dtype=np.uint8)  # 4 or 6: what the link layer says
        self.ip_version = np.zeros(n, dtype=np.uint8)
        self.ip_proto = np.zeros(n, dtype=np.uint8)
        self.ip_frag = np.zeros(n, dtype=np.bool_)
        self.l4 = np.full(n, -1, dtype=np.int64)
        self.l4_end = np.zeros(n, dtype=np.int64)  # end of the IP datagram (by its length field)
        self.src4 = np.zeros(n, dtype=np.uint32)
        self.dst4 = np.zeros(n, dtype=np.uint32)
        self.src6: npt.NDArray[np.uint64] = np.zeros((0, 2), dtype=np.uint64)
        self.dst6: npt.NDArray[np.uint64] = np.zeros((0, 2), dtype=np.uint64)
        self.idx6: I64 = np.zeros(0, dtype=np.int64)
        # TCP header + 12 option bytes read together with the IPv4 header (IHL 5 only):
        self.pre_mask: Bool | None = None
        self.pre: dict[str, npt.NDArray[np.generic]] = {}

    def be16(self, pos: I64) -> npt.NDArray[np.uint16]:
        return gather(self.buf, pos, BE16).astype(np.uint16)

    def mark(self, idx: I64 | Bool, bit: int) -> None:
        self.note[idx] |= np.uint8(bit)

    def short(self, idx: I64, need_end: I64) -> Bool:
        """Which of ``idx`` lack captured bytes up to ``need_end``; marks them truncated."""
        lacking = need_end > _take(self.end, idx)
        if lacking.any():
            self.mark(idx[lacking], NOTE_TRUNCATED)
        return lacking


def decode(buf: Buffer, rec: Records) -> pd.DataFrame:
    """Decode every record of ``rec`` (found in ``buf``) into a PACKETS frame."""
    ly = _Layers(buf, rec)
    _link_layer(ly, rec.link_type)
    _ipv4(ly)
    _ipv6(ly, np.nonzero(ly.l3_kind == 6)[0])
    cols, inner = _transport(ly)
    n = ly.n
    data: dict[str, object] = {
        "frame": np.arange(1, n + 1, dtype=np.int64),
        "ts": rec.ts_ns / 1e9,
        "ts_ns": rec.ts_ns,
        "caplen": rec.caplen,
        "wirelen": rec.wirelen,
        "link_type": rec.link_type,
        "ip_version": ly.ip_version,
        "src": _addresses(n, ly.ip_version, ly.src4, ly.idx6, ly.src6),
        "dst": _addresses(n, ly.ip_version, ly.dst4, ly.idx6, ly.dst6),
        "proto": _proto_column(ly),
        "ip_proto": ly.ip_proto,
        "ip_frag": ly.ip_frag,
        **cols,
        "inner_src": _addresses(n, inner.version, inner.src4, inner.idx6, inner.src6),
        "inner_dst": _addresses(n, inner.version, inner.dst4, inner.idx6, inner.dst6),
        "note": _note_column(ly.note),
    }
    # copy=False: the columns are fresh arrays; consolidating them into 2-D blocks would copy
    # every column once more (about 0.2 s for 1M packets).
    return pd.DataFrame({name: data[name] for name in PACKET_COLUMNS}, copy=False)


# -- link layer -------------------------------------------------------------------------------


def _link_layer(ly: _Layers, link_type: npt.NDArray[np.uint16]) -> None:
    present = np.unique(link_type)
    for lt in present.tolist():
        idx = np.nonzero(link_type == lt)[0] if len(present) > 1 else np.arange(ly.n)
        if lt == LINKTYPE_ETHERNET:
            _ethernet(ly, idx)
        elif lt == LINKTYPE_LINUX_SLL:
            _by_ethertype(ly, idx, hdr_len=16, type_at=14)
        elif lt == LINKTYPE_LINUX_SLL2:
            _by_ethertype(ly, idx, hdr_len=20, type_at=0)
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            _null_loop(ly, idx, big_endian_only=lt == LINKTYPE_LOOP)
        elif lt == LINKTYPE_RAW:
            ok = idx[~ly.short(idx, ly.start[idx] + 1)]
            ver = ly.u8[ly.start[ok]] >> 4
            _set_l3(ly, ok[ver == 4], 0, 4)
            _set_l3(ly, ok[ver == 6], 0, 6)
        elif lt == LINKTYPE_IPV4:
            _set_l3(ly, idx, 0, 4)
        elif lt == LINKTYPE_IPV6:
            _set_l3(ly, idx, 0, 6)
        else:
            ly.mark(idx, NOTE_UNSUPPORTED_LINK)


def _set_l3(ly: _Layers, idx: I64, hdr_len: int | I64, kind: int) -> None:
    _put(ly.l3, idx, _take(ly.start, idx) + hdr_len)
    _put(ly.l3_kind, idx, kind)


def _ethertype_to_l3(ly: _Layers, idx: I64, etype: npt.NDArray[np.uint16], hdr_len: I64) -> None:
    for ethertype, kind in ((ETHERTYPE_IPV4, 4), (ETHERTYPE_IPV6, 6)):
        m = etype == ethertype
        if m.all():
            _set_l3(ly, idx, hdr_len, kind)
        elif m.any():
            _set_l3(ly, idx[m], hdr_len[m], kind)


def _ethernet(ly: _Layers, idx: I64) -> None:
    idx = _keep(idx, ~ly.short(idx, _take(ly.start, idx) + 14))
    start = _take(ly.start, idx)
    hdr_len = np.full(len(idx), 14, dtype=np.int64)
    etype = ly.be16(start + 12)
    tagged = np.isin(etype, VLAN_TPIDS)
    for _ in range(MAX_VLAN_TAGS):
        if not tagged.any():
            break
        t = np.nonzero(tagged)[0]
        lacking = ly.short(idx[t], start[t] + hdr_len[t] + 4)
        etype[t[lacking]] = 0
        t = t[~lacking]
        hdr_len[t] += 4
        etype[t] = ly.be16(start[t] + hdr_len[t] - 2)
        tagged = np.zeros(len(idx), dtype=np.bool_)
        tagged[t] = np.isin(etype[t], VLAN_TPIDS)
    _ethertype_to_l3(ly, idx, etype, hdr_len)


def _by_ethertype(ly: _Layers, idx: I64, *, hdr_len: int, type_at: int) -> None:
    idx = idx[~ly.short(idx, ly.start[idx] + hdr_len)]
    etype = ly.be16(ly.start[idx] + type_at)
    _ethertype_to_l3(ly, idx, etype, np.full(len(idx), hdr_len, dtype=np.int64))


def _null_loop(ly: _Layers, idx: I64, *, big_endian_only: bool) -> None:
    idx = idx[~ly.short(idx, ly.start[idx] + 4)]
    b = [ly.u8[ly.start[idx] + k].astype(np.uint32) for k in range(4)]
    be = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    if big_endian_only:
        fam = be
    else:  # DLT_NULL is in the capturing host's byte order: the family is a small number either way
        le = (b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]
        fam = np.where(le <= 0xFFFF, le, be)
    _set_l3(ly, idx[fam == 2], 4, 4)
    _set_l3(ly, idx[np.isin(fam, AF_INET6_VALUES)], 4, 6)


# -- network layer ----------------------------------------------------------------------------


def _ipv4(ly: _Layers) -> None:
    """IPv4 for every packet at once: masks over whole columns, no index arrays.

    Nearly every packet of a typical capture is IPv4, so reading a header for the few that are
    not (at offset 0, results masked away) is cheaper than gathering and scattering subsets.
    """
    m = ly.l3_kind == 4
    if not m.any():
        return
    l3 = ly.l3
    m = _mark_if(ly, m & (l3 + 20 > ly.end), NOTE_TRUNCATED, m)
    both = gather(ly.buf, np.where(m, l3, 0), IP4_TCP_TS_DT)
    h = both["ip"]
    vihl = h["vihl"]
    m = _mark_if(ly, m & ((vihl >> 4) != 4), NOTE_MALFORMED, m)
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
    ok = _mark_if(ly, m & ((ihl < 20) | (total < ihl)), NOTE_MALFORMED, m)
    ok &= (frag & 0x1FFF) == 0  # later fragments carry no transport header
    dgram_end = l3 + total
    np.copyto(ly.l4, l3 + ihl, where=ok)
    np.copyto(ly.l4_end, dgram_end, where=ok)
    _mark_past_capture(ly, ok & (dgram_end > ly.end))
    # TCP headers already read: IHL 5 puts them right after the IPv4 header.
    pre = ok & (ihl == 20) & (proto == IPPROTO_TCP)
    if pre.any():
        ly.pre_mask = pre
        ly.pre = _fields(both["tcp"], TCP_FIELDS) | _fields(both["ts"], TS_FIELDS)


def _mark_if(ly: _Layers, bad: Bool, bit: int, alive: Bool) -> Bool:
    """Note ``bit`` on the ``bad`` packets and return ``alive`` without them."""
    if bad.any():
        ly.note[bad] |= np.uint8(bit)
        return alive & ~bad
    return alive


def _mark_past_capture(ly: _Layers, past: Bool) -> None:
    """Datagrams longer than what was captured: truncated by snaplen, else malformed lengths."""
    if past.any():
        ly.note[past & ly.cut] |= np.uint8(NOTE_TRUNCATED)
        ly.note[past & ~ly.cut] |= np.uint8(NOTE_MALFORMED)


def _ipv6(ly: _Layers, idx: I64) -> None:
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


def _set_l4(ly: _Layers, idx: I64, l4: I64, dgram_end: I64) -> None:
    ly.l4[idx] = l4
    ly.l4_end[idx] = dgram_end
    past = np.zeros(ly.n, dtype=np.bool_)
    past[idx] = dgram_end > ly.end[idx]
    _mark_past_capture(ly, past)


def _transport(ly: _Layers) -> tuple[dict[str, npt.NDArray[np.generic]], _Inner]:
    n = ly.n
    c: dict[str, npt.NDArray[np.generic]] = {
        "sport": np.zeros(n, np.uint16),
        "dport": np.zeros(n, np.uint16),
        "tcp_flags": np.zeros(n, np.uint16),
        "seq": np.zeros(n, np.uint32),
        "ack": np.zeros(n, np.uint32),
        "win": np.zeros(n, np.uint16),
        "payload_len": np.zeros(n, np.uint32),
        "payload_offset": np.full(n, -1, np.int64),
        "payload_caplen": np.zeros(n, np.uint32),
        "opt_mss": np.zeros(n, np.uint16),
        "opt_wscale": np.full(n, -1, np.int8),
        "opt_sack_perm": np.zeros(n, np.bool_),
        "opt_ts": np.zeros(n, np.bool_),
        "opt_tsval": np.zeros(n, np.uint32),
        "opt_tsecr": np.zeros(n, np.uint32),
        "opt_sack_blocks": np.zeros(n, np.uint8),
        "icmp_type": np.full(n, -1, np.int16),
        "icmp_code": np.full(n, -1, np.int16),
        "inner_proto": np.zeros(n, np.uint8),
        "inner_sport": np.zeros(n, np.uint16),
        "inner_dport": np.zeros(n, np.uint16),
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


def _payload(ly: _Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64, off: I64, length: I64) -> None:
    bad = length < 0
    if bad.any():
        ly.mark(idx[bad], NOTE_MALFORMED)
        length = np.where(bad, 0, length)
    _put(c["payload_len"], idx, length)
    _put(c["payload_offset"], idx, off)
    avail = _take(ly.end, idx) - off
    _put(c["payload_caplen"], idx, np.minimum(np.maximum(avail, 0), length))


Fields = dict[str, npt.NDArray[np.generic]]
TCP_FIELDS = ("sport", "dport", "seq", "ack", "off", "flags", "win")
TS_FIELDS = ("nopnop", "tsval", "tsecr")


def _fields(a: np.ndarray, names: tuple[str, ...]) -> Fields:  # type: ignore[type-arg]
    """Plain native-endian columns out of a structured array (cheap to filter, unlike the struct)."""
    return {name: a[name].astype(a.dtype[name].newbyteorder("=")) for name in names}


def _tcp(ly: _Layers, c: Fields) -> None:
    """TCP for every packet at once (masks over whole columns), like _ipv4."""
    m = (ly.l4 >= 0) & (ly.ip_proto == IPPROTO_TCP)
    if not m.any():
        return
    l4, end = ly.l4, ly.end
    m = _mark_if(ly, m & (l4 + 20 > end), NOTE_TRUNCATED, m)
    h = _tcp_header_fields(ly, m)
    off_byte = h["off"].astype(np.int64)
    doff = (off_byte >> 4) << 2
    m = _mark_if(ly, m & (doff < 20), NOTE_MALFORMED, m)
    m = _mark_if(ly, m & (l4 + doff > end), NOTE_TRUNCATED, m)
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
    _tcp_options(ly, c, rest, l4[rest] + 20, data_at[rest])


def _tcp_header_fields(ly: _Layers, m: Bool) -> Fields:
    """TCP_FIELDS + TS_FIELDS for the ``m`` packets, full-length (garbage where not ``m``)."""
    pre = ly.pre_mask
    h = ly.pre if pre is not None else None
    missing = m if pre is None else m & ~pre
    if not missing.any():
        assert h is not None
        return h
    if h is None or missing.sum() * 4 > ly.n:  # most headers still unread: one gather for all
        return _read_tcp_fields(ly, np.where(m, ly.l4, 0))
    idx = np.nonzero(missing)[0]
    for name, values in _read_tcp_fields(ly, ly.l4[idx]).items():
        h[name][idx] = values
    return h


def _read_tcp_fields(ly: _Layers, at: I64) -> Fields:
    tcp = _fields(gather(ly.buf, at, TCP_DT), TCP_FIELDS)
    return tcp | _fields(gather(ly.buf, at + 20, LINUX_TS_DT), TS_FIELDS)


def _tcp_options(ly: _Layers, c: Fields, idx: I64, start: I64, stop: I64) -> None:
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


def _udp(ly: _Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64) -> None:
    idx = idx[~ly.short(idx, ly.l4[idx] + 8)]
    if not len(idx):
        return
    h = gather(ly.buf, ly.l4[idx], UDP_DT)
    c["sport"][idx] = h["sport"]
    c["dport"][idx] = h["dport"]
    _payload(ly, c, idx, ly.l4[idx] + 8, h["len"].astype(np.int64) - 8)


@dataclass
class _Inner:
    """Addresses of the datagrams quoted by ICMP errors."""

    version: U8
    src4: npt.NDArray[np.uint32]
    dst4: npt.NDArray[np.uint32]
    idx6: I64
    src6: npt.NDArray[np.uint64]
    dst6: npt.NDArray[np.uint64]


def _icmp(ly: _Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64) -> _Inner:
    n = ly.n
    inner = _Inner(
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
    ly: _Layers, c: dict[str, npt.NDArray[np.generic]], idx: I64, at: I64, proto: npt.NDArray[np.uint8]
) -> None:
    ok = np.isin(proto, (IPPROTO_TCP, IPPROTO_UDP)) & (at + 4 <= ly.end[idx])
    idx, at = idx[ok], at[ok]
    c["inner_sport"][idx] = ly.be16(at)
    c["inner_dport"][idx] = ly.be16(at + 2)


# -- text columns -----------------------------------------------------------------------------


def _addresses(
    n: int, version: U8, v4: npt.NDArray[np.uint32], idx6: I64, v6: npt.NDArray[np.uint64]
) -> pd.Categorical:
    """Categorical text addresses: each distinct address is formatted once.

    ``v4`` is per packet (used where ``version == 4``); ``v6`` rows belong to packets ``idx6``.
    """
    codes = np.full(n, -1, dtype=np.int32)
    names: list[str] = []
    idx4 = np.nonzero(version == 4)[0]
    if len(idx4):
        inv4, uniq4 = pd.factorize(_take(v4, idx4), sort=True)
        _put(codes, idx4, inv4)
        names.extend(socket.inet_ntop(socket.AF_INET, int(a).to_bytes(4, "big")) for a in uniq4.tolist())
    if len(idx6):
        # hash-factorize each 64-bit half, then the pair of half codes (np.unique(axis=0) sorts: slow)
        hi_codes, hi_uniq = pd.factorize(v6[:, 0])
        lo_codes, lo_uniq = pd.factorize(v6[:, 1])
        pair_codes, pair_uniq = pd.factorize(hi_codes.astype(np.int64) * len(lo_uniq) + lo_codes)
        codes[idx6] = pair_codes + len(names)
        his, los = hi_uniq[pair_uniq // len(lo_uniq)], lo_uniq[pair_uniq % len(lo_uniq)]
        names.extend(
            socket.inet_ntop(socket.AF_INET6, int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big"))
            for hi, lo in zip(his.tolist(), los.tolist(), strict=True)
        )
    return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))


def _proto_column(ly: _Layers) -> pd.Categorical:
    # codes follow PROTO_DTYPE's categories: tcp, udp, icmp, icmpv6, other
    lut = np.full(256, 4, dtype=np.int8)
    lut[IPPROTO_TCP], lut[IPPROTO_UDP] = 0, 1
    codes = lut[ly.ip_proto]
    codes[(ly.ip_proto == IPPROTO_ICMP) & (ly.ip_version == 4)] = 2
    codes[(ly.ip_proto == IPPROTO_ICMPV6) & (ly.ip_version == 6)] = 3
    codes[ly.ip_version == 0] = 4
    return pd.Categorical.from_codes(codes, dtype=PROTO_DTYPE)


def _note_column(bits: U8) -> pd.Categorical:
    names = ["; ".join(tok for bit, tok in NOTE_TOKENS if value & bit) for value in range(16)]
    return pd.Categorical.from_codes(
        bits.astype(np.int8), categories=pd.Index(names, dtype=object)
    ).remove_unused_categories()
