"""Column schemas of the frames passed between stages, and the validator tests use.

PACKETS is the packet table every engine (native, scapy, tshark) returns from
``read_packets``. Fields that do not apply to a packet hold a neutral value (0, or -1
where 0 is a legal value) so every column stays a plain numpy dtype; ``proto`` and
``ip_version`` say which fields are meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.errors import SchemaError

PROTO_CATEGORIES = ("tcp", "udp", "icmp", "icmpv6", "other")
PROTO_DTYPE = pd.CategoricalDtype(list(PROTO_CATEGORIES), ordered=False)

# Wireshark's tcp.flags bit values.
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80
TCP_AE = 0x100  # RFC 9768 (formerly NS, RFC 3540)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    dtype: str  # numpy dtype name, or "category"
    doc: str


PACKETS: tuple[Column, ...] = (
    Column("frame", "int64", "1-based record number, as Wireshark numbers frames"),
    Column("ts", "float64", "capture time, epoch seconds"),
    Column("ts_ns", "int64", "capture time, epoch nanoseconds (exact)"),
    Column("caplen", "uint32", "bytes captured"),
    Column("wirelen", "uint32", "bytes on the wire"),
    Column("link_type", "uint16", "LINKTYPE_* of the record's interface (1 Ethernet, 113 SLL, ...)"),
    Column("ip_version", "uint8", "4 or 6; 0 when the frame carries no IP"),
    Column("src", "category", "source IP as text; NaN when no IP"),
    Column("dst", "category", "destination IP as text; NaN when no IP"),
    Column("proto", "category", "transport: tcp, udp, icmp, icmpv6, other"),
    Column("ip_proto", "uint8", "IP protocol number of the transport (after IPv6 extension headers)"),
    Column("ip_frag", "bool", "IPv4 MF flag or fragment offset set, or an IPv6 fragment header"),
    Column("sport", "uint16", "TCP/UDP source port; 0 otherwise"),
    Column("dport", "uint16", "TCP/UDP destination port; 0 otherwise"),
    Column("tcp_flags", "uint16", "Wireshark tcp.flags value: FIN 0x01 .. CWR 0x80, AE 0x100"),
    Column("seq", "uint32", "raw TCP sequence number"),
    Column("ack", "uint32", "raw TCP acknowledgment number"),
    Column("win", "uint16", "raw TCP window field (unscaled)"),
    Column("payload_len", "uint32", "tcp.len (IP length - headers) or udp.length - 8; 0 otherwise"),
    Column(
        "payload_offset",
        "int64",
        "offset of the transport payload in the (decompressed) file; -1 when none",
    ),
    Column("payload_caplen", "uint32", "bytes of the payload actually captured (<= payload_len)"),
    Column("opt_mss", "uint16", "TCP MSS option value; 0 when absent"),
    Column("opt_wscale", "int8", "TCP window-scale shift; -1 when absent"),
    Column("opt_sack_perm", "bool", "TCP SACK-permitted option present"),
    Column("opt_ts", "bool", "TCP timestamps option present"),
    Column("opt_tsval", "uint32", "TCP TSval; 0 when absent"),
    Column("opt_tsecr", "uint32", "TCP TSecr; 0 when absent"),
    Column("opt_sack_blocks", "uint8", "number of SACK blocks in the segment"),
    Column("icmp_type", "int16", "ICMP/ICMPv6 type; -1 otherwise"),
    Column("icmp_code", "int16", "ICMP/ICMPv6 code; -1 otherwise"),
    Column("inner_src", "category", "source IP of the datagram quoted in an ICMP error"),
    Column("inner_dst", "category", "destination IP of the datagram quoted in an ICMP error"),
    Column("inner_proto", "uint8", "IP protocol of the quoted datagram; 0 when none"),
    Column("inner_sport", "uint16", "source port of the quoted TCP/UDP header; 0 when none"),
    Column("inner_dport", "uint16", "destination port of the quoted TCP/UDP header; 0 when none"),
    Column("note", "category", "empty, or why the frame is truncated/malformed (';'-joined)"),
)

PACKET_COLUMNS: tuple[str, ...] = tuple(c.name for c in PACKETS)


def validate_frame(df: pd.DataFrame, schema: tuple[Column, ...] = PACKETS) -> None:
    """Raise SchemaError unless ``df`` has exactly the schema's columns, in order, with its dtypes."""
    names = [c.name for c in schema]
    if list(df.columns) != names:
        missing = [n for n in names if n not in df.columns]
        extra = [n for n in df.columns if n not in names]
        raise SchemaError(f"columns differ from schema: missing {missing}, unexpected {extra}")
    for col in schema:
        actual = df[col.name].dtype
        if col.dtype == "category":
            ok = isinstance(actual, pd.CategoricalDtype)
        else:
            ok = actual == np.dtype(col.dtype)
        if not ok:
            raise SchemaError(f"column {col.name!r} has dtype {actual}, schema says {col.dtype}")
    if col_has_values(df, "proto"):
        bad = set(df["proto"].cat.categories) - set(PROTO_CATEGORIES)
        if bad:
            raise SchemaError(f"column 'proto' has unknown categories {sorted(bad)}")


def col_has_values(df: pd.DataFrame, name: str) -> bool:
    return name in df.columns and len(df) > 0


def empty_packets() -> pd.DataFrame:
    """A zero-row PACKETS frame with the right dtypes."""
    data: dict[str, object] = {}
    for col in PACKETS:
        if col.name == "proto":
            data[col.name] = pd.Categorical([], dtype=PROTO_DTYPE)
        elif col.dtype == "category":
            data[col.name] = pd.Categorical([])
        else:
            data[col.name] = np.empty(0, dtype=col.dtype)
    return pd.DataFrame(data)
