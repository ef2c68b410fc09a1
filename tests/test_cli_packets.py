"""`analyzer packets`: formats, queries, engines and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from analyzer.cli import app

ROOT = Path(__file__).resolve().parents[1]
DAYTIME = ROOT / "captures" / "daytime.pcapng"
runner = CliRunner()


def test_table_shows_every_frame_with_flags() -> None:
    result = runner.invoke(app, ["packets", str(DAYTIME)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:3] == ["frame", "ts", "src"]
    assert len(lines) == 1 + 8
    assert "SYN,ACK" in lines[2]
    assert "FIN,ACK" in result.output


def test_query_filters_rows() -> None:
    result = runner.invoke(app, ["packets", str(DAYTIME), "--query", "payload_len > 0", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()
    assert len(rows) == 2  # header + the one data segment
    assert rows[0].startswith("frame,ts,ts_ns")


def test_json_lines_are_records_with_schema_fields() -> None:
    result = runner.invoke(app, ["packets", str(DAYTIME), "-f", "json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(records) == 8
    assert records[0]["src"] == "127.0.0.1" and records[0]["tcp_flags"] == 2
    assert records[0]["inner_src"] is None


def test_parquet_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    result = runner.invoke(app, ["packets", str(DAYTIME), "-f", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert len(df) == 8 and df["sport"].iloc[0] > 1024


def test_bad_query_is_usage_error() -> None:
    result = runner.invoke(app, ["packets", str(DAYTIME), "--query", "nonexistent_col >"])
    assert result.exit_code == 2
    assert "invalid --query" in result.output


def test_missing_and_unreadable_files_exit_4(tmp_path: Path) -> None:
    result = runner.invoke(app, ["packets", str(tmp_path / "missing.pcap")])
    assert result.exit_code == 4
    assert "no such file" in result.output
    junk = tmp_path / "junk.pcap"
    junk.write_text("this is not a capture")
    result = runner.invoke(app, ["packets", str(junk)])
    assert result.exit_code == 4
    assert "not a pcap or pcapng" in result.output
    assert "Traceback" not in result.output


def test_unknown_engine_is_usage_error() -> None:
    result = runner.invoke(app, ["packets", str(DAYTIME), "--engine", "wireshark"])
    assert result.exit_code == 2


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "packets", str(DAYTIME), "-n", "1", "-f", "csv"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2


def test_import_analyzer_stays_light() -> None:
    code = "import sys, analyzer; print(*(m in sys.modules for m in ('scapy', 'pyshark', 'pandas')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False", "False"]
