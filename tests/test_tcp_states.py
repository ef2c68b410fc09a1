"""Per-endpoint RFC 9293 state timelines (analyzer.flows.tcp_states): the table, the timelines of
every crafted scenario, and anomalies as data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_craft import CLIENT, SERVER, Conv, analyze_capture, analyze_scenario

from analyzer.flows.tcp_states import STATES, TRANSITIONS, Ev, Pk, anomaly_name, run_pattern

HANDSHAKE_C = ["CLOSED", "SYN-SENT", "ESTABLISHED"]
HANDSHAKE_S = ["LISTEN", "SYN-RECEIVED", "ESTABLISHED"]
ACTIVE_CLOSE = ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"]
PASSIVE_CLOSE = ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]


@pytest.mark.parametrize(
    ("scenario", "client", "server"),
    [
        ("fin_4way", HANDSHAKE_C + ACTIVE_CLOSE, HANDSHAKE_S + PASSIVE_CLOSE),
        # the client's FIN carries the ACK of the server's FIN: FIN-WAIT-1 -> TIME-WAIT directly
        ("fin_3way_server_first", HANDSHAKE_C + PASSIVE_CLOSE, [*HANDSHAKE_S, "FIN-WAIT-1", "TIME-WAIT"]),
        (
            "simultaneous_close",
            [*HANDSHAKE_C, "FIN-WAIT-1", "CLOSING", "TIME-WAIT"],
            [*HANDSHAKE_S, "FIN-WAIT-1", "CLOSING", "TIME-WAIT"],
        ),
        ("half_close", HANDSHAKE_C + ACTIVE_CLOSE, HANDSHAKE_S + PASSIVE_CLOSE),
        ("rst_abort", [*HANDSHAKE_C, "CLOSED"], [*HANDSHAKE_S, "CLOSED"]),
        ("refused", ["CLOSED", "SYN-SENT", "CLOSED"], ["CLOSED"]),
        ("no_reply", ["CLOSED", "SYN-SENT"], ["LISTEN", "SYN-RECEIVED"]),
        (
            "simultaneous_open",
            ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", *ACTIVE_CLOSE],
            ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", *PASSIVE_CLOSE],
        ),
        ("midstream", ["ESTABLISHED"], ["ESTABLISHED"]),
        ("rst_in_time_wait", [*HANDSHAKE_C, *ACTIVE_CLOSE, "CLOSED"], HANDSHAKE_S + PASSIVE_CLOSE),
    ],
)
def test_timelines(tmp_path: Path, scenario: str, client: list[str], server: list[str]) -> None:
    rec = analyze_scenario(scenario, tmp_path).records[0]
    assert [s for s, _, _ in rec["states"]["client"]] == client
    assert [s for s, _, _ in rec["states"]["server"]] == server


def test_timeline_entries_carry_time_and_frame(tmp_path: Path) -> None:
    # fin_4way frames: 1 SYN, 2 SYN-ACK, 3 ACK, ..., 8 client FIN, 9 ACK, 10 server FIN, 11 ACK.
    rec = analyze_scenario("fin_4way", tmp_path).records[0]
    client = rec["states"]["client"]
    server = rec["states"]["server"]
    assert [f for _, _, f in client] == [1, 1, 2, 8, 9, 10]
    assert [f for _, _, f in server] == [1, 1, 3, 8, 10, 11]
    times = [t for _, t, _ in client]
    assert times == sorted(times)
    assert client[0][1] == rec["first_ts"]


def test_data_before_established_is_an_anomaly(tmp_path: Path) -> None:
    # The client sends data before any SYN-ACK: named anomaly, no exception.
    c = Conv()
    c.syn()
    c.send(CLIENT, b"too early", flags="P")
    c.synack()
    rec = analyze_capture(c.cap, tmp_path).records[0]
    found = [(a["name"], a["side"], a["frame"]) for a in rec["anomalies"]]
    assert ("data_before_established", "client", 2) in found


def test_data_after_own_fin_is_an_anomaly(tmp_path: Path) -> None:
    c = Conv()
    c.handshake()
    c.fin(CLIENT)
    c.ack(SERVER)
    c.send(CLIENT, b"oops")
    rec = analyze_capture(c.cap, tmp_path).records[0]
    assert ("data_after_fin", "client") in {(a["name"], a["side"]) for a in rec["anomalies"]}


def test_fin_retransmitted_after_its_ack_is_named(tmp_path: Path) -> None:
    # The capture saw the ACK of the server's FIN, then the FIN again (the ACK was lost later).
    rec = analyze_scenario("fin_reacked", tmp_path).records[0]
    assert ("FIN_after_close", "server") in {(a["name"], a["side"]) for a in rec["anomalies"]}
    assert rec["time_wait"]["fin_reacked"] is True


def test_table_only_names_rfc_states() -> None:
    for (state, event), (nxt, note) in TRANSITIONS.items():
        assert state in STATES and nxt in STATES
        assert isinstance(event, Ev)
        assert note is None or note.isidentifier()


def test_missing_transition_gets_a_generic_name() -> None:
    assert ("LISTEN", Ev.SND_FIN) not in TRANSITIONS
    assert anomaly_name("LISTEN", Ev.SND_FIN) == "snd_fin_in_listen"
    assert anomaly_name("SYN-SENT", Ev.SND_DATA) == "data_before_established"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(list(Pk)), st.integers(0, 1)), max_size=25))
def test_any_event_string_yields_states_not_exceptions(codes: list[tuple[Pk, int]]) -> None:
    # Arbitrary, even absurd, segment sequences only ever produce RFC states and named anomalies.
    res = run_pattern([(int(c), d) for c, d in codes])
    for timeline in res.timelines:
        assert timeline[0][1] == -1
        assert all(s in STATES for s, _ in timeline)
        positions = [p for _, p in timeline]
        assert positions == sorted(positions)
    for name, side, pos in res.anomalies:
        assert name and side in (0, 1) and 0 <= pos < len(codes)
