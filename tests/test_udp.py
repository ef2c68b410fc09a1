"""UDP conversations (analyzer.flows.udp) on crafted captures read through ``read_packets``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror, fragment
from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import RawPcapWriter

import analyzer
from analyzer.decode.source import CaptureBytes
from analyzer.flows.udp import UDP_TABLE_COLUMNS, UdpFlows, _pair_sequential, analyze_udp

BASE_US = 1_700_000_000 * 1_000_000
CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 7)
C6, S6 = ("2001:db8::1", 41000), ("2001:db8::2", 7)


class Timeline:
    """Packets with exact microsecond times (so latencies are exact)."""

    def __init__(self) -> None:
        self.us = BASE_US
        self.frames: list[tuple[int, bytes, int]] = []  # (time in us, frame bytes, wire length)

    def add(self, pkt: Packet | bytes, after_us: int = 1000, *, snap: int | None = None) -> None:
        self.us += after_us
        data = bytes(pkt)
        self.frames.append((self.us, data[:snap] if snap else data, len(data)))

    def write(self, path: Path) -> Path:
        with RawPcapWriter(str(path), linktype=1, snaplen=65535) as w:
            w.write_header(None)
            for us, data, wire in self.frames:
                w.write_packet(data, sec=us // 1_000_000, usec=us % 1_000_000, caplen=len(data), wirelen=wire)
        return path


def udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> Packet:
    ip: Packet = IPv6(src=src[0], dst=dst[0]) if ":" in src[0] else IP(src=src[0], dst=dst[0])
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / ip
        / UDP(sport=src[1], dport=dst[1])
        / Raw(payload)
    )


def analyze(tl: Timeline, tmp_path: Path) -> UdpFlows:
    path = tl.write(tmp_path / "udp.pcap")
    packets = analyzer.read_packets(path)
    with CaptureBytes(path) as payloads:
        return analyze_udp(packets, payloads)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def echo_timeline(n: int, *, lose: Sequence[int] = (), c: Any = CLIENT, s: Any = SERVER) -> Timeline:
    """A lock-step echo client: request i, then (unless lost) the same bytes back 250 us later."""
    tl = Timeline()
    for i in range(n):
        tl.add(udp(c, s, f"hello {i}\n".encode()), 10_000)
        if i not in lose:
            tl.add(udp(s, c, f"hello {i}\n".encode()), 250)
    return tl


def pairs_of(rec: dict[str, Any]) -> list[tuple[int, int]]:
    return [(p["request"], p["reply"]) for p in rec["pairs"]]


# -- echo -------------------------------------------------------------------------------------


def test_echo_every_reply_equals_its_request(tmp_path: Path) -> None:
    # Five lock-step exchanges, each reply the request's bytes: echo, 5 exchanges, exact latencies.
    flows = analyze(echo_timeline(5), tmp_path)
    assert len(flows.records) == 1
    rec = flows.records[0]
    assert rec["client"] == {"ip": "10.0.0.1", "port": 40000}
    assert rec["server"] == {"ip": "10.0.0.2", "port": 7}
    assert rec["exchanges"] == 5
    assert rec["echo"] is True
    assert pairs_of(rec) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [p["latency_ms"] for p in rec["pairs"]] == [0.25] * 5
    assert [d["dir"] for d in rec["datagrams"]] == ["c2s", "s2c"] * 5
    first = rec["datagrams"][0]
    assert first["bytes"] == 8
    assert first["sha256"] == sha(b"hello 0\n")
    assert first["preview"].startswith("hello 0")
    assert "\n" not in first["preview"]
    assert first["ts"] == pytest.approx((BASE_US + 10_000) / 1e6, abs=1e-6)
    assert rec["icmp_unreachable"] == []

    row = flows.table.iloc[0]
    assert list(flows.table.columns) == list(UDP_TABLE_COLUMNS)
    assert (row["datagrams"], row["c2s_datagrams"], row["s2c_datagrams"]) == (10, 5, 5)
    assert (row["c2s_bytes"], row["s2c_bytes"]) == (40, 40)
    assert row["echo"]
    assert row["latency_min_ms"] == row["latency_max_ms"] == 0.25
    assert (row["zeek_conn_state"], row["zeek_history"]) == ("SF", "Dd")


def test_echo_with_a_lost_reply(tmp_path: Path) -> None:
    # Request 2 gets no reply; the client then moves on: not an echo, 4 exchanges, and the reply to
    # request 3 pairs with request 3 (not with the unanswered request 2).
    flows = analyze(echo_timeline(5, lose=[2]), tmp_path)
    rec = flows.records[0]
    assert rec["exchanges"] == 4
    assert rec["echo"] is False
    assert pairs_of(rec) == [(0, 1), (2, 3), (5, 6), (7, 8)]
    assert [d["dir"] for d in rec["datagrams"]][4:7] == ["c2s", "c2s", "s2c"]
    assert flows.table.iloc[0]["exchanges"] == 4
    assert not flows.table.iloc[0]["echo"]


def test_pipelined_echo_pairs_by_content(tmp_path: Path) -> None:
    # All requests sent before any reply (pipelined); reply order shuffled and one reply lost:
    # each reply still pairs with the request it repeats.
    tl = Timeline()
    for i in range(4):
        tl.add(udp(CLIENT, SERVER, f"req {i}".encode()), 100)
    for i in (1, 0, 3):
        tl.add(udp(SERVER, CLIENT, f"req {i}".encode()), 100)
    rec = analyze(tl, tmp_path).records[0]
    assert pairs_of(rec) == [(1, 4), (0, 5), (3, 6)]
    assert rec["exchanges"] == 3
    assert rec["echo"] is False


def test_pipelined_echo_without_loss_is_an_echo(tmp_path: Path) -> None:
    # The irregular path (two requests in a row) still recognises a complete echo.
    tl = Timeline()
    for i in range(3):
        tl.add(udp(CLIENT, SERVER, f"r{i}".encode()), 100)
    for i in range(3):
        tl.add(udp(SERVER, CLIENT, f"r{i}".encode()), 100)
    rec = analyze(tl, tmp_path).records[0]
    assert rec["echo"] is True
    assert pairs_of(rec) == [(0, 3), (1, 4), (2, 5)]
    assert [p["latency_ms"] for p in rec["pairs"]] == [0.3, 0.3, 0.3]


def test_request_response_that_is_not_an_echo(tmp_path: Path) -> None:
    # A DNS-like exchange: answers differ from queries; a query that times out is left unanswered
    # and the next answer pairs with the latest query.
    tl = Timeline()
    tl.add(udp(("10.0.0.1", 5353), ("10.0.0.53", 53), b"query-a"))
    tl.add(udp(("10.0.0.53", 53), ("10.0.0.1", 5353), b"answer-a with more bytes"), 400)
    tl.add(udp(("10.0.0.1", 5353), ("10.0.0.53", 53), b"query-b"))
    tl.add(udp(("10.0.0.1", 5353), ("10.0.0.53", 53), b"query-c"), 5000)
    tl.add(udp(("10.0.0.53", 53), ("10.0.0.1", 5353), b"answer-c"), 700)
    flows = analyze(tl, tmp_path)
    rec = flows.records[0]
    assert pairs_of(rec) == [(0, 1), (3, 4)]
    assert [p["latency_ms"] for p in rec["pairs"]] == [0.4, 0.7]
    assert rec["exchanges"] == 2
    assert rec["echo"] is False
    row = flows.table.iloc[0]
    assert (row["c2s_bytes"], row["s2c_bytes"]) == (21, 32)
    assert (row["latency_min_ms"], row["latency_max_ms"]) == (0.4, 0.7)


def test_reply_differing_from_request_is_not_an_echo(tmp_path: Path) -> None:
    # Every request is answered, but one reply changed a byte.
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b"abc"))
    tl.add(udp(SERVER, CLIENT, b"abc"))
    tl.add(udp(CLIENT, SERVER, b"xyz"))
    tl.add(udp(SERVER, CLIENT, b"xyZ"))
    rec = analyze(tl, tmp_path).records[0]
    assert rec["exchanges"] == 2
    assert rec["echo"] is False


def test_one_way_traffic_and_empty_datagrams(tmp_path: Path) -> None:
    # Only the client sends (one datagram empty): no exchanges, Zeek S0 "D".
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b""))
    tl.add(udp(CLIENT, SERVER, b"x" * 3))
    flows = analyze(tl, tmp_path)
    rec = flows.records[0]
    assert [d["bytes"] for d in rec["datagrams"]] == [0, 3]
    assert rec["datagrams"][0]["sha256"] == sha(b"")
    assert rec["datagrams"][0]["preview"] == ""
    assert (rec["exchanges"], rec["echo"], rec["pairs"]) == (0, False, [])
    row = flows.table.iloc[0]
    assert (row["zeek_conn_state"], row["zeek_history"]) == ("S0", "D")
    assert np.isnan(row["latency_min_ms"])


# -- ICMP -------------------------------------------------------------------------------------


def icmp_port_unreachable(quoted: Packet, sender: str) -> Packet:
    inner = bytes(quoted[IP])
    # RFC 792: the quoted IP header plus the first 8 bytes of its payload (the UDP header).
    return Ether() / IP(src=sender, dst=quoted[IP].src) / ICMP(type=3, code=3) / IPerror(inner[:28])


def test_icmp_port_unreachable_matched_to_each_datagram(tmp_path: Path) -> None:
    # Two datagrams to a closed port, each answered by the server host's ICMP port unreachable.
    tl = Timeline()
    closed = ("10.0.0.2", 9)
    first, second = udp(CLIENT, closed, b"anyone?"), udp(CLIENT, closed, b"still?")
    tl.add(first)
    tl.add(icmp_port_unreachable(first, "10.0.0.2"), 30)
    tl.add(second, 2000)
    tl.add(icmp_port_unreachable(second, "10.0.0.2"), 40)
    flows = analyze(tl, tmp_path)
    assert len(flows.records) == 1
    rec = flows.records[0]
    assert [d["dir"] for d in rec["datagrams"]] == ["c2s", "c2s"]
    errors = rec["icmp_unreachable"]
    assert [(e["frame"], e["type"], e["code"], e["from"], e["datagram"]) for e in errors] == [
        (2, 3, 3, "10.0.0.2", 0),
        (4, 3, 3, "10.0.0.2", 1),
    ]
    assert errors[0]["ts"] == pytest.approx((BASE_US + 1030) / 1e6, abs=1e-6)
    assert rec["exchanges"] == 0
    row = flows.table.iloc[0]
    assert row["icmp_unreachable"] == 2
    assert row["zeek_conn_state"] == "S0"


def test_icmpv6_port_unreachable(tmp_path: Path) -> None:
    # ICMPv6 type 1 code 4 quoting the IPv6 datagram (as much as fits, like Linux).
    tl = Timeline()
    probe = udp(C6, ("2001:db8::2", 33434), b"v6 probe")
    tl.add(probe)
    tl.add(
        Ether()
        / IPv6(src="2001:db8::2", dst=C6[0])
        / ICMPv6DestUnreach(code=4)
        / IPerror6(bytes(probe[IPv6]))
    )
    rec = analyze(tl, tmp_path).records[0]
    assert rec["client"] == {"ip": "2001:db8::1", "port": 41000}
    assert rec["server"] == {"ip": "2001:db8::2", "port": 33434}
    assert [(e["type"], e["code"], e["from"], e["datagram"]) for e in rec["icmp_unreachable"]] == [
        (1, 4, "2001:db8::2", 0)
    ]


def test_icmp_for_a_server_datagram_and_unrelated_errors(tmp_path: Path) -> None:
    # The server replies after the client socket closed: the client host's ICMP quotes the
    # server's datagram (direction s2c). Errors quoting TCP, or a conversation not in the capture,
    # or other ICMP types (time exceeded) are not attached to any UDP conversation.
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b"ping"))
    late_reply = udp(SERVER, CLIENT, b"ping")
    tl.add(late_reply, 900)
    tl.add(icmp_port_unreachable(late_reply, CLIENT[0]), 20)
    tcp_syn = IP(src=CLIENT[0], dst=SERVER[0]) / TCP(sport=40001, dport=7, flags="S")
    tl.add(Ether() / IP(src=SERVER[0], dst=CLIENT[0]) / ICMP(type=3, code=3) / IPerror(bytes(tcp_syn)[:28]))
    stranger = IP(src=CLIENT[0], dst="10.9.9.9") / UDP(sport=1111, dport=2222)
    tl.add(Ether() / IP(src="10.9.9.9", dst=CLIENT[0]) / ICMP(type=3, code=3) / IPerror(bytes(stranger)))
    tl.add(
        Ether()
        / IP(src="10.0.0.254", dst=CLIENT[0])
        / ICMP(type=11, code=0)
        / IPerror(src=CLIENT[0], dst=SERVER[0])
        / UDPerror(sport=CLIENT[1], dport=SERVER[1])
    )
    flows = analyze(tl, tmp_path)
    assert len(flows.records) == 1
    errors = flows.records[0]["icmp_unreachable"]
    assert [(e["from"], e["datagram"]) for e in errors] == [(CLIENT[0], 1)]
    assert flows.records[0]["datagrams"][1]["dir"] == "s2c"


# -- conversations ----------------------------------------------------------------------------


def test_several_conversations_numbered_by_first_datagram(tmp_path: Path) -> None:
    # Three interleaved conversations, one IPv6; in one the first sender uses port 53 (it is still
    # the client: first sender), and a conversation reusing the client's port with another server
    # is a different conversation.
    tl = Timeline()
    a, b, dns = ("10.0.0.1", 5000), ("10.0.0.9", 6000), ("10.0.0.53", 53)
    tl.add(udp(dns, a, b"unsolicited"))  # conversation 0: client is the port-53 side
    tl.add(udp(C6, S6, b"six"))  # conversation 1
    tl.add(udp(a, b, b"to b"))  # conversation 2
    tl.add(udp(a, dns, b"back to dns"))  # conversation 0 again, from its server
    tl.add(udp(S6, C6, b"six"))  # conversation 1 reply
    tl.add(udp(b, a, b"from b"))  # conversation 2 reply
    flows = analyze(tl, tmp_path)
    recs = flows.records
    assert [r["id"] for r in recs] == [0, 1, 2]
    assert [(r["client"]["ip"], r["client"]["port"]) for r in recs] == [dns, C6, a]
    assert [(r["server"]["ip"], r["server"]["port"]) for r in recs] == [a, S6, b]
    assert [[d["dir"] for d in r["datagrams"]] for r in recs] == [["c2s", "s2c"]] * 3
    assert [r["echo"] for r in recs] == [False, True, False]
    assert flows.table["id"].tolist() == [0, 1, 2]
    assert flows.table["client_ip"].tolist() == ["10.0.0.53", "2001:db8::1", "10.0.0.1"]
    assert flows.table["server_port"].tolist() == [5000, 7, 6000]


def test_ipv6_echo(tmp_path: Path) -> None:
    # The echo over IPv6, one reply lost.
    rec = analyze(echo_timeline(3, lose=[1], c=C6, s=S6), tmp_path).records[0]
    assert rec["client"]["ip"] == "2001:db8::1"
    assert (rec["exchanges"], rec["echo"]) == (2, False)
    assert pairs_of(rec) == [(0, 1), (3, 4)]


def test_payload_cut_by_snaplen_has_no_digest_and_no_echo(tmp_path: Path) -> None:
    # A 60-byte snap length keeps the headers and 4 payload bytes: the digest is unknown (null),
    # the preview shows what was captured, and equal lengths alone do not make an echo.
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b"0123456789" * 3), snap=60)
    tl.add(udp(SERVER, CLIENT, b"0123456789" * 3), snap=60)
    rec = analyze(tl, tmp_path).records[0]
    assert [d["bytes"] for d in rec["datagrams"]] == [30, 30]
    assert [d["sha256"] for d in rec["datagrams"]] == [None, None]
    assert rec["datagrams"][0]["preview"].startswith("0123")
    assert rec["exchanges"] == 1
    assert rec["echo"] is False


def test_fragmented_datagram_counts_once(tmp_path: Path) -> None:
    # A 2000-byte datagram in three IP fragments: only the first fragment has the UDP header, so
    # the conversation holds one datagram of 2000 bytes whose bytes are not all in that frame.
    tl = Timeline()
    for frag in fragment(
        IP(src=CLIENT[0], dst=SERVER[0]) / UDP(sport=CLIENT[1], dport=SERVER[1]) / (b"f" * 2000), 800
    ):
        tl.add(Ether() / frag, 10)
    rec = analyze(tl, tmp_path).records[0]
    assert [(d["bytes"], d["sha256"]) for d in rec["datagrams"]] == [(2000, None)]


def test_no_udp(tmp_path: Path) -> None:
    tl = Timeline()
    tl.add(Ether() / IP(src=CLIENT[0], dst=SERVER[0]) / TCP(sport=1, dport=2, flags="S"))
    flows = analyze(tl, tmp_path)
    assert flows.records == []
    assert list(flows.table.columns) == list(UDP_TABLE_COLUMNS)
    assert len(flows.table) == 0


def test_without_payload_bytes(tmp_path: Path) -> None:
    # No byte source: everything but digests and previews is still known.
    path = echo_timeline(2).write(tmp_path / "e.pcap")
    flows = analyze_udp(analyzer.read_packets(path), None)
    rec = flows.records[0]
    assert rec["exchanges"] == 2
    assert {d["sha256"] for d in rec["datagrams"]} == {None}
    assert rec["echo"] is False


def test_many_conversations_vectorized_matches_sequential(tmp_path: Path) -> None:
    # 300 conversations mixing the vectorized (alternating) and sequential paths give the same
    # pairs as running the sequential matcher on every conversation.
    tl = Timeline()
    rng = np.random.default_rng(7)
    for i in range(300):
        c = (f"10.1.{i // 250}.{i % 250 + 1}", 20000 + i)
        pattern = rng.choice(["alt", "burst", "lost"])
        for k in range(3):
            tl.add(udp(c, SERVER, f"{i}-{k}".encode()), 5)
            if pattern == "burst":
                tl.add(udp(c, SERVER, f"{i}-{k}b".encode()), 5)
            if pattern != "lost" or k != 1:
                tl.add(udp(SERVER, c, f"{i}-{k}".encode()), 5)
    flows = analyze(tl, tmp_path)
    assert len(flows.records) == 300
    for rec in flows.records:
        dgs = rec["datagrams"]
        rows = list(range(len(dgs)))
        reqs, reps = _pair_sequential(
            rows,
            [d["dir"] == "c2s" for d in dgs],
            [d["sha256"] for d in dgs],
            np.array([d["bytes"] for d in dgs]),
        )
        assert pairs_of(rec) == list(zip(reqs, reps, strict=True))


# -- the pairing rule -------------------------------------------------------------------------


def _sequences() -> st.SearchStrategy[list[tuple[bool, int]]]:
    return st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=30)


@given(_sequences())
def test_pairing_rule_invariants(seq: list[tuple[bool, int]]) -> None:
    # Every reply pairs with an earlier, otherwise unused request; strictly alternating
    # conversations pair neighbours (what the vectorized path assumes).
    dirs = [d for d, _ in seq]
    digests: list[str | None] = [f"p{v}" for _, v in seq]
    reqs, reps = _pair_sequential(list(range(len(seq))), dirs, digests, np.ones(len(seq), dtype=np.int64))
    assert len(set(reqs)) == len(reqs)
    assert len(set(reps)) == len(reps)
    for a, b in zip(reqs, reps, strict=True):
        assert a < b and dirs[a] and not dirs[b]
    # Greedy: a reply stays unpaired only when every earlier request was already answered.
    answered_by = dict(zip(reqs, reps, strict=True))
    for i, is_request in enumerate(dirs):
        if not is_request and i not in reps:
            assert all(answered_by.get(r, i) < i for r in range(i) if dirs[r])
    if all(dirs[i] != dirs[i - 1] for i in range(1, len(dirs))) and (not dirs or dirs[0]):
        assert list(zip(reqs, reps, strict=True)) == [(i - 1, i) for i in range(1, len(dirs)) if not dirs[i]]
