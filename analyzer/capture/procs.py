"""Child processes that cannot outlive us: demo programs and capture tools.

Every child gets ``PR_SET_PDEATHSIG`` (the kernel signals it when its parent dies, even by
SIGKILL) and its own session (a terminal Ctrl-C reaches only us; we stop the children in the
right order: client, server, then the capture so that it flushes). Output is read by threads
into line lists, so waiting for a line has a timeout and pipes never fill up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

PR_SET_PDEATHSIG = 1
_LINE_SPLIT = re.compile(rb"[\r\n]")


def _death_signal_setter(sig: int) -> Callable[[], None]:
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class Child:
    """A started program whose stdout/stderr lines are collected as they arrive.

    Lines are split on ``\\n`` and ``\\r`` (dumpcap rewrites its packet counter with ``\\r``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        stdin: bool = False,
        death_signal: int = signal.SIGKILL,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._cond = threading.Condition()
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._partial: dict[str, str] = {"stdout": "", "stderr": ""}
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_death_signal_setter(death_signal),
            env=env,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
            for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        pending = b""
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            parts = _LINE_SPLIT.split(pending + chunk)
            pending = parts.pop()
            with self._cond:
                self._lines[stream].extend(p.decode(errors="replace") for p in parts if p)
                self._partial[stream] = pending.decode(errors="replace")
                self._cond.notify_all()
        with self._cond:
            if pending:
                self._lines[stream].append(pending.decode(errors="replace"))
            self._partial[stream] = ""
            self._cond.notify_all()
        pipe.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def lines(self, stream: str = "stdout") -> list[str]:
        with self._cond:
            return list(self._lines[stream])

    def partial(self, stream: str = "stdout") -> str:
        """The text after the last line break so far (a counter being rewritten in place)."""
        with self._cond:
            return self._partial[stream]

    def text(self, stream: str = "stdout") -> str:
        return "\n".join(self.lines(stream))

    def wait_line(
        self, predicate: Callable[[str], bool], *, stream: str = "stdout", timeout: float, start: int = 0
    ) -> str | None:
        """The first line (from index ``start``) satisfying ``predicate``; None on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[stream][start:]:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader_alive(stream)):
                    return None
                self._cond.wait(min(left, 0.05))

    def _reader_alive(self, stream: str) -> bool:
        return self._readers[0 if stream == "stdout" else 1].is_alive()

    def send_line(self, text: str) -> None:
        if self.proc.stdin is None:
            raise RuntimeError(f"{self.name} was started without a stdin pipe")
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int | None:
        """Wait for exit; None when still running after ``timeout`` seconds."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join_readers()
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 2.0) -> int:
        """Signal, wait up to ``timeout``, then SIGKILL; always reaps the process."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(timeout=5)
        self._join_readers()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        return self.proc.returncode

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=2)

    def summary(self) -> dict[str, object]:
        return {
            "argv": self.argv,
            "pid": self.proc.pid,
            "exit": self.proc.returncode,
            "stdout": self.lines("stdout"),
            "stderr": self.lines("stderr"),
        }
