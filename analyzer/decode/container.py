"""Capture containers: find packet records in classic pcap and pcapng, columnar.

The only per-record work is the walk from one record header to the next (each record's
position depends on the previous one's length), in C when the optional ``_walk`` extension is
built. On a large file it runs in two halves on two threads: the second from a guessed record
boundary past the middle, kept only if the first half's walk ends exactly there, so the result
is always the one walk's. Everything else — timestamps, lengths, interfaces — is gathered
afterwards for all records at once with numpy.

References: the pcap and pcapng formats (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng).
"""

from __future__ import annotations

import array
import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from analyzer.decode.cpus import OnThread, usable_cpus
from analyzer.decode.gather import gather
from analyzer.decode.source import Buffer
from analyzer.errors import CaptureFormatError

PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
PCAPNG_SHB = 0x0A0D0D0A  # section header block type (palindromic)
PCAPNG_BOM = 0x1A2B3C4D  # byte-order magic inside the SHB
PCAPNG_IDB = 0x00000001  # interface description block
PCAPNG_PB = 0x00000002  # obsolete packet block
PCAPNG_SPB = 0x00000003  # simple packet block
PCAPNG_EPB = 0x00000006  # enhanced packet block
OPT_IF_TSRESOL = 9  # IDB option: timestamp resolution
OPT_IF_TSOFFSET = 14  # IDB option: seconds added to every timestamp
NATIVE = "<" if sys.byteorder == "little" else ">"

try:  # the optional C walker (setup.py builds it when a compiler exists)
    from analyzer.decode import _walk  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _walk = None
# From this file size the C walk runs in two halves on two threads (a thread costs more than
# it saves on small files); the second half's start is searched for this far past the middle.
HALVES_MIN_BYTES = 32 << 20
SYNC_WINDOW = 1 << 20
MAX_SANE_CAPLEN = 0x4000000  # 64 MiB: Wireshark's largest accepted record (WTAP_MAX_PACKET_SIZE_*)

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class Records:
    """Every packet record of a capture, as parallel columns (one entry per frame)."""

    data_off: I64  # where the frame bytes start in the (decompressed) file
    caplen: U32
    wirelen: U32
    ts_ns: I64
    link_type: U16
    format: str  # "pcap" or "pcapng"
    link_types: tuple[int, ...]  # of the file's interfaces, in order
    warnings: tuple[str, ...] = field(default=())


def read_records(buf: Buffer, path: Path) -> Records:
    """Locate all packet records in ``buf`` (the whole capture file)."""
    if len(buf) < 4:
        raise CaptureFormatError(f"{path}: too short to be a capture file ({len(buf)} bytes)")
    (magic_le,) = struct.unpack_from("<I", buf, 0)
    if magic_le == PCAPNG_SHB:
        return _read_pcapng(buf, path)
    if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return _read_pcap(buf, path, "<", magic_le == PCAP_MAGIC_NS)
    (magic_be,) = struct.unpack_from(">I", buf, 0)
    if magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return _read_pcap(buf, path, ">", magic_be == PCAP_MAGIC_NS)
    raise CaptureFormatError(f"{path}: not a pcap or pcapng file (magic 0x{magic_be:08x})")


# -- classic pcap -----------------------------------------------------------------------------


def _read_pcap(buf: Buffer, path: Path, order: str, nano: bool) -> Records:
    if len(buf) < 24:
        raise CaptureFormatError(f"{path}: pcap file header cut short ({len(buf)} of 24 bytes)")
    _snaplen, linktype = struct.unpack_from(order + "II", buf, 16)
    linktype &= 0x0FFFFFFF  # upper bits may carry FCS length flags
    offsets = _walk_pcap(buf, order, nano)
    warnings: list[str] = []
    hdr = gather(
        buf,
        offsets,
        np.dtype([("s", order + "u4"), ("f", order + "u4"), ("cap", order + "u4"), ("wire", order + "u4")]),
    )
    caplen = hdr["cap"].astype(np.uint32)
    wirelen = hdr["wire"].astype(np.uint32)
    offsets, caplen, wirelen, hdr = _cut_damaged(offsets, caplen, wirelen, hdr, len(buf), 16, warnings, path)
    scale = 1 if nano else 1000
    ts_ns = hdr["s"].astype(np.int64) * 1_000_000_000 + hdr["f"].astype(np.int64) * scale
    n = len(offsets)
    return Records(
        data_off=offsets + 16,
        caplen=caplen,
        wirelen=wirelen,
        ts_ns=ts_ns,
        link_type=np.full(n, linktype, dtype=np.uint16),
        format="pcap",
        link_types=(int(linktype),),
        warnings=tuple(warnings),
    )


