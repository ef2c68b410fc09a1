"""Count the frames of a pcap or pcapng file and tell whether the file ends cleanly.

Used right after a capture stops, before any analysis: to compare with the frame witness and
to tell a complete file from a half-written one (which is removed, never left behind).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_FRAME_BLOCKS = {2, 3, 6}  # obsolete Packet Block, Simple Packet Block, Enhanced Packet Block
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}


@dataclass(frozen=True)
class FileCount:
    format: str  # "pcap" or "pcapng"
    frames: int
    complete: bool  # False when the file ends inside a record or block


def count_frames(path: Path) -> FileCount:
    data = path.read_bytes()
    if data[:4] in PCAP_MAGICS:
        return _count_pcap(data, PCAP_MAGICS[data[:4]])
    if len(data) >= 12 and struct.unpack("<I", data[:4])[0] == PCAPNG_SHB:
        return _count_pcapng(data)
    raise ValueError(f"{path}: neither pcap nor pcapng ({len(data)} bytes)")


def _count_pcap(data: bytes, endian: str) -> FileCount:
    offset, frames = 24, 0
    while offset + 16 <= len(data):
        incl_len = struct.unpack_from(endian + "I", data, offset + 8)[0]
        if offset + 16 + incl_len > len(data):
            return FileCount("pcap", frames, False)
        offset += 16 + incl_len
        frames += 1
    return FileCount("pcap", frames, offset == len(data) and len(data) >= 24)


def _count_pcapng(data: bytes) -> FileCount:
    offset, frames, endian = 0, 0, "<"
    while offset + 12 <= len(data):
        if data[offset : offset + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[offset + 8 : offset + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        block_type, length = struct.unpack_from(endian + "II", data, offset)
        if length < 12 or length % 4 or offset + length > len(data):
            return FileCount("pcapng", frames, False)
        if block_type in PCAPNG_FRAME_BLOCKS:
            frames += 1
        offset += length
    return FileCount("pcapng", frames, offset == len(data))
