"""The fast paths of the UDP analysis against slow, obviously right versions of the same output.

* ``preview.json_bodies`` (a batch of payloads rendered with numpy) against
  ``orjson.dumps(preview(payload))`` payload by payload;
* ``UdpFlows.json_chunks`` (the records written from the columns) against orjson's text of
  ``UdpFlows.records``, on crafted captures that reach every field of a record;
* ``UdpFlows.records``' datagrams against datagrams computed one by one with hashlib and
  ``preview`` from the capture's bytes; the digests and heads from the optional C helper
  (``_digest``) against the hashlib path (``ANALYZER_PURE_PYTHON=1``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from scapy.layers.inet import ICMP, IP, IPerror, fragment
from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6
from scapy.layers.l2 import Ether
from test_udp import C6, CLIENT, S6, SERVER, Timeline, echo_timeline, icmp_port_unreachable, udp

import analyzer
from analyzer.analysis import LazyRecords
from analyzer.decode.source import CaptureBytes
from analyzer.flows.preview import PREVIEW_BYTES, json_bodies, preview, texts
from analyzer.flows.udp import RECORD_SEPARATOR, UdpFlows, analyze_udp
from analyzer.report.json_report import render_json

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# Pieces of payloads that reach every branch of the preview rule: text, CRLF, controls, JSON's
# quote and backslash, valid / invalid / overlong / cut / non-printable UTF-8, the format
# character %, and the separators the columnar writer splits on.
PIECES = [
    b"a",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"~",
    b"\\",
    b'"',
    b'","',
    b"%",
    b"\x7f",
    b"\x00",
    b"\t",
    b"\xff",
    b"\x80",
    b"\xc2",
    b"\xc3\xa9",
    b"\xc2\x85",
    b"\xc2\xa0",
    b"\xe2\x80\xa8",
    b"\xe2\x80",
    b"\xe2\x80\xa6",
    b"\xe0\x80\x80",
    b"\xe0\xa0\x80",
    b"\xed\xa0\x80",
    b"\xed\x9f\xbf",
    b"\xef\xbf\xbf",
    b"\xf0\x80\x80\x80",
    b"\xf0\x9f\x98\x80",
    b"\xf3\xa0\x80\x81",
    b"\xf4\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
]


def bodies_one_by_one(payloads: list[bytes], limit: int) -> list[bytes]:
    return [orjson.dumps(preview(p, limit))[1:-1] for p in payloads]


def bodies_batched(payloads: list[bytes], limit: int) -> list[bytes]:
    heads = [p[:limit] for p in payloads]
    lengths = np.array([len(h) for h in heads], dtype=np.int64)
    cut = np.array([len(p) > limit for p in payloads], dtype=bool)
    return json_bodies(heads, lengths, cut)


def random_payloads(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = [b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    out += [rng.randbytes(rng.randint(0, 100)) for _ in range(1000)]
    out += [bytes([b]) for b in range(256)] + [b"", b"x" * 63 + b"\r\n", b"x" * 63 + b"\xc3\xa9"]
    return out


@pytest.mark.parametrize("limit", [PREVIEW_BYTES, 5, 1, 0])
def test_json_bodies_match_preview(limit: int) -> None:
    payloads = random_payloads(limit)
    got = bodies_batched(payloads, limit)
    assert got == bodies_one_by_one(payloads, limit)
    assert texts(got) == [preview(p, limit) for p in payloads]


def test_json_bodies_of_nothing_and_of_empty_payloads() -> None:
    assert bodies_batched([], PREVIEW_BYTES) == []
    assert bodies_batched([b"", b""], PREVIEW_BYTES) == [b"", b""]
    assert texts([]) == []


def test_json_bodies_rejects_lengths_that_do_not_match_the_heads() -> None:
    with pytest.raises(ValueError, match="lengths"):
        json_bodies([b"abc", b"de"], np.array([3, 3]), np.zeros(2, dtype=bool))


# -- crafted captures -------------------------------------------------------------------------


def lock_step() -> Timeline:
    return echo_timeline(5)


def lost_replies() -> Timeline:
    return echo_timeline(5, lose=[1, 4])


def pipelined() -> Timeline:
    # Two requests in a row: the sequential matcher; replies in another order, one lost.
    tl = Timeline()
    for i in range(4):
        tl.add(udp(CLIENT, SERVER, f"req {i}".encode()), 100)
    for i in (1, 0, 3):
        tl.add(udp(SERVER, CLIENT, f"req {i}".encode()), 100)
    return tl


def not_echo() -> Timeline:
    # Replies that differ from their requests, a request that times out.
    tl = Timeline()
    dns = ("10.0.0.53", 53)
    tl.add(udp(CLIENT, dns, b"query-a"))
    tl.add(udp(dns, CLIENT, b"answer-a with more bytes"), 400)
    tl.add(udp(CLIENT, dns, b"query-b"))
    tl.add(udp(CLIENT, dns, b"query-c"), 5000)
    tl.add(udp(dns, CLIENT, b"answer-c"), 700)
    return tl


def one_way_and_empty() -> Timeline:
    # No reply at all (no pairs, NaN latency in the table), an empty datagram.
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b""))
    tl.add(udp(CLIENT, SERVER, b"xyz"))
    return tl


def icmp_v4() -> Timeline:
    # Port unreachable for each of two datagrams, one error stamped before its datagram (two
    # capture clocks), one quoting a server datagram that was never captured (no datagram).
    tl = Timeline()
    closed = ("10.0.0.2", 9)
    first, second = udp(CLIENT, closed, b"anyone?"), udp(CLIENT, closed, b"still?")
    tl.add(icmp_port_unreachable(first, closed[0]))
    tl.add(first, 10)
    tl.add(second, 2000)
    tl.add(icmp_port_unreachable(second, closed[0]), 30)
    tl.add(icmp_port_unreachable(udp(closed, CLIENT, b"never seen"), CLIENT[0]), 10)
    tl.add(
        Ether() / IP(src=CLIENT[0], dst="10.9.9.9") / ICMP(type=3, code=13) / IPerror(bytes(first[IP])[:28])
    )
    return tl


def icmp_v6() -> Timeline:
    tl = Timeline()
    probe = udp(C6, ("2001:db8::2", 33434), b"v6 probe")
    tl.add(probe)
    tl.add(
        Ether()
        / IPv6(src="2001:db8::2", dst=C6[0])
        / ICMPv6DestUnreach(code=4)
        / IPerror6(bytes(probe[IPv6]))
    )
    return tl


def ipv6_and_interleaved() -> Timeline:
    # Interleaved conversations (one over IPv6, one whose client uses port 53), repeated and
    # distinct payload lengths.
    tl = Timeline()
    a, b, dns = ("10.0.0.1", 5000), ("10.0.0.9", 6000), ("10.0.0.53", 53)
    tl.add(udp(dns, a, b"unsolicited"))
    tl.add(udp(C6, S6, b"six"))
    tl.add(udp(a, b, b"to b"))
    tl.add(udp(a, dns, b"back to dns"))
    tl.add(udp(S6, C6, b"six"))
    tl.add(udp(b, a, b"from b"))
    return tl


def cut_payloads() -> Timeline:
    # Snap length and IP fragments: payload bytes missing, so no sha256 (null).
    tl = Timeline()
    tl.add(udp(CLIENT, SERVER, b"0123456789" * 3), snap=60)
    tl.add(udp(SERVER, CLIENT, b"0123456789" * 3), snap=60)
    for frag in fragment(udp(CLIENT, SERVER, b"f" * 2000)[IP], 800):
        tl.add(Ether() / frag, 10)
    return tl


def awkward_payloads() -> Timeline:
    # Everything JSON and the % formatting care about, long payloads (ellipsis), CRLF at the cut.
    tl = Timeline()
    payloads = [
        b'say "hi","there" \\ 100%d %s %% %b, \x00\x1b\xff caf\xc3\xa9',
        b'","\\","',
        b"x" * (PREVIEW_BYTES - 1) + b"\r\n and more",
        b"\xe2\x8f\x8e" * 30,
        bytes(range(256)),
    ]
    for i, p in enumerate(payloads):
        tl.add(udp(CLIENT, SERVER, p), 100)
        tl.add(udp(SERVER, CLIENT, p[::-1] if i % 2 else p), 100)
    return tl


def many_conversations() -> Timeline:
    # Alternating, bursty and lossy conversations: vectorized and sequential pairing mixed.
    tl = Timeline()
    rng = np.random.default_rng(7)
    for i in range(120):
        c = (f"10.1.{i // 250}.{i % 250 + 1}", 20000 + i)
        pattern = rng.choice(["alt", "burst", "lost"])
        for k in range(3):
            tl.add(udp(c, SERVER, f"{i}-{k}".encode()), 5)
            if pattern == "burst":
                tl.add(udp(c, SERVER, f"{i}-{k}b".encode()), 5)
            if pattern != "lost" or k != 1:
                tl.add(udp(SERVER, c, f"{i}-{k}".encode()), 5)
    return tl


SCENARIOS: dict[str, Callable[[], Timeline]] = {
    f.__name__: f
    for f in (
        lock_step,
        lost_replies,
        pipelined,
        not_echo,
        one_way_and_empty,
        icmp_v4,
        icmp_v6,
        ipv6_and_interleaved,
        cut_payloads,
        awkward_payloads,
        many_conversations,
    )
}


def flows_of(path: Path, *, with_bytes: bool = True) -> UdpFlows:
    packets = analyzer.read_packets(path)
    if not with_bytes:
        return analyze_udp(packets, None)
    with CaptureBytes(path) as payloads:
        return analyze_udp(packets, payloads)


def records_text(flows: UdpFlows) -> bytes:
    return RECORD_SEPARATOR.join(orjson.dumps(r, option=OPTIONS) for r in flows.records)


def columnar_text(flows: UdpFlows, per_chunk: int) -> bytes:
    return RECORD_SEPARATOR.join(flows.json_chunks(per_chunk))


def reference_datagrams(path: Path) -> list[list[dict[str, Any]]]:
    """Each conversation's datagrams, one packet at a time (first sender = client)."""
    packets = analyzer.read_packets(path)
    data = path.read_bytes()
    conversations: dict[frozenset[tuple[str, int]], tuple[tuple[str, int], list[dict[str, Any]]]] = {}
    for row in packets.itertuples():
        if row.proto != "udp" or (row.sport == 0 and row.dport == 0):
            continue
        src, dst = (str(row.src), int(row.sport)), (str(row.dst), int(row.dport))
        client, datagrams = conversations.setdefault(frozenset((src, dst)), (src, []))
        offset, caplen = int(row.payload_offset), int(row.payload_caplen)
        payload = data[offset : offset + caplen] if offset >= 0 else b""
        whole = caplen == int(row.payload_len)
        datagrams.append(
            {
                "dir": "c2s" if src == client else "s2c",
                "ts": float(row.ts),
                "bytes": int(row.payload_len),
                "sha256": hashlib.sha256(payload).hexdigest() if whole else None,
                "preview": preview(payload),
            }
        )
    return [datagrams for _, datagrams in conversations.values()]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_columnar_json_is_orjson_of_the_records(name: str, tmp_path: Path) -> None:
    path = SCENARIOS[name]().write(tmp_path / f"{name}.pcap")
    flows = flows_of(path)
    texts_by_chunk = [columnar_text(flows, k) for k in (1, 3, 1024)]  # before the records exist
    assert "records" not in flows.__dict__
    assert texts_by_chunk == [records_text(flows)] * 3
    assert orjson.loads(b"[" + texts_by_chunk[0] + b"]") == flows.records


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_records_match_datagrams_computed_one_by_one(name: str, tmp_path: Path) -> None:
    path = SCENARIOS[name]().write(tmp_path / f"{name}.pcap")
    assert [r["datagrams"] for r in flows_of(path).records] == reference_datagrams(path)


