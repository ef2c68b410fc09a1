"""Interop summaries (analyzer.flows.tcp_interop): Zeek conn_state/history exactly as ANCHORS
section 2 defines them, and Wireshark's tcp.completeness."""

from __future__ import annotations

from pathlib import Path

import pytest
from tcp_craft import CLIENT, SCENARIOS, SERVER, Conv, analyze_capture, analyze_scenario, build

import analyzer
from analyzer.flows import tcp_data, tcp_handshake, tcp_interop, tcp_seq, tcp_streams
from analyzer.flows.tcp_interop import (
    CLOSED,
    ESTABLISHED,
    INACTIVE,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    completeness_label,
    conn_state,
)


@pytest.mark.parametrize(
    ("os_", "rs", "sizes", "history", "expected"),
    [
        pytest.param(SYN_SENT, RESET, (0, 0), "Sr", "REJ", id="syn-rst->REJ"),
        pytest.param(SYN_ACK_SENT, RESET, (0, 0), "Hr", "REJ", id="synack-sent-rst->REJ"),
        pytest.param(RESET, RESET, (0, 0), "SrR", "REJ", id="both-reset-no-bytes->REJ"),
        pytest.param(RESET, RESET, (5, 0), "ShADRr", "RSTR", id="both-reset-bytes->RSTR"),
        pytest.param(PARTIAL, RESET, (0, 0), "Dr", "RSTRH", id="partial-orig->RSTRH"),
        pytest.param(ESTABLISHED, RESET, (3, 3), "ShADdr", "RSTR", id="resp-rst->RSTR"),
        pytest.param(RESET, INACTIVE, (0, 0), "SR", "RSTOS0", id="syn-then-rst->RSTOS0"),
        pytest.param(RESET, INACTIVE, (0, 0), "DR", "OTH", id="midstream-rst->OTH"),
        pytest.param(RESET, ESTABLISHED, (1, 1), "ShADR", "RSTO", id="orig-rst->RSTO"),
        pytest.param(CLOSED, CLOSED, (1, 1), "ShADadFf", "SF", id="both-closed->SF"),
        pytest.param(CLOSED, ESTABLISHED, (1, 0), "ShADF", "S2", id="orig-fin->S2"),
        pytest.param(CLOSED, INACTIVE, (0, 0), "SF", "SH", id="syn-fin->SH"),
        pytest.param(ESTABLISHED, CLOSED, (0, 1), "Shdf", "S3", id="resp-fin->S3"),
        pytest.param(INACTIVE, CLOSED, (0, 0), "hf", "SHR", id="synack-fin->SHR"),
        pytest.param(SYN_SENT, INACTIVE, (0, 0), "S", "S0", id="syn-only->S0"),
        pytest.param(ESTABLISHED, ESTABLISHED, (0, 0), "ShA", "S1", id="established->S1"),
        pytest.param(PARTIAL, PARTIAL, (1, 1), "Dd", "OTH", id="midstream->OTH"),
    ],
)
def test_conn_state_table(os_: int, rs: int, sizes: tuple[int, int], history: str, expected: str) -> None:
    assert conn_state(os_, rs, sizes[0], sizes[1], history) == expected


@pytest.mark.parametrize(
    ("scenario", "history", "state"),
    [
        # ANCHORS 2.4's demo flows, where this capture shape matches them
        ("fin_3way_server_first", "ShAdfFa", "SF"),  # daytime: server sends, closes first
        ("fin_4way", "ShADadFf", "SF"),  # client sends and closes first
        ("rst_abort", "ShAdr", "RSTR"),  # SO_LINGER 0 on the server
        ("refused", "Sr", "REJ"),
        # the other crafted shapes
        ("half_close", "ShADFadf", "SF"),  # the server's data (d) after the client's FIN (F)
        ("half_closed", "ShADaF", "S2"),
        ("fin_then_rst", "ShADaFR", "RSTO"),
        ("no_reply", "S", "S0"),
        ("partial_no_ack", "Sh", "S1"),
        ("open", "ShADa", "S1"),
        ("midstream", "DadA", "OTH"),
        ("simultaneous_open", "SsDaFfA", "SF"),
        ("retransmissions", "ShADTadfF", "SF"),  # T: the 6 bytes again
        ("keepalive_zero_window", "ShADawTFf", "SF"),  # w: zero window, T: keep-alive byte
        ("gap", "ShADaFGf", "SF"),  # G: the server ACKed bytes never seen
        ("rst_in_time_wait", "ShADaFfr", "SF"),  # a RST after both FINs does not undo SF
    ],
)
def test_zeek_history_and_conn_state(tmp_path: Path, scenario: str, history: str, state: str) -> None:
    zeek = analyze_scenario(scenario, tmp_path).records[0]["zeek"]
    assert (zeek["history"], zeek["conn_state"]) == (history, state)


def test_first_packet_from_a_server_port_flips_roles(tmp_path: Path) -> None:
    # Only the SYN-ACK from port 80 was captured: Zeek flips the roles (history starts with ^).
    c = Conv()
    c.pkt(SERVER, "SA", ack=1001)
    zeek = analyze_capture(c.cap, tmp_path).records[0]["zeek"]
    assert zeek == {"conn_state": "OTH", "history": "^h"}


def test_scaled_letters_repeat_at_10_and_100(tmp_path: Path) -> None:
    # 12 retransmissions of one segment: 't' at the 1st and the 10th (the client's 'A' only once).
    c = Conv()
    c.handshake()
    c.send(SERVER, b"x")
    for _ in range(12):
        c.pkt(SERVER, "PA", b"x", seq=5001, after_us=1000)
    c.ack(CLIENT)
    assert analyze_capture(c.cap, tmp_path).records[0]["zeek"]["history"] == "ShAdtt"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fast_history_equals_the_packet_by_packet_model(tmp_path: Path, scenario: str) -> None:
    # The vectorized letters must be exactly what the Zeek model gives, connection by connection.
    packets = analyzer.read_packets(build(scenario, tmp_path))
    tp = tcp_streams.build_tcp_packets(packets)
    si = tcp_seq.compute_seq(tp)
    hs = tcp_handshake.analyze_handshake(packets, tp, si)
    data = tcp_data.analyze_data(tp, si, None, hs.rtt_ms / 1000.0)
    io = tcp_interop.analyze_interop(tp, si, data.bytes[0::2], data.bytes[1::2], data.gaps, data.origin)
    for b in range(tp.n_blocks):
        assert io.history[b] == tcp_interop.run_full_model(tp, si, data.gaps, data.origin, b)


@pytest.mark.parametrize(
    ("scenario", "value"),
    [
        ("fin_4way", 31),
        ("half_closed", 31),  # Wireshark: "Complete" although the server never sent a FIN
        ("rst_abort", 47),  # Wireshark: "Complete" for a RST abort
        ("refused", 37),  # the RST-ACK sets the ACK bit
        ("no_reply", 1),
        ("partial_no_ack", 3),
        ("open", 15),
        ("midstream", 12),  # the first packet of a conversation without SYN adds nothing
        ("fin_reacked", 23),
    ],
)
def test_completeness(tmp_path: Path, scenario: str, value: int) -> None:
    rec = analyze_scenario(scenario, tmp_path).records[0]
    assert rec["completeness"] == value
    assert rec["completeness_label"] == completeness_label(value)


def test_completeness_labels() -> None:
    assert completeness_label(31) == "Complete, WITH_DATA"
    assert completeness_label(23) == "Complete, NO_DATA"
    assert completeness_label(7) == "Incomplete, ESTABLISHED"
    assert completeness_label(37) == "Incomplete (37)"
