"""Crafting TCP conversations with scapy for the tests of ``analyzer.flows.tcp``.

``Conv`` keeps each side's next sequence number and what it has received, so a scenario reads
like the exchange it describes (``c.syn()``, ``c.send("client", b"GET /")``, ``c.fin("server")``)
while any field can still be forced (``seq=``, ``ack=``, ``flags=``) to build the broken cases.
Frames get exact microsecond timestamps; ``write_pcap`` writes them with scapy's writer so the
tests read them back through ``analyzer.read_packets`` like any capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import RawPcapWriter

import analyzer
from analyzer.decode.source import CaptureBytes
from analyzer.flows.tcp import TcpFlows, analyze_tcp

BASE_US = 1_700_000_000 * 1_000_000
LINKTYPE_ETHERNET = 1
CLIENT = "client"
SERVER = "server"

# What Linux puts in a SYN on loopback (MSS 65495, SACK permitted, timestamps, window scale 7).
LINUX_SYN_OPTIONS: list[tuple[str, object]] = [
    ("MSS", 65495),
    ("SAckOK", b""),
    ("Timestamp", (1000, 0)),
    ("NOP", None),
    ("WScale", 7),
]


@dataclass
class Frame:
    us: int
    data: bytes


@dataclass
class Capture:
    """Frames of one or more conversations on one timeline."""

    us: int = BASE_US
    frames: list[Frame] = field(default_factory=list)

    def add(self, pkt: Packet, after_us: int) -> None:
        self.us += after_us
        self.frames.append(Frame(self.us, bytes(pkt)))

    def write(self, path: Path, snaplen: int = 262144) -> Path:
        with RawPcapWriter(str(path), linktype=LINKTYPE_ETHERNET, snaplen=snaplen) as w:
            w.write_header(None)
            for f in self.frames:
                data = f.data[:snaplen]
                w.write_packet(
                    data, sec=f.us // 1_000_000, usec=f.us % 1_000_000, caplen=len(data), wirelen=len(f.data)
                )
        return path


class Conv:
    """One TCP connection between a client and a server, side by side on a ``Capture``."""

    def __init__(
        self,
        cap: Capture | None = None,
        *,
        client: tuple[str, int] = ("10.0.0.1", 40000),
        server: tuple[str, int] = ("10.0.0.2", 80),
        isn_c: int = 1000,
        isn_s: int = 5000,
        ipv6: bool = False,
        ts_c: int = 100,
        ts_s: int = 200,
    ) -> None:
        self.cap = cap if cap is not None else Capture()
        self.addr = {CLIENT: client, SERVER: server}
        self.nxt = {CLIENT: isn_c, SERVER: isn_s}  # next sequence number each side sends
        self.rcv: dict[str, int | None] = {CLIENT: None, SERVER: None}  # what each side ACKs
        self.ipv6 = ipv6
        self.tsval = {CLIENT: ts_c, SERVER: ts_s}
        self.use_ts = False

    @staticmethod
    def peer(side: str) -> str:
        return SERVER if side == CLIENT else CLIENT

    def pkt(
        self,
        side: str,
        flags: str,
        data: bytes = b"",
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int = 65535,
        options: list[tuple[str, object]] | None = None,
        after_us: int = 100,
        advance: bool = True,
        deliver: bool = True,
    ) -> None:
        """Add one segment from ``side``.

        ``advance`` moves the sender's next sequence number past the segment; ``deliver`` lets
        the peer take its sequence space into what it ACKs (false for a segment "lost" after
        the capture point is not modelled: the capture shows every frame we add).
        """
        src, dst = self.addr[side], self.addr[self.peer(side)]
        s = self.nxt[side] if seq is None else seq
        a = self.rcv[side] if ack is None else ack
        if "A" in flags and a is None:
            a = 0
        opts = list(options or [])
        if self.use_ts and not any(o[0] == "Timestamp" for o in opts):
            self.tsval[side] += 1
            opts.append(("Timestamp", (self.tsval[side], self.tsval[self.peer(side)])))
        tcp = TCP(
            sport=src[1],
            dport=dst[1],
            flags=flags,
            seq=s & 0xFFFFFFFF,
            ack=(a or 0) & 0xFFFFFFFF,
            window=win,
            options=opts,
        )
        ip: Packet = IPv6(src=src[0], dst=dst[0]) if self.ipv6 else IP(src=src[0], dst=dst[0])
        frame = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02") / ip / tcp
        if data:
            frame = frame / Raw(data)
        self.cap.add(frame, after_us)
        used = len(data) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
        if "R" in flags:
            used = 0
        end = s + used
        if advance and (seq is None or end - self.nxt[side] > 0):
            self.nxt[side] = end
        if deliver and used:
            # the peer takes the segment when it starts at or before what it expects next
            peer = self.peer(side)
            expected = self.rcv[peer]
            if expected is None or (end - expected > 0 and s - expected <= 0):
                self.rcv[peer] = end

    # -- building blocks ---------------------------------------------------------------------

    def syn(self, *, options: list[tuple[str, object]] | None = None, after_us: int = 100) -> None:
        self.pkt(CLIENT, "S", options=options, after_us=after_us)

    def synack(self, *, options: list[tuple[str, object]] | None = None, after_us: int = 100) -> None:
        self.pkt(SERVER, "SA", options=options, after_us=after_us)

    def handshake(self, *, rtt_us: int = 100, options: bool = False) -> None:
        opts = LINUX_SYN_OPTIONS if options else None
        self.syn(options=opts)
        self.synack(options=opts, after_us=rtt_us // 2)
        self.pkt(CLIENT, "A", after_us=rtt_us // 2)

    def send(self, side: str, data: bytes, *, after_us: int = 100, flags: str = "PA") -> None:
        self.pkt(side, flags, data, after_us=after_us)

    def ack(self, side: str, *, after_us: int = 100, win: int = 65535) -> None:
        self.pkt(side, "A", after_us=after_us, win=win)

    def fin(self, side: str, *, after_us: int = 100, data: bytes = b"") -> None:
        self.pkt(side, "FA", data, after_us=after_us)

    def rst(self, side: str, *, after_us: int = 100, ack: bool = True) -> None:
        self.pkt(side, "RA" if ack else "R", after_us=after_us)

    def close_4way(self, first: str = CLIENT) -> None:
        other = self.peer(first)
        self.fin(first)
        self.ack(other)
        self.fin(other)
        self.ack(first)

    def close_3way(self, first: str = CLIENT) -> None:
        other = self.peer(first)
        self.fin(first)
        self.fin(other)
        self.ack(first)


def write(cap: Capture, tmp_path: Path, name: str = "trace.pcap", snaplen: int = 262144) -> Path:
    return cap.write(tmp_path / name, snaplen=snaplen)


def close_simultaneous(c: Conv) -> None:
    """Both FINs leave before either side saw the other's: each FIN ACKs only the peer's data."""
    ack_c, ack_s = c.rcv[CLIENT], c.rcv[SERVER]
    c.pkt(CLIENT, "FA", ack=ack_c)
    c.pkt(SERVER, "FA", ack=ack_s, after_us=5)
    c.ack(CLIENT)
    c.ack(SERVER, after_us=5)


# ---------------------------------------------------------------------------------------------
# The scenario catalogue: every crafted capture the TCP tests (and the tshark differential test)
# use. Each builder returns a Capture; the comment says what it exercises.
# ---------------------------------------------------------------------------------------------


def sc_fin_4way() -> Capture:
    # Textbook: handshake, request/response, client closes, server ACKs, then sends its own FIN.
    c = Conv()
    c.handshake(options=True)
    c.send(CLIENT, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.ack(SERVER)
    c.send(SERVER, b"HTTP/1.1 200 OK\r\n\r\nhello")
    c.ack(CLIENT)
    c.close_4way(CLIENT)
    return c.cap


def sc_fin_3way_server_first() -> Capture:
    # The server closes first (daytime-like); the client's FIN carries the ACK of the server's FIN.
    c = Conv(server=("10.0.0.2", 13))
    c.handshake()
    c.send(SERVER, b"Thu Nov 26 22:00:10 2026\r\n")
    c.ack(CLIENT)
    c.close_3way(SERVER)
    return c.cap


def sc_simultaneous_close() -> Capture:
    # Both sides send FIN before seeing the other's: both end in TIME-WAIT (RFC 9293 fig. 13).
    c = Conv(client=("10.0.0.1", 40001), server=("10.0.0.2", 14000))
    c.handshake()
    c.send(CLIENT, b"ping")
    c.ack(SERVER)
    close_simultaneous(c)
    return c.cap


def sc_half_close() -> Capture:
    # Client shuts down writing after its request; the server keeps sending, then closes.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"request")
    c.fin(CLIENT)
    c.ack(SERVER)
    c.send(SERVER, b"response part 1;")
    c.ack(CLIENT)
    c.send(SERVER, b"response part 2")
    c.ack(CLIENT)
    c.fin(SERVER)
    c.ack(CLIENT)
    return c.cap


def sc_rst_abort() -> Capture:
    # SO_LINGER {1, 0}: the server aborts with a RST after sending data; no FIN at all.
    c = Conv()
    c.handshake()
    c.send(SERVER, b"bye")
    c.ack(CLIENT)
    c.rst(SERVER)
    return c.cap


def sc_fin_then_rst() -> Capture:
    # The client closes, then aborts with a RST before the server's FIN (a FIN came first).
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"x")
    c.ack(SERVER)
    c.fin(CLIENT)
    c.ack(SERVER)
    c.rst(CLIENT)
    return c.cap


def sc_half_closed() -> Capture:
    # Only the client sends a FIN before the capture ends (half-closed, Wireshark still "Complete").
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"data")
    c.ack(SERVER)
    c.fin(CLIENT)
    c.ack(SERVER)
    return c.cap


def sc_open() -> Capture:
    # Established with data, no FIN or RST by the end of the capture.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"hello")
    c.ack(SERVER)
    return c.cap


def sc_refused() -> Capture:
    # SYN answered by RST-ACK: nobody listens on the port (Zeek REJ, Wireshark 37).
    c = Conv(server=("10.0.0.2", 9))
    c.syn()
    c.pkt(SERVER, "RA", seq=0)
    return c.cap


def sc_no_reply() -> Capture:
    # Three SYNs (two retransmissions, same ISN) and no answer (Zeek S0).
    c = Conv()
    c.syn()
    c.pkt(CLIENT, "S", seq=1000, after_us=1_000_000)
    c.pkt(CLIENT, "S", seq=1000, after_us=2_000_000)
    return c.cap


def sc_partial_no_ack() -> Capture:
    # SYN and SYN-ACK, but the final ACK never shows: the handshake is partial.
    c = Conv()
    c.syn()
    c.synack()
    return c.cap


def sc_synack_wrong_ack() -> Capture:
    # The SYN-ACK acknowledges the wrong number: partial, and a bad_SYN_ack anomaly.
    c = Conv()
    c.syn()
    c.pkt(SERVER, "SA", ack=4242)
    c.pkt(CLIENT, "R", seq=4242, ack=0)
    return c.cap


def sc_syn_retransmit() -> Capture:
    # The first SYN is lost (seen on the wire); the retransmission 1 s later completes the handshake.
    c = Conv()
    c.syn()
    c.pkt(CLIENT, "S", seq=1000, after_us=1_000_000)
    c.synack()
    c.ack(CLIENT)
    c.send(CLIENT, b"hi")
    c.ack(SERVER)
    c.close_4way(CLIENT)
    return c.cap


def sc_midstream() -> Capture:
    # The capture starts mid-connection: no handshake, the client is a guess (first sender).
    c = Conv(isn_c=700_000, isn_s=900_000)
    c.rcv[CLIENT] = 900_000
    c.rcv[SERVER] = 700_000
    c.send(CLIENT, b"more data")
    c.ack(SERVER)
    c.send(SERVER, b"reply")
    c.ack(CLIENT)
    return c.cap


def sc_simultaneous_open() -> Capture:
    # Both sides send a pure SYN at once, then SYN-ACKs (RFC 9293 figure 8).
    c = Conv(client=("10.0.0.1", 5000), server=("10.0.0.2", 6000))
    c.pkt(CLIENT, "S")
    c.pkt(SERVER, "S", after_us=5)
    c.pkt(SERVER, "SA", seq=5000)
    c.pkt(CLIENT, "SA", seq=1000, after_us=5)
    c.send(CLIENT, b"x")
    c.ack(SERVER)
    c.close_4way(CLIENT)
    return c.cap


def sc_retransmissions() -> Capture:
    # Data segment retransmitted 200 ms later (the ACK was lost) and a retransmitted FIN.
    c = Conv()
    c.handshake(rtt_us=1000)
    c.send(CLIENT, b"abcdef")
    c.pkt(CLIENT, "PA", b"abcdef", seq=1001, after_us=200_000)
    c.ack(SERVER)
    c.send(SERVER, b"OK")
    c.ack(CLIENT)
    c.fin(SERVER)
    c.pkt(SERVER, "FA", seq=5003, after_us=200_000)
    c.ack(CLIENT)
    c.fin(CLIENT)
    c.ack(SERVER)
    return c.cap


def sc_out_of_order() -> Capture:
    # Segments 2 and 3 arrive before segment 1 (within the RTT): out-of-order, no retransmission.
    c = Conv()
    c.handshake(rtt_us=10_000)
    c.pkt(CLIENT, "PA", b"BBBB", seq=1005, advance=False, deliver=False, after_us=10)
    c.pkt(CLIENT, "PA", b"CCCC", seq=1009, advance=False, deliver=False, after_us=10)
    c.pkt(CLIENT, "PA", b"AAAA", seq=1001, after_us=10)
    c.nxt["client"] = 1013
    c.rcv["server"] = 1013
    c.ack(SERVER)
    c.close_3way(CLIENT)
    return c.cap


def sc_overlap() -> Capture:
    # A retransmission repacketizes: it overlaps the first segment and carries new bytes.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"0123456789")
    c.pkt(CLIENT, "PA", b"56789ABCDE", seq=1006, after_us=300_000)
    c.ack(SERVER)
    c.close_4way(SERVER)
    return c.cap


def sc_gap() -> Capture:
    # A data segment never reached the capture (lost upstream): the server ACKs past it.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"first;")
    c.pkt(CLIENT, "PA", b"lost;", advance=True, deliver=False, after_us=0)
    c.cap.frames.pop()  # the segment is not in the capture
    c.send(CLIENT, b"third")
    c.rcv["server"] = c.nxt["client"]
    c.ack(SERVER)
    c.close_4way(CLIENT)
    return c.cap


def sc_keepalive_zero_window() -> Capture:
    # The server advertises a zero window, then reopens; later the client sends keep-alives.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"fill")
    c.ack(SERVER, win=0)
    c.ack(SERVER, win=0, after_us=50_000)
    c.ack(SERVER, win=8192, after_us=50_000)
    c.send(CLIENT, b"more")
    c.ack(SERVER)
    c.pkt(CLIENT, "A", seq=c.nxt["client"] - 1, after_us=7_200_000_000 // 1000)  # 2 h / 1000
    c.ack(SERVER)
    c.pkt(CLIENT, "A", b"\x00", seq=c.nxt["client"] - 1, after_us=75_000_000, advance=False, deliver=False)
    c.ack(SERVER)
    c.close_3way(CLIENT)
    return c.cap


def sc_dup_acks() -> Capture:
    # Three duplicate ACKs from the server for a missing segment, then the fast retransmission.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"seg1")
    c.ack(SERVER)
    c.pkt(CLIENT, "PA", b"seg2", deliver=False)
    c.pkt(CLIENT, "PA", b"seg3", deliver=False)
    c.pkt(CLIENT, "PA", b"seg4", deliver=False)
    c.ack(SERVER)
    c.ack(SERVER)
    c.ack(SERVER)
    c.pkt(CLIENT, "PA", b"seg2", seq=1005, after_us=1000)
    c.rcv["server"] = c.nxt["client"]
    c.ack(SERVER)
    c.close_4way(CLIENT)
    return c.cap


def sc_ipv6() -> Capture:
    # The whole exchange over IPv6 (compressed lowercase addresses in the report).
    c = Conv(client=("2001:db8::1", 40000), server=("2001:db8::2", 80), ipv6=True)
    c.handshake(options=True)
    c.send(CLIENT, b"v6 request")
    c.ack(SERVER)
    c.send(SERVER, b"v6 reply")
    c.ack(CLIENT)
    c.close_4way(SERVER)
    return c.cap


def _reuse(rfc6191_ok: bool, gap_us: int, ts: bool) -> Capture:
    # First connection: the client closes first (client in TIME-WAIT); then the same 4-tuple
    # is reused by a new SYN gap_us later, with a higher (ok) or lower (violation) ISN/TSval.
    cap = Capture()
    a = Conv(cap, isn_c=1000, isn_s=5000)
    a.use_ts = ts
    a.handshake()
    a.send(CLIENT, b"one")
    a.ack(SERVER)
    a.close_4way(CLIENT)
    isn = 2_000_000 if rfc6191_ok else 10
    b = Conv(cap, isn_c=isn, isn_s=777_000)
    b.use_ts = ts
    if ts:
        b.tsval = {CLIENT: a.tsval[CLIENT] + (1000 if rfc6191_ok else -50), SERVER: a.tsval[SERVER] + 1000}
    b.syn(after_us=gap_us)
    b.synack()
    b.ack(CLIENT)
    b.send(CLIENT, b"two")
    b.ack(SERVER)
    b.close_4way(CLIENT)
    return cap


def sc_reuse_ok_isn() -> Capture:
    # Port reuse 1.5 s into TIME-WAIT with a higher ISN, no timestamps: RFC 6191 accepts it.
    return _reuse(True, 1_500_000, ts=False)


def sc_reuse_bad_isn() -> Capture:
    # Port reuse during TIME-WAIT with an ISN below the old sequence space: RFC 6191 rejects it.
    return _reuse(False, 1_500_000, ts=False)


def sc_reuse_ts() -> Capture:
    # Port reuse during TIME-WAIT with timestamps on both incarnations: the TSval decides.
    return _reuse(True, 1_500_000, ts=True)


def sc_reuse_after_expiry() -> Capture:
    # The same 4-tuple again 61 s later: TIME-WAIT (60 s) had expired, no reuse flag.
    return _reuse(True, 61_000_000, ts=False)


def sc_reuse_same_isn() -> Capture:
    # A new SYN with the *same* ISN after a RST: a new connection (Wireshark 4.0 keeps one stream).
    c = Conv(server=("10.0.0.2", 9))
    c.syn()
    c.pkt(SERVER, "RA", seq=0)
    c.pkt(CLIENT, "S", seq=1000, after_us=1_000_000)
    c.pkt(SERVER, "RA", seq=0)
    return c.cap


def sc_rst_in_time_wait() -> Capture:
    # A RST reaches the client while it is in TIME-WAIT (RFC 1337 TIME-WAIT assassination).
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"q")
    c.ack(SERVER)
    c.close_4way(CLIENT)
    c.pkt(SERVER, "R", seq=c.nxt["server"], after_us=2_000_000)
    return c.cap


def sc_fin_reacked() -> Capture:
    # The server retransmits its FIN (our ACK was lost); the client in TIME-WAIT ACKs it again.
    c = Conv()
    c.handshake()
    c.close_4way(CLIENT)
    c.pkt(SERVER, "FA", seq=5000 + 1, after_us=1_000_000)
    c.ack(CLIENT)
    return c.cap


def sc_truncated() -> Capture:
    # Captured with a 80-byte snap length: payload bytes beyond it are missing (gaps).
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"A" * 200)
    c.ack(SERVER)
    c.close_3way(SERVER)
    return c.cap


def sc_two_connections() -> Capture:
    # Two interleaved connections from different client ports, numbered by first packet.
    cap = Capture()
    a = Conv(cap, client=("10.0.0.1", 40010))
    b = Conv(cap, client=("10.0.0.1", 40011), isn_c=3000)
    a.syn()
    b.syn()
    a.synack()
    b.synack()
    a.ack(CLIENT)
    b.ack(CLIENT)
    b.send(CLIENT, b"B")
    a.send(CLIENT, b"A")
    a.ack(SERVER)
    b.ack(SERVER)
    a.close_3way(CLIENT)
    b.close_4way(SERVER)
    return cap


SCENARIOS = {
    "fin_4way": sc_fin_4way,
    "fin_3way_server_first": sc_fin_3way_server_first,
    "simultaneous_close": sc_simultaneous_close,
    "half_close": sc_half_close,
    "rst_abort": sc_rst_abort,
    "fin_then_rst": sc_fin_then_rst,
    "half_closed": sc_half_closed,
    "open": sc_open,
    "refused": sc_refused,
    "no_reply": sc_no_reply,
    "partial_no_ack": sc_partial_no_ack,
    "synack_wrong_ack": sc_synack_wrong_ack,
    "syn_retransmit": sc_syn_retransmit,
    "midstream": sc_midstream,
    "simultaneous_open": sc_simultaneous_open,
    "retransmissions": sc_retransmissions,
    "out_of_order": sc_out_of_order,
    "overlap": sc_overlap,
    "gap": sc_gap,
    "keepalive_zero_window": sc_keepalive_zero_window,
    "dup_acks": sc_dup_acks,
    "ipv6": sc_ipv6,
    "reuse_ok_isn": sc_reuse_ok_isn,
    "reuse_bad_isn": sc_reuse_bad_isn,
    "reuse_ts": sc_reuse_ts,
    "reuse_after_expiry": sc_reuse_after_expiry,
    "reuse_same_isn": sc_reuse_same_isn,
    "rst_in_time_wait": sc_rst_in_time_wait,
    "fin_reacked": sc_fin_reacked,
    "truncated": sc_truncated,
    "two_connections": sc_two_connections,
}
SNAPLEN = {"truncated": 80}


def build(name: str, directory: Path) -> Path:
    """Write scenario ``name`` to ``directory`` and return the pcap path."""
    return SCENARIOS[name]().write(directory / f"{name}.pcap", snaplen=SNAPLEN.get(name, 262144))


def analyze_path(path: Path, msl: float = 30.0) -> TcpFlows:
    """Read ``path`` through ``analyzer.read_packets`` and analyze its TCP connections."""
    packets = analyzer.read_packets(path)
    with CaptureBytes(path) as payloads:
        return analyze_tcp(packets, payloads, msl=msl)


def analyze_scenario(name: str, directory: Path, msl: float = 30.0) -> TcpFlows:
    return analyze_path(build(name, directory), msl=msl)


def analyze_capture(cap: Capture, directory: Path, name: str = "trace.pcap", msl: float = 30.0) -> TcpFlows:
    return analyze_path(cap.write(directory / name), msl=msl)
