"""Builders of the test captures: every file format, byte order, timestamp resolution, link type and
header shape the decoders must handle.

Frames are built with scapy; files are written with scapy's writers where they can express the case
(classic pcap in both byte orders and resolutions, gzip, a one-section little-endian pcapng) and with
the hand-written block writer below where they cannot (pcapng in big-endian, several interfaces with
``if_tsresol``/``if_tsoffset``, unknown/NRB/ISB blocks, simple and obsolete packet blocks, two
sections). ``editcap`` conversions add files written by Wireshark's own writer.

``CAPTURES`` maps a name to a builder ``(directory) -> path``; tests parametrize over it. Builders
are deterministic, so expected values (``EXPECT``) can be spot-checked against them.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import (
    ICMP,
    IP,
    TCP,
    UDP,
    IPerror,
    IPOption_NOP,
    IPOption_Router_Alert,
    IPOption_RR,
    TCPerror,
    UDPerror,
    fragment,
)
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter, RawPcapWriter

BASE_SEC = 1_700_000_000
BASE_NS = BASE_SEC * 1_000_000_000

# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html).
LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP = 0, 1, 101, 108
LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2, LT_USER0 = 113, 228, 229, 276, 147

# Values the tests check against the decoded table (not just engine against engine).
EXPECT = {
    "icmp_unreach_inner": ("10.0.0.2", "10.0.0.1", 17, 5353, 33434),
    "icmp6_unreach_inner": ("2001:db8::2", "2001:db8::1", 6, 443, 40000),
    "ae_flags": 0x100 | 0x10 | 0x02,  # SYN+ACK+AE
    "syn_flags": 0x02 | 0x40 | 0x80,  # SYN+ECE+CWR
    "syn_mss": 1460,
    "syn_wscale": 7,
    "syn_tsval": 0xDEADBEEF,
    "syn_seq": 0xFFFFFFF0,
    "rst_ack_raw": 0x01020304,  # RST without the ACK flag still carries a raw ack field
    "data_payload": 100,
    "data_sack_blocks": 2,
}


@dataclass(frozen=True)
class Rec:
    """One packet record: link-layer bytes as captured, the on-wire length, the time."""

    data: bytes
    wirelen: int
    ts_ns: int


# ---------------------------------------------------------------------------------------------------
# The datagrams every link-type capture carries.

V4A, V4B = "192.0.2.1", "198.51.100.7"
V6A, V6B = "2001:db8::1", "2001:db8::2"


def ipv4_datagrams() -> list[bytes]:
    """IPv4 datagrams: TCP with every flag and option, UDP, ICMP (plain and errors), options, fragments."""
    syn = IP(src=V4A, dst=V4B) / TCP(
        sport=40000,
        dport=80,
        seq=EXPECT["syn_seq"],
        flags=EXPECT["syn_flags"],
        window=64240,
        options=[
            ("MSS", EXPECT["syn_mss"]),
            ("SAckOK", b""),
            ("Timestamp", (EXPECT["syn_tsval"], 0)),
            ("NOP", None),
            ("WScale", EXPECT["syn_wscale"]),
        ],
    )
    synack_ae = IP(src=V4B, dst=V4A) / TCP(
        sport=80,
        dport=40000,
        seq=1000,
        ack=EXPECT["syn_seq"] + 1,
        flags=EXPECT["ae_flags"],
        window=65535,
        options=[("MSS", 1400), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 14)],
    )
    data_sack = (
        IP(src=V4A, dst=V4B)
        / TCP(
            sport=40000,
            dport=80,
            seq=0xFFFFFFF1,
            ack=1001,
            flags="PA",
            window=502,
            options=[
                ("NOP", None),
                ("NOP", None),
                ("Timestamp", (1, 2)),
                ("NOP", None),
                ("NOP", None),
                ("SAck", (5000, 6000, 7000, 8000)),
            ],
        )
        / Raw(b"d" * EXPECT["data_payload"])
    )
    fin_urg = IP(src=V4B, dst=V4A) / TCP(sport=80, dport=40000, seq=1001, ack=1, flags="FAU", urgptr=3)
    rst_noack = IP(src=V4A, dst=V4B) / TCP(
        sport=40000, dport=80, seq=77, ack=EXPECT["rst_ack_raw"], flags="R", window=0
    )
    udp = IP(src=V4A, dst=V4B) / UDP(sport=5353, dport=53) / Raw(b"q" * 20)
    echo = IP(src=V4A, dst=V4B) / ICMP(type=8, code=0, id=7, seq=1) / Raw(b"ping")
    inner_src, inner_dst, _, inner_sport, inner_dport = EXPECT["icmp_unreach_inner"]
    unreach = (
        IP(src=V4B, dst=V4A)
        / ICMP(type=3, code=3)
        / IPerror(src=inner_src, dst=inner_dst)
        / UDPerror(sport=inner_sport, dport=inner_dport)
        / Raw(b"probe")
    )
    ttl_exceeded = (
        IP(src="203.0.113.9", dst=V4A)
        / ICMP(type=11, code=0)
        / IPerror(src=V4A, dst=V4B, ttl=1)
        / TCPerror(sport=40001, dport=443, flags="S", seq=5)
    )
    options = IP(
        src=V4A, dst=V4B, options=[IPOption_RR(routers=["10.1.1.1"]), IPOption_Router_Alert()]
    ) / TCP(sport=40000, dport=80, flags="A", seq=2, ack=3)
    options_nop = (
        IP(src=V4A, dst=V4B, options=[IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()])
        / UDP(sport=1000, dport=2000)
        / Raw(b"opt")
    )
    frags = fragment(IP(src=V4A, dst=V4B, id=0x4242) / UDP(sport=6000, dport=7000) / Raw(b"f" * 2000), 800)
    gre = IP(src=V4A, dst=V4B, proto=47) / Raw(b"\x00\x00\x08\x00" + b"g" * 12)
    # TCP data offset 3 (< 5): an impossible header length.
    bad_doff = bytearray(bytes(IP(src=V4A, dst=V4B) / TCP(sport=1, dport=2, flags="S")))
    bad_doff[20 + 12] = (3 << 4) | (bad_doff[20 + 12] & 0x0F)
    # UDP length 4 (< 8): an impossible length.
    bad_udp = bytearray(bytes(IP(src=V4A, dst=V4B) / UDP(sport=3, dport=4) / Raw(b"xyz")))
    bad_udp[20 + 4 : 20 + 6] = struct.pack("!H", 4)
    # TCP option lists that break: window scale with length 1, MSS with length 3 (the walk then
    # lands inside the MSS value).
    bad_opt_len = bytearray(
        bytes(
            IP(src=V4A, dst=V4B)
            / TCP(sport=5, dport=6, flags="S", options=[("MSS", 1000), ("NOP", None), ("WScale", 3)])
        )
    )
    bad_opt_len[20 + 20 + 5 + 1] = 1
    bad_mss_len = bytearray(
        bytes(
            IP(src=V4A, dst=V4B)
            / TCP(sport=7, dport=8, flags="S", options=[("MSS", 1000), ("NOP", None)] + [("NOP", None)] * 3)
        )
    )
    bad_mss_len[20 + 20 + 1] = 3
    pkts: list[Packet | bytes] = [
        syn,
        synack_ae,
        data_sack,
        fin_urg,
        rst_noack,
        udp,
        echo,
        unreach,
        ttl_exceeded,
        options,
        options_nop,
        *frags,
        gre,
        bytes(bad_doff),
        bytes(bad_udp),
        bytes(bad_opt_len),
        bytes(bad_mss_len),
    ]
    return [p if isinstance(p, bytes) else bytes(p) for p in pkts]


def ipv6_datagrams() -> list[bytes]:
    """IPv6 datagrams: TCP/UDP, extension header chains, fragments, ICMPv6 echo and errors."""
    syn6 = IPv6(src=V6A, dst=V6B) / TCP(
        sport=40002, dport=443, seq=1, flags="SEC", options=[("MSS", 1220), ("WScale", 0), ("SAckOK", b"")]
    )
    ext_chain = (
        IPv6(src=V6A, dst=V6B)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=["2001:db8::99"])
        / IPv6ExtHdrDestOpt()
        / TCP(sport=40002, dport=443, seq=2, ack=3, flags="PA", options=[("Timestamp", (10, 20))])
        / Raw(b"x" * 33)
    )
    udp6 = IPv6(src=V6B, dst=V6A) / UDP(sport=53, dport=5353) / Raw(b"a" * 40)
    echo6 = IPv6(src=V6A, dst=V6B) / ICMPv6EchoRequest(id=1, seq=2, data=b"hi")
    i_src, i_dst, _, i_sport, i_dport = EXPECT["icmp6_unreach_inner"]
    unreach6 = (
        IPv6(src=V6B, dst=V6A)
        / ICMPv6DestUnreach(code=4)
        / IPerror6(src=i_src, dst=i_dst)
        / TCPerror(sport=i_sport, dport=i_dport, flags="S")
    )
    exceeded6 = (
        IPv6(src="2001:db8::fe", dst=V6A)
        / ICMPv6TimeExceeded(code=0)
        / IPerror6(src=V6A, dst=V6B, hlim=1)
        / UDPerror(sport=33000, dport=33434)
    )
    frags6 = fragment6(
        IPv6(src=V6A, dst=V6B)
        / IPv6ExtHdrFragment(id=0xABCD)
        / UDP(sport=6001, dport=7001)
        / Raw(b"F" * 1500),
        1000,
    )
    hbh_frag = fragment6(
        IPv6(src=V6A, dst=V6B)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrFragment(id=0x1234)
        / TCP(sport=1, dport=2, flags="A")
        / Raw(b"T" * 1200),
        800,
    )
    pkts = [syn6, ext_chain, udp6, echo6, unreach6, exceeded6, *frags6, *hbh_frag]
    return [bytes(p) for p in pkts]


def datagrams() -> list[bytes]:
    return ipv4_datagrams() + ipv6_datagrams()


ARP_BYTES = bytes(ARP(op=1, psrc=V4A, pdst=V4B, hwsrc="02:00:00:00:00:01"))


def ethertype(datagram: bytes) -> int:
    return 0x86DD if datagram[0] >> 4 == 6 else 0x0800


# ---------------------------------------------------------------------------------------------------
# Link-layer framing.

NULL_V6_FAMILIES = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, macOS


def ether_pad(frame: bytes) -> bytes:
    """Ethernet's 60-byte minimum: short frames carry a zero trailer after the IP datagram."""
    return frame + b"\0" * max(0, 60 - len(frame))


