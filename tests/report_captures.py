"""Captures for the report tests, crafted with scapy on fixed timestamps (so reports are stable).

``mixed``: what the renderers must cope with in one file —

* TCP 0: an HTTP-like exchange whose payloads carry markup and script (``<script>`` setting
  ``document.title``, an ``<img onerror>``), Markdown/Mermaid syntax (``| ; # % ` ``), quotes,
  an ANSI escape sequence and a NUL; one data segment is retransmitted; the client closes first
  (four-way), so the client holds TIME_WAIT;
* TCP 1: a long transfer (120 data segments) that the ladders must elide; closed by a RST;
* UDP 0: an echo exchange (three datagrams, each echoed), one with a ``<script>`` payload;
* UDP 1: a datagram to a closed port answered by ICMP port unreachable.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from tcp_craft import CLIENT, SERVER, Capture, Conv

XSS = b'<script>document.title="pwned"</script>'
REQUEST = b"GET /?q=<img src=x onerror=alert(1)> HTTP/1.1\r\nHost: a|b;c#d%e`f`\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\n\r\n" + XSS + b"\x1b[31mred\x1b[0m & 'quotes' \"dq\"\x00"
LONG_SEGMENTS = 120
MAC = {"src": "00:00:00:00:00:01", "dst": "00:00:00:00:00:02"}


def _udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> Packet:
    return Ether(**MAC) / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / Raw(payload)


def mixed(path: Path) -> Path:
    cap = Capture()
    c = Conv(cap, client=("10.0.0.1", 40000), server=("10.0.0.2", 8080))
    c.handshake(options=True)
    c.send(CLIENT, REQUEST)
    c.ack(SERVER)
    c.send(SERVER, RESPONSE)
    # The same segment again: the client's ACK was "lost" as far as the server knows.
    c.pkt(SERVER, "PA", RESPONSE, seq=c.nxt[SERVER] - len(RESPONSE), after_us=3000)
    c.ack(CLIENT)
    c.close_4way(CLIENT)

    long = Conv(cap, client=("10.0.0.1", 40001), server=("10.0.0.2", 9000), isn_c=7000, isn_s=9000)
    long.handshake()
    for k in range(LONG_SEGMENTS):
        long.send(SERVER, f"chunk {k:03d};".encode(), after_us=50)
        if k % 10 == 9:
            long.ack(CLIENT, after_us=20)
    long.rst(CLIENT)

    echo_c, echo_s = ("10.0.0.1", 50000), ("10.0.0.3", 7)
    for payload in (b"hello", XSS, b"bye\n"):
        cap.add(_udp(echo_c, echo_s, payload), 400)
        cap.add(_udp(echo_s, echo_c, payload), 60)

    closed_c, closed_s = ("10.0.0.1", 50001), ("10.0.0.4", 9999)
    probe = _udp(closed_c, closed_s, b"anyone?")
    cap.add(probe, 500)
    quoted = (
        IPerror(src=closed_c[0], dst=closed_s[0])
        / UDPerror(sport=closed_c[1], dport=closed_s[1])
        / Raw(b"anyone?")
    )
    cap.add(Ether(**MAC) / IP(src=closed_s[0], dst=closed_c[0]) / ICMP(type=3, code=3) / quoted, 30)
    return cap.write(path)
