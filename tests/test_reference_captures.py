"""The reference captures of captures/ (made by ``analyzer run``, see captures/make_reference.py):
one per scenario plus an IPv6 variant. Each one's ``analyzer.report/1`` JSON must equal its golden
file in tests/golden/reference/, and each must meet its scenario's expectation file through
analyzer.checks (the engine of ``analyzer verify`` and ``analyzer run``).

Regenerate the goldens after an intended change (or after remaking the captures) with
``ANALYZER_UPDATE_GOLDEN=1 python -m pytest tests/test_reference_captures.py`` and review the diff.
Reports are deterministic: the capture is analyzed from its own directory under its bare file
name, so the report names it without any path of this checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_report_golden import check_golden

import analyzer
from analyzer.analysis import Analysis
from analyzer.checks import evaluate, failures, load_spec
from analyzer.demos.scenarios import SCENARIOS
from analyzer.report.json_report import render_json

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
EXPECT = ROOT / "analyzer" / "demos" / "expect"
# Every scenario of `analyzer run`, and the IPv6 variants kept as references.
REFERENCES = {**{name: name for name in SCENARIOS}, "daytime-ipv6": "daytime"}


def analyze_here(name: str) -> Analysis:
    path = CAPTURES / f"{name}.pcapng"
    assert path.exists(), f"{path} is missing: make it with python captures/make_reference.py"
    cwd = os.getcwd()
    os.chdir(CAPTURES)  # the report names the capture as given: its bare file name
    try:
        return analyzer.analyze(path.name)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def analyses() -> dict[str, Analysis]:
    return {name: analyze_here(name) for name in REFERENCES}


def test_one_reference_capture_per_scenario_and_a_readme_line_each() -> None:
    assert set(SCENARIOS) <= set(REFERENCES)
    readme = (CAPTURES / "README.md").read_text(encoding="utf-8")
    on_disk = {p.name for p in CAPTURES.glob("*.pcap*")}
    assert on_disk == {f"{name}.pcapng" for name in REFERENCES}
    for name in REFERENCES:
        assert f"| `{name}.pcapng` |" in readme, f"captures/README.md does not describe {name}.pcapng"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_report_matches_golden(name: str, analyses: dict[str, Analysis]) -> None:
    analysis = analyses[name]
    assert analysis.capture.file == f"{name}.pcapng"
    # Through a dict once: the golden holds the document, whichever path wrote its text.
    check_golden(f"reference/{name}.json", render_json(json.loads(render_json(analysis))))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_meets_its_scenario_expectations(name: str, analyses: dict[str, Analysis]) -> None:
    scenario = REFERENCES[name]
    cwd = os.getcwd()
    os.chdir(CAPTURES)  # regex checks read the payload bytes from the capture, named relatively
    try:
        checks = evaluate(load_spec(EXPECT / SCENARIOS[scenario].expect_file), analyses[name])
    finally:
        os.chdir(cwd)
    assert failures(checks) == [], [c.describe() for c in failures(checks)]
    assert len(checks) >= 2
    flows = [*analyses[name].tcp_records, *analyses[name].udp_records]
    family = "::1" if name.endswith("-ipv6") else "127.0.0.1"
    assert flows and all(f["client"]["ip"] == family == f["server"]["ip"] for f in flows)


def test_reference_fails_every_other_scenario(analyses: dict[str, Analysis]) -> None:
    """A capture shows its own scenario only: every other scenario's file finds a failure on it."""
    cwd = os.getcwd()
    os.chdir(CAPTURES)
    try:
        passing = {
            (name, other)
            for name in SCENARIOS
            for other in SCENARIOS
            if other != name
            and not failures(evaluate(load_spec(EXPECT / SCENARIOS[other].expect_file), analyses[name]))
        }
    finally:
        os.chdir(cwd)
    assert passing == set()