def frame_for(link: int, datagram: bytes, *, index: int = 0, null_order: str = "<") -> bytes:
    """``datagram`` (an IP datagram, or ARP when it is ARP_BYTES) framed for ``link``."""
    is_arp = datagram is ARP_BYTES
    etype = 0x0806 if is_arp else ethertype(datagram)
    if link == LT_ETHERNET:
        return ether_pad(
            bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=etype)) + datagram
        )
    if link == LT_SLL:
        return bytes(
            CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x01\0\0", proto=etype)
        ) + (datagram)
    if link == LT_SLL2:
        return bytes(CookedLinuxV2(proto=etype, ifindex=2, lladdrtype=1, pkttype=0, lladdrlen=6)) + datagram
    if link in (LT_NULL, LT_LOOP):
        if is_arp:
            family = 7  # no IP family: the frame must decode as "no IP"
        elif etype == 0x0800:
            family = 2
        else:
            family = NULL_V6_FAMILIES[index % len(NULL_V6_FAMILIES)]
        order = ">" if link == LT_LOOP else null_order
        return struct.pack(order + "I", family) + datagram
    if link in (LT_RAW, LT_IPV4, LT_IPV6):
        return datagram
    if link == LT_USER0:
        return b"\xaa\xbb" + datagram
    raise ValueError(f"no framing for link type {link}")