def _walk_pcap(buf: Buffer, order: str, nano: bool) -> I64:
    """Offsets of every record header; the one inherently sequential step."""
    if _walk is None or os.environ.get("ANALYZER_PURE_PYTHON") == "1":
        return _walk_pcap_python(buf, order)
    swap = order != NATIVE
    if len(buf) >= HALVES_MIN_BYTES and usable_cpus() > 1:
        return _walk_pcap_halves(buf, swap, nano)
    return np.frombuffer(_walk.walk_pcap_range(buf, swap, 24, len(buf))[0], dtype=np.int64)


def _walk_pcap_halves(buf: Buffer, swap: bool, nano: bool) -> I64:
    """The C walk in two halves at once (the GIL is released while it runs).

    The second half starts at a guessed record boundary past the middle (``pcap_sync``: 32
    chained plausible headers). The guess holds when the first half's walk ends exactly on it:
    from there both follow the same chain, so the halves join into the one-walk result. Else
    (a damaged record, a fooled guess) the first walk goes on alone, as one walk would.
    """
    n = len(buf)
    mid = n // 2
    sync = _walk.pcap_sync(buf, swap, nano, mid, min(n, mid + SYNC_WINDOW))
    if sync < 0:
        return np.frombuffer(_walk.walk_pcap_range(buf, swap, 24, len(buf))[0], dtype=np.int64)
    second = OnThread(lambda: _walk.walk_pcap_range(buf, swap, sync, n), "walk-2")
    try:
        first, end = _walk.walk_pcap_range(buf, swap, 24, sync)
    finally:
        found = second.result()
    rest = found[0] if end == sync else _walk.walk_pcap_range(buf, swap, end, n)[0]
    return np.concatenate([np.frombuffer(first, dtype=np.int64), np.frombuffer(rest, dtype=np.int64)])


def _walk_pcap_python(buf: Buffer, order: str) -> I64:
    offsets = array.array("q")  # no list of int objects; becomes a numpy array without a copy
    append = offsets.append
    off = 24
    last = len(buf) - 16  # a record header must fit
    if order == NATIVE:
        # Index 32-bit words directly (one view per alignment): ~1.5x faster than struct.
        with _word_views(buf) as words:
            while off <= last:
                append(off)
                p = off + 8
                off += 16 + words[p & 3][p >> 2]
    else:
        unpack = struct.Struct(order + "I").unpack_from
        while off <= last:
            append(off)
            off += 16 + unpack(buf, off + 8)[0]
    return np.frombuffer(offsets, dtype=np.int64) if offsets else np.zeros(0, dtype=np.int64)


