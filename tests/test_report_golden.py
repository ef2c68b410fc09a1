"""Golden files for every report renderer of the reports half: the text ladder (ASCII and box
drawing), HTML, Markdown and the CSV tables, on the reference capture (captures/daytime.pcapng)
and on the crafted ``mixed`` capture (tests/report_captures.py).

Regenerate after an intended change with ``ANALYZER_UPDATE_GOLDEN=1 python -m pytest
tests/test_report_golden.py`` and review the diff under tests/golden/. Outputs are deterministic:
captures are named by a relative path (the tests run from the capture's directory), reports hold
no wall-clock time, and crafted captures have fixed timestamps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import report_captures

import analyzer
from analyzer.analysis import Analysis
from analyzer.report.html import render_html
from analyzer.report.ladder import build_ladders
from analyzer.report.ladder_text import render_ladder
from analyzer.report.markdown import render_markdown
from analyzer.report.tables import export_tables

GOLDEN = Path(__file__).resolve().parent / "golden"
REPO = Path(__file__).resolve().parent.parent
UPDATE = os.environ.get("ANALYZER_UPDATE_GOLDEN") == "1"


def _daytime(directory: Path) -> str:
    shutil.copy(REPO / "captures" / "daytime.pcapng", directory / "daytime.pcapng")
    return "daytime.pcapng"


def _mixed(directory: Path) -> str:
    report_captures.mixed(directory / "mixed.pcap")
    return "mixed.pcap"


CAPTURES: dict[str, Callable[[Path], str]] = {"daytime": _daytime, "mixed": _mixed}


@pytest.fixture(scope="module", params=sorted(CAPTURES))
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Analysis, Path]:
    name = str(request.param)
    directory = tmp_path_factory.mktemp(name)
    file = CAPTURES[name](directory)
    cwd = os.getcwd()
    os.chdir(directory)  # the report names the capture as given: a relative path
    try:
        analysis = analyzer.analyze(file)
    finally:
        os.chdir(cwd)
    return name, analysis, directory


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        pytest.skip(f"golden {name} written")
    assert path.exists(), f"no golden file {path}; create it with ANALYZER_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from its golden file (ANALYZER_UPDATE_GOLDEN=1 to accept)"


def _in(directory: Path, render: Callable[[], str]) -> str:
    cwd = os.getcwd()
    os.chdir(directory)  # renderers read payload bytes from the capture, named relatively
    try:
        return render()
    finally:
        os.chdir(cwd)


def test_text_ladders(case: tuple[str, Analysis, Path]) -> None:
    name, analysis, directory = case

    def render() -> str:
        tcp, udp = build_ladders(analysis)
        parts = []
        for fancy in (False, True):
            for lad in [*tcp, *udp]:
                parts.append(f"## {lad.title} (fancy={fancy})\n")
                parts.append(render_ladder(lad, fancy=fancy, width=100))
        return "".join(parts)

    check_golden(f"{name}.ladder.txt", _in(directory, render))


def test_html(case: tuple[str, Analysis, Path]) -> None:
    name, analysis, directory = case
    check_golden(f"{name}.html", _in(directory, lambda: render_html(analysis)))


def test_markdown(case: tuple[str, Analysis, Path]) -> None:
    name, analysis, directory = case
    check_golden(f"{name}.md", _in(directory, lambda: render_markdown(analysis)))


def test_csv_tables(case: tuple[str, Analysis, Path], tmp_path: Path) -> None:
    name, analysis, _ = case
    paths = export_tables(analysis, tmp_path / "tables", "csv")
    assert [p.name for p in paths] == ["packets.csv", "tcp.csv", "udp.csv"]
    combined = "".join(f"# {p.name}\n{p.read_text(encoding='utf-8')}" for p in paths)
    check_golden(f"{name}.tables.csv", combined)
