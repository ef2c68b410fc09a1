"""What the Linux kernel says about TCP sockets: parse ``/proc/net/tcp`` and ``/proc/net/tcp6``.

This module owns the kernel side of the TIME_WAIT cross-check. Format facts (see
Documentation/networking/proc_net_tcp.rst and ../shared/ANCHORS.md section 8):

* addresses are the raw ``__be32`` words printed as host-order hex, so on a little-endian machine
  ``0100007F`` is 127.0.0.1 (IPv6: four such words); ports are plain big-endian hex;
* ``st`` is the TCP state number (06 = TIME_WAIT), ``tr:tm->when`` the active timer and the time
  left in USER_HZ ticks (``tr`` 03 = the TIME_WAIT timer).

The files describe the network namespace of the reading process, so a sample taken inside a
private namespace shows only that namespace's sockets.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# include/net/tcp_states.h
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
# States in which a connection has nothing more to send: the exchange on the wire is over.
SETTLED_STATES = frozenset({"TIME_WAIT", "CLOSE", "LISTEN"})
PROC_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


def _user_hz() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100


USER_HZ = _user_hz()


@dataclass(frozen=True)
class KernelSocket:
    """One line of /proc/net/tcp{,6}."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str
    timer: int  # tr: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe
    timer_s: float  # tm->when converted to seconds (time left on the active timer)
    inode: int

    @property
    def local(self) -> str:
        return _endpoint(self.local_ip, self.local_port)

    @property
    def remote(self) -> str:
        return _endpoint(self.remote_ip, self.remote_port)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def decode_address(text: str) -> tuple[str, int]:
    """``0100007F:000D`` -> ("127.0.0.1", 13); IPv6 addresses are four host-order words."""
    addr_hex, _, port_hex = text.partition(":")
    if len(addr_hex) not in (8, 32) or not port_hex:
        raise ValueError(f"not a /proc/net/tcp address: {text!r}")
    raw = b"".join(
        int(addr_hex[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(addr_hex), 8)
    )
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port_hex, 16)


def parse_line(line: str, hz: int = USER_HZ) -> KernelSocket:
    """Parse one data line of /proc/net/tcp or /proc/net/tcp6."""
    fields = line.split()
    if len(fields) < 10 or not fields[0].endswith(":"):
        raise ValueError(f"not a /proc/net/tcp line: {line!r}")
    local_ip, local_port = decode_address(fields[1])
    remote_ip, remote_port = decode_address(fields[2])
    state_no = int(fields[3], 16)
    timer_text, _, when_text = fields[5].partition(":")
    return KernelSocket(
        local_ip=local_ip,
        local_port=local_port,
        remote_ip=remote_ip,
        remote_port=remote_port,
        state=TCP_STATES.get(state_no, f"UNKNOWN_{state_no}"),
        timer=int(timer_text, 16),
        timer_s=round(int(when_text, 16) / hz, 2),
        inode=int(fields[9]),
    )


def parse_table(text: str, hz: int = USER_HZ) -> list[KernelSocket]:
    """Parse a whole /proc/net/tcp{,6} file (the first line is the header)."""
    return [parse_line(line, hz) for line in text.splitlines()[1:] if line.strip()]


def read_sockets(files: Iterable[str | Path] = PROC_FILES) -> list[KernelSocket]:
    """Every TCP socket of this network namespace (a missing tcp6 file means no IPv6)."""
    out: list[KernelSocket] = []
    for name in files:
        try:
            text = Path(name).read_text()
        except FileNotFoundError:
            continue
        out.extend(parse_table(text))
    return out


def involving(sockets: Iterable[KernelSocket], ports: Iterable[int]) -> list[KernelSocket]:
    """The sockets whose local or remote port is one of ``ports``."""
    wanted = set(ports)
    return [s for s in sockets if s.local_port in wanted or s.remote_port in wanted]


def time_wait(sockets: Iterable[KernelSocket]) -> list[KernelSocket]:
    return [s for s in sockets if s.state == "TIME_WAIT"]


def unsettled(sockets: Iterable[KernelSocket]) -> list[KernelSocket]:
    """Sockets still mid-exchange (not TIME_WAIT, CLOSE or LISTEN): a FIN or ACK is still due."""
    return [s for s in sockets if s.state not in SETTLED_STATES]


@dataclass(frozen=True)
class Sample:
    """The sockets of some ports at one instant (epoch seconds)."""

    ts: float
    sockets: tuple[KernelSocket, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "sockets": [s.to_dict() for s in self.sockets]}


def sample(ports: Iterable[int]) -> Sample:
    ports = list(ports)
    return Sample(ts=time.time(), sockets=tuple(involving(read_sockets(), ports)))


def wait_settled(ports: Iterable[int], *, timeout: float = 3.0, interval: float = 0.005) -> Sample:
    """Poll until no socket of ``ports`` is mid-exchange, so the last ACK has left; bounded.

    Returns the last sample either way; the caller decides what an unsettled result means.
    """
    ports = list(ports)
    deadline = time.monotonic() + timeout
    while True:
        current = sample(ports)
        if not unsettled(current.sockets) or time.monotonic() >= deadline:
            return current
        time.sleep(interval)


def holder_of(sockets: Iterable[KernelSocket], server_port: int, client_port: int | None = None) -> str:
    """Who holds TIME_WAIT for a connection, from the kernel: client, server, both or none.

    The server side is the socket whose local port is the server port. ``client_port`` narrows
    the look to one connection when several used the same server port.
    """
    server = client = False
    for s in time_wait(sockets):
        if s.local_port == server_port and client_port in (None, s.remote_port):
            server = True
        elif s.remote_port == server_port and client_port in (None, s.local_port):
            client = True
    return {(True, True): "both", (True, False): "server", (False, True): "client"}.get(
        (server, client), "none"
    )