def suite_for(link: int, *, null_order: str = "<") -> list[bytes]:
    """The full datagram suite framed for ``link`` (plus ARP where the link has an ethertype)."""
    if link == LT_IPV4:
        dgs = ipv4_datagrams()
    elif link == LT_IPV6:
        dgs = ipv6_datagrams()
    else:
        dgs = datagrams()
    out = [frame_for(link, d, index=i, null_order=null_order) for i, d in enumerate(dgs)]
    if link in (LT_ETHERNET, LT_SLL, LT_SLL2, LT_NULL, LT_LOOP):
        out.append(frame_for(link, ARP_BYTES, null_order=null_order))
    return out


def records(
    frames: Iterable[bytes], *, step_ns: int = 1_000_123_457, start_ns: int = BASE_NS + 123_456_789
) -> list[Rec]:
    return [Rec(f, len(f), start_ns + i * step_ns) for i, f in enumerate(frames)]


# ---------------------------------------------------------------------------------------------------
# Writers.


def write_pcap(
    path: Path, link: int, recs: Sequence[Rec], *, endian: str = "<", nano: bool = False, gz: bool = False
) -> Path:
    """A classic pcap through scapy's RawPcapWriter (microsecond or nanosecond magic, either byte order)."""
    with RawPcapWriter(str(path), linktype=link, endianness=endian, nano=nano, gz=gz, snaplen=262144) as w:
        w.linktype = link  # scapy's writer ignores a falsy linktype argument (LINKTYPE_NULL is 0)
        w.write_header(None)
        for r in recs:
            sec, frac_ns = divmod(r.ts_ns, 1_000_000_000)
            w.write_packet(
                r.data,
                sec=sec,
                usec=frac_ns if nano else frac_ns // 1000,
                caplen=len(r.data),
                wirelen=r.wirelen,
            )
    return path


