"""The three decoder engines on every capture capbuild makes: each follows the schema, they agree
field by field, and known values come out right (so agreement is not just shared mistakes)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import capbuild
import pandas as pd
import pytest

from analyzer.decode import read_packets
from analyzer.decode.compare import compare_tables, crosscheck_engines, note_key
from analyzer.decode.source import CaptureBytes
from analyzer.errors import CaptureFormatError, InputError, ToolNotFoundError
from analyzer.schema import validate_frame

HAVE_TSHARK = shutil.which("tshark") is not None
HAVE_EDITCAP = shutil.which("editcap") is not None
needs_tshark = pytest.mark.skipif(not HAVE_TSHARK, reason="tshark is not installed (apt-get install tshark)")

# Where tshark legitimately cannot give the schema's value (docs/PACKETS.md, "Known engine
# differences"): capture -> {(frame, column)} that differ between tshark and the other engines.
TSHARK_DIFFERENCES: dict[str, set[tuple[int, str]]] = {
    # An IPv4 header whose IHL or total length is impossible: tshark stops before the addresses
    # and protocol, so its engine has no src/dst/ip_proto (and so proto "other").
    "pcap_malformed": {
        (frame, col)
        for frame in capbuild.MALFORMED_HEADER_FRAMES
        for col in ("src", "dst", "proto", "ip_proto")
    },
}

ALL = sorted(capbuild.CAPTURES)


def _params(names: list[str]) -> list[object]:
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                n in capbuild.NEEDS_EDITCAP and not HAVE_EDITCAP, reason="editcap is not installed"
            ),
        )
        for n in names
    ]


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Build a capture by name once per session."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            d = tmp_path_factory.mktemp(name)
            built[name] = capbuild.CAPTURES[name](d)
        return built[name]

    return get


@pytest.fixture(scope="session")
def decoded(capture: Callable[[str], Path]) -> Callable[[str, str], pd.DataFrame]:
    """Decode a capture with an engine once per session."""
    cache: dict[tuple[str, str], pd.DataFrame] = {}

    def get(name: str, engine: str) -> pd.DataFrame:
        if (name, engine) not in cache:
            cache[name, engine] = read_packets(capture(name), engine=engine)
        return cache[name, engine]

    return get


def _diff_set(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> set[tuple[int, str]]:
    pair = compare_tables(names[0], a, names[1], b)
    assert pair.frames_a == pair.frames_b, f"{names}: {pair.frames_a} vs {pair.frames_b} frames"
    assert pair.total <= len(pair.differences), "more differences than kept"
    return {(d.frame, d.column) for d in pair.differences}


# -- every engine follows the schema --------------------------------------------------------


@pytest.mark.parametrize("name", _params(ALL))
def test_scapy_engine_follows_schema(name: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded(name, "scapy")
    validate_frame(df)
    assert len(df) > 0
    assert df["frame"].tolist() == list(range(1, len(df) + 1))
    assert (df["payload_caplen"] <= df["payload_len"]).all()
    assert ((df["payload_offset"] >= 0) | (df["payload_caplen"] == 0)).all()
    assert (df["ts"] == df["ts_ns"] / 1e9).all()


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("name", _params(ALL))
def test_tshark_engine_follows_schema(name: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded(name, "tshark")
    validate_frame(df)
    assert df["frame"].tolist() == list(range(1, len(df) + 1))


# -- engines agree ----------------------------------------------------------------------------


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("name", _params(ALL))
def test_scapy_equals_tshark(name: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    got = _diff_set(decoded(name, "scapy"), decoded(name, "tshark"), ("scapy", "tshark"))
    assert got == TSHARK_DIFFERENCES.get(name, set())


@pytest.mark.parametrize("name", _params(ALL))
def test_native_equals_scapy(name: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    native = decoded(name, "native")
    validate_frame(native)
    assert _diff_set(native, decoded(name, "scapy"), ("native", "scapy")) == set()


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("name", _params(ALL))
def test_native_equals_tshark(name: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    got = _diff_set(decoded(name, "native"), decoded(name, "tshark"), ("native", "tshark"))
    assert got == TSHARK_DIFFERENCES.get(name, set())


@needs_tshark
@pytest.mark.tshark
def test_crosscheck_names_the_malformed_header_difference(capture: Callable[[str], Path]) -> None:
    result = crosscheck_engines(capture("pcap_malformed"), ["scapy", "tshark"])
    assert not result.agree
    (pair,) = result.pairs
    assert pair.counts == {"src": 3, "dst": 3, "proto": 3, "ip_proto": 3}
    first = pair.differences[0]
    assert (first.frame, first.column, first.a, first.b) == (1, "src", capbuild.V4A, None)


# -- known values, per engine -----------------------------------------------------------------

ENGINES = [
    "scapy",
    "native",
    pytest.param("tshark", marks=[pytest.mark.tshark, needs_tshark]),
]


def _one(df: pd.DataFrame, query: str) -> pd.Series:
    rows = df.query(query)
    assert len(rows) == 1, f"{query!r} matched {len(rows)} rows"
    return rows.iloc[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_icmp_errors_quote_inner_headers(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcap_le_usec_ether", engine)
    unreach = _one(df, "icmp_type == 3 and ip_version == 4")
    src, dst, proto, sport, dport = capbuild.EXPECT["icmp_unreach_inner"]
    assert (unreach["proto"], unreach["icmp_code"]) == ("icmp", 3)
    assert (unreach["inner_src"], unreach["inner_dst"], unreach["inner_proto"]) == (src, dst, proto)
    assert (unreach["inner_sport"], unreach["inner_dport"]) == (sport, dport)
    assert (unreach["sport"], unreach["payload_offset"]) == (0, -1)
    v6 = _one(df, "icmp_type == 1 and ip_version == 6")
    src, dst, proto, sport, dport = capbuild.EXPECT["icmp6_unreach_inner"]
    assert (v6["proto"], v6["icmp_code"]) == ("icmpv6", 4)
    assert (v6["inner_src"], v6["inner_dst"], v6["inner_proto"]) == (src, dst, proto)
    assert (v6["inner_sport"], v6["inner_dport"]) == (sport, dport)
    echo = _one(df, "icmp_type == 8")
    assert pd.isna(echo["inner_src"]) and echo["inner_proto"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_tcp_flags_and_options(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcap_be_nsec_ether", engine)
    syn = _one(df, f"tcp_flags == {capbuild.EXPECT['syn_flags']} and ip_version == 4")
    assert syn["seq"] == capbuild.EXPECT["syn_seq"] and syn["ack"] == 0
    assert syn["opt_mss"] == capbuild.EXPECT["syn_mss"]
    assert syn["opt_wscale"] == capbuild.EXPECT["syn_wscale"]
    assert syn["opt_sack_perm"] and syn["opt_ts"]
    assert (syn["opt_tsval"], syn["opt_tsecr"]) == (capbuild.EXPECT["syn_tsval"], 0)
    ae = df[(df["tcp_flags"] & 0x100) != 0]
    assert len(ae) == 1
    synack = ae.iloc[0]
    assert synack["tcp_flags"] == capbuild.EXPECT["ae_flags"] == 0x112
    assert synack["opt_wscale"] == 14 and not synack["opt_ts"]
    rst = _one(df, "tcp_flags == 0x004")
    assert rst["ack"] == capbuild.EXPECT["rst_ack_raw"]  # raw ack field even without the ACK flag
    data = _one(df, "sport == 40000 and payload_len > 0")
    assert data["payload_len"] == capbuild.EXPECT["data_payload"]
    assert data["opt_sack_blocks"] == capbuild.EXPECT["data_sack_blocks"]
    assert (data["opt_tsval"], data["opt_tsecr"], data["opt_mss"], data["opt_wscale"]) == (1, 2, 0, -1)
    fin = _one(df, "tcp_flags == 0x031")  # FIN+ACK+URG
    assert fin["win"] == 8192
    bad_wscale = _one(df, "sport == 5")
    assert note_key(bad_wscale["note"]) == "malformed" and bad_wscale["opt_mss"] == 1000
    assert bad_wscale["opt_wscale"] == -1
    bad_mss = _one(df, "sport == 7")
    assert note_key(bad_mss["note"]) == "malformed" and bad_mss["opt_mss"] == 0
    doff = _one(df, "ip_proto == 6 and note.str.startswith('malformed') and sport == 0")
    assert doff["tcp_flags"] == 0 and doff["payload_offset"] == -1
    bad_udp = _one(df, "proto == 'udp' and sport == 3")
    assert note_key(bad_udp["note"]) == "malformed" and bad_udp["payload_len"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_fragments_and_extension_headers(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcap_le_nsec_ether", engine)
    v4 = df.query("ip_version == 4 and ip_frag")
    assert len(v4) == 3 and (v4["note"].map(note_key) == "fragment").all()
    assert v4["sport"].tolist() == [6000, 0, 0]
    assert v4["payload_len"].tolist() == [2008 - 8, 0, 0]
    v6 = df.query("ip_version == 6 and ip_frag")
    assert v6["ip_proto"].tolist() == [17, 17, 6, 6]
    assert v6["sport"].tolist() == [6001, 0, 1, 0]
    chain = _one(df, "ip_version == 6 and payload_len == 33")
    assert (chain["proto"], chain["ip_proto"], chain["opt_ts"], chain["opt_tsval"]) == ("tcp", 6, True, 10)
    assert _one(df, "ip_proto == 47")["proto"] == "other"
    arp = df.iloc[-1]
    assert (arp["ip_version"], arp["proto"], arp["note"]) == (0, "other", "")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", _params(ALL))
def test_payload_offset_points_at_the_payload(
    name: str, engine: str, capture: Callable[[str], Path], decoded: Callable[[str, str], pd.DataFrame]
) -> None:
    """The bytes at payload_offset (in the decompressed file) are the payload the builder wrote."""
    df = decoded(name, engine)
    known = {(40000, 80, 100): b"d", (5353, 53, 20): b"q", (53, 5353, 40): b"a", (40002, 443, 33): b"x"}
    checked = 0
    with CaptureBytes(capture(name)) as cap:
        for row in df.itertuples():
            fill = known.get((row.sport, row.dport, row.payload_len))
            if fill is not None and row.payload_caplen:
                assert cap.get(row.payload_offset, row.payload_caplen) == fill * row.payload_caplen
                checked += 1
    if name != "pcap_malformed":
        assert checked > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_pcapng_interfaces_and_timestamps(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    """Link type and time of every record: tsresol 10^-6 (default), 10^-9, 2^-20, 2^-30,
    10^-3 with if_tsoffset, an SPB (no time), an obsolete PB; big-endian blocks."""
    expected = capbuild.multi_pcapng(">").expected
    df = decoded("pcapng_multi_be", engine)
    assert list(zip(df["link_type"].tolist(), df["ts_ns"].tolist(), strict=True)) == expected
    # Frame 3 is on the 2^-20 interface: 1700000000.987654321 + 2 * 0.333333333 s, rounded down
    # to 1/1048576 s, then converted to ns rounding down as Wireshark does.
    ticks = (capbuild.BASE_NS + 987_654_321 + 2 * 333_333_333) * 2**20 // 10**9
    assert df["ts_ns"].iat[2] == ticks * 10**9 // 2**20 == 1_700_000_001_654_320_716
    assert df["link_type"].iat[2] == capbuild.LT_SLL2
    user = _one(df, "link_type == 147")
    assert note_key(user["note"]) == "unsupported-link" and user["ip_version"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_two_sections_reset_interfaces(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcapng_two_sections", engine)
    assert df["link_type"].tolist() == [1] * 5 + [229, 101] * 3
    assert df["ip_version"].tolist() == [4] * 5 + [6] * 6


@pytest.mark.parametrize("engine", ENGINES)
def test_null_and_loop_families(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    n6 = len(capbuild.ipv6_datagrams())
    for name in ("pcap_null_le", "pcap_null_be", "pcap_null_swapped", "pcap_loop"):
        df = decoded(name, engine)
        assert (df["ip_version"] == 6).sum() == n6, name  # AF_INET6 as 10, 24, 28 and 30
        assert df["ip_version"].iat[-1] == 0  # family 7 (OSI) is not IP


@pytest.mark.parametrize("engine", ENGINES)
def test_vlan_tags(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcap_vlan", engine)
    assert (df["ip_version"].iloc[:-1] != 0).all()  # 802.1Q, 802.1ad+802.1Q, 0x9100+802.1Q
    assert df["ip_version"].iat[-1] == 0  # ARP in a VLAN


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_frames(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    df = decoded("pcap_truncated", engine)
    cols = ["ip_version", "ip_proto", "sport", "payload_len", "payload_caplen", "icmp_type"]
    got = [(note_key(r.note), *(getattr(r, c) for c in cols)) for r in df.itertuples()]
    assert got == list(capbuild.TRUNCATED_EXPECT)
    assert (df["caplen"] < df["wirelen"]).sum() == len(df) - 1


@pytest.mark.parametrize("engine", ENGINES)
def test_timestamp_resolutions(engine: str, decoded: Callable[[str, str], pd.DataFrame]) -> None:
    usec = decoded("pcap_be_usec_ether", engine)["ts_ns"]
    nsec = decoded("pcap_le_nsec_ether", engine)["ts_ns"]
    assert nsec.iat[0] == capbuild.BASE_NS + 123_456_789
    assert (usec == nsec // 1000 * 1000).all()
    assert decoded("pcap_gz", engine)["ts_ns"].equals(nsec)


# -- unreadable input and missing tools ------------------------------------------------------

READERS = ["scapy", pytest.param("tshark", marks=[pytest.mark.tshark, needs_tshark])]


@pytest.mark.parametrize(
    "engine", ["scapy", pytest.param("tshark", marks=[pytest.mark.tshark, needs_tshark])]
)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, this is not a capture\n", "not a pcap or pcapng file"),
        (b"", "too short"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "file header cut short"),
    ],
)
def test_unreadable_input(engine: str, content: bytes, message: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    with pytest.raises(CaptureFormatError, match=message) as info:
        read_packets(bad, engine=engine)
    assert str(bad) in info.value.message
    assert info.value.exit_code == 4


def test_packet_block_for_an_undescribed_interface(tmp_path: Path) -> None:
    b = capbuild.PcapNgBuilder("<").shb().idb(capbuild.Iface(capbuild.LT_ETHERNET))
    frame = capbuild.frame_for(capbuild.LT_ETHERNET, capbuild.ipv4_datagrams()[0])
    b.epb(0, capbuild.Rec(frame, len(frame), capbuild.BASE_NS))
    b.ifaces.append(capbuild.Iface(capbuild.LT_RAW))  # written as if described, but no IDB
    b.epb(1, capbuild.Rec(frame, len(frame), capbuild.BASE_NS))
    path = b.write(tmp_path / "bad_if.pcapng")
    with pytest.raises(CaptureFormatError, match="interface 1"):
        read_packets(path, engine="scapy")


def test_cut_short_file_keeps_complete_records(capture: Callable[[str], Path], tmp_path: Path) -> None:
    whole = capture("pcap_le_usec_ether").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-10])  # a capture process killed mid-write
    df = read_packets(cut, engine="scapy")
    assert len(df) == len(read_packets(capture("pcap_le_usec_ether"), engine="scapy")) - 1


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_packets(tmp_path / "nope.pcap", engine="scapy")


def test_missing_tshark(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capture: Callable[[str], Path]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFoundError, match="tshark not found") as info:
        read_packets(capture("pcap_raw"), engine="tshark")
    assert info.value.exit_code == 3
    assert info.value.hint and "apt-get install tshark" in info.value.hint


def test_import_analyzer_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, analyzer, analyzer.decode, analyzer.decode.native; "
        "print('scapy' in sys.modules, 'pyshark' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_cold_read_loads_pandas_in_background_and_matches_warm_read(
    capture: Callable[[str], Path],
) -> None:
    """A fresh interpreter (pandas imported on a second thread meanwhile) gives the same frame."""
    import subprocess
    import sys

    from analyzer.decode.native import import_in_background

    path = capture("pcapng_multi_le")
    code = (
        "import sys, analyzer; df = analyzer.read_packets(sys.argv[1]); "
        "sys.stdout.write(df.to_json(orient='split'))"
    )
    cold = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    warm = read_packets(path).to_json(orient="split")
    assert cold.stdout == warm
    assert import_in_background("pandas") is None  # already imported here: no thread


def test_scapy_failure_is_a_note_not_raw(
    capture: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scapy layer that raises on a complete header is reported in note, never hidden."""
    from analyzer.decode import scapy_engine

    class Broken:
        def __init__(self, data: bytes) -> None:
            raise ValueError("boom")

    monkeypatch.setattr(scapy_engine._scapy(), "UDP", Broken)
    df = read_packets(capture("pcap_ipv4"), engine="scapy")
    udp = df[df["ip_proto"] == 17]
    # Every UDP header scapy is handed (all but the two non-first fragments) fails loudly.
    nonfirst = udp["note"].str.startswith("fragment")
    assert nonfirst.sum() == 2
    handed = udp[~nonfirst]
    assert handed["note"].str.startswith("malformed: scapy Broken: ValueError: boom").all()
    assert (handed["sport"] == 0).all() and (handed["payload_offset"] == -1).all()