@pytest.mark.parametrize("name", ["awkward_payloads", "cut_payloads", "many_conversations"])
def test_c_helper_and_hashlib_agree(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = SCENARIOS[name]().write(tmp_path / f"{name}.pcap")
    default = flows_of(path)
    monkeypatch.setenv("ANALYZER_PURE_PYTHON", "1")
    pure = flows_of(path)
    assert pure.records == default.records
    assert columnar_text(pure, 1024) == columnar_text(default, 1024)


def test_without_payload_bytes(tmp_path: Path) -> None:
    # No byte source: every sha256 is null and every preview empty, in the records and the text.
    path = awkward_payloads().write(tmp_path / "a.pcap")
    flows = flows_of(path, with_bytes=False)
    assert columnar_text(flows, 2) == records_text(flows)
    datagrams = [d for r in flows.records for d in r["datagrams"]]
    assert {(d["sha256"], d["preview"]) for d in datagrams} == {(None, "")}


def test_proto_categories_other_than_the_schema_s(tmp_path: Path) -> None:
    # A PACKETS frame whose proto column holds only the protocols present (no "icmp" category).
    path = lost_replies().write(tmp_path / "l.pcap")
    packets = analyzer.read_packets(path)
    narrowed = packets.assign(proto=packets["proto"].astype(str).astype("category"))
    assert "icmp" not in narrowed["proto"].cat.categories
    with CaptureBytes(path) as payloads:
        assert analyze_udp(narrowed, payloads).records == analyze_udp(packets, payloads).records


def test_no_udp_writes_nothing(tmp_path: Path) -> None:
    tl = Timeline()
    tl.add(icmp_port_unreachable(udp(CLIENT, SERVER, b"x"), SERVER[0]))
    flows = flows_of(tl.write(tmp_path / "none.pcap"))
    assert list(flows.json_chunks()) == []
    assert flows.records == []


def test_analysis_keeps_udp_records_lazy_and_to_dict_whole(tmp_path: Path) -> None:
    a = analyzer.analyze(many_conversations().write(tmp_path / "m.pcap"))
    records = a.udp_records
    assert isinstance(records, LazyRecords) and len(records) == 120 and not records.built
    text = render_json(a)
    assert not records.built  # the report was written from the columns
    doc = a.to_dict()
    assert records.built and isinstance(doc["udp"], list)
    assert text == render_json(doc)
