"""tcpdump: the second choice, writes pcap.

Run with ``--immediate-mode -U`` (each frame is handed over and written at once; without them the
tail of a loopback capture was lost here) and ``--print`` so that each frame also prints a line
we can count live; stopped with SIGINT. As root it would drop privileges to the ``tcpdump``
user, which cannot work inside an unprivileged user namespace, so there it is not offered.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import time

from analyzer.capture.child import ChildBackend, failure
from analyzer.capture.procs import Child

_STAT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)")


def available(isolation: str) -> str | None:
    """None when usable, else why not."""
    if not shutil.which("tcpdump"):
        return "tcpdump is not installed"
    if isolation == "userns":
        return "tcpdump cannot drop privileges inside an unprivileged user namespace"
    return None


class Tcpdump(ChildBackend):
    name = "tcpdump"
    file_format = "pcap"
    settle_s = 0.05

    def start(self, timeout: float) -> None:
        t0 = time.monotonic()
        argv = ["tcpdump", "-i", self.iface, "-w", str(self.path), "-U", "--immediate-mode"]
        argv += ["--print", "-n", "-q", "-l"]
        if os.geteuid() == 0:
            # Keep root: otherwise the file is chowned to the tcpdump user.
            argv += ["-Z", pwd.getpwuid(0).pw_name]
        argv.append(self.bpf)
        self.child = Child(argv, name="tcpdump", death_signal=signal.SIGTERM)
        ready = self.child.wait_line(lambda line: "listening on" in line, stream="stderr", timeout=timeout)
        if ready is None:
            self.child.stop(signal.SIGKILL)
            raise failure("tcpdump", self.child, "did not start capturing")
        self.ready_s = time.monotonic() - t0

    def captured(self) -> int | None:
        return len(self.child.lines("stdout"))

    def final_counts(self, stderr: list[str]) -> tuple[int | None, int | None, int | None]:
        stats: dict[str, int] = {}
        for line in stderr:
            if m := _STAT.match(line.strip()):
                stats[m.group(2)] = int(m.group(1))
        return stats.get("captured"), stats.get("received by filter"), stats.get("dropped by kernel")
