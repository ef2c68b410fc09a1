"""The analysis pipeline: capture file -> packet table -> TCP connections and UDP conversations.

``analyze(path)`` is the one entry point behind ``analyzer.analyze``, ``analyzer analyze`` and the
reports: it decodes the capture with the chosen engine, reconstructs the flows, and returns an
``Analysis`` whose ``to_dict()`` is the ``analyzer.report/1`` document (JSON Schema:
``analyzer/report/schemas/report-1.schema.json``).
"""

from __future__ import annotations

import gc
import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from analyzer.decode import read_packets
from analyzer.decode.source import GZIP_MAGIC, CaptureBytes
from analyzer.errors import CaptureFormatError, InputError, UsageError
from analyzer.writev import Gather

if TYPE_CHECKING:
    import pandas as pd

    Table = pd.DataFrame | Callable[[], pd.DataFrame]  # a table, or how to make it on first use

SCHEMA_ID = "analyzer.report/1"
DEFAULT_MSL = 30.0  # seconds: 2*MSL = 60 s, Linux's fixed TCP_TIMEWAIT_LEN
# What analyzing a UDP packet and writing its JSON text costs in TCP packets (1M bench capture:
# 3.5 us against 1.3 us): the calling process does that while TCP workers run, so its TCP
# share is that much smaller.
UDP_PACKET_WEIGHT = 2.6

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",  # microseconds, little-endian
    b"\x4d\x3c\xb2\xa1": "<",  # nanoseconds, little-endian
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}


@dataclass(frozen=True)
class CaptureInfo:
    """What the report says about the file itself (``capture`` in analyzer.report/1)."""

    file: str
    format: str  # "pcap" or "pcapng", with ".gz" appended when the file is gzip-compressed
    link_types: tuple[int, ...]  # LINKTYPE_* of the file's interfaces
    packets: int
    malformed: int  # frames whose note has a `malformed` token
    truncated: int  # frames whose note has a `truncated` token
    warnings: tuple[str, ...] = field(default=())  # decoder remarks (e.g. the file ends mid-record)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "link_types": list(self.link_types),
            "packets": self.packets,
            "malformed": self.malformed,
            "truncated": self.truncated,
        }


class LazyRecords(Sequence[dict[str, Any]]):
    """Report records built on first use (``build``), ``count`` of them.

    ``json_chunks``, when given, writes the same records as JSON text without building them
    (``analyzer.report.json_report`` uses it while ``built`` is false): at 10^5 flows the record
    dicts cost more time and memory than writing the report from the flow tables.
    """

    def __init__(
        self,
        count: int,
        build: Callable[[], list[dict[str, Any]]],
        json_chunks: Callable[[], Iterator[bytes | Gather]] | None = None,
    ) -> None:
        self._count = count
        self._build = build
        self._records: list[dict[str, Any]] | None = None
        self.json_chunks = json_chunks

    @property
    def built(self) -> bool:
        return self._records is not None

    def _list(self) -> list[dict[str, Any]]:
        if self._records is None:
            self._records = self._build()
        return self._records

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._list()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRecords):
            other = other._list()
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like the list it stands for

    def __repr__(self) -> str:
        return f"LazyRecords({self._count} records{'' if self.built else ', not built yet'})"


class Analysis:
    """Everything known about one capture: the packet table, one row per flow, the report records.

    ``tcp`` and ``udp`` may be given as callables: they are made on first use (the JSON report
    reads only the records, and merging the tables of ``analyzer.flows.tcp_parallel``'s
    workers costs time). Treat an Analysis as read-only.
    """

    def __init__(
        self,
        capture: CaptureInfo,
        packets: pd.DataFrame,  # analyzer.schema.PACKETS
        tcp: Table,  # one row per TCP connection (analyzer.flows.tcp)
        udp: Table,  # one row per UDP conversation (analyzer.flows.udp)
        tcp_records: Sequence[dict[str, Any]],  # a list, or LazyRecords (what ``analyze`` gives)
        udp_records: Sequence[dict[str, Any]],
        msl: float = DEFAULT_MSL,
        engine: str = "native",
    ) -> None:
        self.capture = capture
        self.packets = packets
        self._tables: dict[str, Table] = {"tcp": tcp, "udp": udp}
        self.tcp_records = tcp_records
        self.udp_records = udp_records
        self.msl = msl
        self.engine = engine

    @property
    def tcp(self) -> pd.DataFrame:
        return self._table("tcp")

    @property
    def udp(self) -> pd.DataFrame:
        return self._table("udp")

    def _table(self, name: str) -> pd.DataFrame:
        table = self._tables[name]
        if callable(table):
            table = self._tables[name] = table()
        return table

    def to_dict(self) -> dict[str, Any]:
        """The ``analyzer.report/1`` document (render it with ``analyzer.report.json_report``)."""
        doc = self.document()
        doc["tcp"], doc["udp"] = list(self.tcp_records), list(self.udp_records)
        return doc

    def document(self) -> dict[str, Any]:
        """``to_dict()`` with the flow lists as they are held (records possibly not built yet)."""
        return {
            "schema": SCHEMA_ID,
            "capture": self.capture.to_dict(),
            "tcp": self.tcp_records,
            "udp": self.udp_records,
        }


