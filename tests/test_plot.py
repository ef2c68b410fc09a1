"""``analyzer plot FILE --flow N -o out.png|svg``: the time-sequence graph is written, at the size
asked for, and bad flows or extensions are usage errors."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import report_captures
from typer.testing import CliRunner

import analyzer
from analyzer.cli import app
from analyzer.errors import UsageError
from analyzer.report.plot import plot_flow

REPO = Path(__file__).resolve().parent.parent
DAYTIME = str(REPO / "captures" / "daytime.pcapng")
runner = CliRunner()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_of_the_daytime_connection(tmp_path: Path) -> None:
    out = tmp_path / "flow0.png"
    result = runner.invoke(
        app, ["plot", DAYTIME, "--flow", "0", "-o", str(out), "--width", "800", "--height", "500"]
    )
    assert result.exit_code == 0, result.output
    assert _png_size(out) == (800, 500)
    assert out.stat().st_size > 5_000


def test_svg_with_retransmission_and_rst(tmp_path: Path) -> None:
    analysis = analyzer.analyze(report_captures.mixed(tmp_path / "mixed.pcap"))
    svg_path = plot_flow(analysis, 0, tmp_path / "flow0.svg")
    root = ET.parse(svg_path).getroot()
    assert root.get("width") == "720pt" and root.get("height") == "432pt"  # 1000x600 px at 100 dpi
    text = svg_path.read_text(encoding="utf-8")
    for label in ("retransmission", "ACK", "SYN", "FIN", "data"):
        assert f">{label}<" in text, label
    rst = plot_flow(analysis, 1, tmp_path / "flow1.svg").read_text(encoding="utf-8")
    assert ">RST<" in rst
    # Same input, same file: nothing time- or run-dependent in the SVG.
    again = plot_flow(analysis, 0, tmp_path / "again.svg")
    assert again.read_bytes() == svg_path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "3", "-o", "x.png"], "no TCP connection 3"),
        (["-o", "x.gif"], "unknown extension"),
        (["-o", "x.png", "--width", "10"], "out of range"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    args = [a if not a.startswith("x.") else str(tmp_path / a) for a in args]
    result = runner.invoke(app, ["plot", DAYTIME, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not list(tmp_path.iterdir())


def test_capture_without_tcp(tmp_path: Path) -> None:
    analysis = analyzer.analyze(DAYTIME)
    empty = type(analysis)(
        capture=analysis.capture,
        packets=analysis.packets.iloc[:0],
        tcp=analysis.tcp.iloc[:0],
        udp=analysis.udp,
        tcp_records=[],
        udp_records=[],
    )
    with pytest.raises(UsageError, match="no TCP connection to plot"):
        plot_flow(empty, 0, tmp_path / "x.png")
