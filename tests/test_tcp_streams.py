"""Connection reconstruction (analyzer.flows.tcp_streams): numbering, port reuse, the client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_craft import CLIENT, SERVER, Capture, Conv, analyze_capture, analyze_scenario

from analyzer.flows.tcp_streams import _split_one, _split_tuples, stable_argsort_codes


def test_connections_are_numbered_by_first_packet(tmp_path: Path) -> None:
    # Two interleaved connections: ids follow the order of their first packets.
    flows = analyze_scenario("two_connections", tmp_path)
    t = flows.table
    assert t["id"].tolist() == [0, 1]
    assert t["client_port"].tolist() == [40010, 40011]
    assert (t["server_port"] == 80).all()
    assert t["first_frame"].tolist() == [1, 2]
    assert t["packets"].tolist() == [8, 9]


def test_client_is_the_syn_sender_even_when_the_server_speaks_first(tmp_path: Path) -> None:
    # The SYN-ACK arrives before the SYN in the file: the SYN's sender is still the client.
    c = Conv()
    c.pkt(SERVER, "SA", ack=1001)
    c.syn()
    c.nxt[SERVER] = 5001
    c.ack(CLIENT)
    t = analyze_capture(c.cap, tmp_path).table
    assert len(t) == 1
    assert (t.loc[0, "client_ip"], t.loc[0, "client_port"]) == ("10.0.0.1", 40000)
    assert not t.loc[0, "client_guessed"]


def test_client_is_a_recorded_guess_without_syn(tmp_path: Path) -> None:
    # Mid-connection capture: the first packet's sender is taken as client, flagged as a guess.
    flows = analyze_scenario("midstream", tmp_path)
    rec = flows.records[0]
    assert rec["client"] == {"ip": "10.0.0.1", "port": 40000}
    assert rec["client_guessed"] is True


def test_synack_only_makes_its_receiver_the_client(tmp_path: Path) -> None:
    # Only a SYN-ACK was captured: its receiver opened the connection.
    c = Conv()
    c.pkt(SERVER, "SA", ack=1001)
    rec = analyze_capture(c.cap, tmp_path).records[0]
    assert rec["client"]["port"] == 40000
    assert rec["client_guessed"] is False


def test_syn_retransmission_stays_in_the_connection(tmp_path: Path) -> None:
    # Same ISN, nothing ended in between: one connection with a SYN retransmission.
    flows = analyze_scenario("syn_retransmit", tmp_path)
    assert len(flows.table) == 1
    assert flows.records[0]["handshake"]["syn_retransmits"] == 1


@pytest.mark.parametrize("scenario", ["reuse_ok_isn", "reuse_bad_isn", "reuse_ts", "reuse_after_expiry"])
def test_port_reuse_starts_a_new_connection(tmp_path: Path, scenario: str) -> None:
    # A new SYN with a new ISN on a closed 4-tuple: a second connection, same endpoints.
    t = analyze_scenario(scenario, tmp_path).table
    assert len(t) == 2
    assert t["client_port"].tolist() == [40000, 40000]
    assert t["handshake"].tolist() == ["complete", "complete"]
    assert t["teardown"].tolist() == ["fin-4way", "fin-4way"]


def test_same_isn_after_the_end_is_a_new_connection(tmp_path: Path) -> None:
    # The analyzer's extension of tcp.stream: after a RST, even the same ISN starts over.
    t = analyze_scenario("reuse_same_isn", tmp_path).table
    assert t["handshake"].tolist() == ["refused", "refused"]


def test_reverse_syn_on_a_closed_tuple_swaps_the_roles(tmp_path: Path) -> None:
    # After a closed connection, the former server connects back from its port (new ISN).
    cap = Capture()
    a = Conv(cap)
    a.handshake()
    a.close_4way(CLIENT)
    b = Conv(cap, client=("10.0.0.2", 80), server=("10.0.0.1", 40000), isn_c=90_000)
    b.syn(after_us=2_000_000)
    t = analyze_capture(cap, tmp_path).table
    assert len(t) == 2
    assert (t.loc[1, "client_ip"], t.loc[1, "client_port"]) == ("10.0.0.2", 80)
    assert t.loc[1, "handshake"] == "no-reply"


def test_ipv6_endpoints_are_compressed_text(tmp_path: Path) -> None:
    rec = analyze_scenario("ipv6", tmp_path).records[0]
    assert rec["client"] == {"ip": "2001:db8::1", "port": 40000}
    assert rec["server"] == {"ip": "2001:db8::2", "port": 80}


_FLAGS = [0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18]  # S, SA, A, FA, R, RA, PA


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(_FLAGS), st.sampled_from([100, 101, 200, 5000])),
        min_size=1,
        max_size=14,
    )
)
def test_vectorized_split_matches_the_packet_by_packet_rules(pkts: list[tuple[bool, int, int]]) -> None:
    # Any flag/sequence soup on one 4-tuple: the vectorized rules give the same connections as
    # walking the packets one by one (the tuples they cannot decide go through that walk).
    lo_dir = np.array([p[0] for p in pkts], dtype=bool)
    flags = np.array([p[1] for p in pkts], dtype=np.uint16)
    seq = np.array([p[2] for p in pkts], dtype=np.uint32)
    ack = seq + 1
    n = len(pkts)
    split_at = _split_tuples(np.zeros(n, np.int64), np.zeros(1, np.int64), lo_dir, flags, seq, ack)
    expected = _split_one(lo_dir.tolist(), flags.tolist(), seq.tolist(), ack.tolist())
    assert np.cumsum(split_at).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=(1 << 40) - 1), max_size=300),
    st.sampled_from([1, 3, 1 << 16, 1 << 20, 1 << 40]),
)
def test_stable_argsort_codes_is_numpys_stable_argsort(values: list[int], modulus: int) -> None:
    codes = np.array(values, dtype=np.int64) % modulus
    assert stable_argsort_codes(codes).tolist() == np.argsort(codes, kind="stable").tolist()