def analyze(
    path: str | os.PathLike[str], *, msl: float = DEFAULT_MSL, engine: str = "native", jobs: int = 1
) -> Analysis:
    """Decode ``path`` with ``engine`` and reconstruct its TCP connections and UDP conversations.

    ``msl`` (seconds) sets the TIME_WAIT length, 2*MSL; the default 30 s gives Linux's 60 s.
    ``jobs``: processes for the TCP analysis of a large capture (0: one per CPU); see
    ``analyzer.flows.tcp_parallel``. The default, 1, never forks.
    """
    if not (isinstance(msl, int | float) and math.isfinite(msl) and msl > 0):
        raise UsageError(f"invalid MSL {msl!r}", hint="pass a positive number of seconds, e.g. --msl 30")
    if not (isinstance(jobs, int) and jobs >= 0):
        raise UsageError(f"invalid number of jobs {jobs!r}", hint="pass 1 or more, or 0 for one per CPU")
    # The flow modules (and pandas, which they import) load on a second thread while the
    # capture decodes; the decoder needs only numpy until it assembles the frame.
    from analyzer.decode.cpus import usable_cpus
    from analyzer.decode.native import import_in_background

    workers = jobs if jobs > 0 else usable_cpus()
    preload = import_in_background("analyzer.flows.tcp_parallel", "analyzer.flows.udp")
    packets = read_packets(path, engine=engine)
    if preload is not None:
        preload.join()  # no thread may be running when the TCP analysis forks
    from analyzer.flows.tcp_parallel import start_tcp
    from analyzer.flows.udp import analyze_udp

    with CaptureBytes(Path(path)) as payloads, gc_paused():
        # The capture facts and the UDP analysis run here while the TCP workers run; the
        # caller's TCP share is smaller by about as many packets as UDP has.
        not_tcp = int((packets["proto"] != "tcp").sum())
        reserve = int(not_tcp * UDP_PACKET_WEIGHT)
        job = start_tcp(packets, payloads, msl=msl, workers=workers, reserve=reserve)
        try:
            capture = capture_info(path, packets)
            udp = analyze_udp(packets, payloads)
            udp_json: Callable[[], Iterator[bytes | Gather]] = udp.json_chunks
            if job.forked:
                # With workers, every TCP record comes back as JSON text (what the CLI forks
                # for); the UDP records' text is made now too, while the workers run.
                udp_json = _held(list(udp.json_chunks()))
            tcp = job.result()
        finally:
            job.close()
    return Analysis(
        capture=capture,
        packets=packets,
        tcp=lambda: tcp.table,
        udp=udp.table,
        tcp_records=LazyRecords(tcp.count, lambda: tcp.records, tcp.json_chunks),
        udp_records=LazyRecords(len(udp.table), lambda: udp.records, udp_json),
        msl=float(msl),
        engine=engine,
    )


def _held(chunks: list[bytes]) -> Callable[[], Iterator[bytes | Gather]]:
    return lambda: iter(chunks)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restoring its previous state on exit).

    Building 10^5 small record dicts sets off full collections over every live object again and
    again; they cost more than the work and find nothing (records hold no reference cycles).
    Hold the pause until the records are dropped, or the first collection afterwards pays it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def capture_info(path: str | os.PathLike[str], packets: pd.DataFrame) -> CaptureInfo:
    """The ``capture`` facts: format and link types from the decoder (or the file header), counts."""
    attrs = packets.attrs
    if "format" in attrs and "link_types" in attrs:
        fmt = str(attrs["format"])
        compressed = bool(attrs.get("compressed", False))
        link_types: tuple[int, ...] = tuple(int(t) for t in attrs["link_types"])
    else:
        fmt, compressed, header_link = _sniff(Path(path))
        seen = sorted({int(t) for t in np.unique(packets["link_type"].to_numpy())})
        link_types = tuple(header_link) if header_link else tuple(seen)
    malformed, truncated = _note_counts(packets["note"])
    return CaptureInfo(
        file=os.fspath(path),
        format=fmt + (".gz" if compressed else ""),
        link_types=link_types,
        packets=len(packets),
        malformed=malformed,
        truncated=truncated,
        warnings=tuple(str(w) for w in attrs.get("warnings", ())),
    )


def _note_counts(note: pd.Series) -> tuple[int, int]:
    """How many frames carry a ``malformed`` / ``truncated`` token (tokens are ``;``-joined)."""
    import pandas as pd

    cat = note if isinstance(note.dtype, pd.CategoricalDtype) else note.astype("category")
    tokens = [{part.split(":", 1)[0].strip() for part in str(c).split(";")} for c in cat.cat.categories]
    codes = cat.cat.codes.to_numpy()
    codes = codes[codes >= 0]
    has_malformed = np.array([("malformed" in t) for t in tokens] + [False], dtype=bool)
    has_truncated = np.array([("truncated" in t) for t in tokens] + [False], dtype=bool)
    return int(has_malformed[codes].sum()), int(has_truncated[codes].sum())


def _sniff(path: Path) -> tuple[str, bool, list[int]]:
    """(format, gzip?, link types from a classic pcap header) read from the file's first bytes."""
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
            compressed = head[:2] == GZIP_MAGIC
            if compressed:
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh) as gz:
                    head = gz.read(24)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the capture header ({exc})") from None
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng", compressed, []
    order = PCAP_MAGICS.get(head[:4])
    if order is None:
        raise CaptureFormatError(f"{path}: not a pcap or pcapng file")
    link = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF if len(head) >= 24 else None
    return "pcap", compressed, [] if link is None else [link]
