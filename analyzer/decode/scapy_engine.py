"""The scapy engine: capture file -> PACKETS frame, one scapy dissection per header.

A reference implementation for cross-checking, not a fast path. Records come from the plain
record walk in ``analyzer.decode.records`` (which also gives each record's data offset for
``payload_offset``); every header is then dissected by the scapy class for it (Ether, Dot1Q,
CookedLinux, CookedLinuxV2, LoopbackOpenBSD, IP, IPv6 and its extension headers, TCP, UDP, ICMP,
ICMPv6, IPerror/IPerror6). Each class is handed exactly its header's bytes, after this module
has checked that they were captured: scapy's own dissection of a short or bad header silently
becomes ``Raw`` (or raises at the top layer), while the packet table must say ``truncated`` or
``malformed`` as docs/PACKETS.md defines. A scapy exception on a header we did hand it is recorded
in ``note`` as ``malformed: scapy <Layer>: <error>`` and never hidden.

scapy is imported only here, on first use (``import analyzer`` must stay light).
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pandas as pd

from analyzer.decode.records import Record, walk_records
from analyzer.decode.source import CaptureBytes
from analyzer.decode.table import (
    AF_INET6_VALUES,
    ICMP4_ERRORS,
    ICMP6_ERRORS,
    IPV6_EXT_HEADERS,
    MAX_IPV6_EXT,
    MAX_VLAN_TAGS,
    SUPPORTED_LINK_TYPES,
    VLAN_TPIDS,
    Row,
    datagram_end,
    payload,
    to_frame,
)


def read_scapy(path: Path) -> pd.DataFrame:
    """Decode ``path`` (pcap/pcapng, optionally gzip) into a PACKETS frame with scapy."""
    with CaptureBytes(path) as cap:
        records = walk_records(cap.data, str(path))
        rows = [_dissect(bytes(cap.data[r.data_offset : r.data_offset + r.caplen]), r) for r in records]
    return to_frame(rows)


@functools.cache
def _scapy() -> SimpleNamespace:
    """The scapy classes, imported on first use, plus three small helper layers.

    scapy's ICMP/UDP/TCP/AH classes need their whole fixed header; docs/PACKETS.md only needs 4
    bytes for an ICMP type/code or for the ports of a quoted header, and 2 bytes (next header,
    length) to step over an IPv6 extension header that is not wholly captured, so minimal layers
    describe exactly those bytes.
    """
    from scapy.fields import ByteField, ShortField
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
    from scapy.layers.inet6 import (
        IPerror6,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        MIP6MH_Generic,
    )
    from scapy.layers.ipsec import AH
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, LoopbackOpenBSD
    from scapy.packet import Packet

    class ICMPTypeCode(Packet):  # type: ignore[misc]
        name = "ICMP type/code"
        fields_desc: ClassVar[list[Any]] = [
            ByteField("type", 0),
            ByteField("code", 0),
            ShortField("chksum", 0),
        ]

    class Ports(Packet):  # type: ignore[misc]
        name = "transport ports"
        fields_desc: ClassVar[list[Any]] = [ShortField("sport", 0), ShortField("dport", 0)]

    class ExtHead(Packet):  # type: ignore[misc]
        name = "IPv6 extension header start"
        fields_desc: ClassVar[list[Any]] = [ByteField("nh", 0), ByteField("len", 0)]

    ext = {
        0: IPv6ExtHdrHopByHop,
        43: IPv6ExtHdrRouting,
        44: IPv6ExtHdrFragment,
        60: IPv6ExtHdrDestOpt,
        51: AH,
        135: MIP6MH_Generic,
    }
    return SimpleNamespace(
        Ether=Ether,
        Dot1Q=Dot1Q,
        Dot1AD=Dot1AD,
        CookedLinux=CookedLinux,
        CookedLinuxV2=CookedLinuxV2,
        LoopbackBE=LoopbackOpenBSD,
        IP=IP,
        IPv6=IPv6,
        TCP=TCP,
        UDP=UDP,
        ICMP=ICMP,
        IPerror=IPerror,
        IPerror6=IPerror6,
        ICMPTypeCode=ICMPTypeCode,
        Ports=Ports,
        ExtHead=ExtHead,
        ext=ext,
    )


class _ScapyFailed(Exception):
    """A scapy class raised on bytes we checked were a complete header."""


def _layer(cls: Any, data: bytes) -> Any:
    try:
        return cls(data)
    except Exception as exc:  # scapy raises struct.error, ValueError, IndexError, ...
        raise _ScapyFailed(f"scapy {cls.__name__}: {type(exc).__name__}: {exc}") from exc


def _dissect(buf: bytes, rec: Record) -> Row:
    row = Row(rec)
    try:
        _link(row, buf)
    except _ScapyFailed as exc:
        row.note("malformed", str(exc))
    return row


# -- link layer -------------------------------------------------------------------------------


def _link(row: Row, buf: bytes) -> None:
    s = _scapy()
    lt = row.rec.link_type
    if lt not in SUPPORTED_LINK_TYPES:
        row.note("unsupported-link", f"LINKTYPE {lt}")
        return
    if lt == 1:
        if len(buf) < 14:
            row.note("truncated", "Ethernet header")
            return
        eth = _layer(s.Ether, buf[:14])
        # A type/length field <= 1500 makes scapy choose Dot3 (802.3 length): no ethertype.
        etype = int(getattr(eth, "type", 0))
        off = 14
        for _ in range(MAX_VLAN_TAGS):
            if etype not in VLAN_TPIDS:
                break
            if len(buf) < off + 4:
                row.note("truncated", "VLAN tag")
                return
            tag = _layer(s.Dot1AD if etype == 0x88A8 else s.Dot1Q, buf[off : off + 4])
            etype = int(tag.type)
            off += 4
        _by_ethertype(row, buf, etype, off)
    elif lt == 113:
        if len(buf) < 16:
            row.note("truncated", "SLL header")
            return
        _by_ethertype(row, buf, int(_layer(s.CookedLinux, buf[:16]).proto), 16)
    elif lt == 276:
        if len(buf) < 20:
            row.note("truncated", "SLL2 header")
            return
        _by_ethertype(row, buf, int(_layer(s.CookedLinuxV2, buf[:20]).proto), 20)
    elif lt in (0, 108):
        if len(buf) < 4:
            row.note("truncated", "loopback header")
            return
        be = int(_layer(s.LoopbackBE, buf[:4]).type)
        family = be
        if lt == 0:
            # DLT_NULL is in the capturing host's byte order; a family is a small number either way.
            le = struct.unpack("<I", struct.pack(">I", be))[0]
            family = le if le <= 0xFFFF else be
        if family == 2:
            _ipv4(row, buf, 4)
        elif family in AF_INET6_VALUES:
            _ipv6(row, buf, 4)
    elif lt == 101:
        if len(buf) < 1:
            row.note("truncated", "empty raw-IP frame")
            return
        version = buf[0] >> 4
        if version == 4:
            _ipv4(row, buf, 0)
        elif version == 6:
            _ipv6(row, buf, 0)
    elif lt == 228:
        _ipv4(row, buf, 0)
    elif lt == 229:
        _ipv6(row, buf, 0)


def _by_ethertype(row: Row, buf: bytes, etype: int, off: int) -> None:
    if etype == 0x0800:
        _ipv4(row, buf, off)
    elif etype == 0x86DD:
        _ipv6(row, buf, off)


# -- network layer ----------------------------------------------------------------------------


def _ipv4(row: Row, buf: bytes, off: int) -> None:
    s = _scapy()
    if len(buf) < off + 20:
        row.note("truncated", "IPv4 header")
        return
    ip = _layer(s.IP, buf[off : off + 20])
    if int(ip.version) != 4:
        row.note("malformed", f"IP version {ip.version} where IPv4 was announced")
        return
    row.ip_version = 4
    row.src, row.dst = str(ip.src), str(ip.dst)
    row.ip_proto = int(ip.proto)
    hl = int(ip.ihl) * 4
    total = int(ip.len)
    frag_off = int(ip.frag)
    more = bool(int(ip.flags) & 0x1)
    row.ip_frag = more or frag_off != 0
    if row.ip_frag:
        row.note("fragment", f"offset {frag_off * 8}")
    if hl < 20 or total < hl:
        row.note("malformed", f"IPv4 header length {hl}, total length {total}")
        return
    if frag_off != 0:
        return  # no transport header in a non-first fragment
    datagram_end(row, off + total)
    _transport(row, buf, off + hl, off + total)


def _ipv6(row: Row, buf: bytes, off: int) -> None:
    s = _scapy()
    if len(buf) < off + 40:
        row.note("truncated", "IPv6 header")
        return
    ip6 = _layer(s.IPv6, buf[off : off + 40])
    if int(ip6.version) != 6:
        row.note("malformed", f"IP version {ip6.version} where IPv6 was announced")
        return
    row.ip_version = 6
    row.src, row.dst = str(ip6.src), str(ip6.dst)
    end = off + 40 + int(ip6.plen)
    nh = int(ip6.nh)
    pos = off + 40
    alive = True
    for _ in range(MAX_IPV6_EXT):
        if nh not in IPV6_EXT_HEADERS:
            break
        # Every extension header is at least 8 bytes; its own length may reach further, and what
        # is missing then shows up as a truncated transport header.
        if len(buf) < pos + 8:
            row.note("truncated", f"IPv6 extension header {nh}")
            alive = False
            break
        if nh == 44:
            frag = _layer(s.ext[44], buf[pos : pos + 8])
            row.ip_frag = True
            frag_off = int(frag.offset)
            row.note("fragment", f"offset {frag_off * 8}")
            nh = int(frag.nh)
            pos += 8
            if frag_off != 0:
                alive = False  # ip_proto still names the fragmented upper layer
                break
            continue
        head = _layer(s.ExtHead, buf[pos : pos + 2])
        length = (int(head.len) + 2) * 4 if nh == 51 else (int(head.len) + 1) * 8
        # When the whole header is here, scapy's class for it reads the next-header field.
        whole = len(buf) >= pos + length
        nh = int(_layer(s.ext[nh], buf[pos : pos + length]).nh) if whole else int(head.nh)
        pos += length
    row.ip_proto = nh
    if not alive:
        return
    if pos > end:
        row.note("malformed", "IPv6 extension headers overrun the payload length")
        return
    datagram_end(row, end)
    _transport(row, buf, pos, end)


def _transport(row: Row, buf: bytes, l4: int, end: int) -> None:
    proto = row.ip_proto
    if proto == 6:
        _tcp(row, buf, l4, end)
    elif proto == 17:
        _udp(row, buf, l4)
    elif (proto == 1 and row.ip_version == 4) or (proto == 58 and row.ip_version == 6):
        _icmp(row, buf, l4)


def _tcp(row: Row, buf: bytes, l4: int, end: int) -> None:
    s = _scapy()
    if len(buf) < l4 + 20:
        row.note("truncated", "TCP header")
        return
    hl = (buf[l4 + 12] >> 4) * 4
    if hl < 20:
        row.note("malformed", f"TCP data offset {hl // 4}")
        return
    if len(buf) < l4 + hl:
        row.note("truncated", "TCP options")
        return
    tcp = _layer(s.TCP, buf[l4 : l4 + hl])
    row.sport, row.dport = int(tcp.sport), int(tcp.dport)
    row.seq, row.ack, row.win = int(tcp.seq), int(tcp.ack), int(tcp.window)
    # scapy splits Wireshark's 12-bit tcp.flags into 3 reserved bits and 9 flags (AE/NS first).
    row.tcp_flags = (int(tcp.reserved) << 9) | int(tcp.flags)
    payload(row, l4 + hl, end - l4 - hl)
    if hl > 20:
        _tcp_options(row, buf[l4 + 20 : l4 + hl], tcp.options)


def _tcp_options(row: Row, raw: bytes, parsed: list[tuple[Any, Any]]) -> None:
    """Option values from scapy's parse; the raw walk finds where the list breaks (scapy pads
    a bad length silently) so only the options before the break count."""
    valid = 0  # how many (kind, len) entries are well formed before a break or EOL
    pos = 0
    while pos < len(raw):
        kind = raw[pos]
        if kind == 0:
            valid += 1
            break
        if kind == 1:
            valid += 1
            pos += 1
            continue
        if pos + 1 >= len(raw) or raw[pos + 1] < 2 or pos + raw[pos + 1] > len(raw):
            row.note("malformed", f"TCP option {kind} at byte {pos}")
            break
        valid += 1
        pos += raw[pos + 1]
    for name, value in parsed[:valid]:
        # scapy keeps a known option with an unexpected length as raw bytes: not a value.
        if name == "MSS" and isinstance(value, int):
            row.opt_mss = value
        elif name == "WScale" and isinstance(value, int):
            row.opt_wscale = value if value < 128 else value - 256
        elif name == "SAckOK" and value == b"":
            row.opt_sack_perm = True
        elif name == "SAck":
            # scapy unpacks the edges as 32-bit words (a single word unwrapped to an int), or keeps
            # bytes when the length is not a multiple of 4; blocks = (option length - 2) // 8.
            if isinstance(value, tuple):
                nbytes = 4 * len(value)
            elif isinstance(value, int):
                nbytes = 4
            else:
                nbytes = len(value)
            row.opt_sack_blocks = nbytes // 8
        elif name == "Timestamp" and isinstance(value, tuple) and len(value) == 2:
            row.opt_ts = True
            row.opt_tsval, row.opt_tsecr = int(value[0]), int(value[1])


def _udp(row: Row, buf: bytes, l4: int) -> None:
    s = _scapy()
    if len(buf) < l4 + 8:
        row.note("truncated", "UDP header")
        return
    udp = _layer(s.UDP, buf[l4 : l4 + 8])
    row.sport, row.dport = int(udp.sport), int(udp.dport)
    payload(row, l4 + 8, int(udp.len) - 8)


def _icmp(row: Row, buf: bytes, l4: int) -> None:
    s = _scapy()
    if len(buf) < l4 + 4:
        row.note("truncated", "ICMP header")
        return
    head = _layer(s.ICMPTypeCode, buf[l4 : l4 + 4])
    row.icmp_type, row.icmp_code = int(head.type), int(head.code)
    q = l4 + 8  # the quoted datagram follows the 8-byte ICMP error header
    if row.ip_version == 4 and row.icmp_type in ICMP4_ERRORS:
        if len(buf) < q + 20:
            return
        inner = _layer(s.IPerror, buf[q : q + 20])
        if int(inner.version) != 4:
            return
        row.inner_src, row.inner_dst = str(inner.src), str(inner.dst)
        row.inner_proto = int(inner.proto)
        _inner_ports(row, buf, q + int(inner.ihl) * 4)
    elif row.ip_version == 6 and row.icmp_type in ICMP6_ERRORS:
        if len(buf) < q + 40:
            return
        inner6 = _layer(s.IPerror6, buf[q : q + 40])
        if int(inner6.version) != 6:
            return
        row.inner_src, row.inner_dst = str(inner6.src), str(inner6.dst)
        row.inner_proto = int(inner6.nh)
        _inner_ports(row, buf, q + 40)


def _inner_ports(row: Row, buf: bytes, at: int) -> None:
    if row.inner_proto in (6, 17) and len(buf) >= at + 4:
        ports = _layer(_scapy().Ports, buf[at : at + 4])
        row.inner_sport, row.inner_dport = int(ports.sport), int(ports.dport)


# -- frame ------------------------------------------------------------------------------------
