"""Helper for tests/test_live_flows.py: plain Python socket pairs captured with dumpcap inside a
private network namespace (issue 3's real captures).

    python tests/live_pairs.py CASE OUTDIR      # orchestrate one case, write OUTDIR/CASE.json
    python tests/live_pairs.py --role server|client CASE PORT

The orchestrator enters a new network namespace, starts the server role, the frame witness and
dumpcap, then the client role; after the exchange it waits until no socket is mid-close, copies
/proc/net/tcp and /proc/net/tcp6 verbatim, flushes and stops the capture. Payloads are derived
from the case name, so the test knows byte for byte what each peer sent. Exit 77: no namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

CASES = (
    "server-closes-first",
    "client-closes-first",
    "half-close",
    "simultaneous-close",
    "linger-abort",
    "refused",
    "udp-echo",
    "udp-closed-port",
)
UDP_CASES = ("udp-echo", "udp-closed-port")
NO_SERVER = ("refused", "udp-closed-port")
SKIP_EXIT = 77
SIM_TRIES = 15


def payloads(case: str) -> dict[str, bytes | list[bytes]]:
    """What each peer sends in ``case`` (deterministic)."""
    rnd = random.Random(case)
    if case == "udp-echo":
        return {"datagrams": [rnd.randbytes(rnd.randint(1, 1200)) for _ in range(4)]}
    if case == "udp-closed-port":
        return {"datagrams": [rnd.randbytes(64)]}
    if case == "refused":
        return {"c2s": b"", "s2c": b""}
    return {"c2s": rnd.randbytes(1500), "s2c": rnd.randbytes(5000)}


def digests(case: str) -> dict[str, object]:
    p = payloads(case)
    if "datagrams" in p:
        grams = p["datagrams"]
        assert isinstance(grams, list)
        return {"datagrams": [hashlib.sha256(d).hexdigest() for d in grams]}
    out: dict[str, object] = {}
    for key in ("c2s", "s2c"):
        data = p[key]
        assert isinstance(data, bytes)
        out[key] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _drain(sock: socket.socket) -> bytes:
    buf = b""
    while chunk := sock.recv(65536):
        buf += chunk
    return buf


def _barrier() -> None:
    print("ready", flush=True)
    deadline = int(sys.stdin.readline().split()[1])
    while time.monotonic_ns() < deadline:
        pass


def server_role(case: str, port: int) -> None:
    p = payloads(case)
    if case in UDP_CASES:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))
            print("listening", flush=True)
            for _ in p["datagrams"]:
                data, peer = s.recvfrom(65535)
                s.sendto(data, peer)
        return
    c2s, s2c = p["c2s"], p["s2c"]
    assert isinstance(c2s, bytes) and isinstance(s2c, bytes)
    with socket.socket() as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(1)
        print("listening", flush=True)
        conn, _ = lsock.accept()
        with conn:
            if case == "half-close":
                _drain(conn)  # the client's data, then its FIN
                for i in range(0, len(s2c), 1000):  # keep sending after the client's FIN
                    conn.sendall(s2c[i : i + 1000])
                return
            _recv_exact(conn, len(c2s))
            conn.sendall(s2c)
            if case == "client-closes-first":
                _drain(conn)
            elif case == "linger-abort":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif case == "simultaneous-close":
                _barrier()
                conn.shutdown(socket.SHUT_WR)
                _drain(conn)


def client_role(case: str, port: int) -> None:
    p = payloads(case)
    if case in UDP_CASES:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.connect(("127.0.0.1", port))
            for gram in p["datagrams"]:
                s.send(gram)
                with contextlib.suppress(ConnectionRefusedError):  # udp-closed-port: ICMP unreachable
                    s.recv(65535)
        return
    c2s, s2c = p["c2s"], p["s2c"]
    assert isinstance(c2s, bytes) and isinstance(s2c, bytes)
    with socket.socket() as s:
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return
        s.sendall(c2s)
        if case == "half-close":
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        elif case == "client-closes-first":
            _recv_exact(s, len(s2c))
        elif case == "simultaneous-close":
            _recv_exact(s, len(s2c))
            _barrier()
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        else:
            with contextlib.suppress(ConnectionResetError):  # linger-abort
                _drain(s)


def _spawn(role: str, case: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, case, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _proc_tcp() -> str:
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            out.append(Path(name).read_text())
    return "".join(out)


def _try(case: str, port: int, path: Path) -> dict[str, object]:
    from analyzer import kernel
    from analyzer.capture import filters
    from analyzer.capture.dumpcap import Dumpcap
    from analyzer.capture.witness import Witness

    proto = "udp" if case in UDP_CASES else "tcp"
    server = None
    if case not in NO_SERVER:
        server = _spawn("server", case, port)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
    witness = Witness("lo", proto, [port])
    witness.open()
    cap = Dumpcap("lo", filters.bpf(proto, [port]), path, proto, [port])
    cap.start(timeout=10)
    client = _spawn("client", case, port)
    if case == "simultaneous-close":
        assert server is not None and server.stdout is not None and client.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        assert client.stdout.readline().strip() == "ready"
        for cpu, peer in enumerate((server, client)):
            os.sched_setaffinity(peer.pid, {cpu})
            with contextlib.suppress(OSError):  # root: keep the spinners on time on a busy machine
                os.sched_setscheduler(peer.pid, os.SCHED_FIFO, os.sched_param(1))
        deadline = time.monotonic_ns() + 50_000_000
        for peer in (server, client):
            assert peer.stdin is not None
            peer.stdin.write(f"go {deadline}\n")
            peer.stdin.flush()
    for peer in (client, server):
        if peer is not None:
            peer.wait(timeout=20)
    settled = kernel.wait_settled([port], timeout=3)
    proc_tcp = _proc_tcp()
    frames = witness.close()
    cap.wait_captured(frames, timeout=10)
    stats = cap.stop(timeout=5)
    return {
        "port": port,
        "proc_net_tcp": proc_tcp,
        "settled": not kernel.unsettled(settled.sockets),
        "witness": frames,
        "captured": stats.captured,
        "dropped": stats.dropped,
        "holder": kernel.holder_of(settled.sockets, port),
    }


def orchestrate(case: str, outdir: Path) -> int:
    from analyzer.capture import netns
    from analyzer.errors import CapturePermissionError

    try:
        netns.enter()
    except CapturePermissionError as exc:
        print(exc.message, file=sys.stderr)
        return SKIP_EXIT
    path = outdir / f"{case}.pcapng"
    tries = SIM_TRIES if case == "simultaneous-close" and len(os.sched_getaffinity(0)) >= 2 else 1
    for attempt in range(1, tries + 1):
        port = 5000 + attempt  # a fresh port per try: older tries' TIME_WAIT sockets stay out of view
        result = _try(case, port, path)
        if case != "simultaneous-close" or result["holder"] == "both" or attempt == tries:
            break
        path.unlink()
    result.update(case=case, capture=str(path), attempts=attempt, expected=digests(case))
    (outdir / f"{case}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--role":
        role, case_name, port_text = sys.argv[2:5]
        (server_role if role == "server" else client_role)(case_name, int(port_text))
        sys.exit(0)
    sys.exit(orchestrate(sys.argv[1], Path(sys.argv[2])))
