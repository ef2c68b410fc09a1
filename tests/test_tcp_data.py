"""Payload per direction (analyzer.flows.tcp_data): reassembly byte for byte, sha256, previews,
retransmissions, out-of-order and overlapping segments, gaps, dup ACKs, zero windows, keep-alives."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from tcp_craft import CLIENT, SERVER, Conv, analyze_capture, analyze_path, analyze_scenario, build

from analyzer.decode.source import CaptureBytes
from analyzer.flows.tcp import stream_bytes


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_in_order_streams_hash_what_each_side_sent(tmp_path: Path) -> None:
    # The fast path: every segment in order. sha256 and preview of each direction.
    rec = analyze_scenario("fin_4way", tmp_path).records[0]
    c2s, s2c = rec["data"]["client_to_server"], rec["data"]["server_to_client"]
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\n\r\nhello"
    assert (c2s["bytes"], c2s["segments"], c2s["sha256"]) == (len(request), 1, sha(request))
    assert (s2c["bytes"], s2c["segments"], s2c["sha256"]) == (len(response), 1, sha(response))
    assert c2s["preview"] == "GET / HTTP/1.1⏎Host: x⏎⏎"
    assert s2c["preview"] == "HTTP/1.1 200 OK⏎⏎hello"
    assert rec["data"]["retransmissions"] == rec["data"]["out_of_order"] == 0


def test_empty_direction(tmp_path: Path) -> None:
    rec = analyze_scenario("fin_3way_server_first", tmp_path).records[0]
    c2s = rec["data"]["client_to_server"]
    assert (c2s["bytes"], c2s["segments"], c2s["sha256"], c2s["preview"]) == (0, 0, sha(b""), "")


def test_retransmitted_data_is_counted_once(tmp_path: Path) -> None:
    # The same 6 bytes twice, 200 ms apart (more than the 1 ms handshake RTT): a retransmission.
    rec = analyze_scenario("retransmissions", tmp_path).records[0]
    c2s = rec["data"]["client_to_server"]
    assert (c2s["bytes"], c2s["segments"], c2s["retransmissions"]) == (6, 2, 1)
    assert c2s["sha256"] == sha(b"abcdef")
    assert rec["data"]["retransmissions"] == 1


def test_out_of_order_segments_are_reordered(tmp_path: Path) -> None:
    # BBBB, CCCC arrive before AAAA within the 10 ms RTT: out-of-order, reassembled in order.
    rec = analyze_scenario("out_of_order", tmp_path).records[0]
    c2s = rec["data"]["client_to_server"]
    assert c2s["sha256"] == sha(b"AAAABBBBCCCC")
    assert c2s["preview"] == "AAAABBBBCCCC"
    assert (c2s["bytes"], c2s["out_of_order"], c2s["retransmissions"]) == (12, 1, 0)


def test_overlapping_retransmission_adds_only_new_bytes(tmp_path: Path) -> None:
    # "0123456789" then "56789ABCDE" from offset 5: the overlap is not duplicated.
    c2s = analyze_scenario("overlap", tmp_path).records[0]["data"]["client_to_server"]
    assert c2s["sha256"] == sha(b"0123456789ABCDE")
    assert (c2s["bytes"], c2s["segments"], c2s["retransmissions"]) == (15, 2, 1)


def test_conflicting_overlap_keeps_the_first_copy(tmp_path: Path) -> None:
    # A later segment rewrites bytes already received: the receiver keeps the first copy.
    c = Conv()
    c.handshake()
    c.send(CLIENT, b"hello world")
    c.pkt(CLIENT, "PA", b"HELLO", seq=1001, after_us=500_000)
    c.ack(SERVER)
    c2s = analyze_capture(c.cap, tmp_path).records[0]["data"]["client_to_server"]
    assert c2s["sha256"] == sha(b"hello world")


def test_gap_is_marked_and_has_no_sha(tmp_path: Path) -> None:
    # A 5-byte segment lost before the capture point: the stream is 16 bytes, 5 of them missing.
    path = build("gap", tmp_path)
    flows = analyze_path(path)
    rec = flows.records[0]
    c2s = rec["data"]["client_to_server"]
    assert c2s["bytes"] == 16
    assert c2s["missing_bytes"] == 5
    assert c2s["gaps"] == [[6, 5]]
    assert c2s["sha256"] is None
    assert c2s["preview"] == "first;third"
    assert {"name": "missing_bytes", "side": "client", "frame": None, "ts": None} in rec["anomalies"]
    with CaptureBytes(path) as payloads:
        assert stream_bytes(flows, 0, "c2s", payloads) == b"first;third"


def test_snaplen_truncated_payload_is_a_gap(tmp_path: Path) -> None:
    # 200 payload bytes captured with an 80-byte snap length: 54 captured, 146 missing.
    c2s = analyze_scenario("truncated", tmp_path).records[0]["data"]["client_to_server"]
    assert c2s["bytes"] == 200
    captured = 80 - 14 - 20 - 20
    assert c2s["missing_bytes"] == 200 - captured
    assert c2s["gaps"] == [[captured, 200 - captured]]
    assert c2s["preview"] == "A" * captured


def test_keepalives_and_zero_windows(tmp_path: Path) -> None:
    # Two zero-window ACKs from the server; two client keep-alives (one with a garbage byte).
    rec = analyze_scenario("keepalive_zero_window", tmp_path).records[0]
    c2s, s2c = rec["data"]["client_to_server"], rec["data"]["server_to_client"]
    assert s2c["zero_windows"] == 2
    assert c2s["keep_alives"] == 2
    # the keep-alive's garbage byte is not stream data
    assert c2s["sha256"] == sha(b"fillmore")
    assert (c2s["bytes"], c2s["segments"], c2s["retransmissions"]) == (8, 2, 0)


def test_duplicate_acks(tmp_path: Path) -> None:
    # seg2 is lost upstream; the server ACKs seg1's end four times (3 duplicates).
    rec = analyze_scenario("dup_acks", tmp_path).records[0]
    s2c = rec["data"]["server_to_client"]
    assert s2c["dup_acks"] == 3
    c2s = rec["data"]["client_to_server"]
    assert c2s["sha256"] == sha(b"seg1seg2seg3seg4")
    assert c2s["retransmissions"] == 1


def test_binary_preview_is_escaped_and_cut(tmp_path: Path) -> None:
    c = Conv()
    c.handshake()
    c.send(SERVER, bytes(range(256)))
    c.ack(CLIENT)
    s2c = analyze_capture(c.cap, tmp_path).records[0]["data"]["server_to_client"]
    assert s2c["preview"].startswith("\\x00\\x01\\x02")
    assert s2c["preview"].endswith("…")
    assert s2c["sha256"] == sha(bytes(range(256)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_segments_reassemble_exactly(tmp_path: Path, seed: int) -> None:
    # A 3000-byte message cut at random points, sent in random order with random duplicates and
    # overlapping re-cuts: the reassembled stream is the message, byte for byte.
    rng = random.Random(seed)
    message = bytes(rng.randrange(256) for _ in range(3000))
    cuts = sorted(rng.sample(range(1, 3000), 25))
    pieces = [(a, b) for a, b in zip([0, *cuts], [*cuts, 3000], strict=True)]
    extra = [(a, min(3000, a + rng.randrange(50, 400))) for a in rng.sample(range(0, 2900), 10)]
    order = pieces + extra
    rng.shuffle(order)
    c = Conv()
    c.handshake()
    for a, b in order:
        c.pkt(
            CLIENT,
            "PA",
            message[a:b],
            seq=1001 + a,
            advance=False,
            deliver=False,
            after_us=rng.randrange(1, 5000),
        )
    c.nxt[CLIENT] = 1001 + 3000
    c.rcv[SERVER] = 1001 + 3000
    c.ack(SERVER)
    path = c.cap.write(tmp_path / "shuffled.pcap")
    flows = analyze_path(path)
    c2s = flows.records[0]["data"]["client_to_server"]
    assert c2s["bytes"] == 3000
    assert c2s["missing_bytes"] == 0
    assert c2s["sha256"] == sha(message)
    assert c2s["segments"] == len(order)
    assert c2s["retransmissions"] + c2s["out_of_order"] >= 1
    with CaptureBytes(path) as payloads:
        assert stream_bytes(flows, 0, "c2s", payloads) == message


def test_without_payload_access_hashes_are_null(tmp_path: Path) -> None:
    import analyzer
    from analyzer.flows.tcp import analyze_tcp

    packets = analyzer.read_packets(build("fin_4way", tmp_path))
    rec = analyze_tcp(packets, None).records[0]
    assert rec["data"]["client_to_server"]["sha256"] is None
    assert rec["data"]["client_to_server"]["preview"] is None
    assert rec["data"]["client_to_server"]["bytes"] == 27
