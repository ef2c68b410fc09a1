"""Tests of the benchmark capture generator (bench/gen.py, imported by path: bench/ is no package).

They check what the benchmark relies on: same seed -> same bytes, the counts the generator reports
are the counts in the file, every teardown kind is present in a realistic mix, the pcap/pcapng/SLL2
variants carry the same IP packets, and tshark reads the files without errors or malformed packets.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

GEN_PATH = Path(__file__).resolve().parents[1] / "bench" / "gen.py"
SMALL = 2000


def _load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gen", GEN_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    # dataclasses resolves the module through sys.modules while the class body runs.
    sys.modules["bench_gen"] = mod
    spec.loader.exec_module(mod)
    return mod


gen = _load_gen()


def _read(path: Path) -> tuple[int, list[tuple[int, bytes]]]:
    """A minimal independent reader: (link type, [(ts_ns, IP packet bytes)]) of pcap or pcapng."""
    data = path.read_bytes()
    out: list[tuple[int, bytes]] = []
    if data[:4] == b"\xd4\xc3\xb2\xa1":
        linktype = struct.unpack_from("<I", data, 20)[0]
        l2 = {1: 14, 276: 20}[linktype]
        off = 24
        while off < len(data):
            sec, usec, caplen, wirelen = struct.unpack_from("<IIII", data, off)
            assert caplen == wirelen
            out.append((sec * 10**9 + usec * 1000, data[off + 16 + l2 : off + 16 + caplen]))
            off += 16 + caplen
        assert off == len(data)
        return linktype, out
    assert data[:4] == b"\x0a\x0d\x0d\x0a", "neither pcap nor pcapng"
    off = 0
    linktype = -1
    tsresol = 6
    seen: list[int] = []
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        assert blen % 4 == 0 and struct.unpack_from("<I", data, off + blen - 4)[0] == blen
        seen.append(btype)
        if btype == 1:
            linktype = struct.unpack_from("<H", data, off + 8)[0]
            o = off + 16
            while o < off + blen - 4:
                code, olen = struct.unpack_from("<HH", data, o)
                if code == 9:
                    tsresol = data[o + 4]
                o += 4 + olen + (-olen % 4)
        elif btype == 6:
            _, hi, lo, caplen, wirelen = struct.unpack_from("<IIIII", data, off + 8)
            assert caplen == wirelen
            ts = (hi << 32 | lo) * 10 ** (9 - tsresol)
            out.append((ts, data[off + 28 + 14 : off + 28 + caplen]))
        off += blen
    assert off == len(data)
    # dumpcap's layout: one section, one interface, packets, then interface statistics.
    assert seen[0] == 0x0A0D0D0A and seen[1] == 1 and seen[-1] == 5 and set(seen[2:-1]) == {6}
    assert tsresol == 9
    return linktype, out


def _counts(packets: list[tuple[int, bytes]]) -> Counter[str]:
    """Count SYN, SYN-ACK, FIN, RST and UDP from raw IP bytes, checking every length field."""
    c: Counter[str] = Counter()
    last_ts = 0
    for ts, ip in packets:
        assert ts >= last_ts, "timestamps go backwards"
        last_ts = ts
        if ip[0] >> 4 == 4:
            ihl = (ip[0] & 0x0F) * 4
            assert struct.unpack_from("!H", ip, 2)[0] == len(ip)
            proto, l4 = ip[9], ip[ihl:]
        else:
            assert ip[0] >> 4 == 6
            assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40
            proto, l4 = ip[6], ip[40:]
            c["ipv6"] += 1
        if proto == 17:
            assert struct.unpack_from("!H", l4, 4)[0] == len(l4)
            c["udp"] += 1
            continue
        assert proto == 6
        flags = l4[13]
        assert (l4[12] >> 4) * 4 <= len(l4)
        c["tcp"] += 1
        if flags & 0x12 == 0x02:
            c["syn"] += 1
        if flags & 0x12 == 0x12:
            c["synack"] += 1
        if flags & 0x01:
            c["fin"] += 1
        if flags & 0x04:
            c["rst"] += 1
    return c


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    d = tmp_path_factory.mktemp("gen")
    return {
        fmt: (d / f"small.{fmt}", gen.write(d / f"small.{fmt}", fmt, SMALL, seed=5)) for fmt in gen.FORMATS
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for fmt in gen.FORMATS:
        gen.write(tmp_path / "a", fmt, SMALL, seed=11)
        gen.write(tmp_path / "b", fmt, SMALL, seed=11)
        gen.write(tmp_path / "c", fmt, SMALL, seed=12)
        a = (tmp_path / "a").read_bytes()
        assert a == (tmp_path / "b").read_bytes(), fmt
        assert a != (tmp_path / "c").read_bytes(), fmt


def test_manifest_matches_the_file(small: dict[str, tuple[Path, Any]]) -> None:
    path, m = small["pcap"]
    linktype, pkts = _read(path)
    assert linktype == 1
    assert len(pkts) == SMALL == m.packets
    c = _counts(pkts)
    assert (c["syn"], c["synack"], c["fin"], c["rst"]) == (m.syn, m.synack, m.fin, m.rst)
    assert (c["tcp"], c["udp"], c["ipv6"]) == (m.tcp_packets, m.udp_packets, m.ipv6_packets)
    # A handshake per connection, except refused ones; SYN retransmits add SYNs.
    assert m.syn == m.tcp_connections + m.syn_retransmits
    # Connections cut by the end of the capture may lack their SYN-ACK.
    complete = sum(m.kinds.values())
    assert complete - m.kinds["refused"] <= m.synack <= m.tcp_connections - m.kinds["refused"]
    assert complete + m.cut_at_end == m.tcp_connections
    assert 0 < m.udp_exchanges <= m.udp_packets <= 2 * m.udp_exchanges


def test_every_teardown_kind_and_special_case_even_in_a_small_file(
    small: dict[str, tuple[Path, Any]],
) -> None:
    m = small["pcap"][1]
    assert set(m.kinds) == set(gen.KINDS)
    assert m.syn_retransmits >= 1 and m.data_retransmits >= 1 and m.reused_tuples >= 1
    assert m.ipv6_packets > 0 and m.udp_exchanges > 0


def test_mix_follows_the_weights_and_scales(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    m = gen.write(tmp_path / "mix.pcap", "pcap", 40_000, seed=3)
    elapsed = time.perf_counter() - t0
    # About 1 s per 100k packets here; scapy objects would take minutes. Loose for a busy machine.
    assert elapsed < 20
    total = sum(m.kinds.values())
    weights = dict(zip(gen.KINDS, gen.KIND_WEIGHTS, strict=True))
    wsum = sum(weights.values())
    for kind, w in weights.items():
        share = m.kinds[kind] / total
        assert 0.6 * w / wsum < share < 1.4 * w / wsum, (kind, share)
    # The benchmark's calibration: ~73 connections and ~240 bytes per 1,000 packets.
    assert 2600 < m.tcp_connections < 3300
    assert 200 < (tmp_path / "mix.pcap").stat().st_size / m.packets < 280


def test_variants_carry_identical_ip_packets(small: dict[str, tuple[Path, Any]]) -> None:
    eth = _read(small["pcap"][0])
    ng = _read(small["pcapng"][0])
    sll2 = _read(small["sll2"][0])
    assert (eth[0], ng[0], sll2[0]) == (1, 1, 276)
    assert eth[1] == ng[1] == sll2[1]
    assert small["pcap"][1].as_dict() == small["sll2"][1].as_dict() == small["pcapng"][1].as_dict()


def _tshark(*args: str) -> str:
    r = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    assert not errors, errors
    return r.stdout


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "sll2"])
def test_tshark_reads_cleanly_and_counts_agree(fmt: str, small: dict[str, tuple[Path, Any]]) -> None:
    path, m = small[fmt]
    checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ]
    bad = _tshark("-r", str(path), *checks, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert bad == ""
    rows = _tshark(
        "-r", str(path), *checks, "-T", "fields", "-E", "separator=,",
        "-e", "tcp.flags", "-e", "udp.srcport", "-e", "tcp.stream",
        "-e", "tcp.checksum.status", "-e", "udp.checksum.status", "-e", "ip.checksum.status",
    ).splitlines()  # fmt: skip
    assert len(rows) == m.packets
    c: Counter[str] = Counter()
    streams = set()
    for row in rows:
        flags, udp, stream, *status = row.split(",")
        # 1 = good; IPv6 has no header checksum.
        assert {s for s in status if s} == {"1"}, row
        if udp:
            c["udp"] += 1
            continue
        f = int(flags, 16)
        streams.add(stream)
        c["syn"] += f & 0x12 == 0x02
        c["synack"] += f & 0x12 == 0x12
        c["fin"] += bool(f & 0x01)
        c["rst"] += bool(f & 0x04)
    assert (c["syn"], c["synack"], c["fin"], c["rst"], c["udp"]) == (
        m.syn,
        m.synack,
        m.fin,
        m.rst,
        m.udp_packets,
    )
    # Wireshark splits reused 4-tuples into new streams because every new incarnation has a new ISN.
    assert len(streams) == m.tcp_connections
