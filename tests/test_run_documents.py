"""``analyzer run --format md|html|junit``: the run documents of analyzer.demos.documents, on
runs assembled from crafted captures of the scenarios (tests/check_captures.py) and kernel
samples, judged by the same code as a live run."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from check_captures import write_scenario
from junitparser import Failure, JUnitXml
from lxml import etree

import analyzer
from analyzer.checks import Check
from analyzer.demos import documents, outputs
from analyzer.demos.scenarios import SCENARIOS
from analyzer.demos.session import RunOptions, RunResult, ScenarioResult
from analyzer.demos.verdict import judge

XSD = Path(__file__).parent / "data" / "junit.xsd"
SERVER = ("127.0.0.1", 13)


def tw_socket(local: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
    return {
        "local_ip": local["ip"],
        "local_port": local["port"],
        "remote_ip": remote["ip"],
        "remote_port": remote["port"],
        "state": "TIME_WAIT",
        "timer": 3,
        "timer_s": 59.5,
        "inode": 0,
    }


def scenario_result(name: str, directory: Path, *, kernel_agrees: bool = True) -> ScenarioResult:
    """The scenario judged on its crafted capture, with the kernel sample the capture predicts."""
    sc = SCENARIOS[name]
    path = write_scenario(name, directory)
    analysis = analyzer.analyze(path)
    report = analysis.to_dict()
    sockets = []
    for flow in report["tcp"]:
        holder = flow["time_wait"]["holder"]
        if not kernel_agrees:
            holder = {"server": "client", "client": "server"}.get(holder, holder)
        if holder in ("server", "both"):
            sockets.append(tw_socket(flow["server"], flow["client"]))
        if holder in ("client", "both"):
            sockets.append(tw_socket(flow["client"], flow["server"]))
    frames = analysis.capture.packets
    worker = {
        "event": "result",
        "attempts": 1,
        "capture": {"dropped": 0, "witness": frames, "frames_in_file": frames},
        "kernel": {"settled": True, "sample": {"ts": report["tcp"][0]["last_ts"] if report["tcp"] else 0.0}},
        "timings": {"server_ready": 0.01, "capture_stopped": 0.25},
    }
    worker["kernel"]["sample"]["sockets"] = sockets
    result = ScenarioResult(sc, 4, worker=worker, capture_path=path, report=report, analysis=analysis)
    result.checks = judge(sc, worker, report, None, analysis)
    report["checks"] = [c.to_dict() for c in result.checks]
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    d = tmp_path_factory.mktemp("run")
    results = [
        scenario_result("daytime", d),
        scenario_result("half-close", d, kernel_agrees=False),
        scenario_result("udp-echo", d),
    ]
    opts = RunOptions([r.scenario for r in results])
    return RunResult(opts, "netns", "dumpcap", d, results, seconds=1.5, started=1_795_000_000.0)


def test_the_crafted_run_is_judged_like_a_live_one(run: RunResult) -> None:
    daytime, half, echo = run.results
    assert daytime.passed and echo.passed and not half.passed
    assert [c.name for c in half.checks if not c.passed] == ["kernel.tcp[0]"]


def test_junit_one_suite_per_scenario(run: RunResult, tmp_path: Path) -> None:
    data = documents.run_junit(run)
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.fromstring(data))
    (tmp_path / "junit.xml").write_bytes(data)
    xml = JUnitXml.fromfile(str(tmp_path / "junit.xml"))
    suites = list(xml)
    assert [s.name for s in suites] == ["daytime", "half-close", "udp-echo"]
    assert [(s.tests, s.failures) for s in suites] == [(len(r.checks), not r.passed) for r in run.results]
    props = {p.name: p.value for p in suites[0].properties()}
    assert props["spec"] == "analyzer/demos/expect/daytime.toml" and props["capture_backend"] == "dumpcap"
    started = datetime.fromtimestamp(run.started, UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    assert suites[0].time == 0.25 and suites[0].timestamp == started
    failed = [(case.classname, case.name, case.result) for case in suites[1] if case.result]
    assert len(failed) == 1
    classname, name, (failure,) = failed[0]
    assert (classname, name) == ("kernel", "time_wait.kernel")
    assert isinstance(failure, Failure) and failure.message == "expected 'client', observed 'server'"


def test_junit_turns_a_problem_into_a_failing_case(run: RunResult) -> None:
    broken = ScenarioResult(SCENARIOS["refused"], 4, worker={"event": "result", "error": {"message": "boom"}})
    broken.problems.append("no capture file")
    doc = RunResult(run.options, "netns", "dumpcap", run.out_dir, [broken])
    root = etree.fromstring(documents.run_junit(doc))
    cases = root.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["problem", "problem"]
    assert [c.find("failure").get("message") for c in cases] == [  # type: ignore[union-attr]
        "expected no problem, observed 'boom'",
        "expected no problem, observed 'no capture file'",
    ]
    # Not run at all: still one failing case, never an empty green suite.
    idle = RunResult(run.options, "netns", "dumpcap", run.out_dir, [ScenarioResult(SCENARIOS["refused"], 4)])
    root = etree.fromstring(documents.run_junit(idle))
    assert root.get("failures") == "1"


def test_markdown_nests_each_capture_report(run: RunResult) -> None:
    md = documents.run_markdown(run)
    assert md.startswith("# analyzer run\n")
    assert "- **verdict**: FAIL: 2 of 3 scenarios passed" in md
    assert "| [half-close](#scenario-half-close) | " in md and "| FAIL | 12 of 13 checks passed |" in md
    heads = [line for line in md.splitlines() if line.startswith("#")]
    assert heads[1].startswith("## daytime · the server sends the time") and heads[1].endswith(" · PASS")
    assert "### The capture" in heads and "#### TCP connections (1)" in heads
    # Every heading of the nested reports sits below the scenario's; none inside a code fence moved.
    assert not [h for h in heads[1:] if h.startswith("# ")]
    assert md.count("sequenceDiagram") == 3
    assert "| kernel time\\_wait.kernel | 'client' | 'server' (the kernel's TIME\\_WAIT" in md
    assert "**FAIL**" in md


def test_markdown_demotion_leaves_fenced_code_alone() -> None:
    text = "# a\n```text\n# not a heading\n```\n## b\n````\n```\n# inner\n````\n### c"
    assert documents._demote_md(text, 2) == [
        "### a",
        "```text",
        "# not a heading",
        "```",
        "#### b",
        "````",
        "```",
        "# inner",
        "````",
        "##### c",
    ]


def test_html_is_one_self_contained_page(run: RunResult) -> None:
    html = documents.run_html(run)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<body>") == 1 and html.count("<html") == 1 and "<script" not in html
    assert "default-src 'none'" in html
    for r in run.results:
        assert f'<section class="scenario" id="scenario-{r.name}">' in html
    # Anchors of the nested reports are prefixed per scenario: unique, and the links follow them.
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert 'id="scenario-daytime-tcp-0"' in html and 'href="#scenario-daytime-tcp-0"' in html
    for href in re.findall(r'href="#([^"]+)"', html):
        assert href in ids
    # One SVG ladder per flow, with its arrows; the kernel observation drawn beside TIME_WAIT.
    assert html.count("<svg") == 3 and html.count('class="ladder-arrow') > 20
    assert "kernel: 127.0.0.1:13" in html
    assert '<tr class="failed"><td>kernel time_wait.kernel</td>' in html


def test_capture_text_is_escaped_in_every_document(run: RunResult) -> None:
    hostile = "<script>alert(1)</script> | `x` # y"
    r = run.results[0]
    check = Check(name="x", selector="tcp[0]", field="regex", expected="a", observed=hostile, passed=False)
    evil = ScenarioResult(r.scenario, 4, worker=r.worker, capture_path=r.capture_path, report=r.report)
    evil.checks = [check]
    doc = RunResult(run.options, "netns", "dumpcap", run.out_dir, [evil])
    html = documents.run_html(doc)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = documents.run_markdown(doc)
    assert "<script" not in md and "&lt;script&gt;" in md and "\\| \\`x\\`" in md
    xml = documents.run_junit(doc)
    assert b"<script" not in xml


def test_write_run_leaves_report_html_beside_report_json(run: RunResult, tmp_path: Path) -> None:
    doc = RunResult(run.options, run.isolation, run.backend, tmp_path, run.results, seconds=1.0)
    outputs.write_run(doc)
    assert doc.html_report == tmp_path / "report.html"
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == documents.run_html(doc)
    assert (tmp_path / "report.json").exists() and not list(tmp_path.glob(".*.tmp"))