@dataclass(frozen=True)
class Iface:
    """A pcapng interface: link type, snaplen, and the raw if_tsresol/if_tsoffset option values."""

    link: int
    snaplen: int = 0
    tsresol: int | None = None  # option byte: 6 = 10^-6, 9 = 10^-9, 0x80 | n = 2^-n
    tsoffset: int | None = None  # seconds
    name: str | None = None

    def units_per_second(self) -> int:
        if self.tsresol is None:
            return 1_000_000
        n = self.tsresol & 0x7F
        return 2**n if self.tsresol & 0x80 else 10**n

    def ticks(self, ts_ns: int) -> int:
        """The timestamp field for ``ts_ns`` (before if_tsoffset), rounded down to this resolution."""
        sec, frac = divmod(ts_ns - (self.tsoffset or 0) * 1_000_000_000, 1_000_000_000)
        return sec * self.units_per_second() + frac * self.units_per_second() // 1_000_000_000

    def ts_ns_of(self, ticks: int) -> int:
        """What a reader must compute from ``ticks``: Wireshark's floor conversion plus the offset."""
        ups = self.units_per_second()
        return (ticks // ups + (self.tsoffset or 0)) * 1_000_000_000 + (ticks % ups) * 1_000_000_000 // ups


class PcapNgBuilder:
    """Hand-written pcapng blocks, so byte order, options and block kinds are all under test control."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.out = bytearray()
        self.ifaces: list[Iface] = []
        # (link type, ts_ns) a reader must report for each packet record written, in order.
        self.expected: list[tuple[int, int]] = []

    def _pad(self, b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    def _opt(self, code: int, value: bytes) -> bytes:
        return struct.pack(self.e + "HH", code, len(value)) + self._pad(value)

    def _opts(self, opts: Sequence[tuple[int, bytes]]) -> bytes:
        if not opts:
            return b""
        return b"".join(self._opt(c, v) for c, v in opts) + struct.pack(self.e + "HH", 0, 0)

    def block(self, btype: int, body: bytes) -> PcapNgBuilder:
        body = self._pad(body)
        total = 12 + len(body)
        self.out += struct.pack(self.e + "II", btype, total) + body + struct.pack(self.e + "I", total)
        return self

    def shb(self, comment: str | None = None) -> PcapNgBuilder:
        self.ifaces = []
        opts = [(1, comment.encode())] if comment else []
        body = struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + self._opts(opts)
        return self.block(0x0A0D0D0A, body)

    def idb(self, iface: Iface) -> PcapNgBuilder:
        opts: list[tuple[int, bytes]] = []
        if iface.name:
            opts.append((2, iface.name.encode()))
        if iface.tsresol is not None:
            opts.append((9, bytes([iface.tsresol])))
        if iface.tsoffset is not None:
            opts.append((14, struct.pack(self.e + "q", iface.tsoffset)))
        self.ifaces.append(iface)
        return self.block(1, struct.pack(self.e + "HHI", iface.link, 0, iface.snaplen) + self._opts(opts))

    def epb(
        self, ifid: int, rec: Rec, *, comment: str | None = None, flags: int | None = None
    ) -> PcapNgBuilder:
        ticks = self.ifaces[ifid].ticks(rec.ts_ns)
        self.expected.append((self.ifaces[ifid].link, self.ifaces[ifid].ts_ns_of(ticks)))
        opts: list[tuple[int, bytes]] = []
        if comment:
            opts.append((1, comment.encode()))
        if flags is not None:
            opts.append((2, struct.pack(self.e + "I", flags)))
        head = struct.pack(
            self.e + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(rec.data), rec.wirelen
        )
        return self.block(6, head + self._pad(rec.data) + self._opts(opts))

    def pb(self, ifid: int, rec: Rec) -> PcapNgBuilder:
        """The obsolete Packet Block (type 2)."""
        ticks = self.ifaces[ifid].ticks(rec.ts_ns)
        self.expected.append((self.ifaces[ifid].link, self.ifaces[ifid].ts_ns_of(ticks)))
        head = struct.pack(
            self.e + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(rec.data), rec.wirelen
        )
        return self.block(2, head + rec.data)

    def spb(self, data: bytes) -> PcapNgBuilder:
        self.expected.append((self.ifaces[0].link, 0))  # no timestamp in a Simple Packet Block
        return self.block(3, struct.pack(self.e + "I", len(data)) + data)

    def nrb(self) -> PcapNgBuilder:
        """A Name Resolution Block with one IPv4 record: readers must skip it."""
        rec = struct.pack(self.e + "HH", 1, 4 + 10) + self._pad(bytes([192, 0, 2, 1]) + b"host.test\0")
        return self.block(4, rec + struct.pack(self.e + "HH", 0, 0))

    def isb(self, ifid: int) -> PcapNgBuilder:
        """An Interface Statistics Block: readers must skip it."""
        return self.block(
            5, struct.pack(self.e + "III", ifid, 0, 0) + self._opts([(4, struct.pack(self.e + "Q", 42))])
        )

    def unknown(self, btype: int = 0x0000_7E57) -> PcapNgBuilder:
        return self.block(btype, b"not a packet block, skip me")

    def write(self, path: Path, *, gz: bool = False) -> Path:
        data = bytes(self.out)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        return path


def editcap(args: Sequence[str], src: Path, dst: Path) -> Path:
    """Run editcap (Wireshark's writer) so some captures come from a third implementation."""
    exe = shutil.which("editcap")
    if exe is None:
        raise RuntimeError("editcap is not installed (apt-get install tshark)")
    subprocess.run([exe, *args, str(src), str(dst)], check=True, capture_output=True)
    return dst


def gzip_file(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    return dst


# ---------------------------------------------------------------------------------------------------
# The registry.

CAPTURES: dict[str, Callable[[Path], Path]] = {}


def capture(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CAPTURES[name] = fn
        return fn

    return register


@capture("pcap_le_usec_ether")
def _pcap_le_usec(d: Path) -> Path:  # little-endian microsecond pcap, Ethernet, the whole suite
    return write_pcap(d / "le_usec.pcap", LT_ETHERNET, records(suite_for(LT_ETHERNET)), endian="<")


@capture("pcap_be_usec_ether")
def _pcap_be_usec(d: Path) -> Path:  # big-endian microsecond magic
    return write_pcap(d / "be_usec.pcap", LT_ETHERNET, records(suite_for(LT_ETHERNET)), endian=">")


@capture("pcap_le_nsec_ether")
def _pcap_le_nsec(d: Path) -> Path:  # little-endian nanosecond magic (0xa1b23c4d)
    return write_pcap(d / "le_nsec.pcap", LT_ETHERNET, records(suite_for(LT_ETHERNET)), endian="<", nano=True)


@capture("pcap_be_nsec_ether")
def _pcap_be_nsec(d: Path) -> Path:  # big-endian nanosecond magic
    return write_pcap(d / "be_nsec.pcap", LT_ETHERNET, records(suite_for(LT_ETHERNET)), endian=">", nano=True)


@capture("pcap_gz")
def _pcap_gz(d: Path) -> Path:  # gzip-compressed pcap written by scapy's gz writer
    return write_pcap(d / "nsec.pcap.gz", LT_ETHERNET, records(suite_for(LT_ETHERNET)), nano=True, gz=True)


@capture("pcap_vlan")
def _pcap_vlan(d: Path) -> Path:  # 802.1Q, QinQ (802.1ad outer) and a 0x9100 + 0x8100 double tag
    frames: list[bytes] = []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i, dg in enumerate(datagrams()):
        et = ethertype(dg)
        kind = i % 3
        if kind == 0:
            hdr = eth.copy() / Dot1Q(vlan=100, type=et)
        elif kind == 1:
            hdr = eth.copy() / Dot1AD(vlan=10, type=0x8100) / Dot1Q(vlan=20, type=et)
        else:
            hdr = eth.copy() / Dot1Q(vlan=30, type=0x8100) / Dot1Q(vlan=40, type=et)
            hdr[Ether].type = 0x9100
        frames.append(ether_pad(bytes(hdr) + dg))
    frames.append(ether_pad(bytes(eth.copy() / Dot1Q(vlan=5, type=0x0806)) + ARP_BYTES))
    return write_pcap(d / "vlan.pcap", LT_ETHERNET, records(frames))


@capture("pcap_null_le")
def _pcap_null_le(d: Path) -> Path:  # NULL with little-endian family (AF_INET6 as 10, 24, 28, 30)
    return write_pcap(d / "null_le.pcap", LT_NULL, records(suite_for(LT_NULL, null_order="<")))


@capture("pcap_null_be")
def _pcap_null_be(d: Path) -> Path:  # NULL written on a big-endian host: family in big-endian order
    return write_pcap(d / "null_be.pcap", LT_NULL, records(suite_for(LT_NULL, null_order=">")), endian=">")


@capture("pcap_null_swapped")
def _pcap_null_swapped(d: Path) -> Path:  # NULL family in the opposite order to the file header's
    return write_pcap(d / "null_sw.pcap", LT_NULL, records(suite_for(LT_NULL, null_order=">")), endian="<")


@capture("pcap_loop")
def _pcap_loop(d: Path) -> Path:  # LOOP (OpenBSD loopback): family always big-endian
    return write_pcap(d / "loop.pcap", LT_LOOP, records(suite_for(LT_LOOP)))


@capture("pcap_raw")
def _pcap_raw(d: Path) -> Path:  # LINKTYPE_RAW: IPv4 or IPv6 chosen by the version nibble
    return write_pcap(d / "raw.pcap", LT_RAW, records(suite_for(LT_RAW)))


@capture("pcap_ipv4")
def _pcap_ipv4(d: Path) -> Path:  # LINKTYPE_IPV4 (228)
    return write_pcap(d / "ipv4.pcap", LT_IPV4, records(suite_for(LT_IPV4)))


@capture("pcap_ipv6")
def _pcap_ipv6(d: Path) -> Path:  # LINKTYPE_IPV6 (229)
    return write_pcap(d / "ipv6.pcap", LT_IPV6, records(suite_for(LT_IPV6)), nano=True)


@capture("pcap_sll")
def _pcap_sll(d: Path) -> Path:  # LINUX_SLL (tcpdump -i any, v1 header)
    return write_pcap(d / "sll.pcap", LT_SLL, records(suite_for(LT_SLL)))


@capture("pcap_sll2")
def _pcap_sll2(d: Path) -> Path:  # LINUX_SLL2 (tcpdump -i any, v2 header)
    return write_pcap(d / "sll2.pcap", LT_SLL2, records(suite_for(LT_SLL2)), endian=">", nano=True)


def _truncated_records() -> list[Rec]:
    eth = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800))
    eth6 = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x86DD))
    v4 = ipv4_datagrams()
    data = eth + v4[2]  # TCP data with options and a 100-byte payload
    udp = eth + v4[5]
    ext6 = eth6 + ipv6_datagrams()[1]
    icmp_err = eth + v4[7]
    cuts = [
        (data, len(data) - 60),  # payload partly captured
        (data, 14 + 20 + 20),  # TCP header cut inside its options
        (data, 14 + 20 + 10),  # TCP fixed header cut
        (data, 14 + 12),  # IPv4 fixed header cut
        (data, 10),  # Ethernet header cut
        (udp, 14 + 20 + 8 + 5),  # UDP payload partly captured
        (udp, 14 + 20 + 6),  # UDP header cut
        (ext6, 14 + 40 + 12),  # IPv6 extension chain cut
        (ext6, 14 + 30),  # IPv6 fixed header cut
        (icmp_err, 14 + 20 + 8 + 10),  # ICMP error: quoted IPv4 header cut
        (icmp_err, 14 + 20 + 2),  # ICMP header cut
    ]
    recs = [Rec(frame[:n], len(frame), BASE_NS + i * 1000) for i, (frame, n) in enumerate(cuts)]
    recs.append(Rec(data, len(data), BASE_NS + 99_000))  # one whole frame for reference
    return recs


