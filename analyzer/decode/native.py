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

import contextlib
import importlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analyzer.decode.container import Records, read_records
from analyzer.decode.layers import Layers
from analyzer.decode.link import link_layer
from analyzer.decode.network import ipv4, ipv6
from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.decode.transport import transport

if TYPE_CHECKING:
    import pandas as pd


def read_native(path: Path) -> pd.DataFrame:
    """Decode ``path`` into a PACKETS frame."""
    # Importing pandas costs about 0.2 s of interpreter time; the record walk (C, GIL released)
    # and the numpy layers below do not need it, so on a cold start it loads on the second core
    # meanwhile. The frame is assembled (columns.py, which needs pandas) after it has loaded.
    preload = import_in_background("pandas")
    src = CaptureBytes(path)
    try:
        records = read_records(src.data, path)
        df = decode(src.data, records, preload)
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


def import_in_background(module: str) -> threading.Thread | None:
    """Start importing ``module`` in a daemon thread, unless it is imported already.

    Join the thread before using the module. A failed import is not reported here: the later
    ``import`` in the caller's thread raises it again, with its usual message.
    """
    if module in sys.modules:
        return None
    thread = threading.Thread(target=_quiet_import, args=(module,), name=f"import-{module}", daemon=True)
    thread.start()
    return thread


def _quiet_import(module: str) -> None:
    with contextlib.suppress(Exception):  # the caller's own import raises it again
        importlib.import_module(module)


def decode(buf: Buffer, rec: Records, preload: threading.Thread | None = None) -> pd.DataFrame:
    """Decode every record of ``rec`` (found in ``buf``) into a PACKETS frame.

    ``preload`` (from ``import_in_background``) is joined before the first use of pandas.
    """
    ly = Layers(buf, rec)
    link_layer(ly, rec.link_type)
    ipv4(ly)
    ipv6(ly, np.nonzero(ly.l3_kind == 6)[0])
    cols, inner = transport(ly)
    if preload is not None:
        preload.join()
    import pandas as pd

    from analyzer.decode.columns import addresses, note_column, proto_column
    from analyzer.schema import PACKET_COLUMNS

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
