"""The tshark engine: capture file -> PACKETS frame from Wireshark's dissectors.

pyshark is the library users know for this, but it parses tshark's PDML/JSON one Python object
per field (25 s for 20k packets here, ../shared/ANCHORS.md 6.1). This engine therefore runs one
``tshark -T fields`` subprocess with exactly the fields the schema needs, and uses pyshark for
what it is good at: finding the tshark binary the way pyshark users configure it
(``pyshark.tshark.tshark.get_process_path``: pyshark's config.ini, then PATH).

Field values come from tshark; the presence rules of docs/PACKETS.md (which headers count as
captured, when a length is malformed) are applied to them here with the same helpers as the scapy
engine (``analyzer.decode.table``), because tshark reports those situations as free-text expert
items. Per record, the link type and the offset of the record's data in the file (for
``payload_offset``) come from the plain record walk (``analyzer.decode.records``): tshark only
exposes Wireshark's encapsulation number (several LINKTYPEs map to one, unknown ones to 0) and the
record's block offset, which is checked against the walk.

Known differences from the schema that are normalised here are listed in docs/PACKETS.md,
"Known engine differences".
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analyzer.decode.records import Record, walk_records
from analyzer.decode.source import CaptureBytes
from analyzer.decode.table import (
    AF_INET6_VALUES,
    ICMP4_ERRORS,
    ICMP6_ERRORS,
    MAX_IPV6_EXT,
    MAX_VLAN_TAGS,
    SUPPORTED_LINK_TYPES,
    VLAN_TPIDS,
    Row,
    datagram_end,
    payload,
    to_frame,
)
from analyzer.errors import CaptureFormatError, EnvironmentProblem, ToolNotFoundError

TSHARK_HINT = "install Wireshark's command-line tools: apt-get install tshark (or brew install wireshark)"

# Per-frame dissection: no reassembly (fields must describe this frame's own headers), no
# sequence analysis or name lookups (not needed, and slow), the record's file offset shown, and
# IPv4 total length 0 taken literally rather than as "TSO, use the captured length".
TSHARK_PREFS = (
    "frame.show_file_off:TRUE",
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.analyze_sequence_numbers:FALSE",
    "tcp.calculate_timestamps:FALSE",
    "udp.calculate_timestamps:FALSE",
    "ip.tso_support:FALSE",
)

FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "frame.cap_len",
    "frame.len",
    "frame.file_off",
    "frame.encap_type",
    "frame.protocols",
    "eth.type",
    "vlan.etype",
    "sll.etype",
    "null.family",
    "ip.version",
    "ip.hdr_len",
    "ip.len",
    "ip.flags.mf",
    "ip.frag_offset",
    "ip.proto",
    "ip.src",
    "ip.dst",
    "ipv6.version",
    "ipv6.plen",
    "ipv6.nxt",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hopopts.nxt",
    "ipv6.hopopts.len",
    "ipv6.routing.nxt",
    "ipv6.routing.len",
    "ipv6.dstopts.nxt",
    "ipv6.dstopts.len",
    "ipv6.fraghdr.nxt",
    "ipv6.fraghdr.offset",
    "ah.next_header",
    "ah.length",
    "mip6.proto",
    "mip6.hlen",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.hdr_len",
    "tcp.len",
    "tcp.option_kind",
    "tcp.option_len",
    "tcp.options.mss_val",
    "tcp.options.wscale.shift",
    "tcp.options.timestamp.tsval",
    "tcp.options.timestamp.tsecr",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
)

NEXT_ETHERTYPE = {"vlan": 0x8100, "ieee8021ad": 0x88A8, "ip": 0x0800, "ipv6": 0x86DD}
# Wireshark encapsulation (frame.encap_type) of each supported LINKTYPE, to cross-check the walk.
WTAP_ENCAP = {1: 1, 0: 15, 101: 7, 108: 174, 113: 25, 228: 129, 229: 130, 276: 210}
LINKTYPE_IPV6 = 229
# IPv6 extension headers: (tshark protocol, next-header field, length field) and how the length
# field converts to bytes.
EXT_FIELDS = {
    0: ("ipv6.hopopts", "ipv6.hopopts.nxt", "ipv6.hopopts.len"),
    43: ("ipv6.routing", "ipv6.routing.nxt", "ipv6.routing.len"),
    60: ("ipv6.dstopts", "ipv6.dstopts.nxt", "ipv6.dstopts.len"),
    51: ("ah", "ah.next_header", "ah.length"),
    135: ("mipv6", "mip6.proto", "mip6.hlen"),
}


def read_tshark(path: Path) -> pd.DataFrame:
    """Decode ``path`` (pcap/pcapng, optionally gzip) into a PACKETS frame with tshark."""
    tshark = find_tshark()
    with CaptureBytes(path) as cap:
        records = walk_records(cap.data, str(path))
        frames = run_fields(tshark, path)
        if len(frames) != len(records):
            raise CaptureFormatError(
                f"{path}: tshark read {len(frames)} frames where the file has {len(records)} records"
            )
        redo = [i for i, (f, r) in enumerate(zip(frames, records, strict=True)) if _needs_raw_ipv6(f, r)]
        if redo:
            _redissect_as_ipv6(tshark, cap.data, records, frames, redo)
    rows = [_row(f, r, str(path)) for f, r in zip(frames, records, strict=True)]
    return to_frame(rows)


def find_tshark() -> str:
    """tshark's path, found as pyshark finds it (its config.ini, then PATH)."""
    from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path

    try:
        return str(get_process_path())
    except TSharkNotFoundException:
        raise ToolNotFoundError("tshark not found (needed by the tshark engine)", hint=TSHARK_HINT) from None


