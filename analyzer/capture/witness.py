"""An independent count of the frames a capture should contain.

A raw AF_PACKET socket on the interface counts the frames that pass the scenario's filter, the
way libpcap sees them (on ``lo`` each frame shows twice, once as PACKET_OUTGOING: those are
skipped). The run waits until the capture backend has written that many frames before stopping
it, and fails loudly when the file holds fewer: that is how a lost tail is caught, which the
backends' own counters do not report.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from analyzer.capture.filters import matches

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6


class Witness:
    """Counts matching frames on ``iface`` from ``open()`` until ``close()``."""

    def __init__(self, iface: str, proto: str, ports: list[int]) -> None:
        self.iface = iface
        self.proto = proto
        self.ports = frozenset(ports)
        self.count = 0
        self.last_ts = 0.0  # monotonic time of the last matching frame
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def open(self) -> bool:
        """Start counting; False when raw sockets are not permitted here (no CAP_NET_RAW)."""
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            return False
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((self.iface, ETH_P_ALL))
            sock.settimeout(0.05)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="witness", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                frame, addr = sock.recvfrom(65600)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if matches(frame, self.proto, self.ports):
                with self._lock:
                    self.count += 1
                    self.last_ts = time.monotonic()

    def snapshot(self) -> tuple[int, float]:
        """(frames so far, monotonic time of the last one)."""
        with self._lock:
            return self.count, self.last_ts

    def close(self) -> int:
        """Stop counting (after draining what is queued) and return the count."""
        sock = self._sock
        if sock is None:
            return self.count
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        sock.setblocking(False)
        for _ in range(100_000):  # bounded drain of what arrived before the thread stopped
            try:
                frame, addr = sock.recvfrom(65600)
            except (BlockingIOError, OSError):
                break
            if addr[2] != socket.PACKET_OUTGOING and matches(frame, self.proto, self.ports):
                self.count += 1
        with contextlib.suppress(OSError):
            _packets, self.dropped = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        sock.close()
        self._sock = None
        return self.count
