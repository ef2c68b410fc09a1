"""The analysis pipeline, the analyzer.report/1 document, the text report and ``analyzer analyze``."""

from __future__ import annotations

import gc
import gzip
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter, RawPcapWriter
from typer.testing import CliRunner

import analyzer
from analyzer.analysis import Analysis, CaptureInfo, analyze, capture_info
from analyzer.cli import app
from analyzer.errors import UsageError
from analyzer.report.json_report import render_json, report_schema
from analyzer.report.text import render_text

ROOT = Path(__file__).resolve().parents[1]
BASE_US = 1_700_000_000 * 1_000_000

# analyzer.report/1 field names, exactly as issue 3 lists them.
TOP_KEYS = {"schema", "capture", "tcp", "udp"}
CAPTURE_KEYS = {"file", "format", "link_types", "packets", "malformed", "truncated"}
TCP_KEYS = {
    "id",
    "client",
    "server",
    "first_ts",
    "last_ts",
    "packets",
    "handshake",
    "data",
    "teardown",
    "time_wait",
    "states",
    "zeek",
    "completeness",
    "anomalies",
}
HANDSHAKE_KEYS = {"state", "rtt_ms", "client_isn", "server_isn", "syn_retransmits", "options"}
DATA_KEYS = {"client_to_server", "server_to_client", "retransmissions", "out_of_order"}
DIRECTION_KEYS = {"bytes", "segments", "sha256", "preview"}
TEARDOWN_KEYS = {"kind", "first_fin", "fins_acked", "rst_by", "bytes_after_first_fin"}
TIME_WAIT_KEYS = {"holder", "start_ts", "until_ts", "hold_s"}
UDP_KEYS = {"id", "client", "server", "datagrams", "exchanges", "echo", "icmp_unreachable"}
UDP_EXTRA_KEYS = {"pairs"}  # request/reply pairs with latency (issue 3, item 8)
DATAGRAM_KEYS = {"dir", "ts", "bytes", "sha256", "preview"}
ICMP_KEYS = {"ts", "frame", "type", "code", "from", "datagram"}

CLIENT, SERVER = ("127.0.0.1", 40864), ("127.0.0.1", 13)
DAYTIME = b"2026-11-26 22:14:03\n"


# -- crafted captures -------------------------------------------------------------------------


def ether(pkt: Packet) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt


def daytime_packets() -> list[Packet]:
    """A daytime exchange: handshake, 20 bytes from the server, the server closes first (4-way)."""
    c, s = CLIENT, SERVER
    cisn, sisn = 1000, 5000

    def c2s(flags: str, seq: int, ack: int, data: bytes = b"") -> Packet:
        tcp = TCP(sport=c[1], dport=s[1], flags=flags, seq=seq, ack=ack, window=65535)
        return ether(IP(src=c[0], dst=s[0]) / tcp / Raw(data))

    def s2c(flags: str, seq: int, ack: int, data: bytes = b"") -> Packet:
        tcp = TCP(sport=s[1], dport=c[1], flags=flags, seq=seq, ack=ack, window=65535)
        return ether(IP(src=s[0], dst=c[0]) / tcp / Raw(data))

    syn = ether(
        IP(src=c[0], dst=s[0])
        / TCP(sport=c[1], dport=s[1], flags="S", seq=cisn, options=[("MSS", 65495), ("WScale", 7)])
    )
    synack = ether(
        IP(src=s[0], dst=c[0])
        / TCP(
            sport=s[1],
            dport=c[1],
            flags="SA",
            seq=sisn,
            ack=cisn + 1,
            options=[("MSS", 65495), ("WScale", 7)],
        )
    )
    n = len(DAYTIME)
    return [
        syn,
        synack,
        c2s("A", cisn + 1, sisn + 1),
        s2c("PA", sisn + 1, cisn + 1, DAYTIME),
        s2c("FA", sisn + 1 + n, cisn + 1),
        c2s("A", cisn + 1, sisn + 2 + n),
        c2s("FA", cisn + 1, sisn + 2 + n),
        s2c("A", sisn + 2 + n, cisn + 2),
    ]


