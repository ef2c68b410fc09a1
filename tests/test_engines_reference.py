"""The three engines agree on the reference captures and on the 100k-packet benchmark capture."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.decode.compare import crosscheck_engines, format_report

ROOT = Path(__file__).resolve().parents[1]
# captures/runs/ holds the user's own `analyzer run` output (not versioned): not reference material.
REFERENCE = sorted(p for p in (ROOT / "captures").glob("**/*.pcap*") if "runs" not in p.parts)
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize(
    "capture", REFERENCE, ids=[p.relative_to(ROOT / "captures").as_posix() for p in REFERENCE]
)
def test_engines_agree_on_reference_capture(capture: Path) -> None:
    result = crosscheck_engines(capture, ["native", "scapy", "tshark"])
    assert result.agree, format_report(result, show=10)


@pytest.mark.slow
@pytest.mark.tshark
@needs_tshark
def test_native_and_tshark_agree_on_100k_benchmark_capture(tmp_path: Path) -> None:
    """The generated benchmark capture: every teardown kind, port reuse, UDP, IPv6, 100,000 frames."""
    capture = tmp_path / "bench-100k.pcap"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gen.py"),
            "--packets",
            "100000",
            "--format",
            "pcap",
            "-o",
            str(capture),
        ],
        check=True,
        capture_output=True,
    )
    result = crosscheck_engines(capture, ["native", "tshark"])
    assert result.agree, format_report(result, show=10)
