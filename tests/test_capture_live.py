"""Each capture backend on a real exchange inside a private network namespace (via the worker):
ready before traffic, every frame the witness saw is in the file, no drops, and for scapy no
duplicate frame from loopback's PACKET_OUTGOING copies. Also: faults leave nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from livehelp import alive, job, leftovers, need_namespace, pids_of, run_worker
from scapy.layers.inet import ICMP, UDP, UDPerror
from scapy.utils import rdpcap

from analyzer.capture.pcapfile import count_frames
from analyzer.demos.scenarios import Scenario

pytestmark = pytest.mark.live

BACKENDS = [
    pytest.param("dumpcap", marks=pytest.mark.skipif(not shutil.which("dumpcap"), reason="no dumpcap")),
    pytest.param("tcpdump", marks=pytest.mark.skipif(not shutil.which("tcpdump"), reason="no tcpdump")),
    "scapy",
]
# SYN, SYN-ACK, ACK, data, ACK, FIN, ACK, FIN, ACK: 8 or 9 frames depending on ACK piggybacking
DAYTIME_FRAMES = (8, 9)


def assert_nothing_left(result: dict[str, object]) -> None:
    for pid in pids_of(result):  # type: ignore[arg-type]
        assert not alive(pid), f"process {pid} outlived the worker"
    assert leftovers() == []  # and so no private namespace either: it lives as long as its processes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", [4, 6])
def test_backend_captures_every_frame_once(backend: str, family: int, tmp_path: Path) -> None:
    if backend == "tcpdump" and (problem := _userns_only()):
        pytest.skip(problem)
    need_namespace()
    path = tmp_path / f"daytime.{'pcap' if backend == 'tcpdump' else 'pcapng'}"
    result = run_worker(job("daytime", backend, path, family=family))
    assert result["error"] is None, result["error"]
    cap = result["capture"]
    assert cap["backend"] == backend
    assert cap["dropped"] == 0
    assert cap["witness"] in DAYTIME_FRAMES
    assert cap["frames_in_file"] == cap["witness"] == cap["captured"]
    assert cap["complete"] is True
    assert count_frames(path).frames == cap["witness"]
    frames = [bytes(p) for p in rdpcap(str(path))]
    # On lo each frame passes the packet tap twice; a duplicate would be byte-identical.
    assert len(set(frames)) == len(frames), "a frame appears twice"
    assert result["kernel"]["holder"] == "server"
    assert_nothing_left(result)


def _userns_only() -> str | None:
    import os

    return None if os.geteuid() == 0 else "tcpdump cannot run in an unprivileged user namespace"


def test_scapy_without_the_outgoing_filter_would_duplicate(tmp_path: Path) -> None:
    # The reason for our listen socket: scapy's stock L2ListenSocket sees both copies on lo.
    need_namespace()
    result = run_worker(job("daytime", "scapy", tmp_path / "d.pcapng"))
    assert result["capture"]["received"] >= 2 * result["capture"]["captured"]


def test_capture_backend_dying_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    need_namespace()
    fake = tmp_path / "bin"
    fake.mkdir()
    # Says it is ready, writes a few bytes of a file, then dies like a capture that lost its device.
    (fake / "dumpcap").write_text(
        "#!/bin/sh\n"
        'for a; do case "$prev" in -w) out="$a";; esac; prev="$a"; done\n'
        'echo "Capturing on \'lo\'" >&2; echo "File: $out" >&2\n'
        'printf "\\012\\015\\015\\012junk" > "$out"\n'
        "sleep 0.2; echo 'dumpcap: The capture device went away' >&2; exit 2\n"
    )
    (fake / "dumpcap").chmod(0o755)
    import os

    path = tmp_path / "daytime.pcapng"
    result = run_worker(job("daytime", "dumpcap", path), path_env=f"{fake}:{os.environ['PATH']}")
    assert result["error"]["class"] == "CaptureError"
    assert (
        result["error"]["message"] == "dumpcap stopped during the run: dumpcap: The capture device went away"
    )
    assert not path.exists(), "the half-written capture was left behind"
    assert result["capture"]["removed"] is True
    assert_nothing_left(result)


def test_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    need_namespace()
    broken = Scenario(
        "broken", "server with a bad option", "tcp", 13, client=("tcp-daytime-client",),
        server=("tcp-daytime-server", "--mode", "nonsense"),
    )  # fmt: skip
    result = run_worker(job(broken, "scapy", tmp_path / "b.pcapng"))
    assert result["error"]["class"] == "DemoError"
    assert result["error"]["message"].startswith(
        "the tcp-daytime-server did not start: usage: tcp-daytime-server"
    )
    assert "invalid choice: 'nonsense'" in result["error"]["message"]
    assert result["stage"] == "server"
    assert_nothing_left(result)


@pytest.mark.parametrize(("client_timeout", "hard_limit", "message"), [
    ("0.5", 15.0, "the tcp-daytime-client failed: error: timed out after 0.5 s talking to 127.0.0.1 port 13"),
    ("30", 1.0, "the tcp-daytime-client timed out: still running after 1 s"),
])  # fmt: skip
def test_client_timeout_is_reported_and_the_capture_kept_valid(
    client_timeout: str, hard_limit: float, message: str, tmp_path: Path
) -> None:
    need_namespace()
    # Both wait for the other's FIN: the server (wait-eof) and the client (read-eof) deadlock.
    stuck = Scenario(
        "stuck", "deadlock", "tcp", 13, client=("tcp-daytime-client", "--timeout", client_timeout),
        server=("tcp-daytime-server", "-n", "1", "--mode", "wait-eof"),
    )  # fmt: skip
    path = tmp_path / "stuck.pcapng"
    result = run_worker(job(stuck, "scapy", path, client_timeout=hard_limit))
    assert result["error"] == {"class": "DemoError", "message": message, "hint": result["error"]["hint"]}
    assert result["capture"]["complete"] is True  # stopped cleanly, so the file is valid
    assert count_frames(path).frames >= 4  # at least the handshake and the time line
    assert_nothing_left(result)


PYTHON_FILTER_PROBE = """
import socket, sys
from pathlib import Path
from analyzer.capture import netns
netns.enter()
import scapy.arch.linux
def no_libpcap(*args, **kwargs):
    raise ImportError("libpcap is not available. Cannot compile filter !")
