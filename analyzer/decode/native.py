"""The native engine: capture file -> PACKETS frame, columnar.

Why our own decoder: per-packet object models (scapy, dpkt, pyshark) cost microseconds per
packet in Python; tshark is C but dissects everything. Here the container walk
(``container.read_records``, in the optional C extension ``_walk`` or in Python) is the only
per-record step; every header field of every packet is then gathered at once by numpy fancy
indexing over a 1-byte-stride view of the file (``gather``), layer by layer: ``link`` ->
``network`` -> ``transport`` -> ``columns``. The common shapes (untagged Ethernet/SLL, IPv4
without options, TCP with Linux's NOP,NOP,TS or SYN option layout) are decoded densely, with
masks over whole columns and one gather per packet; rare shapes (VLAN stacks, IPv6 extension
headers, other option lists) by short vectorized loops over the few packets that need them.

Semantics of every column: docs/PACKETS.md and ``analyzer.schema``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.decode.columns import addresses, note_column, proto_column
from analyzer.decode.container import Records, read_records
from analyzer.decode.layers import Layers
from analyzer.decode.link import link_layer
from analyzer.decode.network import ipv4, ipv6
from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.decode.transport import transport
from analyzer.schema import PACKET_COLUMNS


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
        warnings=[*src.warnings, *records.warnings],
    )
    return df


def decode(buf: Buffer, rec: Records) -> pd.DataFrame:
    """Decode every record of ``rec`` (found in ``buf``) into a PACKETS frame."""
    ly = Layers(buf, rec)
    link_layer(ly, rec.link_type)
    ipv4(ly)
    ipv6(ly, np.nonzero(ly.l3_kind == 6)[0])
    cols, inner = transport(ly)
    n = ly.n
    data: dict[str, object] = {
        "frame": np.arange(1, n + 1, dtype=np.int64),
        "ts": rec.ts_ns / 1e9,
        "ts_ns": rec.ts_ns,
        "caplen": rec.caplen,
        "wirelen": rec.wirelen,
        "link_type": rec.link_type,
        "ip_version": ly.ip_version,
        "src": addresses(n, ly.ip_version, ly.src4, ly.idx6, ly.src6),
        "dst": addresses(n, ly.ip_version, ly.dst4, ly.idx6, ly.dst6),
        "proto": proto_column(ly),
        "ip_proto": ly.ip_proto,
        "ip_frag": ly.ip_frag,
        **cols,
        "inner_src": addresses(n, inner.version, inner.src4, inner.idx6, inner.src6),
        "inner_dst": addresses(n, inner.version, inner.dst4, inner.idx6, inner.dst6),
        "note": note_column(ly.note),
    }
    # copy=False: the columns are fresh arrays; consolidating them into 2-D blocks would copy
    # every column once more (about 0.2 s for 1M packets).
    return pd.DataFrame({name: data[name] for name in PACKET_COLUMNS}, copy=False)