@dataclass(frozen=True, slots=True)
class Frame:
    """One tshark output line: every field's occurrences, in dissection order."""

    values: dict[str, list[str]]

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def get(self, name: str, occurrence: int = 0) -> str | None:
        vals = self.values.get(name, [])
        return vals[occurrence] if occurrence < len(vals) else None

    def int(self, name: str, occurrence: int = 0, default: int = 0) -> int:
        v = self.get(name, occurrence)
        return default if v is None else int(v, 0)

    @property
    def layers(self) -> list[str]:
        return (self.get("frame.protocols") or "").split(":")


def run_fields(tshark: str, path: Path) -> list[Frame]:
    """Run ``tshark -T fields`` on ``path``: one ``Frame`` per packet record."""
    cmd = [tshark, "-r", str(path), "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    cmd += ["-E", "separator=/t", "-E", "quote=n"]
    for pref in TSHARK_PREFS:
        cmd += ["-o", pref]
    for name in FIELDS:
        cmd += ["-e", name]
    # tshark warns on stderr when run as root; only its exit status and error text matter.
    proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "LC_ALL": "C"}, check=False)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 and "cut short in the middle of a packet" not in err:
        lines = [ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln]
        detail = " ".join(lines) or f"exit status {proc.returncode}"
        if "isn't a capture file" in detail or "appears to be damaged" in detail:
            raise CaptureFormatError(f"{path}: tshark cannot read it: {detail}")
        raise EnvironmentProblem(f"tshark failed on {path}: {detail}", hint="run the tshark command by hand")
    frames = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        cells = line.split("\t")
        frames.append(
            Frame({name: cell.split(",") for name, cell in zip(FIELDS, cells, strict=False) if cell})
        )
    return frames


def _needs_raw_ipv6(frame: Frame, rec: Record) -> bool:
    """NULL/LOOP frames with AF_INET6 = 10 (Linux's value): Wireshark's null dissector has no
    entry for it and shows the datagram as data."""
    return rec.link_type in (0, 108) and frame.int("null.family", default=-1) == 10


def _redissect_as_ipv6(
    tshark: str,
    data: bytes | mmap.mmap,
    records: list[Record],
    frames: list[Frame],
    redo: list[int],
) -> None:
    """Dissect the datagrams of ``redo`` frames (after their 4-byte family) as LINKTYPE_IPV6 and
    graft the result under their NULL header."""
    with memoryview(data) as buf, tempfile.TemporaryDirectory(prefix="analyzer-tshark-") as tmp:
        raw = Path(tmp) / "ipv6.pcap"
        out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_IPV6))
        for i in redo:
            r = records[i]
            body = bytes(buf[r.data_offset + 4 : r.data_offset + r.caplen])
            sec, nsec = divmod(r.ts_ns, 1_000_000_000)
            out += struct.pack("<IIII", sec, nsec, len(body), max(r.wirelen - 4, 0)) + body
        raw.write_bytes(bytes(out))
        again = run_fields(tshark, raw)
    for i, inner in zip(redo, again, strict=True):
        keep = {k: v for k, v in frames[i].values.items() if k.startswith(("frame.", "null."))}
        merged = {**inner.values, **keep}
        merged["frame.protocols"] = ["null:" + (inner.get("frame.protocols") or "")]
        frames[i] = Frame(merged)


# -- per frame --------------------------------------------------------------------------------


