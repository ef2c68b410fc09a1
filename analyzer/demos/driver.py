"""Drive one scenario's exchange under capture; runs inside the worker (and its namespace).

Order, each step bounded: start the server and wait until *its* socket is bound; start the
frame witness and the capture and wait until the capture is ready; run the client (and the GO
barrier for simultaneous close); wait for both programs; wait until the kernel shows no socket
mid-exchange (so the last ACK has left); sample the kernel's sockets; wait until the capture has
written every frame the witness saw; stop the capture. Whatever happens, the ``finally`` stops
client, server and capture in that order, so the file is valid and no process survives.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer import kernel
from analyzer.capture import create, filters
from analyzer.capture.base import Backend
from analyzer.capture.pcapfile import count_frames
from analyzer.capture.procs import Child
from analyzer.capture.witness import Witness
from analyzer.demos.programs import command
from analyzer.demos.scenarios import Scenario
from analyzer.errors import CaptureError, DemoError

Emit = Callable[[dict[str, Any]], None]
_CLIENT_LINE = re.compile(r"^client .*\((\d+)\) connected")
START_TIMEOUT = 5.0
CLIENT_TIMEOUT = 15.0
WATCH_LIMIT = 130.0  # TIME_WAIT is 60 s on Linux; a re-ACKed FIN restarts it once or twice at most


@dataclass
class Job:
    scenario: Scenario
    family: int  # 4 or 6
    impl: str  # python or c
    backend: str  # dumpcap, tcpdump or scapy
    capture_path: Path
    host_loopback: bool = False
    c_bin_dir: Path | None = None
    watch: bool = False
    client_timeout: float = CLIENT_TIMEOUT

    @property
    def host(self) -> str:
        return "::1" if self.family == 6 else "127.0.0.1"

    @property
    def port(self) -> int:
        return self.scenario.server_port(self.host_loopback)


@dataclass
class Exchange:
    """What happened, filled in step by step so an interrupted run still reports how far it got."""

    stage: str = "start"
    programs: dict[str, Any] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    attempts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "programs": self.programs,
            "capture": self.capture,
            "kernel": self.kernel,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "interrupted": self.interrupted,
            "attempts": self.attempts,
            "history": self.history,
        }


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    out.add(int(target[8:-1]))
    return out


def _bound(proto: str, port: int, pid: int) -> bool:
    """True once process ``pid`` owns a listening TCP (or bound UDP) socket on ``port``."""
    files = kernel.PROC_FILES if proto == "tcp" else ("/proc/net/udp", "/proc/net/udp6")
    mine = _socket_inodes(pid)
    return any(
        s.local_port == port and s.inode in mine and (proto == "udp" or s.state == "LISTEN")
        for s in kernel.read_sockets(files)
    )


def _start_server(job: Job, ex: Exchange) -> Child | None:
    spec = job.scenario.server
    if spec is None:
        return None
    argv = [*command(spec[0], job.impl, job.c_bin_dir), job.host, str(job.port), *spec[1:]]
    server = Child(argv, name="server", stdin=job.scenario.barrier)
    ex.programs["server"] = {"argv": argv, "pid": server.pid}
    try:
        _wait_bound(job, server, spec[0])
    except BaseException:
        server.stop(signal.SIGKILL)  # not left running when the wait is cut short
        ex.programs["server"] = server.summary()
        raise
    return server


def _wait_bound(job: Job, server: Child, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not _bound(job.scenario.proto, job.port, server.pid):
        code = server.returncode
        if code is not None:
            server.wait(1)
            said = server.text("stderr").strip() or f"exit code {code}"
            if code == 3 and "in use" in said:
                raise DemoError(
                    f"{job.scenario.proto.upper()} port {job.port} on {job.host} is in use: {said}",
                    hint="stop the program using that port"
                    + (", or run without --host-loopback" if job.host_loopback else ""),
                )
            hint = f"try it alone: analyzer demo {name} {job.host} {job.port}"
            raise DemoError(f"the {name} did not start: {said}", hint=hint)
        if time.monotonic() > deadline:
            raise DemoError(
                f"the {name} did not bind {job.host} port {job.port} within {START_TIMEOUT:g} s",
                hint="check the machine's load, then run again",
            )
        time.sleep(0.003)


def _start_capture(job: Job, ex: Exchange) -> tuple[Backend, Witness | None]:
    ports = [job.port]
    bpf = filters.bpf(job.scenario.proto, ports)
    witness: Witness | None = Witness("lo", job.scenario.proto, ports)
    if witness is not None and not witness.open():
        witness = None  # no CAP_NET_RAW for us (host mode with a capable dumpcap): wait by time
    backend = create(
        job.backend, iface="lo", bpf=bpf, path=job.capture_path, proto=job.scenario.proto, ports=ports
    )
    ex.capture = {"backend": job.backend, "path": str(job.capture_path), "bpf": bpf}
    try:
        backend.start(timeout=10.0)
    except BaseException:
        backend.abort()
        if witness is not None:
            witness.close()
        raise
    ex.capture["pid"] = backend.pid
    return backend, witness


def _barrier(server: Child | None, client: Child) -> None:
    """Release both peers of a simultaneous close at the same CLOCK_MONOTONIC instant."""
    peers = [p for p in (server, client) if p is not None]
    cpus = sorted(os.sched_getaffinity(0))
    for i, peer in enumerate(peers):
        if peer.wait_line(lambda line: line == "ready", timeout=START_TIMEOUT) is None:
            raise DemoError(f"the {peer.name} never reached the close barrier: {peer.text('stderr')}")
        if len(cpus) >= len(peers):
            # Two spinners on one CPU take turns, and the FINs no longer cross: one CPU each.
            with contextlib.suppress(OSError):
                os.sched_setaffinity(peer.pid, {cpus[i]})
        # On a busy machine a spinner is preempted at the wrong microsecond; real-time priority
        # (root only; the spin lasts 50 ms, then the peer blocks in read) keeps both on time.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(peer.pid, os.SCHED_FIFO, os.sched_param(1))
    # 50 ms: enough for us to reach both peers with the GO line even when we are preempted.
    deadline = time.monotonic_ns() + 50_000_000
    for peer in peers:
        peer.send_line(f"go {deadline}")


def _run_client(job: Job, ex: Exchange, server: Child | None) -> Child:
    spec = job.scenario.client
    argv = [*command(spec[0], job.impl, job.c_bin_dir), job.host, str(job.port), *spec[1:]]
    client = Child(argv, name="client", stdin=job.scenario.barrier)
    ex.programs["client"] = {"argv": argv, "pid": client.pid}
    try:
        if job.scenario.barrier:
            _barrier(server, client)
        finished = client.wait(job.client_timeout) is not None
    except BaseException:
        client.stop(signal.SIGKILL)  # not left running when the wait is cut short
        ex.programs["client"] = client.summary()
        raise
    if not finished:
        client.stop(signal.SIGKILL)
        ex.programs["client"] = client.summary()
        raise DemoError(
            f"the {spec[0]} timed out: still running after {job.client_timeout:g} s",
            hint="the server never answered or never closed; try the pair alone with analyzer demo",
        )
    return client


def _finish_programs(job: Job, ex: Exchange, server: Child | None, client: Child) -> list[int]:
    ex.programs["client"] = client.summary()
    if client.returncode not in job.scenario.client_exits:
        said = client.text("stderr").strip() or f"exit code {client.returncode}"
        raise DemoError(f"the {job.scenario.client[0]} failed: {said}")
    ports: list[int] = []
    if server is not None:
        if server.wait(START_TIMEOUT) is None:
            server.stop(signal.SIGTERM)
        ex.programs["server"] = server.summary()
        for line in server.lines("stdout"):
            if m := _CLIENT_LINE.match(line):
                ports.append(int(m.group(1)))
        if server.returncode not in (0, -signal.SIGTERM):
            said = server.text("stderr").strip() or f"exit code {server.returncode}"
            raise DemoError(f"the {job.scenario.server and job.scenario.server[0]} failed: {said}")
    return ports


def _flush(backend: Backend, witness: Witness | None, ex: Exchange) -> None:
    """Wait until the backend has written every frame the witness saw (or its settle time)."""
    if witness is None:
        time.sleep(backend.settle_s)
        return
    frames, _ = witness.snapshot()
    ex.capture["witness"] = frames
    if not backend.wait_captured(frames, timeout=10.0):
        ex.capture["flush_timeout"] = True  # the frames check will fail and say how many are missing


def _watch(job: Job, ex: Exchange, client_ports: list[int], emit: Emit) -> None:
    """Sample until the kernel releases the connection's TIME_WAIT sockets; bounded."""
    t0 = time.time()
    last_seen = t0
    while time.time() - t0 < WATCH_LIMIT:
        snap = kernel.sample([job.port])
        held = [
            s
            for s in kernel.time_wait(snap.sockets)
            if not client_ports or {s.local_port, s.remote_port} & set(client_ports)
        ]
        if not held:
            ex.kernel["watch"] = {"released_ts": snap.ts, "last_seen_ts": last_seen, "interval_s": 0.25}
            return
        last_seen = snap.ts
        emit({"event": "progress", "kind": "watch", "left_s": max(s.timer_s for s in held), "ts": snap.ts})
        time.sleep(0.25)
    ex.kernel["watch"] = {"released_ts": None, "last_seen_ts": last_seen, "interval_s": 0.25}


