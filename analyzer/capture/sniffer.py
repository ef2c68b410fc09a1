"""scapy's AsyncSniffer: the embedded backend that needs no system package, writes pcapng.

On Linux ``lo`` a packet socket sees every frame twice: once leaving (PACKET_OUTGOING) and once
arriving. libpcap drops the outgoing copy on loopback devices; scapy's listen socket does not,
so ours does (``_LoopbackListenSocket``). The BPF filter is compiled by libpcap when scapy can
load it; otherwise the same filter runs in Python (``analyzer.capture.filters.matches``).
Our own socket is opened (filter attached, bound, flushed) before the sniffer thread starts, so
from then on frames queue in the kernel: that is the readiness point.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import socket
import struct
import threading
import time
from typing import Any

from analyzer.capture.base import Backend, CaptureStats
from analyzer.capture.child import PERMISSION_HINT
from analyzer.capture.filters import matches
from analyzer.errors import CaptureError, CapturePermissionError

ARPHRD_LOOPBACK = 772
SIOCINQ = 0x541B
SOL_PACKET = 263
PACKET_STATISTICS = 6


def available() -> str | None:
    return None if importlib.util.find_spec("scapy") else "scapy is not installed"


def _socket_class() -> Any:
    import scapy.layers.l2  # noqa: F401  (registers Ether for ARPHRD_LOOPBACK, so frames decode)
    from scapy.arch.linux import L2ListenSocket

    class _LoopbackListenSocket(L2ListenSocket):  # type: ignore[misc]
        """A listen socket that skips the PACKET_OUTGOING copy of each frame on loopback."""

        def recv_raw(self, x: int = 65535) -> Any:
            pkt, sa_ll, ts = self._recv_raw(self.ins, x)
            if sa_ll[3] == ARPHRD_LOOPBACK and sa_ll[2] == socket.PACKET_OUTGOING:
                return None, None, None
            if ts is None:
                from scapy.arch.linux import get_last_packet_timestamp

                ts = get_last_packet_timestamp(self.ins)
            return self.LL, pkt, ts

    return _LoopbackListenSocket


class ScapySniffer(Backend):
    name = "scapy"
    file_format = "pcapng"
    settle_s = 0.1

    def start(self, timeout: float) -> None:
        from scapy.error import Scapy_Exception
        from scapy.sendrecv import AsyncSniffer
        from scapy.utils import PcapNgWriter

        t0 = time.monotonic()
        cls = _socket_class()
        self.python_filter = False
        try:
            try:
                self.sock = cls(iface=self.iface, filter=self.bpf)
            except (Scapy_Exception, ImportError):
                # No libpcap to compile BPF: open unfiltered and apply the same test in Python.
                self.sock = cls(iface=self.iface)
                self.python_filter = True
        except PermissionError as exc:
            raise CapturePermissionError(
                f"scapy cannot open a packet socket on {self.iface}: {exc.strerror}", hint=PERMISSION_HINT
            ) from None
        except OSError as exc:
            raise CaptureError(f"scapy cannot capture on {self.iface}: {exc}") from None
        self.frames = 0
        self.error: BaseException | None = None
        self.writer = PcapNgWriter(str(self.path))
        self._lock = threading.Lock()
        started = threading.Event()
        ports = frozenset(self.ports)
        lfilter = (lambda p: matches(bytes(p), self.proto, ports)) if self.python_filter else None
        self.sniffer = AsyncSniffer(
            opened_socket=self.sock,
            prn=self._write,
            store=False,
            lfilter=lfilter,
            started_callback=started.set,
        )
        self.sniffer.start()
        if not started.wait(timeout):
            self._close()
            raise CaptureError(f"scapy's sniffer did not start within {timeout:g} s")
        self.ready_s = time.monotonic() - t0

    def _write(self, pkt: Any) -> None:
        with self._lock:
            self.writer.write(pkt)
            self.writer.flush()
            self.frames += 1

    def captured(self) -> int | None:
        with self._lock:
            return self.frames

    def alive(self) -> bool:
        return (
            bool(self.sniffer.running) and self.sniffer.thread is not None and self.sniffer.thread.is_alive()
        )

    def _queued(self) -> int:
        buf = fcntl.ioctl(self.sock.ins.fileno(), SIOCINQ, struct.pack("i", 0))
        return int(struct.unpack("i", buf)[0])

    def stop(self, timeout: float) -> CaptureStats:
        deadline = time.monotonic() + timeout
        died = not self.alive()
        # Let the sniffer thread read what the kernel still queues before we stop it.
        while not died and self._queued() > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        received = dropped = None
        try:
            stats = self.sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            received, dropped = struct.unpack("II", stats)
        except OSError:
            pass
        if not died:
            self.sniffer.stop(join=True)
        self._close()
        if died:
            raise CaptureError(
                "scapy's sniffer thread stopped during the run", hint=str(self.sniffer.exception)
            )
        return CaptureStats(
            backend=self.name,
            path=str(self.path),
            format=self.file_format,
            captured=self.frames,
            received=received,
            dropped=dropped,
            ready_s=round(self.ready_s, 4),
            stderr="BPF compiled by libpcap" if not self.python_filter else "filter applied in Python",
        )

    def abort(self) -> None:
        sniffer = getattr(self, "sniffer", None)
        if sniffer is not None and sniffer.running:
            with contextlib.suppress(Exception):
                sniffer.stop(join=True)
        self._close()

    def _close(self) -> None:
        for name in ("writer", "sock"):
            obj = getattr(self, name, None)
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
