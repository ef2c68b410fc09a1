"""What every capture backend provides, and the statistics a stopped capture reports."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class CaptureStats:
    backend: str
    path: str
    format: str  # pcapng or pcap
    captured: int | None  # frames the backend says it wrote
    received: int | None  # frames the kernel handed to the backend's socket (lo: both copies for some)
    dropped: int | None  # frames the kernel dropped for lack of buffer space
    ready_s: float = 0.0  # seconds from start to confirmed ready
    stderr: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """A capture of one interface with one BPF filter into one file."""

    name: ClassVar[str]
    file_format: ClassVar[str]
    # Seconds the backend may hold frames before writing them; the fallback wait before stopping
    # when no frame witness is available.
    settle_s: ClassVar[float] = 0.1

    def __init__(self, iface: str, bpf: str, path: Path, proto: str, ports: list[int]) -> None:
        self.iface = iface
        self.bpf = bpf
        self.path = path
        self.proto = proto
        self.ports = ports
        self.ready_s = 0.0

    @abstractmethod
    def start(self, timeout: float) -> None:
        """Return once frames are being captured; raise CaptureError otherwise."""

    @property
    def pid(self) -> int | None:
        """The capture tool's process id (None when it runs in this process)."""
        return None

    @abstractmethod
    def captured(self) -> int | None:
        """Frames written so far, or None when the backend cannot tell while running."""

    @abstractmethod
    def alive(self) -> bool:
        """False when the capture stopped on its own (the tool died)."""

    @abstractmethod
    def stop(self, timeout: float) -> CaptureStats:
        """Stop, flush and close the file; bounded by ``timeout``."""

    @abstractmethod
    def abort(self) -> None:
        """Stop whatever a start() cut short (by Ctrl-C or an error) left running; never raises."""

    def wait_captured(self, frames: int, timeout: float) -> bool:
        """Wait (bounded) until the backend has written ``frames`` frames."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.captured()
            if done is not None and done >= frames:
                return True
            if not self.alive():
                return False
            time.sleep(0.01)
        return False
