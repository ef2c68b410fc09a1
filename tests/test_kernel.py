"""analyzer.kernel: parsing /proc/net/tcp{,6} lines (formats from ANCHORS.md section 8)."""

from __future__ import annotations

import sys

import pytest

from analyzer import kernel

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# Two lines recorded on this machine's kernel (ANCHORS.md 8.2): a TIME_WAIT socket of the server
# port 13013 and an orphaned FIN_WAIT2 that also lives as a timewait mini-socket.
TW_LINE = (
    "   3: 0100007F:32D5 0100007F:B800 06 00000000:00000000 03:000016C4 00000000     0        0 0 3 "
    "000000007c1332af"
)
FW2_LINE = (
    "   3: 0100007F:DC44 0100007F:32D5 05 00000000:00000000 03:000001EE 00000000     0        0 0 3 "
    "0000000048fae483"
)
LISTEN_V6 = (
    "   0: 00000000000000000000000001000000:000D 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 9747 1 00000000baf4aceb 100 0 0 10 0"
)
MAPPED_V6 = (
    "   1: 0000000000000000FFFF00000100007F:000D 0000000000000000FFFF00000100007F:A000 06 "
    "00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000"
)

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="lines from a little-endian host")


@little_endian
def test_time_wait_line_decodes_addresses_ports_state_and_timer() -> None:
    s = kernel.parse_line(TW_LINE, hz=100)
    assert (s.local_ip, s.local_port) == ("127.0.0.1", 13013)
    assert (s.remote_ip, s.remote_port) == ("127.0.0.1", 47104)
    assert s.state == "TIME_WAIT"
    assert s.timer == 3
    assert s.timer_s == pytest.approx(58.28)
    assert s.inode == 0
    assert s.local == "127.0.0.1:13013"


@little_endian
def test_fin_wait2_line_is_not_time_wait() -> None:
    s = kernel.parse_line(FW2_LINE, hz=100)
    assert s.state == "FIN_WAIT2"
    assert s.timer_s == pytest.approx(4.94)
    assert kernel.time_wait([s]) == []
    assert kernel.unsettled([s]) == [s]


@little_endian
def test_ipv6_words_are_host_order_and_mapped_v4_is_unwrapped() -> None:
    listen = kernel.parse_line(LISTEN_V6)
    assert (listen.local_ip, listen.local_port, listen.state) == ("::1", 13, "LISTEN")
    assert listen.local == "[::1]:13"
    mapped = kernel.parse_line(MAPPED_V6, hz=100)
    assert (mapped.local_ip, mapped.remote_port, mapped.timer_s) == ("127.0.0.1", 40960, 60.0)


@little_endian
def test_parse_table_skips_header_and_filters_by_port() -> None:
    table = kernel.parse_table(HEADER + TW_LINE + "\n" + FW2_LINE + "\n", hz=100)
    assert len(table) == 2
    assert kernel.involving(table, [47104]) == table[:1]
    assert kernel.involving(table, [13013]) == table


@little_endian
def test_holder_from_the_server_port_side() -> None:
    tw = kernel.parse_line(TW_LINE)  # local port 13013 is the server's: the server holds it
    assert kernel.holder_of([tw], server_port=13013) == "server"
    assert kernel.holder_of([tw], server_port=47104) == "client"
    assert kernel.holder_of([tw], server_port=13013, client_port=1) == "none"
    peer = kernel.parse_line(TW_LINE.replace("0100007F:32D5 0100007F:B800", "0100007F:B800 0100007F:32D5"))
    assert kernel.holder_of([tw, peer], server_port=13013) == "both"
    assert kernel.holder_of([], server_port=13013) == "none"


@pytest.mark.parametrize("bad", ["", "  sl local", "   0: 0100007F 0100007F:0000 06 0 0 0 0 0 0 0"])
def test_malformed_lines_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        kernel.parse_line(bad)


def test_reading_this_namespace_returns_parsed_sockets() -> None:
    # Whatever this machine has open, every line must parse into a known state.
    for s in kernel.read_sockets():
        assert s.state in kernel.TCP_STATES.values()
        assert 0 <= s.local_port <= 65535
