"""A plain-Python walk over the packet records of a pcap or pcapng file, for the scapy and tshark engines.

The native engine has its own columnar reader; this one is deliberately simple (one Python object
per record) so the reference engines do not share the native engine's code. It returns, per record,
what ``docs/PACKETS.md`` needs from the file format: timestamp in ns, lengths, the interface's
LINKTYPE and the offset of the record's data in the (decompressed) file.

scapy's own readers are not used for this: they do not expose the data offset (needed for
``payload_offset``), ignore ``if_tsoffset``, give a Simple Packet Block zero bytes when the
interface's snaplen is 0 ("no limit"), and keep the previous section's interfaces after a new
Section Header Block.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from analyzer.errors import CaptureFormatError

PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),
    b"\xa1\xb2\x3c\x4d": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
}
PCAPNG_SHB = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
# pcapng block types that carry packets.
EPB, SPB, OBSOLETE_PB, IDB = 6, 3, 2, 1
# LINKTYPE_ values carry FCS/extension flags in the upper bits of the classic pcap header field.
LINKTYPE_MASK = 0x03FF_FFFF


@dataclass(frozen=True, slots=True)
class Record:
    """One packet record: where its bytes are and what the file says about it."""

    ts_ns: int
    caplen: int
    wirelen: int
    link_type: int
    data_offset: int  # offset of the first captured byte in the (decompressed) file
    block_offset: int  # offset of the record header / block (tshark's frame.file_off)


@dataclass(frozen=True, slots=True)
class _Iface:
    link_type: int
    snaplen: int
    units: int  # timestamp units per second
    tsoffset: int  # seconds


def walk_records(data: bytes | bytearray | memoryview | mmap.mmap, name: str) -> list[Record]:
    """Every packet record of a pcap/pcapng image ``data``; ``name`` is used in error messages.

    A file cut short inside its last record (a capture process killed mid-write) yields the
    complete records before the cut, as Wireshark shows them.
    """
    # The view is released on the way out, errors included, so an mmap'ed file can be closed.
    with memoryview(data) as view, view.cast("B") as buf:
        if len(buf) < 4:
            raise CaptureFormatError(f"{name}: too short to be a pcap or pcapng file ({len(buf)} bytes)")
        head = bytes(buf[:4])
        if head in PCAP_MAGICS:
            return _walk_pcap(buf, name, *PCAP_MAGICS[head])
        if struct.unpack("<I", head)[0] == PCAPNG_SHB:
            return _walk_pcapng(buf, name)
        raise CaptureFormatError(f"{name}: not a pcap or pcapng file (magic {head.hex()})")


def _walk_pcap(buf: memoryview, name: str, endian: str, ns_per_unit: int) -> list[Record]:
    if len(buf) < 24:
        raise CaptureFormatError(f"{name}: pcap file header cut short ({len(buf)} of 24 bytes)")
    link = struct.unpack_from(endian + "I", buf, 20)[0] & LINKTYPE_MASK
    rec_hdr = struct.Struct(endian + "IIII")
    out: list[Record] = []
    pos = 24
    size = len(buf)
    while pos + 16 <= size:
        sec, frac, caplen, wirelen = rec_hdr.unpack_from(buf, pos)
        if pos + 16 + caplen > size:
            break  # cut short inside the last record
        out.append(Record(sec * 1_000_000_000 + frac * ns_per_unit, caplen, wirelen, link, pos + 16, pos))
        pos += 16 + caplen
    return out


def _walk_pcapng(buf: memoryview, name: str) -> list[Record]:
    out: list[Record] = []
    ifaces: list[_Iface] = []
    endian = "<"
    pos = 0
    size = len(buf)
    while pos + 12 <= size:
        raw_type = bytes(buf[pos : pos + 4])
        if struct.unpack("<I", raw_type)[0] == PCAPNG_SHB:
            # The byte-order magic decides how this section (including this block's length) is read.
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureFormatError(f"{name}: pcapng section at offset {pos} has a bad byte-order magic")
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", buf, pos)
        if blen < 12 or blen % 4:
            raise CaptureFormatError(f"{name}: pcapng block at offset {pos} has an invalid length {blen}")
        if pos + blen > size:
            break  # cut short inside the last block
        body = pos + 8
        body_len = blen - 12
        if btype == IDB:
            ifaces.append(_read_idb(buf, body, body_len, endian, name, pos))
        elif btype in (EPB, OBSOLETE_PB):
            if body_len < 20:
                raise CaptureFormatError(f"{name}: packet block at offset {pos} is too short")
            if btype == EPB:
                ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, body)
            else:
                ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(endian + "HHIIII", buf, body)
            iface = _iface(ifaces, ifid, name, pos)
            if 20 + caplen > body_len:
                raise CaptureFormatError(f"{name}: packet block at offset {pos}: caplen {caplen} overruns it")
            ticks = (hi << 32) | lo
            ts_ns = (ticks // iface.units + iface.tsoffset) * 1_000_000_000 + (
                ticks % iface.units
            ) * 1_000_000_000 // iface.units
            out.append(Record(ts_ns, caplen, wirelen, iface.link_type, body + 20, pos))
        elif btype == SPB:
            iface = _iface(ifaces, 0, name, pos)
            (wirelen,) = struct.unpack_from(endian + "I", buf, body)
            caplen = min(wirelen, body_len - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            # A Simple Packet Block has no timestamp.
            out.append(Record(0, caplen, wirelen, iface.link_type, body + 4, pos))
        # Every other block type (NRB, ISB, DSB, custom, unknown) carries no packet: skipped.
        pos += blen
    return out


def _iface(ifaces: list[_Iface], ifid: int, name: str, pos: int) -> _Iface:
    if ifid >= len(ifaces):
        raise CaptureFormatError(
            f"{name}: packet block at offset {pos} names interface {ifid}; only {len(ifaces)} described"
        )
    return ifaces[ifid]


def _read_idb(buf: memoryview, body: int, body_len: int, endian: str, name: str, pos: int) -> _Iface:
    if body_len < 8:
        raise CaptureFormatError(f"{name}: interface block at offset {pos} is too short")
    link, _reserved, snaplen = struct.unpack_from(endian + "HHI", buf, body)
    units = 1_000_000
    tsoffset = 0
    opt = body + 8
    end = body + body_len
    while opt + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", buf, opt)
        if code == 0:
            break
        value = opt + 4
        if value + olen > end:
            raise CaptureFormatError(f"{name}: interface block at offset {pos} has an option past its end")
        if code == 9 and olen >= 1:
            res = buf[value]
            units = 2 ** (res & 0x7F) if res & 0x80 else 10 ** (res & 0x7F)
        elif code == 14 and olen >= 8:
            (tsoffset,) = struct.unpack_from(endian + "q", buf, value)
        opt = value + olen + (-olen % 4)
    return _Iface(link, snaplen, units, tsoffset)
