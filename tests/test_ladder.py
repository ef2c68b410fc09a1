"""The ladder model (analyzer.report.ladder), its per-packet source (analyzer.flows.tcp_rows) and
the text ladder (analyzer.report.ladder_text)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import report_captures

import analyzer
from analyzer.analysis import Analysis
from analyzer.flows.tcp_rows import TCP_PACKET_ROW_COLUMNS, tcp_packet_rows
from analyzer.report.ladder import MAX_ARROWS, Arrow, Elision, build_ladders, printable_text
from analyzer.report.ladder_text import ladder_lines, render_ladder
from analyzer.report.text import render_text

REPO = Path(__file__).resolve().parent.parent
DAYTIME = REPO / "captures" / "daytime.pcapng"


@pytest.fixture(scope="module")
def daytime() -> Analysis:
    return analyzer.analyze(DAYTIME)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyzer.analyze(report_captures.mixed(tmp_path_factory.mktemp("mixed") / "mixed.pcap"))


def test_tcp_rows_follow_the_flow_records(mixed: Analysis) -> None:
    rows = tcp_packet_rows(mixed.packets)
    assert list(rows.columns) == list(TCP_PACKET_ROW_COLUMNS)
    counts = rows.groupby("stream").size().to_dict()
    assert counts == {r["id"]: r["packets"] for r in mixed.tcp_records}
    assert len(rows) == int((mixed.packets["proto"] == "tcp").sum())
    # Every connection's first packet is its SYN at relative sequence 0.
    first = rows.groupby("stream").first()
    assert (first["rel_seq"] == 0).all()
    assert (first["flags"] & 0x02).all()
    # Exactly one retransmission, in connection 0, from the server.
    again = rows[rows["retransmission"]]
    assert again[["stream", "dir", "rel_seq", "len"]].values.tolist() == [[0, 1, 1, 87]]


def test_daytime_ladder(daytime: Analysis) -> None:
    (lad,), udp = build_ladders(daytime)
    assert udp == []
    assert (lad.client.label, lad.server.label) == (f"127.0.0.1:{lad.client.port}", "127.0.0.1:13")
    assert [r.label for r in lad.arrows] == [
        "SYN seq=0",
        "SYN,ACK seq=0 ack=1",
        "ACK ack=1",
        f'PSH,ACK seq=1 ack=1 len=20 "{daytime.tcp_records[0]["data"]["server_to_client"]["preview"]}"',
        "ACK ack=21",
        "FIN,ACK seq=21 ack=1",
        "FIN,ACK seq=1 ack=22",
        "ACK ack=2",
    ]
    assert [r.direction for r in lad.arrows] == ["c2s", "s2c"] * 4
    assert [r.frame for r in lad.arrows] == list(range(1, 9))
    assert lad.arrows[0].client_states == ("SYN-SENT",)
    assert lad.arrows[0].server_states == ("LISTEN", "SYN-RECEIVED")
    assert lad.arrows[6].server_states == ("TIME-WAIT",)
    assert lad.unit == "ms" and lad.time(lad.arrows[0].t) == "+0.000 ms"
    tw = lad.time_wait
    assert tw is not None and tw.holders == ("server",) and tw.kernel is None
    # The hold starts when the server ACKs the client's FIN: the last arrow.
    assert tw.start_row == 7 and tw.hold_s == 60.0
    assert [d.bytes for d in lad.data] == [0, 20]
    assert lad.data[1].full_text is not None and lad.data[1].full_text.endswith("\n")


def test_long_flow_is_elided_keeping_its_ends(mixed: Analysis) -> None:
    tcp, _ = build_ladders(mixed)
    long = tcp[1]
    arrows = long.arrows
    elided = [r for r in long.rows if isinstance(r, Elision)]
    assert len(arrows) <= MAX_ARROWS < long.packets
    assert len(arrows) + sum(e.count for e in elided) == long.packets == mixed.tcp_records[1]["packets"]
    assert arrows[0].flags == "SYN" and arrows[-1].rst and arrows[-1].flags == "RST,ACK"
    assert all(e.c2s + e.s2c == e.count for e in elided)
    # The arrows keep their place in the flow.
    assert [a.index for a in arrows] == sorted(a.index for a in arrows)
    assert long.time_wait is None  # a RST leaves nobody in TIME_WAIT


def test_retransmission_and_time_wait_on_the_client(mixed: Analysis) -> None:
    tcp, _ = build_ladders(mixed)
    lad = tcp[0]
    again = [a for a in lad.arrows if a.retransmission]
    assert len(again) == 1 and again[0].direction == "s2c" and "(retransmission)" in again[0].label
    assert lad.time_wait is not None and lad.time_wait.holders == ("client",)


def test_udp_ladders(mixed: Analysis) -> None:
    _, (echo, closed) = build_ladders(mixed)
    assert [a.direction for a in echo.arrows] == ["c2s", "s2c"] * 3
    assert echo.arrows[2].label == 'UDP len=39 "<script>document.tit…"'
    assert echo.data[2].full_text == report_captures.XSS.decode()
    assert [a.kind for a in closed.arrows] == ["udp", "icmp"]
    icmp = closed.arrows[1]
    assert icmp.direction == "s2c" and "port unreachable" in icmp.label and icmp.frame is not None


def test_kernel_observation_from_a_run_report(daytime: Analysis) -> None:
    rec = copy.deepcopy(daytime.tcp_records[0])
    port = rec["client"]["port"]
    rec["time_wait"]["kernel"] = {
        "observed": [
            {
                "local": "127.0.0.1:13",
                "remote": f"127.0.0.1:{port}",
                "side": "server",
                "state": "TIME_WAIT",
                "timer_s": 59.9,
            }
        ],
        "timer_s": 59.9,
        "agrees": True,
    }
    (lad,), _ = build_ladders(daytime, tcp_records=[rec])
    assert lad.time_wait is not None and lad.time_wait.kernel is not None
    assert lad.time_wait.kernel.text == (
        f"kernel: 127.0.0.1:13 ↔ 127.0.0.1:{port} in TIME-WAIT, 60 s left (server) · agrees"
    )
    text = render_ladder(lad)
    assert f"kernel: 127.0.0.1:13 <-> 127.0.0.1:{port} in TIME-WAIT" in text
    rec["time_wait"]["kernel"] = {"observed": [], "timer_s": None, "agrees": False}
    (lad,), _ = build_ladders(daytime, tcp_records=[rec])
    assert lad.time_wait is not None and lad.time_wait.kernel is not None
    assert lad.time_wait.kernel.text == "kernel: no TIME-WAIT socket · DISAGREES"


def test_text_ladder_plain_is_ascii_without_control_characters(mixed: Analysis) -> None:
    tcp, udp = build_ladders(mixed)
    for lad in [*tcp, *udp]:
        text = render_ladder(lad, fancy=False, width=100)
        assert text.isascii()
        assert not any(ord(ch) < 32 and ch != "\n" for ch in text)
    head = render_ladder(tcp[0]).splitlines()
    assert "10.0.0.1:40000 (client)" in head[0] and "10.0.0.2:8080 (server)" in head[0]
    assert head[1].split()[:3] == ["+0.000", "ms", "SYN-SENT"]
    assert "-- SYN seq=0 --" in head[1] and head[1].rstrip().endswith("LISTEN -> SYN-RECEIVED")
    assert "<- SYN,ACK seq=0 ack=1 --" in head[2]


def test_text_ladder_fancy_uses_box_drawing_and_never_raw_escapes(mixed: Analysis) -> None:
    tcp, _ = build_ladders(mixed)
    lines = ladder_lines(tcp[0], fancy=True, width=120)
    plain = "\n".join(t.plain for t in lines)
    assert "──▶" in plain and "◀─" in plain and "┃ TIME-WAIT" in plain
    assert "\x1b" not in plain and "\x00" not in plain
    assert any(span.style for t in lines for span in t.spans)  # coloured on a terminal


def test_text_report_carries_the_ladders(daytime: Analysis) -> None:
    text = render_text(daytime)
    assert " ladder" in text
    assert "-- SYN seq=0 --" in text and "| TIME-WAIT until +60.0" in text  # 60 s after the last ACK


def test_printable_text_keeps_lines_and_escapes_the_rest() -> None:
    assert (
        printable_text(b"a\r\nb\tc\x1b[0m\x00\xff\xe2\x80\xae") == "a\nb\tc\\x1b[0m\\x00\\xff\\xe2\\x80\\xae"
    )
    assert printable_text("héllo ✓".encode()) == "héllo ✓"


def test_arrow_count_cap_is_configurable(mixed: Analysis) -> None:
    tcp, _ = build_ladders(mixed, max_arrows=10)
    assert all(len(lad.arrows) <= 10 for lad in tcp)
    assert all(isinstance(r, Arrow | Elision) for lad in tcp for r in lad.rows)
