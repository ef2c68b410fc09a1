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
import functools
import importlib
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from analyzer.decode.container import Records, read_records
from analyzer.decode.cpus import OnThread, usable_cpus
from analyzer.decode.layers import Layers
from analyzer.decode.link import link_layer
from analyzer.decode.network import ipv4, ipv6
from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.decode.transport import TRANSPORT_COLUMNS, Inner, transport

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


def import_in_background(*modules: str) -> threading.Thread | None:
    """Start importing ``modules`` (in order) in a daemon thread, unless all are imported.

    Join the thread before using them (or just import them: the import lock waits for the
    thread). A failed import is not reported here: the later ``import`` in the caller's thread
    raises it again, with its usual message.
    """
    todo = [m for m in modules if m not in sys.modules]
    if not todo:
        return None
    thread = threading.Thread(target=_quiet_import, args=todo, name=f"import-{todo[0]}", daemon=True)
    thread.start()
    return thread


def _quiet_import(*modules: str) -> None:
    for module in modules:
        with contextlib.suppress(Exception):  # the caller's own import raises it again
            importlib.import_module(module)


# The per-packet result columns (Layers' and transport's), by name: dtype and fill value.
WHOLE_COLUMNS: dict[str, tuple[type[np.generic], int]] = {
    "ip_version": (np.uint8, 0),
    "ip_proto": (np.uint8, 0),
    "ip_frag": (np.bool_, 0),
    "note": (np.uint8, 0),
    "src4": (np.uint32, 0),
    "dst4": (np.uint32, 0),
    **TRANSPORT_COLUMNS,
}

# Records below which one thread decodes: a thread and the concatenation cost more than they
# save on small captures.
THREAD_MIN_RECORDS = 200_000
MAX_THREADS = 4


@dataclass(frozen=True)
class Decoded:
    """The per-packet layer results the frame is assembled from (one part, or parts joined)."""

    ip_version: npt.NDArray[np.uint8]
    ip_proto: npt.NDArray[np.uint8]
    ip_frag: npt.NDArray[np.bool_]
    note: npt.NDArray[np.uint8]
    src4: npt.NDArray[np.uint32]
    dst4: npt.NDArray[np.uint32]
    idx6: npt.NDArray[np.int64]  # packets with IPv6 addresses, and their rows of src6/dst6
    src6: npt.NDArray[np.uint64]
    dst6: npt.NDArray[np.uint64]
    cols: dict[str, npt.NDArray[np.generic]]  # transport's columns
    inner: Inner

    @property
    def n(self) -> int:
        return len(self.ip_version)


def decode_layers(buf: Buffer, rec: Records, out: dict[str, npt.NDArray[Any]] | None = None) -> Decoded:
    """Link, network and transport layers of every record of ``rec`` (numpy only).

    ``out``: views to write the per-packet result columns into (``decode_threaded``).
    """
    ly = Layers(buf, rec, out)
    link_layer(ly, rec.link_type)
    ipv4(ly)
    ipv6(ly, np.nonzero(ly.l3_kind == 6)[0])
    cols, inner = transport(ly)
    return Decoded(
        ly.ip_version, ly.ip_proto, ly.ip_frag, ly.note, ly.src4, ly.dst4, ly.idx6, ly.src6, ly.dst6,
        cols, inner,
    )  # fmt: skip


def decode_threaded(buf: Buffer, rec: Records, threads: int) -> Decoded:
    """``decode_layers`` over ``threads`` ranges of records at once, joined.

    The layers are whole-column numpy operations, which release the GIL while they run: on two
    cores two halves decode in about half the time. Every record decodes on its own, so the
    ranges join into exactly the one-thread result (tests compare them).
    """
    n = len(rec.data_off)
    bounds = np.linspace(0, n, threads + 1).astype(np.int64).tolist()
    # The per-packet columns are written in place, each thread into its range of them: joining
    # per-thread copies would copy (and page-fault) ~70 MB per million packets once more.
    whole = {name: np.empty(n, dtype=dtype) for name, (dtype, _) in WHOLE_COLUMNS.items()}

    def run(k: int) -> Decoded:
        a, b = bounds[k], bounds[k + 1]
        return decode_layers(buf, _slice(rec, a, b), {name: v[a:b] for name, v in whole.items()})

    others = [OnThread(functools.partial(run, k), f"decode-{k}") for k in range(1, threads)]
    try:
        first = run(0)
    finally:
        done = [o.result() for o in others]  # every thread is joined, errors or not
    done.insert(0, first)
    return _join(done, bounds, whole)


