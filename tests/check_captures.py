"""Crafted captures of every ``analyzer run`` scenario, for the tests of ``analyzer.checks``.

Each builder writes what the scenario shows on the wire (server port 13, 7 or 9 on 127.0.0.1,
as inside ``analyzer run``'s private namespace), so the scenario's expectation file from
``analyzer/demos/expect/`` must pass on it and the others' files must not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from tcp_craft import CLIENT, SERVER, Capture, Conv, close_simultaneous

TIME_LINE = b"2026-11-26 22:14:03\n"  # what the daytime server sends: 20 bytes
REQUEST = b"time, please\n"  # the half-close client's request: 13 bytes
CHUNKS = [f"chunk {i} of 4: {'x' * 19}\n".encode() for i in range(1, 5)]  # 4 lines of 34 bytes
UDP_MESSAGES = [f"message {i} of 5".encode() for i in range(1, 6)]
CLIENT_EP = ("127.0.0.1", 40864)


def _conv(cap: Capture) -> Conv:
    return Conv(cap, client=CLIENT_EP, server=("127.0.0.1", 13))


def daytime(cap: Capture) -> None:
    c = _conv(cap)
    c.handshake(options=True)
    c.send(SERVER, TIME_LINE)
    c.close_4way(first=SERVER)


def client_closes_first(cap: Capture) -> None:
    c = _conv(cap)
    c.handshake(options=True)
    c.send(SERVER, TIME_LINE)
    c.ack(CLIENT)
    c.close_4way(first=CLIENT)


def half_close(cap: Capture) -> None:
    c = _conv(cap)
    c.handshake(options=True)
    c.send(CLIENT, REQUEST)
    c.fin(CLIENT)
    c.ack(SERVER)
    for chunk in CHUNKS:
        c.send(SERVER, chunk)
        c.ack(CLIENT)
    c.fin(SERVER)
    c.ack(CLIENT)


def simultaneous_close(cap: Capture) -> None:
    c = _conv(cap)
    c.handshake(options=True)
    c.send(SERVER, TIME_LINE)
    c.ack(CLIENT)
    close_simultaneous(c)
    c.ack(SERVER)


def rst_abort(cap: Capture) -> None:
    c = _conv(cap)
    c.handshake(options=True)
    c.send(SERVER, TIME_LINE)
    c.ack(CLIENT)
    c.rst(SERVER)


def refused(cap: Capture) -> None:
    c = _conv(cap)
    c.syn(options=[("MSS", 65495)])
    c.pkt(SERVER, "RA", ack=1001, seq=0)


def _ether(pkt: Packet) -> Packet:
    return Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / pkt


def _udp(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> Packet:
    return _ether(IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / Raw(data))


def udp_echo(cap: Capture) -> None:
    server = ("127.0.0.1", 7)
    for message in UDP_MESSAGES:
        cap.add(_udp(CLIENT_EP, server, message), 1000)
        cap.add(_udp(server, CLIENT_EP, message), 80)


def udp_unreachable(cap: Capture) -> None:
    server = ("127.0.0.1", 9)
    data = b"anyone there?"
    cap.add(_udp(CLIENT_EP, server, data), 1000)
    quoted = IPerror(src=CLIENT_EP[0], dst=server[0]) / UDPerror(sport=CLIENT_EP[1], dport=server[1]) / data
    cap.add(_ether(IP(src=server[0], dst=CLIENT_EP[0]) / ICMP(type=3, code=3) / quoted), 200)


BUILDERS: dict[str, Callable[[Capture], None]] = {
    "daytime": daytime,
    "client-closes-first": client_closes_first,
    "half-close": half_close,
    "simultaneous-close": simultaneous_close,
    "rst-abort": rst_abort,
    "refused": refused,
    "udp-echo": udp_echo,
    "udp-unreachable": udp_unreachable,
}


def write_scenario(name: str, directory: Path) -> Path:
    """The crafted capture of scenario ``name`` as ``directory/<name>.pcap``."""
    cap = Capture()
    BUILDERS[name](cap)
    return cap.write(directory / f"{name}.pcap")
