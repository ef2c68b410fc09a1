"""``analyzer verify``: every exit code (0 pass, 1 a check failed, 2 invalid spec or option,
4 unreadable capture), the failure lines on stderr, text and JSON output, JUnit on request."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import jsonschema
import pytest
from check_captures import write_scenario
from junitparser import JUnitXml
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.errors import EXIT_INPUT, EXIT_OK, EXIT_USAGE, EXIT_VERIFY_FAILED
from analyzer.report.json_report import report_schema

ROOT = Path(__file__).resolve().parents[1]
EXPECT = ROOT / "analyzer" / "demos" / "expect"

PASSING = r"""
# the daytime exchange as the crafted capture shows it
[[tcp]]
server_port = 13
count = 1
handshake = "complete"
teardown = ["fin-4way", "fin-3way"]
first_fin = "server"
time_wait = "server"
server_to_client = { bytes = 20, regex = '^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\n$' }
"""

FAILING = r"""
[[tcp]]
server_port = 13
teardown = "rst"
time_wait = "client"
server_to_client = { regex = '^HTTP/' }
[[udp]]
server_port = 53
"""


@pytest.fixture(scope="module")
def daytime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenario("daytime", tmp_path_factory.mktemp("verify"))


def spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def verify(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["verify", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_passing_spec_exits_0(daytime: Path, tmp_path: Path) -> None:
    code, out, err = verify(daytime, "--expect", spec(tmp_path, PASSING))
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == f"{daytime}: 7 of 7 checks passed ({tmp_path / 'spec.toml'})"
    assert all(line.startswith("  PASS  tcp[0] server_port=13 ") for line in lines[1:])
    assert err == ""


def test_failing_spec_exits_1_and_lists_each_failure(daytime: Path, tmp_path: Path) -> None:
    path = spec(tmp_path, FAILING)
    code, out, err = verify(daytime, "--expect", path)
    assert code == EXIT_VERIFY_FAILED
    assert "FAIL  tcp[0] server_port=13 teardown" in out
    fails = [line for line in err.splitlines() if line.startswith("FAIL ")]
    head = f"FAIL {daytime}: "
    assert fails == [
        head + f"tcp[0] server_port=13 teardown: expected 'rst', observed 'fin-4way' (flow 0)  [{path}:4]",
        head + f"tcp[0] server_port=13 time_wait: expected 'client', observed 'server' (flow 0)  [{path}:5]",
        head + "tcp[0] server_port=13 server_to_client.regex: expected matches '^HTTP/', "
        f"observed '2026-11-26 22:14:03\\n' (flow 0) - no match in the stream  [{path}:6]",
        head
        + f"udp[0] server_port=53 count: expected >= 1, observed 0 - the capture has no UDP flow  [{path}:7]",
    ]
    assert "error: 4 of 5 checks failed" in err


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("[[tcp]]\nserver_port = 13\nhandhsake = 'complete'\n", ":3:", "unknown key"),
        ("[[tcp]]\n\n\nserver_port = 'x'\n", ":4:", "must be an integer"),
        ("[[tcp]]\nserver_to_client = { regex = '[' }\n", ":2:", "invalid regular expression"),
        ("[[tcp]\n", ": invalid TOML", "line 1"),
    ],
)
def test_invalid_spec_exits_2_naming_the_line(
    daytime: Path, tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = spec(tmp_path, text)
    code, out, err = verify(daytime, "--expect", path)
    assert code == EXIT_USAGE
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith(f"error: {path}{where}") and problem in first
    assert err.splitlines()[1].startswith("hint: ")


def test_invalid_spec_is_reported_before_the_capture_is_read(tmp_path: Path) -> None:
    code, _, err = verify(tmp_path / "missing.pcap", "--expect", spec(tmp_path, "[[tcp]]\nbogus = 1\n"))
    assert code == EXIT_USAGE and "bogus" in err


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--expect", "{missing}"], "no such expectation file"),
        (["--expect", "{spec}", "--msl", "0"], "invalid --msl"),
        (["--expect", "{spec}", "--junit", "{dir}/no/such/dir/j.xml"], "no directory"),
        (["--expect", "{spec}", "--format", "json", "{capture}"], "--format json takes one capture"),
    ],
)
def test_bad_options_exit_2(daytime: Path, tmp_path: Path, args: list[str], problem: str) -> None:
    values = {
        "missing": str(tmp_path / "nope.toml"),
        "spec": str(spec(tmp_path, PASSING)),
        "dir": str(tmp_path),
        "capture": str(daytime),
    }
    code, _, err = verify(daytime, *[a.format(**values) for a in args])
    assert code == EXIT_USAGE, err
    assert problem in err


def test_missing_expect_option_is_a_usage_error(daytime: Path) -> None:
    code, _, err = verify(daytime)
    assert code == EXIT_USAGE and "--expect" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"this is not a capture at all", "not a pcap or pcapng file"),
        (b"", "too short to be a capture file"),
        (gzip.compress(b"\x00" * 50), "not a pcap or pcapng file"),
    ],
)
def test_unreadable_capture_exits_4(tmp_path: Path, content: bytes | None, problem: str) -> None:
    capture = tmp_path / "bad.pcap"
    if content is not None:
        capture.write_bytes(content)
    code, _, err = verify(capture, "--expect", spec(tmp_path, PASSING))
    assert code == EXIT_INPUT, err
    assert problem in err
    assert "Traceback" not in err


def test_json_output_is_the_report_with_checks(daytime: Path, tmp_path: Path) -> None:
    code, out, _ = verify(daytime, "--expect", spec(tmp_path, FAILING), "--format", "json")
    assert code == EXIT_VERIFY_FAILED
    doc = json.loads(out)
    jsonschema.Draft202012Validator(report_schema()).validate(doc)
    assert doc["schema"] == "analyzer.report/1" and len(doc["tcp"]) == 1
    names = [(c["name"], c["passed"]) for c in doc["checks"]]
    assert names == [
        ("tcp[0].count", True),
        ("tcp[0].teardown", False),
        ("tcp[0].time_wait", False),
        ("tcp[0].server_to_client.regex", False),
        ("udp[0].count", False),
    ]
    teardown = doc["checks"][1]
    assert (teardown["expected"], teardown["observed"], teardown["flows"]) == ("rst", "fin-4way", [0])


def test_schema_rejects_a_malformed_check(daytime: Path, tmp_path: Path) -> None:
    _, out, _ = verify(daytime, "--expect", spec(tmp_path, PASSING), "--format", "json")
    doc = json.loads(out)
    del doc["checks"][0]["passed"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(report_schema()).validate(doc)


def test_junit_is_written_for_several_captures(daytime: Path, tmp_path: Path) -> None:
    other = write_scenario("client-closes-first", tmp_path)
    junit = tmp_path / "junit.xml"
    code, out, _ = verify(daytime, other, "--expect", EXPECT / "daytime.toml", "--junit", junit)
    assert code == EXIT_VERIFY_FAILED
    assert f"{daytime}: 9 of 9 checks passed" in out
    assert re.search(rf"^{re.escape(str(other))}: 7 of 9 checks passed", out, re.M)
    xml = JUnitXml.fromfile(str(junit))
    suites = list(xml)
    assert [s.name for s in suites] == [str(daytime), str(other)]
    assert [(s.tests, s.failures) for s in suites] == [(9, 0), (9, 2)]
    failed = [(c.classname, c.name) for c in suites[1] if not c.is_passed]
    assert failed == [("tcp[0] server_port=13", "first_fin"), ("tcp[0] server_port=13", "time_wait")]
    assert not (tmp_path / ".junit.xml.tmp").exists()


def test_every_scenario_spec_verifies_its_crafted_capture(tmp_path: Path) -> None:
    for path in sorted(EXPECT.glob("*.toml")):
        capture = write_scenario(path.stem, tmp_path)
        code, out, err = verify(capture, "--expect", path)
        assert code == EXIT_OK, (path.name, out, err)