def _slice(rec: Records, a: int, b: int) -> Records:
    return replace(
        rec,
        data_off=rec.data_off[a:b],
        caplen=rec.caplen[a:b],
        wirelen=rec.wirelen[a:b],
        ts_ns=rec.ts_ns[a:b],
        link_type=rec.link_type[a:b],
    )


def _join(parts: list[Decoded], bounds: list[int], whole: dict[str, npt.NDArray[Any]]) -> Decoded:
    """The parts as one: per-packet columns from ``whole`` (written in place), the rest joined."""

    def cat(name: str) -> Any:  # the field's own array type
        return whole[name] if name in whole else np.concatenate([getattr(p, name) for p in parts])

    def cat_idx(idx: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        return np.concatenate([i + start for i, start in zip(idx, bounds, strict=False)])

    inner = Inner(
        version=np.concatenate([p.inner.version for p in parts]),
        src4=np.concatenate([p.inner.src4 for p in parts]),
        dst4=np.concatenate([p.inner.dst4 for p in parts]),
        idx6=cat_idx([p.inner.idx6 for p in parts]),
        src6=np.concatenate([p.inner.src6 for p in parts]),
        dst6=np.concatenate([p.inner.dst6 for p in parts]),
    )
    return Decoded(
        ip_version=cat("ip_version"),
        ip_proto=cat("ip_proto"),
        ip_frag=cat("ip_frag"),
        note=cat("note"),
        src4=cat("src4"),
        dst4=cat("dst4"),
        idx6=cat_idx([p.idx6 for p in parts]),
        src6=cat("src6"),
        dst6=cat("dst6"),
        cols={
            name: whole[name] if name in whole else np.concatenate([p.cols[name] for p in parts])
            for name in parts[0].cols
        },
        inner=inner,
    )


def decode(buf: Buffer, rec: Records, preload: threading.Thread | None = None) -> pd.DataFrame:
    """Decode every record of ``rec`` (found in ``buf``) into a PACKETS frame.

    ``preload`` (from ``import_in_background``) is joined before the first use of pandas.
    """
    threads = min(MAX_THREADS, usable_cpus(), len(rec.data_off) // THREAD_MIN_RECORDS + 1)
    d = decode_threaded(buf, rec, threads) if threads > 1 else decode_layers(buf, rec)
    if preload is not None:
        preload.join()
    import pandas as pd

    from analyzer.decode.columns import addresses, note_column, proto_column
    from analyzer.schema import PACKET_COLUMNS

    n = d.n
    data: dict[str, object] = {
        "frame": np.arange(1, n + 1, dtype=np.int64),
        "ts": rec.ts_ns / 1e9,
        "ts_ns": rec.ts_ns,
        "caplen": rec.caplen,
        "wirelen": rec.wirelen,
        "link_type": rec.link_type,
        "ip_version": d.ip_version,
        "src": addresses(n, d.ip_version, d.src4, d.idx6, d.src6),
        "dst": addresses(n, d.ip_version, d.dst4, d.idx6, d.dst6),
        "proto": proto_column(d.ip_proto, d.ip_version),
        "ip_proto": d.ip_proto,
        "ip_frag": d.ip_frag,
        **d.cols,
        "inner_src": addresses(n, d.inner.version, d.inner.src4, d.inner.idx6, d.inner.src6),
        "inner_dst": addresses(n, d.inner.version, d.inner.dst4, d.inner.idx6, d.inner.dst6),
        "note": note_column(d.note),
    }
    # copy=False: the columns are fresh arrays; consolidating them into 2-D blocks would copy
    # every column once more (about 0.2 s for 1M packets).
    return pd.DataFrame({name: data[name] for name in PACKET_COLUMNS}, copy=False)