# What every engine must report for the records of pcap_truncated, in order:
# (first note token, ip_version, ip_proto, sport, payload_len, payload_caplen, icmp_type)
TRUNCATED_EXPECT = (
    ("truncated", 4, 6, 40000, 100, 40, -1),
    ("truncated", 4, 6, 0, 0, 0, -1),
    ("truncated", 4, 6, 0, 0, 0, -1),
    ("truncated", 0, 0, 0, 0, 0, -1),
    ("truncated", 0, 0, 0, 0, 0, -1),
    ("truncated", 4, 17, 5353, 20, 5, -1),
    ("truncated", 4, 17, 0, 0, 0, -1),
    ("truncated", 6, 60, 0, 0, 0, -1),
    ("truncated", 0, 0, 0, 0, 0, -1),
    ("truncated", 4, 1, 0, 0, 0, 3),
    ("truncated", 4, 1, 0, 0, 0, -1),
    ("", 4, 6, 40000, 100, 100, -1),
)


@capture("pcap_truncated")
def _pcap_truncated(d: Path) -> Path:  # snaplen-truncated frames cut at every header boundary
    return write_pcap(d / "trunc.pcap", LT_ETHERNET, _truncated_records())


def malformed_ipv4() -> list[bytes]:
    """IPv4 headers whose own length fields are impossible (tshark shows no addresses for them)."""
    base = bytes(IP(src=V4A, dst=V4B) / TCP(sport=9, dport=10, flags="S") / Raw(b"abc"))
    ihl3 = bytearray(base)
    ihl3[0] = 0x43  # IHL 3: a 12-byte header
    len0 = bytearray(base)
    len0[2:4] = b"\0\0"  # total length 0 (not TSO: the capture is not from the sender)
    len_short = bytearray(base)
    len_short[2:4] = struct.pack("!H", 16)  # total length below the 20-byte header
    too_long = bytearray(bytes(IP(src=V4A, dst=V4B) / UDP(sport=11, dport=12) / Raw(b"abc")))
    too_long[2:4] = struct.pack("!H", 200)  # longer than the frame, which is not snaplen-cut
    return [bytes(ihl3), bytes(len0), bytes(len_short), bytes(too_long)]