def udp_packets() -> list[Packet]:
    """A UDP echo of two datagrams and a datagram to a closed port answered by ICMP."""
    a, echo, closed = ("127.0.0.1", 57401), ("127.0.0.1", 7), ("127.0.0.1", 9)

    def dgram(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> Packet:
        return ether(IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / Raw(data))

    probe = dgram(a, closed, b"anyone there?")
    return [
        dgram(a, echo, b"ping 1\n"),
        dgram(echo, a, b"ping 1\n"),
        dgram(a, echo, b"ping 2\n"),
        dgram(echo, a, b"ping 2\n"),
        probe,
        ether(IP(src="127.0.0.1", dst="127.0.0.1") / ICMP(type=3, code=3) / IPerror(bytes(probe[IP])[:28])),
    ]


def write_pcap(path: Path, packets: list[Packet], *, snap: dict[int, int] | None = None) -> Path:
    """Classic pcap with exact microsecond times, 100 us apart; ``snap`` cuts frame i to n bytes."""
    snap = snap or {}
    with RawPcapWriter(str(path), linktype=1, snaplen=65535) as w:
        w.write_header(None)
        for i, pkt in enumerate(packets):
            data = bytes(pkt)
            cut = data[: snap[i]] if i in snap else data
            us = BASE_US + 1_000 + i * 100
            w.write_packet(cut, sec=us // 1_000_000, usec=us % 1_000_000, caplen=len(cut), wirelen=len(data))
    return path


def write_pcapng(path: Path, packets: list[Packet]) -> Path:
    with PcapNgWriter(str(path)) as w:
        for i, pkt in enumerate(packets):
            pkt.time = (BASE_US + 1_000 + i * 100) / 1e6
            w.write(pkt)
    return path


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("caps")
    both = daytime_packets() + udp_packets()
    mixed = write_pcap(d / "mixed.pcap", both)
    pcapng = write_pcapng(d / "mixed.pcapng", both)
    gz = d / "mixed.pcapng.gz"
    gz.write_bytes(gzip.compress(pcapng.read_bytes(), mtime=0))
    empty = write_pcap(d / "empty.pcap", [])
    # Frame 4 (the server's data) cut inside the TCP header; the UDP probe cut inside its payload.
    cut = write_pcap(d / "cut.pcap", both, snap={3: 14 + 20 + 10, 12: 14 + 20 + 8 + 4})
    not_capture = d / "notes.txt"
    not_capture.write_text("this is not a capture\n")
    return {"mixed": mixed, "pcapng": pcapng, "gz": gz, "empty": empty, "cut": cut, "text": not_capture}


@pytest.fixture(scope="module")
def mixed(captures: dict[str, Path]) -> Analysis:
    return analyze(captures["mixed"])


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(report_schema()).validate(doc)


# -- the Python API ---------------------------------------------------------------------------


def test_analysis_object(mixed: Analysis, captures: dict[str, Path]) -> None:
    assert isinstance(mixed, analyzer.Analysis)
    assert len(mixed.packets) == 14
    assert len(mixed.tcp) == 1
    assert len(mixed.udp) == 2
    assert len(mixed.tcp_records) == 1 and len(mixed.udp_records) == 2
    assert mixed.capture == CaptureInfo(
        file=str(captures["mixed"]), format="pcap", link_types=(1,), packets=14, malformed=0, truncated=0
    )
    assert gc.isenabled()  # the pipeline pauses the collector and must turn it back on


def test_top_level_reexports_are_lazy() -> None:
    code = (
        "import sys, analyzer; assert 'pandas' not in sys.modules, 'pandas at import';"
        "from analyzer.analysis import Analysis; assert analyzer.Analysis is Analysis;"
        "assert callable(analyzer.analyze)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_to_dict_has_exactly_the_issue_field_names(mixed: Analysis) -> None:
    # capture and udp entries carry exactly the issue's names (plus the documented "pairs"); the
    # TCP analysis may add fields of its own, but every name the issue lists must be there as is.
    doc = mixed.to_dict()
    assert list(doc) == ["schema", "capture", "tcp", "udp"]
    assert doc["schema"] == "analyzer.report/1"
    assert set(doc["capture"]) == CAPTURE_KEYS
    tcp = doc["tcp"][0]
    assert set(tcp) >= TCP_KEYS
    assert set(tcp["client"]) == set(tcp["server"]) == {"ip", "port"}
    assert set(tcp["handshake"]) >= HANDSHAKE_KEYS
    assert set(tcp["data"]) >= DATA_KEYS
    assert set(tcp["data"]["client_to_server"]) >= DIRECTION_KEYS
    assert set(tcp["data"]["server_to_client"]) >= DIRECTION_KEYS
    assert set(tcp["teardown"]) >= TEARDOWN_KEYS
    assert set(tcp["teardown"]["fins_acked"]) == {"client", "server"}
    assert set(tcp["time_wait"]) >= TIME_WAIT_KEYS
    assert set(tcp["states"]) == {"client", "server"}
    assert set(tcp["zeek"]) == {"conn_state", "history"}
    for udp in doc["udp"]:
        assert set(udp) == UDP_KEYS | UDP_EXTRA_KEYS
        assert all(set(d) == DATAGRAM_KEYS for d in udp["datagrams"])
        assert all(set(e) == ICMP_KEYS for e in udp["icmp_unreachable"])


def test_every_tcp_field_is_documented_in_the_schema(mixed: Analysis) -> None:
    # Fields beyond the issue's list are allowed in TCP objects, but the schema must name them.
    defs = report_schema()["$defs"]
    tcp = mixed.to_dict()["tcp"][0]
    flow = defs["tcp_flow"]["properties"]
    assert set(tcp) <= set(flow)
    for key in ("handshake", "data", "teardown", "time_wait"):
        assert set(tcp[key]) <= set(flow[key]["properties"]), key
    for direction in ("client_to_server", "server_to_client"):
        assert set(tcp["data"][direction]) <= set(defs["direction"]["properties"])


def test_report_content_of_the_crafted_capture(mixed: Analysis) -> None:
    doc = mixed.to_dict()
    tcp = doc["tcp"][0]
    assert tcp["client"] == {"ip": "127.0.0.1", "port": 40864}
    assert tcp["server"] == {"ip": "127.0.0.1", "port": 13}
    assert tcp["data"]["server_to_client"]["bytes"] == len(DAYTIME)
    assert tcp["teardown"]["first_fin"] == "server"
    assert tcp["time_wait"]["holder"] == "server"
    echo, closed = doc["udp"]
    assert (echo["server"]["port"], echo["exchanges"], echo["echo"]) == (7, 2, True)
    assert closed["server"]["port"] == 9
    assert [(e["type"], e["code"], e["frame"], e["datagram"]) for e in closed["icmp_unreachable"]] == [
        (3, 3, 14, 0)
    ]


def test_msl_sets_the_time_wait_length(captures: dict[str, Path]) -> None:
    a = analyze(captures["mixed"], msl=10)
    assert a.msl == 10
    assert a.to_dict()["tcp"][0]["time_wait"]["hold_s"] == pytest.approx(20.0)


@pytest.mark.parametrize("msl", [0, -1, math.nan, math.inf])
def test_invalid_msl(captures: dict[str, Path], msl: float) -> None:
    with pytest.raises(UsageError):
        analyze(captures["mixed"], msl=msl)


def test_capture_formats(captures: dict[str, Path]) -> None:
    ng = analyze(captures["pcapng"]).capture
    gz = analyze(captures["gz"]).capture
    assert (ng.format, ng.link_types, ng.packets) == ("pcapng", (1,), 14)
    assert (gz.format, gz.link_types, gz.packets) == ("pcapng.gz", (1,), 14)


def test_malformed_and_truncated_counts(captures: dict[str, Path]) -> None:
    cap = analyze(captures["cut"]).capture
    assert (cap.packets, cap.truncated, cap.malformed) == (14, 2, 0)
    notes = pd.Series(
        ["", "truncated", "malformed; fragment", "fragment; truncated: 3 bytes"], dtype="category"
    )
    frame = analyzer.read_packets(captures["mixed"]).head(4).assign(note=notes)
    info = capture_info(captures["mixed"], frame)
    assert (info.malformed, info.truncated) == (1, 2)


def test_capture_facts_sniffed_when_the_decoder_gives_none(captures: dict[str, Path]) -> None:
    # Engines other than native may not fill DataFrame.attrs: the file header is read instead.
    for name, expected in (("mixed", ("pcap", (1,))), ("gz", ("pcapng.gz", (1,)))):
        packets = analyzer.read_packets(captures[name])
        packets.attrs.clear()
        info = capture_info(captures[name], packets)
        assert (info.format, info.link_types) == expected


def test_empty_capture(captures: dict[str, Path]) -> None:
    a = analyze(captures["empty"])
    assert a.to_dict()["tcp"] == [] and a.to_dict()["udp"] == []
    assert a.capture.packets == 0
    validate(json.loads(render_json(a)))
    assert "no TCP or UDP traffic" in render_text(a)


@pytest.mark.parametrize(
    "engine",
    [
        "scapy",
        pytest.param(
            "tshark",
            marks=[
                pytest.mark.tshark,
                pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
            ],
        ),
    ],
)
def test_every_engine_gives_the_same_report(captures: dict[str, Path], engine: str) -> None:
    # The flows are computed from the packet table, so any engine that produces the same table
    # (payload offsets included) gives the same report, UDP pairing and ICMP matching included.
    assert analyze(captures["mixed"], engine=engine).to_dict() == analyze(captures["mixed"]).to_dict()


# -- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mixed", "pcapng", "gz", "empty", "cut"])
def test_every_report_validates_against_the_schema(captures: dict[str, Path], name: str) -> None:
    a = analyze(captures[name])
    doc = json.loads(render_json(a))
    validate(doc)
    assert doc == a.to_dict()  # to_dict is already plain JSON data


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_rejects_a_renamed_field(mixed: Analysis) -> None:
    doc = json.loads(render_json(mixed))
    doc["udp"][0]["replies"] = doc["udp"][0].pop("exchanges")
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_json_layout_is_stable_and_one_flow_per_line(mixed: Analysis) -> None:
    text = render_json(mixed)
    assert text == render_json(mixed)
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert lines[1] == '  "schema": "analyzer.report/1",'
    flow_lines = [line for line in lines if line.startswith('    {"id":')]
    assert len(flow_lines) == 3
    assert list(json.loads(text)) == ["schema", "capture", "tcp", "udp"]


def test_json_nan_and_numpy_values_become_json() -> None:
    doc = {
        "schema": "analyzer.report/1",
        "capture": {"x": np.int64(3), "y": np.float64("nan"), "z": np.bool_(True)},
        "tcp": [{"rtt_ms": float("inf"), "n": np.uint16(7), "arr": np.array([1, 2])}],
        "udp": [],
    }
    out = json.loads(render_json(doc))
    assert out["capture"] == {"x": 3, "y": None, "z": True}
    assert out["tcp"] == [{"rtt_ms": None, "n": 7, "arr": [1, 2]}]


# -- text -------------------------------------------------------------------------------------


def record_analysis(tcp: list[dict[str, Any]], udp: list[dict[str, Any]], msl: float = 30.0) -> Analysis:
    """An Analysis around hand-written records (the text renderer reads only the records)."""
    packets = pd.DataFrame({"ts": [1_764_195_243.0, 1_764_195_243.5]})
    info = CaptureInfo(
        file="daytime.pcapng", format="pcapng", link_types=(1,), packets=10, malformed=0, truncated=1
    )
    return Analysis(
        capture=info,
        packets=packets,
        tcp=pd.DataFrame(),
        udp=pd.DataFrame(),
        tcp_records=tcp,
        udp_records=udp,
        msl=msl,
    )


T0 = 1_764_195_243.0


def daytime_record(**changes: Any) -> dict[str, Any]:
    """A TCP record shaped as issue 3 specifies: the daytime flow of ../shared/UX.md."""
    rec: dict[str, Any] = {
        "id": 0,
        "client": {"ip": "127.0.0.1", "port": 40864},
        "server": {"ip": "127.0.0.1", "port": 13},
        "first_ts": T0,
        "last_ts": T0 + 0.000180,
        "packets": 8,
        "handshake": {
            "state": "complete",
            "rtt_ms": 0.028,
            "client_isn": 1000,
            "server_isn": 5000,
            "syn_retransmits": 0,
            "options": {
                "client": {"mss": 65495, "wscale": 7, "sack_perm": True, "timestamps": True},
                "server": {"mss": 65495, "wscale": 7, "sack_perm": True, "timestamps": True},
            },
        },
        "data": {
            "client_to_server": {"bytes": 0, "segments": 0, "sha256": "e3" * 32, "preview": ""},
            "server_to_client": {
                "bytes": 20,
                "segments": 1,
                "sha256": "ab" * 32,
                "preview": "2026-11-26 22:14:03⏎",
            },
            "retransmissions": 0,
            "out_of_order": 0,
        },
        "teardown": {
            "kind": "fin-4way",
            "first_fin": "server",
            "fins_acked": {"client": True, "server": True},
            "rst_by": None,
            "bytes_after_first_fin": 0,
        },
        "time_wait": {
            "holder": "server",
            "start_ts": T0 + 0.000172,
            "until_ts": T0 + 60.000172,
            "hold_s": 60.0,
        },
        "states": {
            "client": [["SYN-SENT", T0], ["ESTABLISHED", T0 + 0.00001], ["CLOSE-WAIT", T0 + 0.00012]],
            "server": [["LISTEN", T0], ["SYN-RECEIVED", T0], ["ESTABLISHED", T0 + 0.00003]],
        },
        "zeek": {"conn_state": "SF", "history": "ShAdfFa"},
        "completeness": 31,
        "anomalies": [],
    }
    rec.update(changes)
    return rec


def echo_record() -> dict[str, Any]:
    def dg(direction: str, t: float, data: str) -> dict[str, Any]:
        return {"dir": direction, "ts": T0 + t, "bytes": len(data), "sha256": "cd" * 32, "preview": data}

    return {
        "id": 0,
        "client": {"ip": "127.0.0.1", "port": 57401},
        "server": {"ip": "127.0.0.1", "port": 7},
        "datagrams": [
            dg("c2s", 0.0, "ping"),
            dg("s2c", 0.00004, "ping"),
            dg("c2s", 0.001, "[bold]x\\x1b[31m"),
        ],
        "pairs": [{"request": 0, "reply": 1, "latency_ms": 0.04}],
        "exchanges": 1,
        "echo": False,
        "icmp_unreachable": [
            {"ts": T0 + 0.00105, "frame": 9, "type": 3, "code": 3, "from": "127.0.0.1", "datagram": 2}
        ],
    }


def test_text_report_tells_the_flow_story() -> None:
    text = render_text(record_analysis([daytime_record()], [echo_record()]))
    assert text.isascii()
    assert "\x1b" not in text
    assert "daytime.pcapng | pcapng | Ethernet (1)" in text
    assert "10 packets | 1 TCP connection | 1 UDP conversation" in text
    assert "1 truncated" in text
    assert "TCP 0 | 127.0.0.1:40864 (client) -> 127.0.0.1:13 (server)" in text
    assert re.search(r"handshake\s+complete \| RTT 0\.028 ms", text)
    assert "both offered MSS 65495, wscale 7, SACK, timestamps" in text
    assert 'server->client 20 B in 1 segment "2026-11-26 22:14:03\\n"' in text
    assert re.search(
        r"teardown\s+fin-4way \| the server closed first \(active closer\) \| both FINs ACKed", text
    )
    assert re.search(r"TIME_WAIT\s+server 127\.0\.0\.1:13 from \+0\.172 ms until \+60\.000 s", text)
    assert "MSL 30 s = Linux's fixed 60 s TIME_WAIT; RFC 9293's nominal MSL is 2 min" in text
    assert "client SYN-SENT -> ESTABLISHED -> CLOSE-WAIT" in text
    assert "Zeek SF ShAdfFa | Wireshark completeness 31 (SYN, SYN-ACK, ACK, DATA, FIN)" in text
    # UDP
    assert "UDP 0 | 127.0.0.1:57401 (client) -> 127.0.0.1:7 (server)" in text
    assert "1 request/reply pair | RTT 0.040 ms | 1 of 2 requests got no reply" in text
    assert re.search(
        r"ICMP\s+port unreachable \(ICMP type 3 code 3\) from 127\.0\.0\.1 at \+1\.050 ms \(frame 9\), "
        r"answering datagram #2 \(client->server\)",
        text,
    )
    assert "no handshake, no teardown, no TIME_WAIT: UDP has no connection state" in text
    assert "Zeek SF Dd" in text


def test_text_teardown_variants() -> None:
    half = daytime_record(
        teardown={
            "kind": "half-closed",
            "first_fin": "client",
            "fins_acked": {"client": True, "server": None},
            "rst_by": None,
            "bytes_after_first_fin": 5045,
        },
        time_wait={"holder": "none", "start_ts": None, "until_ts": None, "hold_s": None},
    )
    rst = daytime_record(
        teardown={
            "kind": "rst",
            "first_fin": None,
            "fins_acked": {"client": None, "server": None},
            "rst_by": "server",
            "bytes_after_first_fin": 0,
        },
        time_wait={"holder": "none", "start_ts": None, "until_ts": None, "hold_s": None},
        anomalies=[{"name": "rst-after-data", "frame": 7}],
    )
    simultaneous = daytime_record(
        teardown={
            "kind": "simultaneous",
            "first_fin": "client",
            "fins_acked": {"client": True, "server": False},
            "rst_by": None,
            "bytes_after_first_fin": 0,
        },
        time_wait={"holder": "both", "start_ts": T0 + 0.0002, "until_ts": T0 + 20.0002, "hold_s": 20.0},
    )
    text = render_text(record_analysis([half, rst, simultaneous], [], msl=10))
    assert "only the client sent a FIN; the capture ends half-closed" in text
    assert "the server sent 5,045 B after the client's FIN" in text
    assert "reset by the server" in text
    assert re.search(r"TIME_WAIT\s+nobody: a RST ended the connection", text)
    assert re.search(r"TIME_WAIT\s+nobody: the close did not finish", text)
    assert "rst-after-data (frame 7)" in text
    assert "both sides closed at once" in text
    assert "the server's FIN was not ACKed" in text
    assert "both (127.0.0.1:40864 and 127.0.0.1:13: simultaneous close)" in text
    assert "(20 s = 2xMSL; MSL 10 s from --msl; Linux's fixed 60 s TIME_WAIT is MSL 30 s;" in text


def test_text_shows_the_extra_tcp_facts_when_present() -> None:
    # Fields the TCP analysis adds beyond the issue's list (TIME_WAIT events, more data counters,
    # a guessed client, anomalies with side and frame) appear in the text.
    rec = daytime_record(
        client_guessed=True, anomalies=[{"name": "fin_not_acked", "side": "server", "frame": 12}]
    )
    rec["time_wait"].update(
        fin_reacked=True,
        reused_by_syn=5,
        reuse_ts=T0 + 2.0,
        rfc6191_ok=False,
        rfc6191_by=None,
        rst_in_time_wait=True,
    )
    rec["data"].update(dup_acks=2, zero_windows=1, keep_alives=0)
    rec["data"]["server_to_client"]["missing_bytes"] = 100
    text = render_text(record_analysis([rec], []))
    assert "(client guessed: no SYN seen)" in text
    assert "a retransmitted FIN was ACKed again during TIME_WAIT" in text
    assert "TCP 5 reused the 4-tuple before expiry (at +2.000 s); RFC 6191 violated" in text
    assert "RFC 1337" in text
    assert "2 duplicate ACKs | 1 zero window | 100 B never captured (gaps)" in text
    assert "fin_not_acked (server, frame 12)" in text


def test_text_in_colour_keeps_capture_strings_literal() -> None:
    text = render_text(record_analysis([daytime_record()], [echo_record()]), color=True, width=90)
    assert "\x1b[" in text  # styled
    assert "━━ TCP 0" in text and "→" in text
    assert "2026-11-26 22:14:03⏎" in text
    assert "[bold]x\\x1b[31m" in text  # rich markup in a payload is shown, not applied


def test_text_never_prints_control_characters_from_names() -> None:
    a = record_analysis([], [echo_record()])
    a = Analysis(
        capture=CaptureInfo(
            file="evil\x1b[2Jname.pcap", format="pcap", link_types=(1,), packets=1, malformed=0, truncated=0
        ),
        packets=a.packets,
        tcp=a.tcp,
        udp=a.udp,
        tcp_records=[],
        udp_records=a.udp_records,
    )
    for color in (False, True):
        text = render_text(a, color=color)
        assert "evil\\x1b[2Jname.pcap" in text
        assert "\x1b[2J" not in text


def test_text_of_a_real_analysis(mixed: Analysis) -> None:
    text = render_text(mixed)
    assert "TCP 0 | 127.0.0.1:40864 (client) -> 127.0.0.1:13 (server)" in text
    assert '"2026-11-26 22:14:03\\n"' in text
    assert "UDP 0 | 127.0.0.1:57401 (client) -> 127.0.0.1:7 (server)" in text
    assert "every reply equals its request (echo)" in text
    assert "UDP 1 | 127.0.0.1:57401 (client) -> 127.0.0.1:9 (server)" in text
    assert "port unreachable (ICMP type 3 code 3) from 127.0.0.1" in text


def test_long_udp_conversations_are_elided() -> None:
    rec = echo_record()
    rec["datagrams"] = [dict(rec["datagrams"][0], ts=T0 + i) for i in range(25)]
    rec["pairs"], rec["icmp_unreachable"], rec["exchanges"] = [], [], 0
    text = render_text(record_analysis([], [rec]))
    assert "... 16 more datagrams" in text
    assert "#24" in text and "#7 " not in text


# -- CLI --------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_text_default(captures: dict[str, Path]) -> None:
    result = runner.invoke(app, ["analyze", str(captures["mixed"])])
    assert result.exit_code == 0, result.output
    assert "TCP 0 | 127.0.0.1:40864 (client) -> 127.0.0.1:13 (server)" in result.stdout
    assert "\x1b" not in result.stdout


def test_cli_json_to_stdout_and_file(captures: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(captures["mixed"]), "--format", "json", "--msl", "60"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    validate(doc)
    assert doc["tcp"][0]["time_wait"]["hold_s"] == pytest.approx(120.0)
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["analyze", str(captures["mixed"]), "-f", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(out.read_text()) == json.loads(render_json(analyze(captures["mixed"])))
    text_out = tmp_path / "report.txt"
    assert runner.invoke(app, ["analyze", str(captures["mixed"]), "-o", str(text_out)]).exit_code == 0
    assert "TIME_WAIT" in text_out.read_text()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{missing}"], 4, "no such file"),
        (["{text}"], 4, "not a pcap or pcapng file"),
        (["{dir}"], 4, "is a directory"),
        (["{mixed}", "--format", "yaml"], 2, ""),
        (["{mixed}", "--msl", "0"], 2, "invalid --msl"),
        (["{mixed}", "--msl", "-5"], 2, "invalid --msl"),
        (["{mixed}", "--msl", "soon"], 2, ""),
        (["{mixed}", "--engine", "wireshark"], 2, ""),
        (["{mixed}", "-o", "{nodir}/r.json"], 2, "no directory"),
    ],
)
def test_cli_exit_codes(
    captures: dict[str, Path], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    values = {
        "missing": str(tmp_path / "missing.pcap"),
        "text": str(captures["text"]),
        "dir": str(tmp_path),
        "mixed": str(captures["mixed"]),
        "nodir": str(tmp_path / "nowhere"),
    }
    result = runner.invoke(app, ["analyze", *[a.format(**values) for a in args]])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_python_m_analyzer_analyze(captures: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(captures["mixed"]), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    validate(json.loads(proc.stdout))


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["analyze", "--help"])
    assert result.exit_code == 0
    assert "analyzer analyze cap.pcapng --format json" in " ".join(result.stdout.split())
