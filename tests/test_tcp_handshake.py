"""The three-way handshake (analyzer.flows.tcp_handshake): every state, ISNs, RTT, options."""

from __future__ import annotations

from pathlib import Path

import pytest
from tcp_craft import CLIENT, SERVER, Conv, analyze_capture, analyze_scenario


@pytest.mark.parametrize(
    ("scenario", "state"),
    [
        ("fin_4way", "complete"),
        ("refused", "refused"),
        ("no_reply", "no-reply"),
        ("partial_no_ack", "partial"),
        ("synack_wrong_ack", "partial"),
        ("midstream", "not-seen"),
        ("simultaneous_open", "simultaneous-open"),
        ("syn_retransmit", "complete"),
    ],
)
def test_handshake_state(tmp_path: Path, scenario: str, state: str) -> None:
    assert analyze_scenario(scenario, tmp_path).records[0]["handshake"]["state"] == state


def test_complete_handshake_facts(tmp_path: Path) -> None:
    # Linux-like options on both sides; SYN -> SYN-ACK 50 us, SYN-ACK -> ACK 50 us.
    hs = analyze_scenario("fin_4way", tmp_path).records[0]["handshake"]
    assert hs["client_isn"] == 1000
    assert hs["server_isn"] == 5000
    assert hs["syn_retransmits"] == 0
    assert hs["rtt_ms"] == pytest.approx(0.1, abs=1e-6)
    linux = {"mss": 65495, "wscale": 7, "sack_perm": True, "timestamps": True}
    assert hs["options"] == {"client": linux, "server": linux}


def test_options_absent_are_null_or_false(tmp_path: Path) -> None:
    # A bare SYN offers nothing; a side that sent no SYN at all has no options object.
    hs = analyze_scenario("no_reply", tmp_path).records[0]["handshake"]
    assert hs["options"]["client"] == {"mss": None, "wscale": None, "sack_perm": False, "timestamps": False}
    assert hs["options"]["server"] is None
    assert hs["server_isn"] is None
    assert hs["rtt_ms"] is None
    assert hs["syn_retransmits"] == 2


def test_rtt_starts_at_the_last_syn(tmp_path: Path) -> None:
    # A SYN retransmitted 1 s later: the RTT is measured from the retransmission (Wireshark iRTT).
    hs = analyze_scenario("syn_retransmit", tmp_path).records[0]["handshake"]
    assert hs["syn_retransmits"] == 1
    assert hs["rtt_ms"] == pytest.approx(0.2, abs=1e-6)


def test_final_ack_must_ack_the_server_isn(tmp_path: Path) -> None:
    # The third segment ACKs the wrong number: the handshake is not complete.
    c = Conv()
    c.syn()
    c.synack()
    c.pkt(CLIENT, "A", ack=9999)
    assert analyze_capture(c.cap, tmp_path).records[0]["handshake"]["state"] == "partial"


def test_data_segment_can_complete_the_handshake(tmp_path: Path) -> None:
    # The final ACK is piggybacked on the first request segment.
    c = Conv()
    c.syn()
    c.synack()
    c.send(CLIENT, b"GET /")
    rec = analyze_capture(c.cap, tmp_path).records[0]
    assert rec["handshake"]["state"] == "complete"
    assert rec["data"]["client_to_server"]["bytes"] == 5


def test_synack_without_syn_is_partial(tmp_path: Path) -> None:
    # Capture started between SYN and SYN-ACK.
    c = Conv()
    c.pkt(SERVER, "SA", ack=1001)
    c.nxt[CLIENT] = 1001
    c.rcv[CLIENT] = 5001
    c.ack(CLIENT)
    rec = analyze_capture(c.cap, tmp_path).records[0]
    assert rec["handshake"]["state"] == "partial"
    assert rec["handshake"]["client_isn"] is None
    assert rec["handshake"]["server_isn"] == 5000


def test_refused_connection_has_no_server_isn(tmp_path: Path) -> None:
    rec = analyze_scenario("refused", tmp_path).records[0]
    assert rec["handshake"]["server_isn"] is None
    assert rec["teardown"]["kind"] == "rst"
    assert rec["teardown"]["rst_by"] == "server"