MALFORMED_HEADER_FRAMES = (1, 2, 3)  # frames of pcap_malformed with an impossible IPv4 header length


@capture("pcap_malformed")
def _pcap_malformed(d: Path) -> Path:  # IPv4 header/total lengths that cannot be (IHL < 5, length < IHL)
    frames = [frame_for(LT_ETHERNET, dg) for dg in malformed_ipv4()]
    return write_pcap(d / "malformed.pcap", LT_ETHERNET, records(frames))


@capture("pcapng_multi_le")
def _pcapng_multi_le(
    d: Path,
) -> Path:  # little-endian pcapng: 5 interfaces, tsresol 10^-6/10^-9/2^-20/10^-3+offset
    return multi_pcapng("<").write(d / "multi_le.pcapng")


@capture("pcapng_multi_be")
def _pcapng_multi_be(d: Path) -> Path:  # the same blocks written big-endian
    return multi_pcapng(">").write(d / "multi_be.pcapng")


@capture("pcapng_multi_gz")
def _pcapng_multi_gz(d: Path) -> Path:  # gzip-compressed big-endian pcapng
    return multi_pcapng(">").write(d / "multi.pcapng.gz", gz=True)


MULTI_IFACES = (
    Iface(LT_ETHERNET, snaplen=0, name="eth0"),  # no if_tsresol: 10^-6 default; snaplen 0 = unlimited (SPB)
    Iface(LT_RAW, snaplen=65535, tsresol=9, name="tun0"),
    Iface(LT_SLL2, snaplen=262144, tsresol=0x80 | 20, name="any"),
    Iface(LT_NULL, snaplen=65535, tsresol=3, tsoffset=-86_400, name="lo0"),
    Iface(LT_USER0, snaplen=65535, tsresol=6, name="user0"),
    Iface(LT_LOOP, snaplen=65535, tsresol=0x80 | 30, name="enc0"),
)


