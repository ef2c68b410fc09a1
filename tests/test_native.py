"""The native columnar decoder: container edge cases, fast paths, and property tests.

Field-by-field agreement with the scapy and tshark engines over the whole capture corpus is
in test_engines.py; here are the cases specific to how the native engine works (the record
walk, damaged files, the speculative IPv4+TCP read, the NOP,NOP,TS fast path).
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analyzer
from analyzer.decode.container import read_records
from analyzer.errors import CaptureFormatError, InputError
from analyzer.schema import validate_frame

scapy_all = pytest.importorskip("scapy.all")
Ether, IP, IPv6, TCP, UDP, Raw = (
    scapy_all.Ether,
    scapy_all.IP,
    scapy_all.IPv6,
    scapy_all.TCP,
    scapy_all.UDP,
    scapy_all.Raw,
)

ZERO_MAC = "00:00:00:00:00:00"  # as tcpdump on lo; explicit so scapy never resolves a MAC (ARP)


def Eth() -> object:  # reads like the scapy layer it builds
    return Ether(src=ZERO_MAC, dst=ZERO_MAC)


PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def pcap_bytes(frames: list[bytes], *, ts: int = 1_700_000_000, caplens: list[int] | None = None) -> bytes:
    """A little-endian microsecond Ethernet pcap of ``frames`` (optionally cut to ``caplens``)."""
    out = [PCAP_HEADER]
    for i, frame in enumerate(frames):
        cap = len(frame) if caplens is None else caplens[i]
        out.append(struct.pack("<IIII", ts + i, 1000 * i, cap, len(frame)) + frame[:cap])
    return b"".join(out)


def write(tmp_path: Path, data: bytes, name: str = "c.pcap") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def linux_segment(sport: int, dport: int, seq: int, ack: int, payload: bytes, flags: str = "PA") -> bytes:
    """A segment as Linux sends it on an established connection: NOP, NOP, TS."""
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (seq & 0xFFFF, ack & 0xFFFF))]
    pkt = (
        Ether()
        / IP(src="127.0.0.1", dst="127.0.0.1")
        / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, options=opts)
    )
    return bytes(pkt / Raw(payload)) if payload else bytes(pkt)


def test_reads_a_simple_capture_with_exact_fields(tmp_path: Path) -> None:
    frames = [linux_segment(40000, 13, 1000, 2000, b"hello\n"), linux_segment(13, 40000, 2000, 1006, b"")]
    df = analyzer.read_packets(write(tmp_path, pcap_bytes(frames)))
    validate_frame(df)
    assert df["frame"].tolist() == [1, 2]
    assert df["ts_ns"].tolist() == [1_700_000_000_000_000_000, 1_700_000_001_001_000_000]
    assert df["sport"].tolist() == [40000, 13]
    assert df["seq"].tolist() == [1000, 2000]
    assert df["payload_len"].tolist() == [6, 0]
    assert df["opt_ts"].tolist() == [True, True]
    assert df["opt_tsval"].tolist() == [1000, 2000]
    assert df["tcp_flags"].tolist() == [0x18, 0x18]
    assert df.attrs["format"] == "pcap" and df.attrs["link_types"] == [1]
    # payload_offset points at the payload bytes in the file
    raw = (tmp_path / "c.pcap").read_bytes()
    off = int(df["payload_offset"][0])
    assert raw[off : off + 6] == b"hello\n"


def test_mixed_shapes_take_the_generic_paths(tmp_path: Path) -> None:
    """IPv4 with options next to plain IPv4, UDP between TCP: the speculative read must not leak."""
    frames = [
        linux_segment(1, 2, 10, 20, b"a"),
        bytes(
            Ether()
            / IP(src="10.0.0.1", dst="10.0.0.2", options=[scapy_all.IPOption_RR()])
            / TCP(sport=3, dport=4, seq=30, flags="S", options=[("MSS", 1460)])
        ),
        bytes(Eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=53, dport=5353) / Raw(b"q" * 7)),
        linux_segment(5, 6, 50, 60, b"bbbb"),
    ]
    df = analyzer.read_packets(write(tmp_path, pcap_bytes(frames)))
    assert df["proto"].tolist() == ["tcp", "tcp", "udp", "tcp"]
    assert df["sport"].tolist() == [1, 3, 53, 5]
    assert df["seq"].tolist() == [10, 30, 0, 50]
    assert df["opt_mss"].tolist() == [0, 1460, 0, 0]
    assert df["opt_ts"].tolist() == [True, False, False, True]
    assert df["payload_len"].tolist() == [1, 0, 7, 4]


def test_packet_at_the_very_end_of_the_file(tmp_path: Path) -> None:
    """The last frame is shorter than the speculative 52-byte read: zeros, not an IndexError."""
    tiny = bytes(Eth() / IP(src="1.2.3.4", dst="5.6.7.8", proto=6))  # IPv4 header only
    df = analyzer.read_packets(write(tmp_path, pcap_bytes([linux_segment(1, 2, 3, 4, b"x"), tiny])))
    assert df["ip_version"].tolist() == [4, 4]
    assert df["note"].tolist()[1].startswith("truncated") or df["note"].tolist()[1].startswith("malformed")
    assert df["sport"].tolist() == [1, 0]


def test_snaplen_cut_is_truncated_not_malformed(tmp_path: Path) -> None:
    frame = linux_segment(1, 2, 3, 4, b"x" * 100)
    df = analyzer.read_packets(write(tmp_path, pcap_bytes([frame], caplens=[80])))
    assert df["note"][0] == "truncated"
    assert df["payload_len"][0] == 100
    assert df["payload_caplen"][0] == 80 - 66


def test_file_cut_mid_record_keeps_the_complete_records(tmp_path: Path) -> None:
    data = pcap_bytes([linux_segment(1, 2, 3, 4, b"x" * 50)] * 3)
    df = analyzer.read_packets(write(tmp_path, data[:-20]))
    assert len(df) == 2
    assert any("cut short" in w for w in df.attrs["warnings"])


def test_impossible_record_length_stops_there(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes([linux_segment(1, 2, 3, 4, b"x")] * 3))
    second = 24 + 16 + len(linux_segment(1, 2, 3, 4, b"x"))
    struct.pack_into("<I", data, second + 8, 0x7FFFFFFF)
    df = analyzer.read_packets(write(tmp_path, bytes(data)))
    assert len(df) == 1
    assert df.attrs["warnings"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (b"hello world, not a capture", "not a pcap or pcapng"),
        (PCAP_HEADER[:10], "header cut short"),
        (struct.pack("<I", 0xA1B2C3D4) + b"\0" * 8, "cut short"),
    ],
)
def test_unreadable_input_is_a_capture_format_error(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(CaptureFormatError, match=message):
        analyzer.read_packets(write(tmp_path, content))


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        analyzer.read_packets(tmp_path / "nope.pcap")
    with pytest.raises(InputError, match="directory"):
        analyzer.read_packets(tmp_path)


def test_gzip_is_transparent_and_broken_gzip_is_reported(tmp_path: Path) -> None:
    data = pcap_bytes([linux_segment(1, 2, 3, 4, b"zz")])
    df = analyzer.read_packets(write(tmp_path, gzip.compress(data), "c.pcap.gz"))
    assert df.attrs["compressed"] is True
    assert df["payload_len"].tolist() == [2]
    with pytest.raises(CaptureFormatError, match="gzip"):  # corrupt, not just short
        analyzer.read_packets(write(tmp_path, gzip.compress(data)[:12] + b"\xff" * 40, "bad.pcap.gz"))


def test_gzip_cut_short_keeps_the_complete_records(tmp_path: Path) -> None:
    """A .gz still being written (or copied partly): what decompresses is read, with warnings."""
    data = pcap_bytes([linux_segment(1, 2, i, 4, b"y" * 200) for i in range(50)])
    packed = gzip.compress(data)
    df = analyzer.read_packets(write(tmp_path, packed[: len(packed) * 2 // 3], "cut.pcap.gz"))
    assert 0 < len(df) < 50
    assert df["seq"].tolist() == list(range(len(df)))
    assert any("gzip stream ends early" in w for w in df.attrs["warnings"])


def test_zero_records(tmp_path: Path) -> None:
    df = analyzer.read_packets(write(tmp_path, PCAP_HEADER))
    validate_frame(df)
    assert len(df) == 0


def test_pcapng_ts_resolution_power_of_two_and_offset(tmp_path: Path) -> None:
    """if_tsresol 2^-20 with if_tsoffset: exact integer conversion."""
    frame = linux_segment(1, 2, 3, 4, b"")
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    opts = struct.pack("<HHB3x", 9, 1, 0x80 | 20) + struct.pack("<HHq", 14, 8, 100) + struct.pack("<HH", 0, 0)
    idb_body = struct.pack("<HHI", 1, 0, 0) + opts
    idb = struct.pack("<II", 1, 12 + len(idb_body)) + idb_body + struct.pack("<I", 12 + len(idb_body))
    units = (5 << 20) + (1 << 19)  # 5.5 s
    pad = b"\0" * (-len(frame) % 4)
    epb_body = struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)) + frame + pad
    epb = struct.pack("<II", 6, 12 + len(epb_body)) + epb_body + struct.pack("<I", 12 + len(epb_body))
    df = analyzer.read_packets(write(tmp_path, shb + idb + epb, "c.pcapng"))
    assert df["ts_ns"].tolist() == [105_500_000_000]
    assert df.attrs["format"] == "pcapng"


def test_record_walk_matches_scapy_reader(tmp_path: Path) -> None:
    frames = [linux_segment(i, 80, i * 7, i * 11, b"p" * (i % 17)) for i in range(1, 200)]
    p = write(tmp_path, pcap_bytes(frames))
    rec = read_records(p.read_bytes(), p)
    with scapy_all.RawPcapReader(str(p)) as reader:
        lengths = [meta.caplen for _data, meta in reader]
    assert rec.caplen.tolist() == lengths
    assert np.all(np.diff(rec.data_off) == np.array(lengths[:-1]) + 16)


# -- property tests ---------------------------------------------------------------------------

tcp_flags = st.integers(min_value=0, max_value=0x1FF)
ports = st.integers(min_value=0, max_value=65535)
u32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def tcp_packets(draw: st.DrawFn) -> tuple[bytes, dict[str, int]]:
    v6 = draw(st.booleans())
    fields = {
        "sport": draw(ports),
        "dport": draw(ports),
        "seq": draw(u32),
        "ack": draw(u32),
        "flags": draw(tcp_flags),
        "win": draw(st.integers(0, 65535)),
        "len": draw(st.integers(0, 60)),
        "mss": draw(st.one_of(st.none(), st.integers(1, 65535))),
        "ts": draw(st.one_of(st.none(), st.tuples(u32, u32))),
    }
    opts: list[tuple[str, object]] = []
    if fields["mss"] is not None:
        opts.append(("MSS", fields["mss"]))
    if fields["ts"] is not None:
        opts += [("NOP", None), ("NOP", None), ("Timestamp", fields["ts"])]
    tcp = TCP(
        sport=fields["sport"],
        dport=fields["dport"],
        seq=fields["seq"],
        ack=fields["ack"],
        flags=fields["flags"],  # scapy's 9-bit flags field: bit 8 is AE (formerly NS)
        window=fields["win"],
        options=opts,
    )
    ip = IPv6(src="::1", dst="::2") if v6 else IP(src="127.0.0.1", dst="127.0.0.2")
    return bytes(Eth() / ip / tcp / Raw(b"d" * fields["len"])), fields


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(tcp_packets(), min_size=1, max_size=8))
def test_property_tcp_fields_roundtrip(tmp_path: Path, pkts: list[tuple[bytes, dict[str, int]]]) -> None:
    df = analyzer.read_packets(write(tmp_path, pcap_bytes([p for p, _ in pkts]), "prop.pcap"))
    validate_frame(df)
    for row, (_, f) in zip(df.itertuples(), pkts, strict=True):
        assert (row.sport, row.dport, row.seq, row.ack, row.win) == (
            f["sport"],
            f["dport"],
            f["seq"],
            f["ack"],
            f["win"],
        )
        assert row.tcp_flags == f["flags"]
        assert row.payload_len == f["len"]
        assert row.opt_mss == (f["mss"] or 0)
        assert row.opt_ts == (f["ts"] is not None)
        if f["ts"] is not None:
            assert (row.opt_tsval, row.opt_tsecr) == f["ts"]
        assert row.note == ""


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=6),
    st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 147]),
)
def test_property_garbage_frames_never_raise(tmp_path: Path, frames: list[bytes], link: int) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link)
    data = header + b"".join(struct.pack("<IIII", 1, 0, len(f), len(f) + 3) + f for f in frames)
    df = analyzer.read_packets(write(tmp_path, data, "junk.pcap"))
    validate_frame(df)
    assert len(df) == len(frames)
    assert (df["payload_caplen"] <= df["payload_len"]).all()
    off = df["payload_offset"]
    inside = off[off >= 0] + df["payload_caplen"][off >= 0]
    assert (inside <= len(data)).all()


# -- the optional C record walker ---------------------------------------------------------------


def _records_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    from analyzer.decode.source import CaptureBytes

    with CaptureBytes(path) as src:
        fast = read_records(src.data, path)
        monkeypatch.setenv("ANALYZER_PURE_PYTHON", "1")
        slow = read_records(src.data, path)
        monkeypatch.delenv("ANALYZER_PURE_PYTHON")
    return fast, slow


@pytest.mark.parametrize("name", sorted(__import__("capbuild").CAPTURES))
def test_c_and_python_record_walks_agree(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import capbuild

    path = capbuild.CAPTURES[name](tmp_path)
    fast, slow = _records_both_ways(path, monkeypatch)
    for field in ("data_off", "caplen", "wirelen", "ts_ns", "link_type"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
    assert (fast.warnings, fast.link_types) == (slow.warnings, slow.link_types)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cut", [0, 7, 20, 33])
def test_c_and_python_walks_agree_on_damaged_files(
    cut: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pcap_bytes([linux_segment(1, 2, i, 4, b"x" * i) for i in range(1, 30)])
    path = write(tmp_path, data[: len(data) - cut])
    fast, slow = _records_both_ways(path, monkeypatch)
    assert np.array_equal(fast.data_off, slow.data_off)  # type: ignore[attr-defined]
    assert fast.warnings == slow.warnings  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_c_walker_is_built_where_a_compiler_exists() -> None:
    from analyzer.decode import container

    assert container._walk is not None, "setup.py's optional extension failed to build"


# -- the C walk in two halves -------------------------------------------------------------------

needs_c_walk = pytest.mark.skipif(
    __import__("analyzer.decode.container").decode.container._walk is None, reason="no C walker"
)


class _SyncAt:
    """The C walker, with ``pcap_sync``/``pcapng_sync`` answering ``offset`` (a wrong or
    missing guess)."""

    def __init__(self, real: object, offset: int) -> None:
        self._real, self._offset = real, offset

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def pcap_sync(self, *_: object) -> int:
        return self._offset

    def pcapng_sync(self, *_: object) -> int:
        return self._offset


def _one_walk(data: bytes) -> np.ndarray:
    from analyzer.decode.container import _walk_pcap_python

    return _walk_pcap_python(data, "<")


@needs_c_walk
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=120),
    cut=st.integers(min_value=0, max_value=40),
    guess=st.one_of(st.none(), st.integers(min_value=-1, max_value=40_000)),
)
@settings(max_examples=150, deadline=None)
def test_property_two_half_walk_equals_one_walk(lengths: list[int], cut: int, guess: int | None) -> None:
    """Whatever the sync guess (right, wrong, none) and however the file ends, the halves join
    into exactly the one-walk offsets."""
    from analyzer.decode import container

    frames = [bytes([i % 251]) * n for i, n in enumerate(lengths)]
    data = pcap_bytes(frames)
    data = data[: len(data) - cut] if cut < len(data) - 24 else data
    real = container._walk
    walker = real if guess is None else _SyncAt(real, guess)
    try:
        container._walk = walker
        halves = container._walk_pcap_halves(data, False, False)
    finally:
        container._walk = real
    assert np.array_equal(halves, _one_walk(data))


@needs_c_walk
def test_two_half_walk_finds_the_middle_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real capture the guess is a record boundary, so the second half really runs."""
    from analyzer.decode import _walk as cwalk  # type: ignore[attr-defined]
    from analyzer.decode import container

    data = pcap_bytes([linux_segment(1, 2, i, 4, b"y" * (i % 97)) for i in range(900)])  # usec < 10**6
    offsets = _one_walk(data)
    sync = cwalk.pcap_sync(data, False, False, len(data) // 2, len(data))
    assert sync in set(offsets.tolist())
    monkeypatch.setattr(container, "HALVES_MIN_BYTES", 1)
    monkeypatch.setattr(container, "usable_cpus", lambda: 2)
    path = write(tmp_path, data)
    with __import__("analyzer.decode.source").decode.source.CaptureBytes(path) as src:
        assert np.array_equal(read_records(src.data, path).data_off, offsets + 16)


@needs_c_walk
def test_two_half_walk_with_a_damaged_first_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record with an impossible length before the middle: the first walk never lands on the
    guess, goes on alone, and the result is the one walk's (cut there later by _cut_damaged)."""
    from analyzer.decode import container

    frames = [linux_segment(1, 2, i, 4, b"z" * (i % 50)) for i in range(400)]
    data = bytearray(pcap_bytes(frames))
    bad = int(_one_walk(bytes(data))[100])
    data[bad + 8 : bad + 12] = struct.pack("<I", 0x7FFF0000)
    assert np.array_equal(container._walk_pcap_halves(bytes(data), False, False), _one_walk(bytes(data)))


@needs_c_walk
@pytest.mark.parametrize("name", sorted(__import__("capbuild").CAPTURES))
def test_two_half_walks_agree_with_python_on_every_built_capture(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pcap and pcapng (several sections, interfaces, skipped and obsolete blocks, both byte
    orders), walked in two halves from the smallest file up."""
    import capbuild

    from analyzer.decode import container

    path = capbuild.CAPTURES[name](tmp_path)
    monkeypatch.setattr(container, "HALVES_MIN_BYTES", 1)
    monkeypatch.setattr(container, "usable_cpus", lambda: 2)
    fast, slow = _records_both_ways(path, monkeypatch)
    for field in ("data_off", "caplen", "wirelen", "ts_ns", "link_type"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
    assert fast.warnings == slow.warnings  # type: ignore[attr-defined]


def _pcapng_blocks(sizes: list[int], other_at: int | None) -> bytes:
    """SHB, IDB (Ethernet), then an EPB per size (an ISB before EPB number ``other_at``)."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    out = [
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        block(1, struct.pack("<HHI", 1, 0, 0)),
    ]
    for i, n in enumerate(sizes):
        if i == other_at:
            out.append(block(5, struct.pack("<III", 0, 0, 0)))
        out.append(block(6, struct.pack("<IIIII", 0, 0, i, n, n) + bytes([i % 251]) * n))
    return b"".join(out)


@needs_c_walk
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=100),
    other=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    guess=st.one_of(st.none(), st.integers(min_value=-1, max_value=12_000)),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_pcapng_two_half_walk_equals_one_walk(
    sizes: list[int], other: int | None, guess: int | None, tmp_path: Path
) -> None:
    """Right, wrong or missing guesses, a non-packet block before or after the guess: the EPB
    offsets equal the pure-Python walk's."""
    import os

    from analyzer.decode import container

    data = _pcapng_blocks(sizes, other)
    real, min_bytes, cpus = container._walk, container.HALVES_MIN_BYTES, container.usable_cpus
    try:
        container._walk = real if guess is None else _SyncAt(real, guess)  # type: ignore[assignment]
        container.HALVES_MIN_BYTES, container.usable_cpus = 1, lambda: 2
        halves = read_records(data, tmp_path / "x.pcapng")
        os.environ["ANALYZER_PURE_PYTHON"] = "1"
        one = read_records(data, tmp_path / "x.pcapng")
    finally:
        os.environ.pop("ANALYZER_PURE_PYTHON", None)
        container._walk, container.HALVES_MIN_BYTES, container.usable_cpus = real, min_bytes, cpus
    assert np.array_equal(halves.data_off, one.data_off)
    assert len(one.data_off) == len(sizes)


