"""``analyzer analyze --format md|html|junit|csv|parquet`` and the Markdown/table helpers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import report_captures
from typer.testing import CliRunner

import analyzer
from analyzer.cli import app
from analyzer.report.markdown import md_text, mermaid_text
from analyzer.report.tables import serialisable, tables

REPO = Path(__file__).resolve().parent.parent
DAYTIME = str(REPO / "captures" / "daytime.pcapng")
runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report_captures.mixed(tmp_path_factory.mktemp("formats") / "mixed.pcap")


def test_mermaid_text_leaves_nothing_mermaid_reads_as_syntax() -> None:
    raw = 'a;b#c<d>e&f%%g"h`i{j}k\nl'
    out = mermaid_text(raw)
    # What is left once Mermaid's #code; entities are taken out holds none of its syntax.
    assert not re.search(r'[;#<>&%"`{}\n]', re.sub(r"#\w+;", "", out))
    assert out.startswith("a#59;b#35;c#lt;d#gt;e#amp;f#37;#37;g#quot;h")


def test_md_text_cannot_become_markup() -> None:
    assert md_text("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert md_text("a|b*c_d`e[f](g)") == "a\\|b\\*c\\_d\\`e\\[f\\](g)"
    assert md_text("x\ny") == "x y"


def test_markdown_report_of_the_mixed_capture(mixed_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(mixed_path), "--format", "md"])
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert md.count("```mermaid\nsequenceDiagram") == 4
    # Outside code blocks (where text is literal) no capture string is raw markup.
    prose = re.sub(r"(`{3,})text\n.*?\n *\1(?!`)", "", md, flags=re.S)
    assert "<script" not in prose and "<img" not in prose
    assert "&lt;script&gt;" in prose
    for block in re.findall(r"```mermaid\n(.*?)```", md, re.S):
        for line in block.splitlines()[1:]:
            text = line.split(":", 1)[1] if ":" in line else ""
            assert not re.search(r'[;#<>&%"]', re.sub(r"#\w+;", "", text)), line
    assert "S-->>C:" in md  # the retransmission is dotted
    assert "C-xS:" in md  # the RST is a cross
    assert "<details><summary>full text</summary>" in md


def test_markdown_full_text_fence_outlasts_backticks(tmp_path: Path) -> None:
    from analyzer.report.markdown import _fence

    assert _fence("a ``` b").startswith("````text\n")
    assert _fence("plain").startswith("```text\n")


def test_html_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["analyze", DAYTIME, "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('<svg class="ladder"') == 1


def test_junit_has_one_case_per_tcp_connection(mixed_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("analyzer.report.junit")
    junitparser = pytest.importorskip("junitparser")
    out = tmp_path / "junit.xml"
    result = runner.invoke(app, ["analyze", str(mixed_path), "--format", "junit", "-o", str(out)])
    assert result.exit_code == 0, result.output
    xml = junitparser.JUnitXml.fromfile(str(out))
    cases = [case for suite in xml for case in suite]
    assert [c.name for c in cases] == ["anomalies", "anomalies"]
    assert all(c.is_passed for c in cases)  # the crafted connections have no anomaly


def test_csv_and_parquet_tables(mixed_path: Path, tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        result = runner.invoke(app, ["analyze", str(mixed_path), "--format", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == [f"packets.{fmt}", f"tcp.{fmt}", f"udp.{fmt}"]
    analysis = analyzer.analyze(mixed_path)
    expected = tables(analysis)
    for name, df in expected.items():
        back = pd.read_parquet(tmp_path / "parquet" / f"{name}.parquet")
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
        csv = pd.read_csv(tmp_path / "csv" / f"{name}.csv")
        assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    packets = pd.read_csv(tmp_path / "csv" / "packets.csv")
    tcp = packets[packets["tcp_stream"] >= 0]
    assert tcp.groupby("tcp_stream").size().to_dict() == {r["id"]: r["packets"] for r in analysis.tcp_records}
    assert (packets.loc[packets["proto"] != "tcp", "tcp_stream"] == -1).all()


def test_tables_need_a_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", DAYTIME, "--format", "csv"])
    assert result.exit_code == 2 and "needs -o DIR" in result.output
    file = tmp_path / "x.csv"
    file.write_text("")
    result = runner.invoke(app, ["analyze", DAYTIME, "--format", "parquet", "-o", str(file)])
    assert result.exit_code == 2 and "is a file" in result.output


def test_nested_columns_become_json() -> None:
    df = pd.DataFrame({"a": [[1, 2], None, {"k": "v"}], "b": ["x", "y", "z"]})
    out = serialisable(df)
    assert out["a"][0] == "[1,2]" and pd.isna(out["a"][1]) and out["a"][2] == '{"k":"v"}'
    assert json.loads(out["a"][0]) == [1, 2]
    assert out["b"].tolist() == ["x", "y", "z"]


def test_import_analyzer_cli_loads_no_matplotlib() -> None:
    code = "import sys, analyzer.cli, analyzer.report.plot; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
