"""What the subprocess capture backends (dumpcap, tcpdump) share: lifecycle and failure messages."""

from __future__ import annotations

import signal

from analyzer.capture.base import Backend, CaptureStats
from analyzer.capture.procs import Child
from analyzer.errors import CaptureError, CapturePermissionError, EnvironmentProblem

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


class ChildBackend(Backend):
    """A backend that is a capture program run as a child process, stopped with SIGINT."""

    child: Child

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
            raise failure(self.name, self.child, "stopped during the run")
        captured, received, dropped = self.final_counts(self.child.lines("stderr"))
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

    def final_counts(self, stderr: list[str]) -> tuple[int | None, int | None, int | None]:
        """(captured, received, dropped) from the program's closing statistics."""
        raise NotImplementedError