def _ts_ns(text: str | None) -> int:
    """frame.time_epoch ("1700000000.123456789") as integer ns, without float rounding."""
    if not text:
        return 0  # a Simple Packet Block has no timestamp
    sec, _, frac = text.partition(".")
    ns = int(sec) * 1_000_000_000
    nsec = int((frac + "000000000")[:9])
    return ns - nsec if sec.startswith("-") else ns + nsec


class _Occurrences:
    """Which occurrence of a protocol's fields belongs to the layer at a position of frame.protocols."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers

    def index(self, proto: str, position: int) -> int:
        return self.layers[:position].count(proto)


def _row(f: Frame, rec: Record, name: str) -> Row:
    number = f.int("frame.number")
    if f.int("frame.cap_len") != rec.caplen or f.int("frame.len") != rec.wirelen:
        raise CaptureFormatError(f"{name}: frame {number}: tshark's lengths differ from the file's record")
    off = f.get("frame.file_off")
    if off is not None and int(off) != rec.block_offset:
        raise CaptureFormatError(
            f"{name}: frame {number}: tshark's record offset {off} is not {rec.block_offset}"
        )
    encap = WTAP_ENCAP.get(rec.link_type)
    if encap is not None and f.int("frame.encap_type", default=-1) != encap:
        raise CaptureFormatError(f"{name}: frame {number}: tshark's encapsulation differs from LINKTYPE")
    # The time is tshark's; lengths, link type and offsets were checked against the walk above.
    rec = dataclasses.replace(rec, ts_ns=_ts_ns(f.get("frame.time_epoch")))
    row = Row(rec)
    if rec.link_type not in SUPPORTED_LINK_TYPES:
        # tshark may well dissect it (802.11, PPP, ...); the schema decodes only the listed links.
        row.note("unsupported-link", f"LINKTYPE {rec.link_type}")
        return row
    _link(row, f)
    return row


def _link(row: Row, f: Frame) -> None:
    lt = row.rec.link_type
    layers = f.layers
    cap = row.caplen
    if lt == 1:
        if cap < 14:
            row.note("truncated", "Ethernet header")
            return
        etype = f.int("eth.type")
        l2 = 14
        counters = {"vlan": 0, "ieee8021ad": 0}
        for at, layer in enumerate(layers[1:], start=1):
            if layer not in counters:
                if layer == "ethertype":
                    continue
                break
            if cap < l2 + 4:
                row.note("truncated", "VLAN tag")
                return
            if layer == "vlan":
                etype = f.int("vlan.etype", counters[layer])
            else:
                # tshark's 802.1ad dissector shows no type field: the next layer names it.
                after = [x for x in layers[at + 1 :] if x != "ethertype"]
                etype = NEXT_ETHERTYPE.get(after[0] if after else "", 0)
            counters[layer] += 1
            l2 += 4
        if etype in VLAN_TPIDS and l2 < 14 + 4 * MAX_VLAN_TAGS and cap < l2 + 4:
            row.note("truncated", "VLAN tag")  # a tag too short for tshark to show as a layer
            return
        _by_ethertype(row, f, etype, l2)
    elif lt in (113, 276):
        l2 = 16 if lt == 113 else 20
        if cap < l2:
            row.note("truncated", "SLL header")
            return
        _by_ethertype(row, f, f.int("sll.etype"), l2)
    elif lt in (0, 108):
        if cap < 4:
            row.note("truncated", "loopback header")
            return
        family = f.int("null.family", default=-1)
        if family == 2:
            _ipv4(row, f, 4, layers.index("ip") if "ip" in layers else -1)
        elif family in AF_INET6_VALUES:
            _ipv6(row, f, 4, layers.index("ipv6") if "ipv6" in layers else -1)
    elif lt == 101:
        if cap < 1:
            row.note("truncated", "empty raw-IP frame")
            return
        if len(layers) > 1 and layers[1] == "ip":
            _ipv4(row, f, 0, 1)
        elif len(layers) > 1 and layers[1] == "ipv6":
            _ipv6(row, f, 0, 1)
    elif lt == 228:
        _ipv4(row, f, 0, layers.index("ip") if "ip" in layers else -1)
    elif lt == 229:
        _ipv6(row, f, 0, layers.index("ipv6") if "ipv6" in layers else -1)


def _by_ethertype(row: Row, f: Frame, etype: int, l2: int) -> None:
    layers = f.layers
    if etype == 0x0800:
        _ipv4(row, f, l2, layers.index("ip") if "ip" in layers else -1)
    elif etype == 0x86DD:
        _ipv6(row, f, l2, layers.index("ipv6") if "ipv6" in layers else -1)


def _ipv4(row: Row, f: Frame, l3: int, position: int) -> None:
    if row.caplen < l3 + 20:
        row.note("truncated", "IPv4 header")
        return
    if position < 0:
        row.note("malformed", "tshark did not dissect the IPv4 header")
        return
    occ = _Occurrences(f.layers).index("ip", position)
    if f.int("ip.version", occ) != 4:
        row.note("malformed", "IP version where IPv4 was announced")
        return
    row.ip_version = 4
    row.src, row.dst = f.get("ip.src", occ), f.get("ip.dst", occ)
    row.ip_proto = f.int("ip.proto", occ)
    hl = f.int("ip.hdr_len", occ)
    total = f.int("ip.len", occ)
    frag_off = f.int("ip.frag_offset", occ)  # in 8-byte units
    more = f.get("ip.flags.mf", occ) in ("1", "True")
    row.ip_frag = more or frag_off != 0
    if row.ip_frag:
        row.note("fragment", f"offset {frag_off * 8}")
    if hl < 20 or total < hl:
        row.note("malformed", f"IPv4 header length {hl}, total length {total}")
        return
    if frag_off != 0:
        return
    datagram_end(row, l3 + total)
    _transport(row, f, l3 + hl, l3 + total, position)


def _ipv6(row: Row, f: Frame, l3: int, position: int) -> None:
    if row.caplen < l3 + 40:
        row.note("truncated", "IPv6 header")
        return
    if position < 0:
        row.note("malformed", "tshark did not dissect the IPv6 header")
        return
    layers = f.layers
    occ = _Occurrences(layers).index("ipv6", position)
    if f.int("ipv6.version", occ) != 6:
        row.note("malformed", "IP version where IPv6 was announced")
        return
    row.ip_version = 6
    row.src, row.dst = f.get("ipv6.src", occ), f.get("ipv6.dst", occ)
    end = l3 + 40 + f.int("ipv6.plen", occ)
    nh = f.int("ipv6.nxt", occ)
    pos = l3 + 40
    layer_at = position + 1
    alive = True
    for _ in range(MAX_IPV6_EXT):
        if nh != 44 and nh not in EXT_FIELDS:
            break
        if row.caplen < pos + 8:
            row.note("truncated", f"IPv6 extension header {nh}")
            alive = False
            break
        proto = "ipv6.fraghdr" if nh == 44 else EXT_FIELDS[nh][0]
        if proto not in layers[layer_at:]:
            row.note("malformed", f"tshark did not dissect IPv6 extension header {nh}")
            alive = False
            break
        layer_at = layers.index(proto, layer_at)
        k = _Occurrences(layers).index(proto, layer_at)
        layer_at += 1
        if nh == 44:
            row.ip_frag = True
            frag_off = f.int("ipv6.fraghdr.offset", k)  # in 8-byte units
            row.note("fragment", f"offset {frag_off * 8}")
            nh = f.int("ipv6.fraghdr.nxt", k)
            pos += 8
            if frag_off != 0:
                alive = False
                break
            continue
        _, nxt_field, len_field = EXT_FIELDS[nh]
        length = f.int(len_field, k)
        pos += (length + 2) * 4 if nh == 51 else (length + 1) * 8
        nh = f.int(nxt_field, k)
    row.ip_proto = nh
    if not alive:
        return
    if pos > end:
        row.note("malformed", "IPv6 extension headers overrun the payload length")
        return
    datagram_end(row, end)
    _transport(row, f, pos, end, layer_at - 1)


def _transport(row: Row, f: Frame, l4: int, end: int, ip_position: int) -> None:
    proto = row.ip_proto
    if proto == 6:
        _tcp(row, f, l4, end)
    elif proto == 17:
        _udp(row, f, l4)
    elif proto == 1 and row.ip_version == 4:
        _icmp(row, f, l4, "icmp", ip_position)
    elif proto == 58 and row.ip_version == 6:
        _icmp(row, f, l4, "icmpv6", ip_position)


def _tcp(row: Row, f: Frame, l4: int, end: int) -> None:
    # The outer TCP header is the first "tcp" layer: nothing before the outer IP's transport can
    # be TCP, and fields of quoted or tunnelled headers come later.
    if row.caplen < l4 + 20:
        row.note("truncated", "TCP header")
        return
    hl = f.int("tcp.hdr_len")
    if hl < 20:
        # tshark shows the ports and sequence numbers it read before the bad length; the schema
        # keeps every TCP field neutral when the header length is impossible.
        row.note("malformed", f"TCP data offset {hl // 4}")
        return
    if row.caplen < l4 + hl:
        row.note("truncated", "TCP options")
        return
    row.sport, row.dport = f.int("tcp.srcport"), f.int("tcp.dstport")
    row.seq, row.ack = f.int("tcp.seq_raw"), f.int("tcp.ack_raw")
    row.win = f.int("tcp.window_size_value")
    row.tcp_flags = f.int("tcp.flags")
    tcp_len = f.get("tcp.len")
    payload(row, l4 + hl, int(tcp_len) if tcp_len is not None else end - l4 - hl)
    if hl > 20:
        _tcp_options(row, f, hl - 20)


def _tcp_options(row: Row, f: Frame, size: int) -> None:
    """Walk tshark's option kinds/lengths as the header lays them out; values of well-formed
    options before any break come from tshark's per-option fields.

    tshark stops listing options at one whose length is impossible (it shows no kind for it), so
    option bytes left over after tshark's last option mean the list broke there.
    """
    kinds = [int(k) for k in f.all("tcp.option_kind")]
    lens = [int(n) for n in f.all("tcp.option_len")]
    pos = 0
    li = 0
    seen: dict[int, int] = {}  # kind -> well-formed occurrences
    for kind in kinds:
        if pos >= size or kind == 0:
            pos = size  # end of the list: the rest is padding
            break
        if kind == 1:
            pos += 1
            continue
        olen = lens[li] if li < len(lens) else None
        li += 1
        if olen is None or pos + 1 >= size or olen < 2 or pos + olen > size:
            row.note("malformed", f"TCP option {kind} at byte {pos}")
            break
        if (kind, olen) in ((2, 4), (3, 3), (4, 2), (8, 10)) or kind == 5:
            seen[kind] = seen.get(kind, 0) + 1
            if kind == 2:
                row.opt_mss = f.int("tcp.options.mss_val", seen[2] - 1)
            elif kind == 3:
                shift = f.int("tcp.options.wscale.shift", seen[3] - 1)
                row.opt_wscale = shift if shift < 128 else shift - 256
            elif kind == 4:
                row.opt_sack_perm = True
            elif kind == 8:
                row.opt_ts = True
                row.opt_tsval = f.int("tcp.options.timestamp.tsval", seen[8] - 1)
                row.opt_tsecr = f.int("tcp.options.timestamp.tsecr", seen[8] - 1)
            else:
                row.opt_sack_blocks = (olen - 2) // 8
        pos += olen
    if pos < size and "malformed" not in row.notes:
        row.note("malformed", f"TCP option at byte {pos} not dissected by tshark")


def _udp(row: Row, f: Frame, l4: int) -> None:
    if row.caplen < l4 + 8:
        row.note("truncated", "UDP header")
        return
    row.sport, row.dport = f.int("udp.srcport"), f.int("udp.dstport")
    payload(row, l4 + 8, f.int("udp.length") - 8)


def _icmp(row: Row, f: Frame, l4: int, proto: str, ip_position: int) -> None:
    if row.caplen < l4 + 4:
        row.note("truncated", "ICMP header")
        return
    row.icmp_type, row.icmp_code = f.int(f"{proto}.type"), f.int(f"{proto}.code")
    layers = f.layers
    q = l4 + 8
    inner_ip = "ip" if proto == "icmp" else "ipv6"
    errors = ICMP4_ERRORS if proto == "icmp" else ICMP6_ERRORS
    if row.icmp_type not in errors or row.caplen < q + (20 if proto == "icmp" else 40):
        return
    try:
        position = layers.index(inner_ip, ip_position + 1)
    except ValueError:
        return
    k = _Occurrences(layers).index(inner_ip, position)
    if inner_ip == "ip":
        if f.int("ip.version", k) != 4:
            return
        row.inner_src, row.inner_dst = f.get("ip.src", k), f.get("ip.dst", k)
        row.inner_proto = f.int("ip.proto", k)
        at = q + f.int("ip.hdr_len", k)
    else:
        if f.int("ipv6.version", k) != 6:
            return
        row.inner_src, row.inner_dst = f.get("ipv6.src", k), f.get("ipv6.dst", k)
        row.inner_proto = f.int("ipv6.nxt", k)
        at = q + 40
    if row.inner_proto in (6, 17) and row.caplen >= at + 4:
        # The quoted transport header is the first tcp/udp layer: the outer transport is ICMP.
        t = "tcp" if row.inner_proto == 6 else "udp"
        row.inner_sport, row.inner_dport = f.int(f"{t}.srcport"), f.int(f"{t}.dstport")
