"""analyzer.report.junit: the document validates against the JUnit schema CI servers use
(tests/data/junit.xsd, after Jenkins' junit-10.xsd) and reads back with junitparser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from lxml import etree
from tcp_craft import CLIENT, SERVER, Capture, Conv
from typer.testing import CliRunner

from analyzer.checks import Check
from analyzer.cli import app
from analyzer.report.junit import Suite, render_junit, write_junit, xml_text

XSD = Path(__file__).parent / "data" / "junit.xsd"


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def check(field: str, passed: bool, observed: object = "x", **over: object) -> Check:
    values: dict[str, object] = {
        "name": f"tcp[0].{field}",
        "selector": "tcp[0] server_port=13",
        "field": field,
        "expected": "complete",
        "observed": observed,
        "passed": passed,
        "flows": (0,),
        "expected_text": "'complete'",
        "where": "spec.toml:3",
        "note": "",
    }
    values.update(over)
    return Check(**values)  # type: ignore[arg-type]


def validate(schema: etree.XMLSchema, data: bytes) -> None:
    doc = etree.fromstring(data)
    assert schema.validate(doc), schema.error_log


def test_one_suite_per_capture_one_case_per_check(schema: etree.XMLSchema, tmp_path: Path) -> None:
    suites = [
        Suite(
            "captures/a.pcapng",
            [check("handshake", True, "complete"), check("teardown", False, "rst", note="why")],
            time_s=0.25,
            timestamp=datetime(2026, 11, 26, 22, 0, 0, tzinfo=UTC),
            properties={"spec": "spec.toml", "msl_s": "30"},
        ),
        Suite("captures/b.pcapng", [check("handshake", True, "complete")]),
    ]
    path = tmp_path / "junit.xml"
    write_junit(suites, path)
    data = path.read_bytes()
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    validate(schema, data)

    xml = JUnitXml.fromfile(str(path))
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 0)
    first, second = list(xml)
    assert (first.name, first.tests, first.failures, first.time) == ("captures/a.pcapng", 2, 1, 0.25)
    assert first.timestamp == "2026-11-26T22:00:00"
    assert {p.name: p.value for p in first.properties()} == {"spec": "spec.toml", "msl_s": "30"}
    cases = list(first)
    assert [(c.classname, c.name, c.is_passed) for c in cases] == [
        ("tcp[0] server_port=13", "handshake", True),
        ("tcp[0] server_port=13", "teardown", False),
    ]
    (failure,) = cases[1].result
    assert isinstance(failure, Failure)
    assert failure.message == "expected 'complete', observed 'rst'"
    assert failure.type == "analyzer.check"
    assert failure.text.splitlines() == [
        "selector: tcp[0] server_port=13",
        "field:    teardown",
        "expected: 'complete'",
        "observed: 'rst'",
        "flows:    0",
        "note:     why",
        "spec:     spec.toml:3",
    ]
    assert second.failures == 0 and second.properties() is not None


def test_capture_text_is_escaped_and_xml_safe(schema: etree.XMLSchema) -> None:
    nasty = "<script>alert(1)</script> & \x00\x1b\x7f \ud800 é ⏎"
    data = render_junit([Suite('a "quoted" <name>', [check("server_to_client.regex", False, nasty)])])
    validate(schema, data)
    xml = JUnitXml.fromstring(data)
    (suite,) = list(xml)
    assert suite.name == 'a "quoted" <name>'
    (case,) = list(suite)
    (failure,) = case.result
    assert failure.message == f"expected 'complete', observed {nasty!r}"  # repr: controls as \\xNN
    assert b"<script>" not in data  # markup from a capture stays text


def test_xml_text_keeps_what_xml_allows() -> None:
    assert xml_text("tab\tnew\nline\r é ⏎ \U0001f600") == "tab\tnew\nline\r é ⏎ \U0001f600"
    assert xml_text("\x01\x08\x0b\x0c\x1f\ufffe") == "\\x01\\x08\\x0b\\x0c\\x1f\\xef\\xbf\\xbe"


def test_no_suites_is_still_a_valid_document(schema: etree.XMLSchema) -> None:
    data = render_junit([])
    validate(schema, data)
    assert JUnitXml.fromstring(data).tests == 0


def test_the_schema_rejects_what_ci_servers_reject(schema: etree.XMLSchema) -> None:
    # A testcase without a name, a testsuite without its counters, a duration with a unit.
    counters = b"tests='1' failures='0' errors='0'"
    for doc in (
        b"<testsuites><testsuite name='x' " + counters + b"><testcase/></testsuite></testsuites>",
        b"<testsuites><testsuite name='x'/></testsuites>",
        b"<testsuites time='1,5s'><testsuite name='x' " + counters + b"/></testsuites>",
        b"<testsuite name='x' " + counters + b"><testcase name='a'><oops/></testcase></testsuite>",
    ):
        assert not schema.validate(etree.fromstring(doc)), doc


def test_verify_junit_with_binary_payload_is_valid(schema: etree.XMLSchema, tmp_path: Path) -> None:
    cap = Capture()
    c = Conv(cap, client=("127.0.0.1", 50000), server=("127.0.0.1", 13))
    c.handshake()
    c.send(SERVER, b"\x00\x01<b>bold</b>\x1b[31m\xff")
    c.ack(CLIENT)
    c.close_4way(first=SERVER)
    capture = cap.write(tmp_path / "binary.pcap")
    spec = tmp_path / "spec.toml"
    spec.write_text("[[tcp]]\nserver_to_client = { regex = '^text' }\nhandshake = 'complete'\n")
    junit = tmp_path / "out.xml"
    result = CliRunner().invoke(app, ["verify", str(capture), "--expect", str(spec), "--junit", str(junit)])
    assert result.exit_code == 1
    validate(schema, junit.read_bytes())
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    assert [(c.name, c.is_passed) for c in suite] == [
        ("count", True),
        ("server_to_client.regex", False),
        ("handshake", True),
    ]
    failure = list(suite)[1].result[0]
    # latin-1 text of the stream (not UTF-8), control characters as \xNN
    assert failure.message == "expected matches '^text', observed " + repr("\x00\x01<b>bold</b>\x1b[31m\xff")
