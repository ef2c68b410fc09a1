"""dumpcap (Wireshark's capture engine): the first choice, writes pcapng.

Ready when it prints ``File: ...`` (the interface is open and the filter set). Frames reach it
in TPACKET_V3 blocks that the kernel hands over every 250 ms, and it rewrites ``Packets: N`` on
stderr after writing them; SIGINT stops it cleanly but drops whatever it has not read yet, so the
run waits for that counter to reach the witness count first.
"""

from __future__ import annotations

import re
import shutil
import signal
import time

from analyzer.capture.base import Backend, CaptureStats
from analyzer.capture.procs import Child
from analyzer.errors import CaptureError, CapturePermissionError, EnvironmentProblem

_PROGRESS = re.compile(r"^Packets: (\d+)")
_CAPTURED = re.compile(r"^Packets captured: (\d+)")
_RECV_DROP = re.compile(r"received/dropped on interface .*: (\d+)/(\d+)")


def available() -> str | None:
    """None when usable, else why not."""
    return None if shutil.which("dumpcap") else "dumpcap is not installed"


PERMISSION_HINT = (
    "run as root, give the tool CAP_NET_RAW (setcap cap_net_raw,cap_net_admin+eip on it), "
    "or drop --host-loopback to capture in a private namespace"
)


def failure(tool: str, child: Child, what: str) -> EnvironmentProblem:
    """The error for a capture tool that failed, from its most telling stderr line."""
    text = [line.strip() for line in child.lines("stderr") if line.strip()]
    telling = [line for line in text if line.startswith(f"{tool}:") or "permission" in line.lower()]
    detail = (telling or text or [f"exit code {child.returncode}"])[-1 if not telling else 0]
    if "permission" in detail.lower() or "not permitted" in detail.lower():
        return CapturePermissionError(f"{tool} {what}: {detail}", hint=PERMISSION_HINT)
    return CaptureError(
        f"{tool} {what}: {detail}",
        hint="check that the tool runs on its own, or choose another backend with --capture",
    )


class Dumpcap(Backend):
    name = "dumpcap"
    file_format = "pcapng"
    settle_s = 0.6

    def start(self, timeout: float) -> None:
        t0 = time.monotonic()
        argv = ["dumpcap", "-i", self.iface, "-f", self.bpf, "-w", str(self.path)]
        self.child = Child(argv, name="dumpcap", death_signal=signal.SIGTERM)
        ready = self.child.wait_line(lambda line: line.startswith("File:"), stream="stderr", timeout=timeout)
        if ready is None:
            self.child.stop(signal.SIGKILL)
            raise failure("dumpcap", self.child, "did not start capturing")
        self.ready_s = time.monotonic() - t0

    def captured(self) -> int | None:
        for line in [self.child.partial("stderr"), *reversed(self.child.lines("stderr"))]:
            match = _PROGRESS.match(line)
            if match:
                return int(match.group(1))
        return 0

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def abort(self) -> None:
        child = getattr(self, "child", None)
        if child is not None:
            child.stop(signal.SIGINT, timeout=5.0)

    def alive(self) -> bool:
        return self.child.returncode is None

    def stop(self, timeout: float) -> CaptureStats:
        died = not self.alive()
        self.child.stop(signal.SIGINT, timeout)
        if died:
            raise failure("dumpcap", self.child, "stopped during the run")
        captured = received = dropped = None
        for line in self.child.lines("stderr"):
            if m := _CAPTURED.match(line):
                captured = int(m.group(1))
            elif m := _RECV_DROP.search(line):
                received, dropped = int(m.group(1)), int(m.group(2))
        return CaptureStats(
            backend=self.name,
            path=str(self.path),
            format=self.file_format,
            captured=captured,
            received=received,
            dropped=dropped,
            ready_s=round(self.ready_s, 4),
            stderr=self.child.text("stderr")[-2000:],
        )
