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

from analyzer.capture.child import ChildBackend, failure
from analyzer.capture.procs import Child

_PROGRESS = re.compile(r"^Packets: (\d+)")
_CAPTURED = re.compile(r"^Packets captured: (\d+)")
_RECV_DROP = re.compile(r"received/dropped on interface .*: (\d+)/(\d+)")


def available() -> str | None:
    """None when usable, else why not."""
    return None if shutil.which("dumpcap") else "dumpcap is not installed"


class Dumpcap(ChildBackend):
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

    def final_counts(self, stderr: list[str]) -> tuple[int | None, int | None, int | None]:
        captured = received = dropped = None
        for line in stderr:
            if m := _CAPTURED.match(line):
                captured = int(m.group(1))
            elif m := _RECV_DROP.search(line):
                received, dropped = int(m.group(1)), int(m.group(2))
        return captured, received, dropped