# -- layers decoded on several threads ----------------------------------------------------------


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("name", sorted(__import__("capbuild").CAPTURES))
def test_threaded_decode_equals_one_thread(
    name: str, threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges of records decoded apart and joined give the one-thread frame (IPv6 and ICMP
    quoted-address indexes are shifted to the range's start)."""
    import capbuild
    import pandas.testing as pdt

    from analyzer.decode import native

    path = capbuild.CAPTURES[name](tmp_path)
    one = analyzer.read_packets(path)
    monkeypatch.setattr(native, "THREAD_MIN_RECORDS", 1)
    monkeypatch.setattr(native, "MAX_THREADS", threads)
    monkeypatch.setattr(native, "usable_cpus", lambda: threads)
    pdt.assert_frame_equal(analyzer.read_packets(path), one)


def test_threaded_decode_reraises_a_thread_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import capbuild

    from analyzer.decode import native

    path = capbuild.CAPTURES["pcap_ipv6"](tmp_path)
    calls: list[int] = []
    real = native.decode_layers

    def second_fails(buf: object, rec: object, out: object = None) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("decode thread")
        return real(buf, rec, out)  # type: ignore[arg-type]

    monkeypatch.setattr(native, "decode_layers", second_fails)
    monkeypatch.setattr(native, "THREAD_MIN_RECORDS", 1)
    monkeypatch.setattr(native, "usable_cpus", lambda: 2)
    with pytest.raises(MemoryError, match="decode thread"):
        analyzer.read_packets(path)


def test_on_thread_returns_its_value_or_raises_its_error_in_the_caller() -> None:
    import threading

    from analyzer.decode.cpus import OnThread

    ran_on: list[str] = []

    def work() -> int:
        ran_on.append(threading.current_thread().name)
        return 42

    assert OnThread(work, "helper").result() == 42 and ran_on == ["helper"]

    def fail() -> int:
        raise MemoryError("on the thread")

    with pytest.raises(MemoryError, match="on the thread"):
        OnThread(fail, "helper").result()
