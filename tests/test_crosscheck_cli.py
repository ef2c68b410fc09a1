"""``analyzer crosscheck FILE``: exit codes and output as a user sees them."""

from __future__ import annotations

import shutil
from pathlib import Path

import capbuild
import pytest
from typer.testing import CliRunner

from analyzer.cli import app

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
runner = CliRunner()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return capbuild.CAPTURES["pcap_le_usec_ether"](tmp_path_factory.mktemp("cli"))


@needs_tshark
@pytest.mark.tshark
def test_engines_agree_exit_0(capture: Path) -> None:
    result = runner.invoke(app, ["crosscheck", str(capture), "--engines", "scapy,tshark"])
    assert result.exit_code == 0, result.output
    frames = len(capbuild.suite_for(capbuild.LT_ETHERNET))
    assert f"scapy vs tshark: {frames} frames, 36 columns, agree" in result.stdout.splitlines()


@needs_tshark
@pytest.mark.tshark
def test_default_engines_agree(capture: Path) -> None:
    result = runner.invoke(app, ["crosscheck", str(capture)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(", agree") == 3  # native/scapy, native/tshark, scapy/tshark


@needs_tshark
@pytest.mark.tshark
def test_differences_exit_1_and_are_listed(tmp_path: Path) -> None:
    path = capbuild.CAPTURES["pcap_malformed"](tmp_path)
    result = runner.invoke(app, ["crosscheck", str(path), "--engines", "scapy,tshark", "--show", "2"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "12 differing fields in 4 columns (src 3, dst 3, proto 3, ip_proto 3)" in lines[1]
    assert lines[2].split() == ["frame", "1", "src", f"scapy='{capbuild.V4A}'", "tshark=-"]
    assert "10 more" in lines[4]


def test_missing_tshark_exit_3(capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tshark anywhere on PATH
    result = runner.invoke(app, ["crosscheck", str(capture), "--engines", "scapy,tshark"])
    assert result.exit_code == 3
    err = result.stderr.splitlines()
    assert err[0] == "error: tshark not found (needed by the tshark engine)"
    assert err[1].startswith("hint: ") and "apt-get install tshark" in err[1]
    assert len(err) == 2 and "Traceback" not in result.output


def test_not_a_capture_exit_4(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a capture\n")
    result = runner.invoke(app, ["crosscheck", str(bad), "--engines", "scapy,tshark"])
    assert result.exit_code == 4
    err = result.stderr.splitlines()
    assert err[0].startswith("error: ") and str(bad) in err[0]
    assert "Traceback" not in result.output


def test_unknown_engine_exit_2(capture: Path) -> None:
    result = runner.invoke(app, ["crosscheck", str(capture), "--engines", "scapy,wireshark"])
    assert result.exit_code == 2
    assert "unknown engine(s): wireshark" in result.stderr