scapy.arch.linux.compile_filter = no_libpcap  # as on a machine without libpcap
from analyzer.capture.sniffer import ScapySniffer
from analyzer.capture import filters
path = Path(sys.argv[1])
cap = ScapySniffer("lo", filters.bpf("udp", [7]), path, "udp", [7])
cap.start(timeout=10)
UDP = (socket.AF_INET, socket.SOCK_DGRAM)
with socket.socket(*UDP) as rx, socket.socket(*UDP) as s:
    rx.bind(("127.0.0.1", 7))
    s.sendto(b"kept", ("127.0.0.1", 7))       # matches: udp port 7
    s.sendto(b"dropped", ("127.0.0.1", 8))    # udp port 8: not kept, but its ICMP unreachable is
    s.sendto(b"dropped", ("127.0.0.1", 9999)) # the same
cap.wait_captured(4, timeout=5)
stats = cap.stop(timeout=5)
print(cap.python_filter, stats.captured)
"""


def test_scapy_filters_in_python_without_libpcap(tmp_path: Path) -> None:
    need_namespace()
    import subprocess
    import sys

    from livehelp import env

    path = tmp_path / "f.pcapng"
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_FILTER_PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "3"]  # the port-7 datagram and two ICMP unreachables
    frames = rdpcap(str(path))
    ports = [(p.haslayer(ICMP), (p[UDPerror] if p.haslayer(ICMP) else p[UDP]).dport) for p in frames]
    assert ports == [(False, 7), (True, 8), (True, 9999)]
