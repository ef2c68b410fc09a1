"""analyzer.capture pieces that need no live capture: filters (BPF and its Python twin),
pcap/pcapng frame counting, backend choice, child processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from livehelp import alive
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter, wrpcap

from analyzer import capture
from analyzer.capture import filters
from analyzer.capture.pcapfile import count_frames
from analyzer.capture.procs import Child
from analyzer.errors import ToolNotFoundError, UsageError

E = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00")
# (frame, passes "tcp port 13", passes the udp filter for port 7)
FRAMES: list[tuple[Packet, bool, bool]] = [
    (E / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=40000, dport=13, flags="S"), True, False),
    (E / IP() / TCP(sport=13, dport=40000, flags="SA"), True, False),
    (E / IP() / TCP(sport=1313, dport=40000), False, False),
    (E / IPv6(src="::1", dst="::1") / TCP(sport=40000, dport=13) / Raw(b"x"), True, False),
    (E / IP() / UDP(sport=50000, dport=7) / Raw(b"hello"), False, True),
    (E / IPv6() / UDP(sport=7, dport=50000), False, True),
    (E / IP() / UDP(sport=50000, dport=13), False, False),
    # ICMP port unreachable quoting a UDP datagram: kept for UDP scenarios, whatever its port
    (E / IP() / ICMP(type=3, code=3) / IPerror() / UDPerror(sport=50000, dport=9), False, True),
    (E / IP() / ICMP(type=8), False, False),
    (E / IPv6() / ICMPv6DestUnreach(code=4) / IPv6() / UDP(dport=9), False, True),
    (E / IPv6() / ICMPv6EchoRequest(), False, False),
]


@pytest.mark.parametrize(("pkt", "tcp13", "udp7"), FRAMES)
def test_python_filter_matches(pkt: Packet, tcp13: bool, udp7: bool) -> None:
    frame = bytes(pkt)
    assert filters.matches(frame, "tcp", frozenset({13})) is tcp13
    assert filters.matches(frame, "udp", frozenset({7})) is udp7


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump compiles the BPF here")
@pytest.mark.parametrize(("proto", "port", "column"), [("tcp", 13, 1), ("udp", 7, 2)])
def test_bpf_expression_selects_the_same_frames_as_python(
    proto: str, port: int, column: int, tmp_path: Path
) -> None:
    src = tmp_path / "all.pcap"
    wrpcap(str(src), [f[0] for f in FRAMES])
    out = tmp_path / "kept.pcap"
    proc = subprocess.run(
        ["tcpdump", "-r", str(src), "-w", str(out), filters.bpf(proto, [port])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert count_frames(out).frames == sum(1 for f in FRAMES if f[column])


def test_bpf_strings() -> None:
    assert filters.bpf("tcp", [13]) == "tcp port 13"
    assert filters.bpf("tcp", [13, 14]) == "tcp port 13 or tcp port 14"
    assert filters.bpf("udp", [7]).startswith("(udp port 7) or (icmp and icmp[icmptype] == icmp-unreach)")
    with pytest.raises(ValueError):
        filters.bpf("sctp", [1])


def test_count_frames_pcap_pcapng_and_truncation(tmp_path: Path) -> None:
    pkts = [f[0] for f in FRAMES[:5]]
    pcap = tmp_path / "a.pcap"
    wrpcap(str(pcap), pkts)
    counted = count_frames(pcap)
    assert (counted.format, counted.frames, counted.complete) == ("pcap", 5, True)
    ng = tmp_path / "a.pcapng"
    writer = PcapNgWriter(str(ng))
    for p in pkts:
        writer.write(p)
    writer.close()
    counted = count_frames(ng)
    assert (counted.format, counted.frames, counted.complete) == ("pcapng", 5, True)
    for path in (pcap, ng):
        cut = tmp_path / f"cut-{path.name}"
        cut.write_bytes(path.read_bytes()[:-7])
        counted = count_frames(cut)
        assert (counted.frames, counted.complete) == (4, False)
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(ValueError):
        count_frames(junk)


def test_choice_order_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dumpcap", "tcpdump"):
        script = bin_dir / tool
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert capture.choose(None, "netns") == "dumpcap"
    assert capture.choose("tcpdump", "netns") == "tcpdump"
    (bin_dir / "dumpcap").unlink()
    assert capture.choose(None, "netns") == "tcpdump"
    assert capture.choose(None, "userns") == "scapy"  # tcpdump cannot drop privileges there
    with pytest.raises(ToolNotFoundError) as info:
        capture.choose("tcpdump", "userns")
    assert "user namespace" in info.value.message
    with pytest.raises(ToolNotFoundError) as info:
        capture.choose("dumpcap", "netns")
    assert "apt install tshark" in (info.value.hint or "")
    with pytest.raises(UsageError):
        capture.choose("wireshark", "netns")


def test_child_lines_split_on_carriage_returns_and_partial_text() -> None:
    code = "import sys,time; sys.stderr.write('a\\rPackets: 3 '); sys.stderr.flush(); time.sleep(5)"
    child = Child([sys.executable, "-c", code], name="t")
    try:
        assert child.wait_line(lambda line: line == "a", stream="stderr", timeout=10) == "a"
        deadline = time.monotonic() + 10
        while child.partial("stderr") != "Packets: 3 " and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.partial("stderr") == "Packets: 3 "
    finally:
        assert child.stop(signal.SIGTERM, timeout=5) == -signal.SIGTERM
    assert child.lines("stderr") == ["a", "Packets: 3 "]


def test_children_die_with_their_parent(tmp_path: Path) -> None:
    # A parent that starts a Child (a long sleep) and is then SIGKILLed: the kernel must end the
    # child through PR_SET_PDEATHSIG, leaving nothing behind.
    pidfile = tmp_path / "pid"
    code = (
        "import sys,time; from analyzer.capture.procs import Child;"
        f"c = Child(['sleep', '60'], name='s'); open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(pidfile.read_text())
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(pid), "the child outlived its parent"
    finally:
        parent.kill()