def multi_pcapng(endian: str) -> PcapNgBuilder:
    b = PcapNgBuilder(endian).shb(comment="analyzer multi-interface test")
    for iface in MULTI_IFACES[:3]:
        b.idb(iface)
    b.nrb()
    b.unknown()
    dgs = datagrams()
    t = BASE_NS + 987_654_321
    for i, dg in enumerate(dgs):
        ifid = i % 3
        rec = Rec(frame_for(MULTI_IFACES[ifid].link, dg, index=i), 0, t + i * 333_333_333)
        rec = Rec(rec.data, len(rec.data), rec.ts_ns)
        b.epb(ifid, rec, comment="c" * (i % 5) if i % 2 else None, flags=1 if i % 4 == 0 else None)
    # Interfaces may be described after packets have started.
    b.idb(MULTI_IFACES[3]).idb(MULTI_IFACES[4]).idb(MULTI_IFACES[5])
    for i, dg in enumerate(dgs[:6]):
        for ifid in (3, 5):
            data = frame_for(MULTI_IFACES[ifid].link, dg, index=i, null_order=endian)
            b.epb(ifid, Rec(data, len(data), t + 7_777_777_777 + i * 1_234_567))
    user = frame_for(LT_USER0, dgs[0])
    b.epb(4, Rec(user, len(user), t + 9_000_000_000))  # unsupported link type
    b.unknown(0x8000_7E57)  # a "local use" block type (high bit set)
    spb = frame_for(LT_ETHERNET, dgs[5])
    b.spb(spb)  # Simple Packet Block: interface 0, no timestamp
    pb = frame_for(LT_ETHERNET, dgs[1])
    b.pb(0, Rec(pb, len(pb), t + 10_000_000_000))  # obsolete Packet Block
    b.isb(0)
    return b