def run(job: Job, ex: Exchange, emit: Emit) -> None:
    """Run the exchange, recording into ``ex``; raise DemoError/CaptureError on faults (after
    cleaning up, so ``ex`` still says how far it got).

    A scenario that needs a particular kernel outcome (the FINs of a simultaneous close must
    truly cross) is tried again, a bounded number of times, in the same namespace; a failed try
    is dropped as soon as the kernel sample shows it, without waiting for the capture to flush.
    """
    for attempt in range(1, job.scenario.attempts + 1):
        ex.attempts = attempt
        if not _attempt(job, ex, emit, last=attempt == job.scenario.attempts):
            return
        ex.history.append({"attempt": attempt, "kernel_holder": ex.kernel.get("holder")})
        emit({"event": "progress", "kind": "retry", "attempt": attempt, "holder": ex.kernel.get("holder")})


def _attempt(job: Job, ex: Exchange, emit: Emit, *, last: bool) -> bool:
    """One try; True when it must be repeated (its capture is already discarded)."""
    t0 = time.monotonic()
    server: Child | None = None
    client: Child | None = None
    backend: Backend | None = None
    witness: Witness | None = None
    stopped = retry = False
    ex.capture, ex.kernel, ex.programs, ex.timings = {}, {}, {}, {}
    try:
        ex.stage = "server"
        server = _start_server(job, ex)
        ex.timings["server_ready"] = time.monotonic() - t0
        ex.stage = "capture"
        backend, witness = _start_capture(job, ex)
        ex.timings["capture_ready"] = time.monotonic() - t0
        ex.stage = "exchange"
        client = _run_client(job, ex, server)
        client_ports = _finish_programs(job, ex, server, client)
        ex.timings["exchange_done"] = time.monotonic() - t0
        ex.stage = "settle"
        if job.scenario.proto == "tcp":
            _sample_kernel(job, ex, client_ports)
        ex.timings["kernel_sampled"] = time.monotonic() - t0
        wanted = job.scenario.kernel_holder
        if wanted is not None and ex.kernel.get("holder") != wanted and not last:
            retry = True
            return True
        ex.stage = "flush"
        _flush(backend, witness, ex)
        ex.capture.update(backend.stop(timeout=5.0).to_dict())
        stopped = True
        ex.timings["capture_stopped"] = time.monotonic() - t0
        if job.watch and job.scenario.proto == "tcp":
            ex.stage = "watch"
            _watch(job, ex, client_ports, emit)
        ex.stage = "done"
    except KeyboardInterrupt:
        ex.interrupted = True
    finally:
        # Ignore a second Ctrl-C while cleaning up: every step below is bounded.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _cleanup(ex, server, client, backend, witness, stopped, discard=retry)
        finally:
            signal.signal(signal.SIGINT, previous)
    return False


