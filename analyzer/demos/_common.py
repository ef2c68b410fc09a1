"""Helpers shared by the four Python demo programs: addresses, the time line, the GO barrier.

The C versions in ``analyzer/demos/c/`` implement the same options and output line for line;
change both together (tests run every scenario with both and compare the analysis).
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any, BinaryIO

# Exit codes shared by every demo program, Python and C.
EXIT_OK = 0
EXIT_NETWORK = 1  # refused, reset, unreachable, timed out
EXIT_USAGE = 2
EXIT_BIND = 3  # the server could not bind/listen (port in use, permission)
EXIT_INTERRUPTED = 130


def resolve(host: str, port: int, socktype: int) -> tuple[int, tuple[Any, ...]]:
    """The first address of ``host`` (a name or a numeric IPv4/IPv6 address) as (family, sockaddr)."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socktype)
    family, _, _, _, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


def peer_text(sockaddr: tuple[object, ...]) -> str:
    """``IP(PORT)``, the classic way the textbook servers print a client."""
    return f"{sockaddr[0]}({sockaddr[1]})"


def time_line() -> bytes:
    """The daytime reply: local time as ``YYYY-MM-DD HH:MM:SS\\n`` (20 bytes)."""
    return time.strftime("%Y-%m-%d %H:%M:%S\n").encode()


def recv_all(sock: socket.socket, sink: BinaryIO | None = None) -> int:
    """Read until the peer's FIN (recv returns b''), writing what arrives to ``sink`` at once.

    Writing as it arrives (not at the end) keeps what was read visible when a RST ends the read.
    """
    total = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return total
        total += len(chunk)
        if sink is not None:
            sink.write(chunk)
            sink.flush()


def recv_line(sock: socket.socket, sink: BinaryIO) -> int:
    """Read up to and including the first newline (or until EOF) into ``sink``."""
    total = 0
    while True:
        chunk = sock.recv(1)
        if not chunk:
            return total
        total += 1
        sink.write(chunk)
        if chunk == b"\n":
            sink.flush()
            return total


def wait_go() -> None:
    """The simultaneous-close barrier: say ``ready``, read ``go DEADLINE_NS``, spin until then.

    Both peers spin on CLOCK_MONOTONIC (shared by all processes) so their FINs leave within
    microseconds of each other; a blocking wake-up would be too late on loopback, where the
    first FIN is delivered synchronously.
    """
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "go":
        raise SystemExit(f"error: expected 'go DEADLINE_NS' on stdin, got {' '.join(line)!r}")
    deadline = int(line[1])
    while time.monotonic_ns() < deadline:
        pass


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