@capture("pcapng_two_sections")
def _pcapng_two_sections(d: Path) -> Path:  # a little-endian section followed by a big-endian one
    first = PcapNgBuilder("<").shb().idb(Iface(LT_ETHERNET, tsresol=9))
    for r in records(suite_for(LT_ETHERNET)[:5]):
        first.epb(0, r)
    second = PcapNgBuilder(">").shb().idb(Iface(LT_IPV6, tsresol=6)).idb(Iface(LT_RAW, tsresol=0x80 | 10))
    for i, r in enumerate(records(suite_for(LT_IPV6)[:6], start_ns=BASE_NS + 50_000_000_000)):
        second.epb(i % 2, r)
    path = d / "two_sections.pcapng"
    path.write_bytes(bytes(first.out) + bytes(second.out))
    return path


@capture("pcapng_scapy_writer")
def _pcapng_scapy(d: Path) -> Path:  # pcapng from scapy's PcapNgWriter: Ethernet plus an SLL interface
    path = d / "scapy.pcapng"
    with PcapNgWriter(str(path)) as w:
        for i, dg in enumerate(datagrams()):
            # The first packet must be Ethernet: scapy gives interface 0 the first packet's link type.
            if i % 2 == 0:
                p: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=ethertype(dg)) / Raw(
                    dg
                )
            else:
                p = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=ethertype(dg)) / Raw(dg)
                p.sniffed_on = "any"
            p.time = BASE_SEC + i + 0.25
            w.write(p)
    return path


@capture("editcap_pcapng")
def _editcap_pcapng(d: Path) -> Path:  # classic pcap converted by editcap -F pcapng (Wireshark's writer)
    src = write_pcap(d / "for_editcap.pcap", LT_SLL, records(suite_for(LT_SLL)), nano=True)
    return editcap(["-F", "pcapng"], src, d / "editcap.pcapng")


@capture("editcap_snaplen")
def _editcap_snaplen(d: Path) -> Path:  # editcap -s 58: every frame cut to 58 bytes, wire length kept
    src = write_pcap(d / "for_snap.pcap", LT_ETHERNET, records(suite_for(LT_ETHERNET)))
    return editcap(["-s", "58"], src, d / "snap58.pcap")


@capture("editcap_nsec_gz")
def _editcap_nsec_gz(d: Path) -> Path:  # nanosecond pcapng converted by editcap -F nsecpcap, then gzip
    src = PcapNgBuilder(">").shb().idb(Iface(LT_ETHERNET, tsresol=9))
    for r in records(suite_for(LT_ETHERNET), step_ns=1_000_000_007):
        src.epb(0, r)
    nsec = editcap(["-F", "nsecpcap"], src.write(d / "for_nsec.pcapng"), d / "nsec.pcap")
    return gzip_file(nsec, d / "nsec.pcap.gz")


# Builders that run editcap (skipped where Wireshark's tools are not installed).
NEEDS_EDITCAP = frozenset(name for name in CAPTURES if name.startswith("editcap_"))
