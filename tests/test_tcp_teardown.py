"""Teardown and TIME_WAIT (analyzer.flows.tcp_teardown): every kind, the active closer, FIN ACKs,
bytes after the first FIN, the TIME_WAIT holder and timing, reuse (RFC 6191), RST (RFC 1337),
and re-ACKed FIN retransmissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from tcp_craft import CLIENT, SERVER, Conv, analyze_capture, analyze_scenario


@pytest.mark.parametrize(
    ("scenario", "kind", "first_fin", "holder"),
    [
        ("fin_4way", "fin-4way", "client", "client"),
        ("fin_3way_server_first", "fin-3way", "server", "server"),
        ("simultaneous_close", "simultaneous", "client", "both"),
        ("half_close", "fin-4way", "client", "client"),
        ("rst_abort", "rst", None, "none"),
        ("fin_then_rst", "rst", "client", "none"),
        ("half_closed", "half-closed", "client", "none"),
        ("open", "open", None, "none"),
        ("refused", "rst", None, "none"),
    ],
)
def test_teardown_kind_closer_and_holder(
    tmp_path: Path, scenario: str, kind: str, first_fin: str | None, holder: str
) -> None:
    rec = analyze_scenario(scenario, tmp_path).records[0]
    assert rec["teardown"]["kind"] == kind
    assert rec["teardown"]["first_fin"] == first_fin
    assert rec["time_wait"]["holder"] == holder


def test_fins_acked(tmp_path: Path) -> None:
    assert analyze_scenario("fin_4way", tmp_path).records[0]["teardown"]["fins_acked"] == {
        "client": True,
        "server": True,
    }
    half = analyze_scenario("half_closed", tmp_path).records[0]
    assert half["teardown"]["fins_acked"] == {"client": True, "server": None}


def test_unacked_fin_is_reported(tmp_path: Path) -> None:
    # The server's FIN is never ACKed by the end of the capture: no TIME_WAIT start either.
    c = Conv()
    c.handshake()
    c.fin(CLIENT)
    c.fin(SERVER)
    rec = analyze_capture(c.cap, tmp_path).records[0]
    assert rec["teardown"]["kind"] == "fin-3way"
    assert rec["teardown"]["fins_acked"] == {"client": True, "server": False}
    assert rec["time_wait"]["holder"] == "client"
    assert rec["time_wait"]["start_ts"] is None
    names = {a["name"] for a in rec["anomalies"]}
    assert {"fin_not_acked", "time_wait_start_unknown"} <= names


def test_half_close_counts_bytes_after_the_first_fin(tmp_path: Path) -> None:
    # The client's FIN comes after its request; the server then sends 31 bytes, then its FIN.
    rec = analyze_scenario("half_close", tmp_path).records[0]
    assert rec["teardown"]["bytes_after_first_fin"] == len(b"response part 1;response part 2")
    assert rec["data"]["server_to_client"]["bytes"] == 31


def test_rst_records_who_and_whether_a_fin_came_first(tmp_path: Path) -> None:
    abort = analyze_scenario("rst_abort", tmp_path).records[0]["teardown"]
    assert (abort["rst_by"], abort["fin_before_rst"]) == ("server", False)
    after_fin = analyze_scenario("fin_then_rst", tmp_path).records[0]["teardown"]
    assert (after_fin["rst_by"], after_fin["fin_before_rst"]) == ("client", True)


def test_time_wait_timing_follows_msl(tmp_path: Path) -> None:
    # The client ACKs the server's FIN at the last frame: TIME_WAIT starts there, for 2*MSL.
    flows = analyze_scenario("fin_4way", tmp_path)
    rec = flows.records[0]
    tw = rec["time_wait"]
    assert tw["start_ts"] == rec["last_ts"]
    assert tw["hold_s"] == 60.0
    assert tw["until_ts"] == pytest.approx(rec["last_ts"] + 60.0)
    tw_rfc = analyze_scenario("fin_4way", tmp_path, msl=120.0).records[0]["time_wait"]
    assert tw_rfc["hold_s"] == 240.0
    assert tw_rfc["msl_s"] == 120.0


def test_simultaneous_close_both_sides_hold_time_wait(tmp_path: Path) -> None:
    # Each side enters TIME-WAIT when the peer's ACK ends its CLOSING state; the record spans both.
    rec = analyze_scenario("simultaneous_close", tmp_path).records[0]
    tw = rec["time_wait"]
    assert tw["holder"] == "both"
    client_tw = [t for s, t, _ in rec["states"]["client"] if s == "TIME-WAIT"]
    server_tw = [t for s, t, _ in rec["states"]["server"] if s == "TIME-WAIT"]
    assert tw["start_ts"] == pytest.approx(min(client_tw + server_tw))
    assert tw["until_ts"] == pytest.approx(max(client_tw + server_tw) + 60.0)


def test_fin_retransmission_reacked_in_time_wait_restarts_the_timer(tmp_path: Path) -> None:
    rec = analyze_scenario("fin_reacked", tmp_path).records[0]
    tw = rec["time_wait"]
    assert tw["fin_reacked"] is True
    assert tw["hold_s"] == pytest.approx(61.0001)
    assert tw["until_ts"] == pytest.approx(rec["last_ts"] + 60.0)


def test_port_reuse_in_time_wait_with_higher_isn_satisfies_rfc6191(tmp_path: Path) -> None:
    first, second = analyze_scenario("reuse_ok_isn", tmp_path).records
    tw = first["time_wait"]
    assert tw["reused_by_syn"] == second["id"] == 1
    assert tw["reuse_ts"] == second["first_ts"]
    assert (tw["rfc6191_ok"], tw["rfc6191_by"]) == (True, "isn")
    assert "rfc6191_violation" not in {a["name"] for a in first["anomalies"]}


def test_port_reuse_with_lower_isn_violates_rfc6191(tmp_path: Path) -> None:
    first = analyze_scenario("reuse_bad_isn", tmp_path).records[0]
    assert (first["time_wait"]["rfc6191_ok"], first["time_wait"]["rfc6191_by"]) == (False, "isn")
    assert "rfc6191_violation" in {a["name"] for a in first["anomalies"]}


def test_port_reuse_with_timestamps_is_judged_by_tsval(tmp_path: Path) -> None:
    tw = analyze_scenario("reuse_ts", tmp_path).records[0]["time_wait"]
    assert (tw["rfc6191_ok"], tw["rfc6191_by"]) == (True, "timestamp")


def test_reuse_after_expiry_is_not_flagged(tmp_path: Path) -> None:
    tw = analyze_scenario("reuse_after_expiry", tmp_path).records[0]["time_wait"]
    assert tw["reused_by_syn"] is None
    assert tw["rfc6191_ok"] is None


def test_rst_into_time_wait(tmp_path: Path) -> None:
    # A RST 2 s into the client's TIME-WAIT: flagged, the close itself stays a FIN close.
    rec = analyze_scenario("rst_in_time_wait", tmp_path).records[0]
    assert rec["teardown"]["kind"] == "fin-4way"
    assert rec["teardown"]["rst_by"] == "server"
    assert rec["time_wait"]["rst_in_time_wait"] is True
    assert rec["states"]["client"][-1][0] == "CLOSED"
    assert {"name": "rst_in_time_wait", "side": "client"}.items() <= rec["anomalies"][0].items()