@contextlib.contextmanager
def _word_views(buf: Buffer) -> Iterator[tuple[memoryview, ...]]:
    """Native 32-bit word views of ``buf`` at byte alignments 0..3 (released on exit)."""
    n = len(buf)
    whole = memoryview(buf)
    views = tuple(whole[k : k + (max(n - k, 0) // 4) * 4].cast("I") for k in range(4))
    try:
        yield views
    finally:
        for v in views:
            v.release()
        whole.release()


def _cut_damaged(
    offsets: I64,
    caplen: U32,
    wirelen: U32,
    hdr: np.ndarray,  # type: ignore[type-arg]
    size: int,
    header_len: int,
    warnings: list[str],
    path: Path,
) -> tuple[I64, U32, U32, np.ndarray]:  # type: ignore[type-arg]
    """Drop the records from the first damaged one on (impossible length, or cut off at EOF)."""
    bad = (caplen > MAX_SANE_CAPLEN) | (offsets + header_len + caplen.astype(np.int64) > size)
    if not bad.any():
        return offsets, caplen, wirelen, hdr
    first = int(np.argmax(bad))
    if offsets[first] + header_len + int(caplen[first]) > size and caplen[first] <= MAX_SANE_CAPLEN:
        warnings.append(f"the capture is cut short in record {first + 1} (file ends mid-record)")
    else:
        warnings.append(f"record {first + 1} has an impossible length {int(caplen[first])}; stopped there")
    if first == 0 and len(offsets) > 0 and not warnings[-1].startswith("the capture is cut short"):
        raise CaptureFormatError(f"{path}: first record is damaged ({warnings[-1]})")
    return offsets[:first], caplen[:first], wirelen[:first], hdr[:first]


# -- pcapng -----------------------------------------------------------------------------------


@dataclass
class _Interface:
    link_type: int
    snaplen: int
    tsresol: tuple[bool, int] = (False, 6)  # (power of two?, exponent); default microseconds
    tsoffset: int = 0


@dataclass
class _Section:
    start: int
    order: str
    interfaces: list[_Interface] = field(default_factory=list)


def _read_pcapng(buf: Buffer, path: Path) -> Records:
    size = len(buf)
    sections: list[_Section] = []
    epb: list[int] = []  # EPB offsets, the hot path
    others: list[tuple[int, int]] = []  # (offset, block type) of SPB/PB, rare
    warnings: list[str] = []
    order = "<"
    unpack = struct.Struct("<II").unpack_from
    off = 0
    append = epb.append
    c_runs: list[I64] = []  # EPB offsets found by the C walker, in runs
    use_c = _walk is not None and os.environ.get("ANALYZER_PURE_PYTHON") != "1"
    second: _SecondHalf | None = None  # the first long run of EPBs is walked in two halves
    with _word_views(buf) as words_by_alignment:
        words = words_by_alignment[0]  # pcapng blocks are 4-byte aligned
        native = True
        while off + 12 <= size:
            if use_c:
                if second is None and sections and unpack(buf, off)[0] == PCAPNG_EPB:
                    second = _SecondHalf(buf, off, not native)
                if second is not None and second.running:
                    found, off = _walk.walk_pcapng_epb(buf, off, not native, second.sync)
                    if found:
                        c_runs.append(np.frombuffer(found, dtype=np.int64))
                    rest = second.finish(off)
                    if rest is not None:
                        found, off = rest
                        c_runs.append(np.frombuffer(found, dtype=np.int64))
                else:
                    found, off = _walk.walk_pcapng_epb(buf, off, not native)
                    if found:
                        c_runs.append(np.frombuffer(found, dtype=np.int64))
                if off + 12 > size:
                    break
            if native:
                btype, blen = words[off >> 2], words[(off >> 2) + 1]
            else:
                btype, blen = unpack(buf, off)
            if btype == PCAPNG_EPB and blen >= 32 and not blen & 3 and off + blen <= size:
                append(off)  # the hot path: a well-formed enhanced packet block
                off += blen
                continue
            if btype == PCAPNG_SHB:
                order = _section_order(buf, off, path)
                native = order == NATIVE
                unpack = struct.Struct(order + "II").unpack_from
                btype, blen = unpack(buf, off)
                sections.append(_Section(off, order))
            elif btype == PCAPNG_IDB and blen >= 20 and off + blen <= size:
                if not sections:
                    raise CaptureFormatError(f"{path}: interface block before any section header")
                sections[-1].interfaces.append(_parse_idb(buf, off, blen, order))
            min_len = 32 if btype in (PCAPNG_EPB, PCAPNG_PB) else 16 if btype == PCAPNG_SPB else 12
            if blen < min_len or blen % 4 or off + blen > size:
                warnings.append(f"block at offset {off} has a bad length {blen}; stopped reading there")
                break
            if btype in (PCAPNG_SPB, PCAPNG_PB):
                others.append((off, btype))
            off += blen
    if not sections:
        raise CaptureFormatError(f"{path}: pcapng without a section header block")
    runs = [*c_runs, np.array(epb, dtype=np.int64)]
    epb_offsets = np.sort(np.concatenate(runs)) if len(runs) > 1 else runs[0]
    return _pcapng_columns(buf, path, sections, epb_offsets, others, warnings)


class _SecondHalf:
    """The C EPB walk from a guessed block boundary past the middle of the rest of the file, on
    a second thread (as ``_walk_pcap_halves``; ``pcapng_sync`` guesses: 32 chained EPBs, each
    with its length repeated at its end). Its result is used only if the first walk, stopped
    at the guess, ends exactly there."""

    def __init__(self, buf: Buffer, start: int, swap: bool) -> None:
        self.sync = -1
        self._walk: OnThread[tuple[bytes, int]] | None = None
        left = len(buf) - start
        if left < HALVES_MIN_BYTES or usable_cpus() < 2:
            return
        mid = start + left // 2
        sync = self.sync = _walk.pcapng_sync(buf, swap, mid, min(len(buf), mid + SYNC_WINDOW))
        if sync >= 0:
            self._walk = OnThread(lambda: _walk.walk_pcapng_epb(buf, sync, swap), "walk-2")

    @property
    def running(self) -> bool:
        return self._walk is not None

    def finish(self, end: int) -> tuple[bytes, int] | None:
        """Wait for the second walk: its (offsets, stop) if the first ended at ``end == sync``."""
        assert self._walk is not None
        result = self._walk.result()
        self._walk = None
        return result if end == self.sync else None


def _section_order(buf: Buffer, off: int, path: Path) -> str:
    if off + 12 > len(buf):
        raise CaptureFormatError(f"{path}: section header block cut short")
    (bom,) = struct.unpack_from("<I", buf, off + 8)
    if bom == PCAPNG_BOM:
        return "<"
    if bom == struct.unpack("<I", struct.pack(">I", PCAPNG_BOM))[0]:
        return ">"
    raise CaptureFormatError(f"{path}: bad byte-order magic 0x{bom:08x} in section header at {off}")


def _parse_idb(buf: Buffer, off: int, blen: int, order: str) -> _Interface:
    link_type, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
    iface = _Interface(link_type, snaplen)
    pos, end = off + 16, off + blen - 4
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:  # opt_endofopt
            break
        value = bytes(buf[pos + 4 : pos + 4 + length])
        if code == OPT_IF_TSRESOL and length >= 1:
            iface.tsresol = (bool(value[0] & 0x80), value[0] & 0x7F)
        elif code == OPT_IF_TSOFFSET and length >= 8:
            (iface.tsoffset,) = struct.unpack(order + "q", value[:8])
        pos += 4 + length + (-length % 4)
    return iface


def _pcapng_columns(
    buf: Buffer,
    path: Path,
    sections: list[_Section],
    epb: I64,
    others: list[tuple[int, int]],
    warnings: list[str],
) -> Records:
    n_epb = len(epb)
    block_off = epb
    kind = np.zeros(n_epb, dtype=np.uint8)  # 0 EPB, 2 PB, 3 SPB
    if others:
        extra = np.array([o for o, _ in others], dtype=np.int64)
        block_off = np.concatenate([epb, extra])
        kind = np.concatenate([kind, np.array([t for _, t in others], dtype=np.uint8)])
        order_idx = np.argsort(block_off, kind="stable")
        block_off, kind = block_off[order_idx], kind[order_idx]
    n = len(block_off)
    section_starts = np.array([s.start for s in sections], dtype=np.int64)
    sec_of = np.searchsorted(section_starts, block_off, side="right") - 1
    caplen = np.zeros(n, dtype=np.uint32)
    wirelen = np.zeros(n, dtype=np.uint32)
    ts_raw = np.zeros(n, dtype=np.uint64)
    iface_global = np.zeros(n, dtype=np.int64)
    blen_all = np.zeros(n, dtype=np.int64)
    iface_base = np.cumsum([0] + [len(s.interfaces) for s in sections])
    all_ifaces = [i for s in sections for i in s.interfaces]
    for si, sec in enumerate(sections):
        in_sec = sec_of == si
        if not in_sec.any():
            continue
        o = sec.order
        epb_dt = np.dtype(
            [
                ("t", o + "u4"),
                ("len", o + "u4"),
                ("if", o + "u4"),
                ("hi", o + "u4"),
                ("lo", o + "u4"),
                ("cap", o + "u4"),
                ("wire", o + "u4"),
            ]
        )
        sel = np.nonzero(in_sec & (kind != PCAPNG_SPB))[0]
        if len(sel):
            hdr = gather(buf, block_off[sel], epb_dt)
            ifid = hdr["if"].astype(np.int64)
            ifid = np.where(kind[sel] == PCAPNG_PB, ifid & 0xFFFF, ifid)  # PB: 16-bit id + drops count
            iface_global[sel] = ifid + iface_base[si]
            caplen[sel] = hdr["cap"]
            wirelen[sel] = hdr["wire"]
            ts_raw[sel] = (hdr["hi"].astype(np.uint64) << np.uint64(32)) | hdr["lo"].astype(np.uint64)
            blen_all[sel] = hdr["len"]
        sel = np.nonzero(in_sec & (kind == PCAPNG_SPB))[0]
        if len(sel):
            hdr = gather(
                buf, block_off[sel], np.dtype([("t", o + "u4"), ("len", o + "u4"), ("wire", o + "u4")])
            )
            wirelen[sel] = hdr["wire"]
            iface_global[sel] = iface_base[si]
            body = hdr["len"].astype(np.int64) - 16
            snap = all_ifaces[iface_base[si]].snaplen if sec.interfaces else 0
            cap = np.minimum(body, hdr["wire"].astype(np.int64))
            if snap:
                cap = np.minimum(cap, snap)
            caplen[sel] = cap
            blen_all[sel] = hdr["len"]
    if n and (iface_global >= len(all_ifaces)).any():
        bad = int(np.argmax(iface_global >= len(all_ifaces)))
        raise CaptureFormatError(
            f"{path}: packet {bad + 1} names interface {int(iface_global[bad])}, which no block describes"
        )
    header_len = np.where(kind == PCAPNG_SPB, 12, 28)
    data_off = block_off + header_len
    over = data_off + caplen.astype(np.int64) > block_off + blen_all - 4
    if over.any():
        first = int(np.argmax(over))
        warnings.append(f"packet {first + 1} claims more bytes than its block holds; stopped there")
        keep = slice(0, first)
        data_off, caplen, wirelen, ts_raw, iface_global, kind = (
            data_off[keep],
            caplen[keep],
            wirelen[keep],
            ts_raw[keep],
            iface_global[keep],
            kind[keep],
        )
    ts_ns = _pcapng_ts_ns(ts_raw, iface_global, all_ifaces)
    ts_ns[kind == PCAPNG_SPB] = 0  # an SPB carries no timestamp
    link = (
        np.array([i.link_type for i in all_ifaces] or [0], dtype=np.uint16)[iface_global]
        if len(iface_global)
        else np.zeros(0, np.uint16)
    )
    return Records(
        data_off=data_off,
        caplen=caplen,
        wirelen=wirelen,
        ts_ns=ts_ns,
        link_type=link,
        format="pcapng",
        link_types=tuple(i.link_type for i in all_ifaces),
        warnings=tuple(warnings),
    )


def _pcapng_ts_ns(ts_raw: npt.NDArray[np.uint64], iface: I64, ifaces: list[_Interface]) -> I64:
    """Convert per-interface timestamp units to epoch ns, exactly (integer arithmetic)."""
    out = np.zeros(len(ts_raw), dtype=np.int64)
    groups = {(i.tsresol, i.tsoffset) for i in ifaces}
    for resol, tsoffset in groups:
        members = [k for k, i in enumerate(ifaces) if (i.tsresol, i.tsoffset) == (resol, tsoffset)]
        sel = np.isin(iface, members) if len(groups) > 1 else slice(None)
        t = ts_raw[sel]
        pow2, exp = resol
        if pow2:
            whole = (t >> np.uint64(exp)).astype(np.int64) * 1_000_000_000
            frac = (
                ((t & np.uint64((1 << exp) - 1)).astype(object) * 1_000_000_000 >> exp)
                if exp > 33
                else (((t & np.uint64((1 << exp) - 1)) * np.uint64(1_000_000_000)) >> np.uint64(exp))
            )
            ns = whole + np.asarray(frac, dtype=np.int64)
        elif exp <= 9:
            ns = t.astype(np.int64) * (10 ** (9 - exp))
        else:
            ns = (t // np.uint64(10 ** (exp - 9))).astype(np.int64)
        out[sel] = ns + tsoffset * 1_000_000_000
    return out