def _sample_kernel(job: Job, ex: Exchange, client_ports: list[int]) -> None:
    settled = kernel.wait_settled([job.port], timeout=3.0)
    client_port = client_ports[-1] if client_ports else None
    ex.kernel = {
        "settled": not kernel.unsettled(settled.sockets),
        "sample": settled.to_dict(),
        "client_ports": client_ports,
        "holder": kernel.holder_of(settled.sockets, job.port, client_port),
    }


def _cleanup(
    ex: Exchange,
    server: Child | None,
    client: Child | None,
    backend: Backend | None,
    witness: Witness | None,
    stopped: bool,
    *,
    discard: bool = False,
) -> None:
    for name, child, sig in (("client", client, signal.SIGKILL), ("server", server, signal.SIGTERM)):
        if child is not None and child.returncode is None:
            child.stop(sig, timeout=2.0)
            ex.programs[name] = child.summary()
    if backend is not None and not stopped:
        with contextlib.suppress(CaptureError):
            ex.capture.update(backend.stop(timeout=5.0).to_dict())
    if witness is not None:
        ex.capture["witness"] = witness.close()
        ex.capture["witness_dropped"] = witness.dropped
    path = Path(ex.capture["path"]) if "path" in ex.capture else None
    if path is not None and path.exists():
        try:
            counted = count_frames(path)
            ex.capture.update(frames_in_file=counted.frames, complete=counted.complete)
        except (OSError, ValueError):
            ex.capture.update(frames_in_file=0, complete=False)
        if discard or not ex.capture["complete"]:
            path.unlink()  # a half-written capture is worse than none; a failed try is noise
            ex.capture["removed"] = True
